"""What a run gives a kind to export (:class:`RunResult`) and what the export gives back (:class:`Exported`).

Below :mod:`crsdata.simulate.base` (which re-exports them for kinds), the engine and the dataset-folder export, so
that none of them imports another to name a result.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crsdata.errors import SkipLog


@dataclass
class RunStats:
    """What this process did (a resumed run counts only its own work)."""

    dialogues: int = 0
    turns: int = 0
    calls: int = 0
    requests: int = 0
    completion_tokens: int = 0
    generate_seconds: float = 0.0
    wall_seconds: float = 0.0
    resumed_dialogues: int = 0  # finished in an earlier process, read from the shards

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def dialogues_per_minute(self) -> float:
        return 60.0 * self.dialogues / self.wall_seconds if self.wall_seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "tokens_per_second": self.tokens_per_second,
            "dialogues_per_minute": self.dialogues_per_minute,
        }


@dataclass
class RunResult:
    records: list[dict[str, Any]]  # every written dialogue, by index
    manifest: dict[str, Any]
    skipped: SkipLog
    counters: Counter[str]
    stats: RunStats
    work_dir: Path


@dataclass
class Exported:
    """What a kind's export wrote: where, how many dialogues it kept, and how many it left out by reason."""

    path: Path
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    description: str = "dataset folder"


NO_TURNS = "no_turns"
