"""The plan of a distributed run: which dialogues to write, which task writes each, and what is done.

Decided once, in the driver, before any task starts: the run draws indices exactly as the single-process
engine does (:meth:`crsdata.simulate.engine.IndexDraw.next_task`; starting a dialogue needs no model), so the first
``n`` usable indices and every skip are known up front and recorded. The indices are then cut into ``tasks``
contiguous blocks.

Files, under ``<run dir>/scaleout/`` (a shared filesystem when tasks run on other machines):

- ``plan/source.jsonl``: the source records, one a line, in source order (tasks read them by position);
- ``plan/task-NNNNN.jsonl``: one line per dialogue of rank NNNNN: index, dialogue id, dialogue seed;
- ``manifest.json``: the run configuration (a resume with other options is refused), the plan's summary, the
  skips, the checkpoint chunk size and one entry per session (each time the command ran). Written last, so a
  plan without it is incomplete and is made again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from crsdata.fileio import write_atomic, write_json_atomic
from crsdata.scaleout.pipeline import CHECKPOINT_DIR, OUTPUT_DIR, PLAN_DIR, SOURCE_FILE, task_file
from crsdata.simulate.base import Simulation
from crsdata.simulate.engine import (
    MANIFEST,
    IndexDraw,
    RunConfig,
    check_resume,
    dialogue_id,
    dialogue_seed,
    new_manifest,
)
from crsdata.simulate.source import SimulationSource


@dataclass
class Plan:
    entries: list[int]  # the index of each dialogue to write, in index order
    skipped: list[dict[str, Any]]  # one entry per skipped index, as in the engine's manifest

    def blocks(self, tasks: int) -> list[list[int]]:
        """The entries cut into ``tasks`` contiguous blocks whose sizes differ by at most one."""
        n = len(self.entries)
        return [self.entries[k * n // tasks : (k + 1) * n // tasks] for k in range(tasks)]


def make_plan(sim: Simulation, records: list[dict[str, Any]], run_seed: int, n: int) -> Plan:
    """The first ``n`` indices whose records start a dialogue, and the skips before them: the engine's draw."""
    draw = IndexDraw()
    skipped: list[dict[str, Any]] = []
    entries = []
    while (task := draw.next_task(sim, records, run_seed, n, 0, skipped)) is not None:
        entries.append(task.index)
    return Plan(entries, skipped)


def write_plan(
    folder: Path,
    sim: Simulation,
    source: SimulationSource,
    config: RunConfig,
    plan: Plan,
    tasks: int,
    records_per_chunk: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Writes the plan files, then the manifest (see the module doc); returns the manifest."""
    plan_dir = folder / PLAN_DIR
    plan_dir.mkdir(parents=True, exist_ok=True)
    lines = (json.dumps(r, ensure_ascii=False, sort_keys=True, default=str) for r in source.records)
    write_atomic(plan_dir / SOURCE_FILE, "\n".join(lines) + "\n")
    summary = []
    seed = config.seed
    for rank, block in enumerate(plan.blocks(tasks)):
        rows = [
            {"index": index, "dialogue_id": dialogue_id(sim.name, seed, index), "seed": dialogue_seed(seed, index)}
            for index in block
        ]
        write_atomic(task_file(plan_dir, rank), "".join(json.dumps(row) + "\n" for row in rows))
        summary.append({"rank": rank, "dialogues": len(rows), "indices": block})
    manifest = {
        **new_manifest(config, source),
        "status": "planned",
        "records_per_chunk": records_per_chunk,
        "tasks": summary,
        "skipped": plan.skipped,
        **extra,
    }
    save_manifest(folder, manifest)
    return manifest


def load_plan(folder: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The saved plan manifest when its configuration matches (RunConfigMismatch otherwise), or None."""
    return check_resume(folder, config)


def save_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json_atomic(folder / MANIFEST, manifest)


# ---------------------------------------------------------------------------------------------------------
# What the tasks have done (datatrove's files: completion markers, checkpoints, output chunks)


def completed_ranks(logging_dir: Path, tasks: int) -> set[int]:
    return {rank for rank in range(tasks) if (logging_dir / "completions" / f"{rank:05d}").is_file()}


def done_count(folder: Path, logging_dir: Path, manifest: dict[str, Any]) -> int:
    """Dialogues finished so far: every dialogue of a completed task, and for the others the chunks the runner has
    closed plus the lines of its open checkpoint files. For the progress bar; the merge checks every index."""
    chunk = manifest["records_per_chunk"]
    finished = completed_ranks(logging_dir, len(manifest["tasks"]))
    total = 0
    for task in manifest["tasks"]:
        rank = task["rank"]
        if rank in finished:
            total += task["dialogues"]
            continue
        count = (_last_chunk(folder, rank) + 1) * chunk
        for path in (folder / CHECKPOINT_DIR / f"{rank:05d}").glob("chunk_*.jsonl"):
            with path.open("rb") as lines:
                count += sum(1 for _ in lines)
        total += min(count, task["dialogues"])
    return total


def _last_chunk(folder: Path, rank: int) -> int:
    path = folder / CHECKPOINT_DIR / "last_chunk" / f"{rank:05d}.txt"
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return -1


def chunk_files(folder: Path, rank: int) -> list[Path]:
    """The output chunks of ``rank``, in chunk order."""
    files = (folder / OUTPUT_DIR / f"{rank:05d}").glob("chunk-*.parquet")
    return sorted(files, key=lambda p: int(p.stem.removeprefix("chunk-")))


def reset_interrupted(folder: Path, logging_dir: Path, manifest: dict[str, Any]) -> list[int]:
    """Starts again, from nothing, every unfinished task whose checkpoint says a chunk is closed while its output
    file is missing or unreadable. (The runner deletes a task's checkpoints just before closing its last output
    file; a kill in between would otherwise leave that chunk lost on resume.) Returns the ranks reset."""
    import shutil

    chunk = manifest["records_per_chunk"]
    finished = completed_ranks(logging_dir, len(manifest["tasks"]))
    reset = []
    for task in manifest["tasks"]:
        rank = task["rank"]
        last = _last_chunk(folder, rank)
        if rank in finished or last < 0:
            continue
        for k in range(last + 1):
            expected = min(chunk, task["dialogues"] - k * chunk)
            path = folder / OUTPUT_DIR / f"{rank:05d}" / f"chunk-{k}.parquet"
            try:
                ok = pq.ParquetFile(path).metadata.num_rows == expected
            except Exception:  # missing, truncated, not parquet: all mean the chunk must be made again
                ok = False
            if not ok:
                shutil.rmtree(folder / OUTPUT_DIR / f"{rank:05d}", ignore_errors=True)
                shutil.rmtree(folder / CHECKPOINT_DIR / f"{rank:05d}", ignore_errors=True)
                (folder / CHECKPOINT_DIR / "last_chunk" / f"{rank:05d}.txt").unlink(missing_ok=True)
                reset.append(rank)
                break
    return reset
