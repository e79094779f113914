"""Where a run's records come from: one split of a built dataset folder, or records a kind makes itself.

Its own module, below the kinds and the engine, because both need it: a kind loads its source
(:meth:`~crsdata.simulate.base.Simulation.load_source`) and the engine draws from it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.errors import BadInputError


@dataclass
class SimulationSource:
    """The records a run draws from: schema dialogues of one split of a built dataset, or records a simulation
    makes from its own inputs (RecLLMSim scenarios x profiles). ``fingerprint`` identifies the content, so a
    resume against a changed source is refused; ``excluded`` counts records left out on purpose, by reason.
    ``split`` is the one source split drawn from, and the name of the output split."""

    name: str  # what the user passed as --source
    kind: str  # "dataset" (a built folder) or a simulation-specific kind ("scenarios")
    records: list[dict[str, Any]]
    fingerprint: str
    description: str = ""
    excluded: dict[str, int] = field(default_factory=dict)
    total: int = 0  # records read before exclusion
    split: str = "train"
    split_choice: str = ""  # how the split was chosen, for the card ("--split", "the only split", ...)
    other_splits: dict[str, int] = field(default_factory=dict)  # splits not drawn from -> their records
    # The catalog a kind's load_source read to check the records (interplay: the targets' facts), kept so that the
    # kind's constructor does not read it again; None when none was read.
    catalog: Any = None


def fingerprint_records(records: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def choose_split(folder: str | Path, usable: dict[str, int], split: str | None) -> tuple[str, str]:
    """The one split a run draws from and why: ``split`` when given (it must exist); else ``train`` when it has
    usable records, else the only split that has any. Several candidates and none named train is a
    BadInputError asking for --split: drawing from all of them would mix, say, test personas into a train split.
    ``usable`` maps every split of the source to its number of usable records; ``("", why)`` when none has any."""
    if split is not None:
        if split not in usable:
            raise BadInputError(
                folder, "", "--split", f"no split {split!r} (it has {', '.join(usable)})", "missing-split"
            )
        return split, "--split"
    candidates = [name for name, count in usable.items() if count]
    if "train" in candidates:
        return "train", "the default, train"
    if len(candidates) == 1:
        only = "the only split" if len(usable) == 1 else "the only split with records this simulation can use"
        return candidates[0], only
    if not candidates:
        return "", "no split has usable records"
    listed = ", ".join(f"{name} ({usable[name]} usable records)" for name in candidates)
    raise BadInputError(
        folder,
        "",
        "--split",
        f"the source has several splits and none named train: {listed}. A run draws from one split and names "
        "its output after it, so that no split mixes into another; choose one with --split",
        "choose-split",
    )


def load_dataset_source(
    folder: str | Path, split: str | None = None, eligible: Callable[[dict[str, Any]], str] | None = None
) -> SimulationSource:
    """Dialogue records of one split of a built crsdata folder (``load_dataset(folder, "dialogues")``).

    The split is ``split`` or chosen by :func:`choose_split`. ``eligible(record)`` returns ``""`` for a record
    the simulation can use, else a reason; records with a reason are left out of the draw and counted in
    ``excluded`` (for example RecLLMSim's Chinese human dialogues when simulating in English). Raises
    BadInputError when the folder is not a built dataset, the split does not exist, or no record is usable.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(
            folder, "", "", "no such folder; --source takes a folder written by `crsdata build`", "not-found"
        )
    if not (folder / "README.md").is_file() or not any(folder.glob("dialogues/*.parquet")):
        raise BadInputError(
            folder,
            "",
            "",
            "not a built dataset folder (expected README.md and dialogues/*.parquet, as written by `crsdata build`)",
            "not-a-dataset",
        )
    import datasets

    try:
        loaded = datasets.load_dataset(str(folder), "dialogues")
    except Exception as err:  # datasets raises many types for a folder it cannot read; all mean bad input here
        raise BadInputError(
            folder, "", "", f"cannot load the 'dialogues' configuration ({err})", "not-a-dataset"
        ) from None
    by_split: dict[str, tuple[list[dict[str, Any]], Counter[str]]] = {}
    for name in loaded:
        kept, excluded = [], Counter()
        for record in loaded[name].to_list():
            reason = eligible(record) if eligible else ""
            if reason:
                excluded[reason] += 1
            else:
                kept.append(record)
        by_split[name] = (kept, excluded)
    chosen, why = choose_split(folder, {name: len(kept) for name, (kept, _) in by_split.items()}, split)
    if not chosen or not by_split[chosen][0]:
        excluded = Counter()
        for name in [chosen] if chosen else by_split:
            excluded.update(by_split[name][1])
        detail = ", ".join(f"{r}: {c}" for r, c in excluded.items()) or "it is empty"
        where = f" in split {chosen}" if chosen and len(by_split) > 1 else ""
        raise BadInputError(folder, "", "", f"no usable records for this simulation{where} ({detail})", "no-records")
    kept, excluded = by_split[chosen]
    total = len(kept) + sum(excluded.values())
    return SimulationSource(
        name=str(folder),
        kind="dataset",
        records=kept,
        fingerprint=fingerprint_records(kept),
        description=f"built dataset {folder}, split `{chosen}` ({why}): {len(kept)} usable records of {total}",
        excluded=dict(excluded),
        total=total,
        split=chosen,
        split_choice=why,
        other_splits={
            name: len(kept) + sum(excluded.values()) for name, (kept, excluded) in by_split.items() if name != chosen
        },
    )
