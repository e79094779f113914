"""The run engine: many simulated dialogues advancing together, resumable after a kill.

How a run proceeds
------------------
Dialogue ``i`` of a run (``i = 0, 1, 2, ...``, until ``n`` are written) is fully determined by the run seed
and ``i``: its source record is ``records[source_index(seed, i, len(records))]`` (a seeded shuffle of the
source, reshuffled each time the source is exhausted), its seed is :func:`dialogue_seed` ``(seed, i)``, and the
simulation derives every request's seed from that. So no result depends on which dialogues happened to share a batch.
The source is one split of a built dataset (:func:`load_dataset_source`), and the output split has its name.

Up to ``batch_size`` dialogues are active at once. Each step asks every active dialogue which role speaks
next and groups the dialogues by *call*: requests that go to the same backend object with the same sampling
parameters share one call. When one model plays both parts (the default), user and recommender turns
therefore travel together and every step serves every active dialogue; with two models, each call is one
role. The step runs the call with the most waiting dialogues (ties go to the call that did not run last, so
two equal groups alternate), sends all their requests to the backend in one ``generate``, and applies the
answers. Finished dialogues leave the batch and pending ones join it at once, so the batch stays full until
the work runs out. Each request goes with ``simulation.sampling(state, role)`` (by default the role's
parameters; RecLLMSim's profile requests need a larger token budget).

The engine knows nothing of any kind: it drives the step contract of :class:`~crsdata.simulate.base.Simulation`
through :class:`DialogueTask`, which also holds the rules below for failed generations, so that another
executor (one async loop per dialogue) writes the same records.

Failures never lose a dialogue:

- ``simulation.start`` raising :class:`~crsdata.errors.BadInputError` skips that index; the skip (index,
  source record, reason, message) is recorded in the manifest and counted, and the run draws the next index,
  so it writes ``n`` dialogues: those of the first ``n`` indices that do not skip (which depends only on the
  seed and the source), and ``drawn = n + skipped``. When every source record has been skipped once, no record
  is usable and the run stops drawing.
  A kind with ``draws_each_record_once`` (replay) stops after one pass over the shuffled source instead: each
  record starts at most one dialogue: ``written <= n`` and ``written + skipped <= records``.
- a generation with ``finish_reason="error"`` (a timeout, a server error) is counted and the same request is
  sent again on a later step (same seed, so a retry that succeeds gives exactly the uninterrupted text); after
  ``max_retries`` failed retries of one turn the dialogue ends with ``end_reason="error"`` and
  ``extra.run.end_detail`` saying why, and it is written like any other.
- a *refused* generation (the server answered 4xx, or the prompt cannot fit the model's context even without
  its older turns) is not retried: the dialogue ends at once with ``end_reason="error"``, counter ``refused``
  and an ``end_detail`` that names the dialogue and the reason; the card and the command's summary line count
  it. A prompt that fit only without its oldest turns counts ``context_trimmed`` (and ``context_dropped_turns``).
- a :class:`~crsdata.backends.base.BackendError` (the backend itself is gone) stops the run after saving what
  is finished; the same command resumes it.

Files (under the run folder, by default ``<out>/.simulate-run``)
----------------------------------------------------------------
``shards/shard-NNNNN.parquet`` hold finished dialogues in the schema of :data:`crsdata.schema.DIALOGUE_FEATURES`,
written every ``shard_size`` finished dialogues. ``manifest.json`` records the run configuration, each shard
with the dialogue ids and indices it holds, its SHA-256 and counters, and every skipped dialogue. Both are
written to a temporary file and renamed (``os.replace``), shard first, manifest second, so a kill at any
moment leaves either the old state or the new one. A shard file not listed in the manifest (killed between
the two renames) is ignored and overwritten.

Resuming: starting the same command again reads the manifest, refuses a different configuration (seed,
models, sampling, source and split, prompts, the kind's options...) with a clear error, takes finished dialogues
from the shards and runs the rest; dialogues that were in flight start again from scratch. Since every dialogue
depends only on ``(seed, i)``, the final records equal an uninterrupted run's.

Growing: a finished run started again with a larger ``n`` runs indices it has not used and keeps every shard it
has, byte for byte; the records equal those of one run with the larger ``n``. A smaller ``n`` than the run
already holds is refused.

One process at a time: :meth:`RunEngine.run` holds an exclusive ``fcntl.flock`` on ``<run folder>/lock``
(:class:`RunLock`); a second process is refused with the holder's pid. The kernel drops the lock when its
process dies, so a run killed with SIGKILL is taken over by the next command at once.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from crsdata.backends.base import Backend, BackendError, ChatRequest, Generation, SamplingParams
from crsdata.errors import BadInputError, SkipLog
from crsdata.fileio import sha256_file, write_atomic_with, write_json_atomic
from crsdata.schema import DIALOGUE_FEATURES, EndReason, dump_extra, load_extra, validate_dialogue
from crsdata.seeds import derive_seed
from crsdata.simulate.base import DialogueState, Simulation
from crsdata.simulate.results import RunResult, RunStats
from crsdata.simulate.source import SimulationSource

MANIFEST = "manifest.json"
SHARD_DIR = "shards"
MANIFEST_FORMAT = "crsdata-simulation-run/1"
LOCK = "lock"
# Config keys that may differ on resume: they change how the work is scheduled and stored, never its results.
SCHEDULING_KEYS = ("batch_size", "shard_size", "crsdata_version")
# A resume may raise n: it adds dialogues n_old..n-1 and keeps the others (never lowers it).
GROWABLE_KEYS = ("n",)
# Config entries added after runs were already written, with the value that reproduces what those runs did
# ("*" is any role). A run folder written before an entry existed lacks it; that compares equal to this value.
ADDED_LATER: dict[str, Any] = {
    "options.grounding": "none",
    "options.candidates": 5,
    "options.tags": None,
    "sampling.*.repetition_penalty": 1.0,
    "sampling.*.no_repeat_ngram_size": 0,
    "sampling.*.sequence_bias": [],
    "options.accept_bias": 0.0,
    "options.free_titles": True,
    "options.decision_scorer": "none",
    "options.disclose_cues": False,
}


def _without_added_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` less the :data:`ADDED_LATER` entries that hold their earlier behaviour's value."""
    trimmed = json.loads(json.dumps(config))
    for path, value in ADDED_LATER.items():
        head, *middle, leaf = path.split(".")
        parents = [trimmed.get(head)]
        for part in middle:
            parents = [
                child
                for parent in parents
                if isinstance(parent, dict)
                for child in (parent.values() if part == "*" else [parent.get(part)])
            ]
        for parent in parents:
            if isinstance(parent, dict) and leaf in parent and parent[leaf] == value:
                del parent[leaf]
    return trimmed


# ---------------------------------------------------------------------------------------------------------
# Seeds: everything random about dialogue i comes from (run seed, i).


def dialogue_seed(run_seed: int, index: int) -> int:
    return derive_seed("dialogue", run_seed, index)


def source_index(run_seed: int, index: int, n_records: int) -> int:
    """Which source record dialogue ``index`` uses: position ``index mod n`` of a seeded permutation, a new
    permutation for each pass over the source. Independent of ``n`` (the number of dialogues requested)."""
    if n_records <= 0:
        raise ValueError("the source has no records")
    epoch, position = divmod(index, n_records)
    return _permutation(run_seed, epoch, n_records)[position]


_PERMUTATIONS: dict[tuple[int, int, int], list[int]] = {}


def _permutation(run_seed: int, epoch: int, n: int) -> list[int]:
    key = (run_seed, epoch, n)
    if key not in _PERMUTATIONS:
        order = list(range(n))
        random.Random(derive_seed("source-order", run_seed, epoch)).shuffle(order)
        if len(_PERMUTATIONS) > 64:
            _PERMUTATIONS.clear()
        _PERMUTATIONS[key] = order
    return _PERMUTATIONS[key]


# ---------------------------------------------------------------------------------------------------------
# Source, configuration, results


@dataclass
class RunConfig:
    """Everything that determines a run's results (plus scheduling knobs that do not), saved in the manifest.

    ``n`` may grow on resume (dialogue i depends only on the seed and i, so a larger ``n`` adds dialogues and
    keeps the others); every other field except :data:`SCHEDULING_KEYS` must match."""

    simulation: str
    n: int
    seed: int
    max_turns: int
    split: str  # the source split drawn from, and the output split
    backend: str
    models: dict[str, str]  # role -> model name as given
    model_ids: dict[str, str]  # role -> backend.model_id (what provenance records)
    sampling: dict[str, dict[str, Any]]  # role -> SamplingParams as a dict
    source: str
    source_kind: str
    source_fingerprint: str
    options: dict[str, Any]  # the kind's command-line options that change results (prompt style, profiles...)
    prompt_hashes: dict[str, str]
    settings: dict[str, Any] = field(default_factory=dict)  # the simulation's own settings (Simulation.settings)
    dtype: str = ""  # local backend weights; "" for a server
    max_retries: int = 2
    batch_size: int = 32
    shard_size: int = 50
    crsdata_version: str = ""

    def as_dict(self) -> dict[str, Any]:
        # A JSON round trip makes tuples lists, so a loaded manifest compares equal to a fresh config.
        return json.loads(json.dumps(asdict(self), sort_keys=True))


class RunConfigMismatch(BadInputError):
    """The run folder holds a run with a different configuration; resuming would mix two runs."""


# ---------------------------------------------------------------------------------------------------------
# Shards (written atomically by crsdata.fileio)


def write_shard(path: Path, records: list[dict[str, Any]]) -> str:
    """Writes records as one parquet file in the dialogue schema; returns its SHA-256."""
    from datasets import Dataset

    table = Dataset.from_list(records, features=DIALOGUE_FEATURES).data.table
    write_atomic_with(path, lambda tmp: pq.write_table(table, tmp))
    return sha256_file(path)


def read_shard(path: Path) -> list[dict[str, Any]]:
    return pq.read_table(path).to_pylist()


# A finished dialogue waiting for its shard: (index, record, counters).
Finished = tuple[int, dict[str, Any], dict[str, int]]


def commit_shard(work_dir: Path, number: int, chunk: list[Finished]) -> dict[str, Any]:
    """Writes shard ``number`` of a run from ``(index, record, counters)`` rows; returns its manifest entry."""
    name = f"{SHARD_DIR}/shard-{number:05d}.parquet"
    digest = write_shard(work_dir / name, [record for _, record, _ in chunk])
    counters: Counter[str] = Counter()
    for _, _, c in chunk:
        counters.update(c)
    return {
        "file": name,
        "rows": len(chunk),
        "sha256": digest,
        "dialogue_ids": [record["dialogue_id"] for _, record, _ in chunk],
        "indices": [index for index, _, _ in chunk],
        "counters": dict(sorted(counters.items())),
    }


def new_manifest(config: RunConfig, source: SimulationSource) -> dict[str, Any]:
    """The manifest of a run that has written nothing yet."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return {
        "format": MANIFEST_FORMAT,
        "config": config.as_dict(),
        "status": "running",
        "created": now,
        "updated": now,
        "source": {
            "description": source.description,
            "split": source.split,
            "split_choice": source.split_choice,
            "other_splits": dict(source.other_splits),
            "records": len(source.records),
            "read": source.total or len(source.records),
            "excluded": dict(source.excluded),
        },
        "shards": [],
        "skipped": [],
        "counters": {},
        "sessions": [],
    }


def read_run_result(work_dir: Path, manifest: dict[str, Any], stats: RunStats) -> RunResult:
    """A run's result from its manifest and shards: every written dialogue in index order, the skips, the
    counters (whichever runner wrote the shards)."""
    rows: list[tuple[int, dict[str, Any]]] = []
    for shard in manifest["shards"]:
        records = read_shard(work_dir / shard["file"])
        rows.extend(zip(shard["indices"], records, strict=True))
    rows.sort(key=lambda pair: pair[0])
    entries = sorted(manifest["skipped"], key=lambda e: e["index"])
    skipped = SkipLog(skip_bad=True)
    for entry in entries:
        skipped.handle(BadInputError("", "", "", entry["message"], entry["reason"]))
    skipped.examples = [e["message"] for e in entries][: skipped.max_examples]
    return RunResult(
        records=[record for _, record in rows],
        manifest=manifest,
        skipped=skipped,
        counters=Counter(manifest["counters"]),
        stats=stats,
        work_dir=work_dir,
    )


# ---------------------------------------------------------------------------------------------------------
# The engine


class RunLocked(BadInputError):
    """Another process is running in this folder."""


class RunLock:
    """An exclusive lock on a folder for one process: ``fcntl.flock`` on ``<folder>/<name>``.

    The kernel releases a flock when its process ends, however it ends, so a run killed with SIGKILL never
    leaves the folder locked: the next run takes it over at once. The file holds the pid of the holder, for the
    error message of a process that is refused. Not re-entrant: one lock object per folder and process.
    """

    def __init__(self, folder: str | Path, name: str = LOCK, what: str = "run folder") -> None:
        self.path = Path(folder) / name
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLocked(
                self.path.parent,
                "",
                "",
                f"another `crsdata simulate` (pid {holder}) is running in this {self.what}; wait for it to end "
                "or stop it, then run the command again to resume (a stopped or killed run leaves no lock "
                "behind)",
                "run-locked",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def dialogue_id(kind: str, run_seed: int, index: int) -> str:
    return f"{kind}-s{run_seed}-{index:06d}"


class DialogueTask:
    """One dialogue of a run, as any executor drives it: the simulation's step contract plus the run's rules
    for failed generations, so that the batched engine and a per-dialogue (async) executor write the same
    record for index ``i``.

    ``begin`` draws the source record and seed of index ``i`` and starts the dialogue (BadInputError when the
    record cannot be used: the executor records the skip and draws the next index). Then, until ``finished``:
    ``role = task.next_role()``, ``task.request(role)`` with ``task.sampling(role)`` to a backend, and
    ``task.apply(role, generation)``. Finally ``task.to_record(split, run_seed)``.

    A generation with ``finish_reason="error"`` is counted and not applied: the same request is sent again
    (same seed, so a retry that succeeds gives exactly the uninterrupted text); after ``max_retries`` failed
    retries of one turn the dialogue ends with ``end_reason="error"``. A simulation that keeps asking without
    ending is stopped (``unknown``).
    """

    def __init__(self, simulation: Simulation, index: int, state: DialogueState, max_retries: int) -> None:
        self.sim = simulation
        self.index = index
        self.state = state
        self.max_retries = max_retries
        self.failures = 0  # consecutive failed generations of the current turn
        self.steps = 0  # requests served, a guard against a simulation that never finishes
        self.error = ""

    @classmethod
    def begin(
        cls, simulation: Simulation, records: list[dict[str, Any]], run_seed: int, index: int, max_retries: int
    ) -> DialogueTask:
        record = records[source_index(run_seed, index, len(records))]
        state = simulation.start(record, dialogue_id(simulation.name, run_seed, index), dialogue_seed(run_seed, index))
        return cls(simulation, index, state, max_retries)

    @property
    def finished(self) -> bool:
        return self.state.finished

    def next_role(self) -> str:
        return self.sim.next_role(self.state)

    def sampling(self, role: str) -> SamplingParams:
        return self.sim.sampling(self.state, role)

    def request(self, role: str) -> ChatRequest:
        return self.sim.request(self.state, role)

    def apply(self, role: str, generation: Generation) -> int:
        """Applies one generation; returns the number of turns it added."""
        state = self.state
        self.steps += 1
        if generation.finish_reason == "error":
            state.counters["backend_errors"] = state.counters.get("backend_errors", 0) + 1
            self.failures += 1
            self.error = generation.error or "unspecified backend error"
            if generation.refused:  # the same request would be refused again
                state.counters["refused"] = 1
                self._abandon(f"{state.dialogue_id}: refused by the backend: {self.error}", EndReason.ERROR)
            elif self.failures > self.max_retries:
                self._abandon(f"backend error after {self.failures} attempts: {self.error}", EndReason.ERROR)
            return 0
        self.failures = 0
        if generation.dropped_turns:
            state.counters["context_trimmed"] = state.counters.get("context_trimmed", 0) + 1
            state.counters["context_dropped_turns"] = (
                state.counters.get("context_dropped_turns", 0) + generation.dropped_turns
            )
        before = len(state.turns)
        self.sim.apply(state, role, generation)
        # A simulation may legitimately re-ask (an empty answer, a profile that did not parse), but not forever.
        limit = 4 * (self.sim.max_turns + 4) * (self.max_retries + 1)
        if not state.finished and self.steps >= limit:
            self._abandon(f"no end after {self.steps} requests", EndReason.UNKNOWN)
        return max(0, len(state.turns) - before)

    def _abandon(self, detail: str, reason: EndReason) -> None:
        self.state.finished = True
        self.state.end_reason = reason.value
        self.state.counters["abandoned"] = 1
        self.error = detail

    def to_record(self, split: str, run_seed: int) -> tuple[dict[str, Any], dict[str, int]]:
        """The finished dialogue as a validated schema record (split, run seed and ``extra.run`` filled) and its
        counters for the manifest."""
        state = self.state
        record = self.sim.to_record(state)
        record["split"] = split
        record["provenance"]["seed"] = run_seed
        extra = load_extra(record["extra"])
        run = {
            "index": self.index,
            "dialogue_seed": state.seed,
            "source_record": str(state.record.get("dialogue_id", "")),
            "counters": dict(sorted(state.counters.items())),
        }
        if state.counters.get("abandoned"):
            run["end_detail"] = self.error
        extra["run"] = run
        record["extra"] = dump_extra(extra)
        validate_dialogue(record, path=f"{self.sim.name} simulation", record_id=state.dialogue_id)
        return record, record_counters(record)


def record_counters(record: dict[str, Any]) -> dict[str, int]:
    """A written dialogue's part of the run's counters: its own (``extra.run.counters``), one dialogue, and one
    for its end reason."""
    counters = {k: int(v) for k, v in load_extra(record["extra"])["run"]["counters"].items()}
    counters["dialogues"] = 1
    counters[f"end_reason.{record['outcome']['end_reason']}"] = 1
    return counters


# Sends one request of ``role`` with these parameters and returns its generation (an error generation when the
# request failed for good: the task's retry rules decide; it raises only when the backend itself is gone).
AsyncGenerate = Callable[[str, ChatRequest, SamplingParams], Awaitable[Generation]]


async def run_dialogue(task: DialogueTask, generate: AsyncGenerate) -> int:
    """Runs one dialogue to its end, one request at a time, under the same rules as the batched engine (both
    only drive :class:`DialogueTask`); returns the number of turns written. The per-dialogue executor of
    :mod:`crsdata.scaleout` runs many of these concurrently against a server."""
    turns = 0
    while not task.finished:
        role = task.next_role()
        generation = await generate(role, task.request(role), task.sampling(role))
        turns += task.apply(role, generation)
    return turns


@dataclass
class IndexDraw:
    """Which dialogue indices a run has used: written ones (from shards), skipped ones, the source positions
    found unusable, the next index to look at, and how many dialogues are written or running.

    :meth:`next_task` is the one rule for which indices a run writes: the single-process engine refills its
    batch with it, and a scale-out run plans its dialogues with it before any task starts."""

    written: set[int] = field(default_factory=set)
    skipped: set[int] = field(default_factory=set)
    unusable: set[int] = field(default_factory=set)
    next_index: int = 0
    claimed: int = 0

    def __post_init__(self) -> None:
        self.claimed = len(self.written)

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], run_seed: int, n_records: int) -> IndexDraw:
        """The draw of a saved run: its written and skipped indices."""
        skipped = {entry["index"] for entry in manifest["skipped"]}
        return cls(
            written={index for shard in manifest["shards"] for index in shard["indices"]},
            skipped=skipped,
            unusable={source_index(run_seed, index, n_records) for index in skipped},
        )

    def next_task(
        self,
        simulation: Simulation,
        records: list[dict[str, Any]],
        run_seed: int,
        n: int,
        max_retries: int,
        skips: list[dict[str, Any]],
    ) -> DialogueTask | None:
        """Starts the dialogue at the next usable index, or None when ``n`` are written or running or no record
        can start one. Each index skipped on the way is appended to ``skips`` (the manifest's entries)."""
        while self.claimed < n:
            if len(self.unusable) == len(records):
                return None  # every record was skipped once: none can start a dialogue
            index = self.next_index
            if simulation.draws_each_record_once and index >= len(records):
                return None  # one pass over the shuffled source: no record starts two dialogues
            self.next_index += 1
            if index in self.written or index in self.skipped:
                continue
            try:
                task = DialogueTask.begin(simulation, records, run_seed, index, max_retries)
            except BadInputError as err:
                position = source_index(run_seed, index, len(records))
                skips.append(
                    {
                        "index": index,
                        "dialogue_id": dialogue_id(simulation.name, run_seed, index),
                        "source_record": str(records[position].get("dialogue_id", "")),
                        "reason": err.reason,
                        "message": str(err),
                    }
                )
                self.skipped.add(index)
                self.unusable.add(position)
                continue
            self.claimed += 1
            return task
        return None


class RunEngine:
    """Runs (or resumes, or grows) one simulation run into ``work_dir``; see the module docstring.

    ``progress``: show a tqdm bar (dialogues done / total, turns per second, ETA) on stderr.
    ``on_shard``: called with the shard path after each shard is committed (tests use it to kill mid-run).
    """

    def __init__(
        self,
        simulation: Simulation,
        source: SimulationSource,
        config: RunConfig,
        work_dir: str | Path,
        *,
        progress: bool = True,
        on_shard: Callable[[Path], None] | None = None,
    ) -> None:
        if config.n < 0:
            raise ValueError("n must be at least 0")
        if config.batch_size < 1 or config.shard_size < 1:
            raise ValueError("batch_size and shard_size must be at least 1")
        if not source.records:
            raise BadInputError(source.name, "", "", "the source has no records", "no-records")
        self.sim = simulation
        self.source = source
        self.config = config
        self.work_dir = Path(work_dir)
        self.progress = progress
        self.on_shard = on_shard
        self.stats = RunStats()
        self._last_call: tuple[int, SamplingParams] | None = None

    # ----------------------------------------------------------------------------------------- manifest

    @property
    def manifest_path(self) -> Path:
        return self.work_dir / MANIFEST

    def load_manifest(self) -> dict[str, Any] | None:
        """The saved manifest after checking it belongs to this configuration, or None for a new run."""
        return check_resume(self.work_dir, self.config.as_dict())

    def _save_manifest(self, manifest: dict[str, Any]) -> None:
        manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        counters: Counter[str] = Counter()
        for shard in manifest["shards"]:
            counters.update(shard["counters"])
        manifest["counters"] = dict(sorted(counters.items()))
        write_json_atomic(self.manifest_path, manifest)

    # ----------------------------------------------------------------------------------------- run

    def run(self) -> RunResult:
        """Runs the dialogues not yet written, holding the folder's lock (another process is refused)."""
        with RunLock(self.work_dir):
            return self._run()

    def _run(self) -> RunResult:
        started = time.perf_counter()
        manifest = self.load_manifest() or new_manifest(self.config, self.source)
        (self.work_dir / SHARD_DIR).mkdir(parents=True, exist_ok=True)
        done: set[int] = set()
        for shard in manifest["shards"]:
            path = self.work_dir / shard["file"]
            if not path.is_file() or sha256_file(path) != shard["sha256"]:
                raise BadInputError(
                    self.manifest_path,
                    shard["file"],
                    "",
                    "shard listed in the manifest is missing or changed; "
                    "the run folder was modified (delete it to start over)",
                    "corrupt-run",
                )
            done.update(shard["indices"])
        self.stats.resumed_dialogues = len(done)
        self._draw = IndexDraw.from_manifest(manifest, self.config.seed, len(self.source.records))
        # The configuration of this session: n may have grown, scheduling may differ (results cannot).
        manifest["config"] = self.config.as_dict()
        manifest["status"] = "running"
        session = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resumed_from": len(done),
            "n": self.config.n,
            "batch_size": self.config.batch_size,
        }
        manifest["sessions"].append(session)
        # Claim the folder at once, so a second command with other options is refused even before a shard.
        self._save_manifest(manifest)

        buffer: list[Finished] = []
        active: list[DialogueTask] = []
        bar = self._progress_bar(len(done))
        try:
            while True:
                self._refill(active, manifest)
                if not active:
                    break
                self._step(active)
                still = []
                for task in active:
                    if task.finished:
                        record, counters = task.to_record(self.config.split, self.config.seed)
                        buffer.append((task.index, record, counters))
                        self.stats.dialogues += 1
                        if bar is not None:
                            bar.update(1)
                    else:
                        still.append(task)
                active[:] = still
                if len(buffer) >= self.config.shard_size:
                    self._flush(buffer, manifest)
                self._postfix(bar, started)
        except BackendError:
            # Keep every finished dialogue; the same command resumes from here.
            self._flush(buffer, manifest, force=True)
            raise
        finally:
            if bar is not None:
                bar.close()
        self._flush(buffer, manifest, force=True)
        self.stats.wall_seconds = time.perf_counter() - started
        session.update(self.stats.as_dict())
        manifest["status"] = "complete"
        self._save_manifest(manifest)
        return self._result(manifest)

    def _refill(self, active: list[DialogueTask], manifest: dict[str, Any]) -> None:
        """Starts dialogues at the next indices until the batch is full or ``n`` are written or running."""
        config = self.config
        while len(active) < config.batch_size:
            task = self._draw.next_task(
                self.sim, self.source.records, config.seed, config.n, config.max_retries, manifest["skipped"]
            )
            if task is None:
                return
            active.append(task)

    def _step(self, active: list[DialogueTask]) -> None:
        """One backend call: the largest group of dialogues waiting on the same backend and parameters."""
        groups: dict[tuple[int, SamplingParams], list[tuple[DialogueTask, str]]] = {}
        for task in active:
            role = task.next_role()
            key = (id(self.sim.backends[role]), task.sampling(role))
            groups.setdefault(key, []).append((task, role))
        # Most waiting first; on a tie, not the call that ran last, so equal groups take turns.
        key = max(groups, key=lambda k: (len(groups[k]), k != self._last_call))
        self._last_call = key
        members = groups[key]
        requests = [task.request(role) for task, role in members]
        backend: Backend = self.sim.backends[members[0][1]]
        t0 = time.perf_counter()
        generations = backend.generate(requests, key[1])
        self.stats.generate_seconds += time.perf_counter() - t0
        self.stats.calls += 1
        self.stats.requests += len(requests)
        if len(generations) != len(requests):
            raise BackendError(f"{backend.model_id}: {len(generations)} generations for {len(requests)} requests")
        for (task, role), generation in zip(members, generations, strict=True):
            self.stats.completion_tokens += int(generation.completion_tokens or 0)
            self.stats.turns += task.apply(role, generation)

    def _flush(self, buffer: list[Finished], manifest: dict[str, Any], force: bool = False) -> None:
        """Commits finished dialogues: shards of ``shard_size`` (the remainder only when ``force``), then the
        manifest. Skips found since the last commit are saved with it."""
        size = self.config.shard_size
        while buffer and (len(buffer) >= size or force):
            chunk, buffer[:] = buffer[:size], buffer[size:]
            entry = commit_shard(self.work_dir, len(manifest["shards"]), chunk)
            manifest["shards"].append(entry)
            self._save_manifest(manifest)
            if self.on_shard is not None:
                self.on_shard(self.work_dir / entry["file"])
        if force:
            self._save_manifest(manifest)

    # ----------------------------------------------------------------------------------------- output

    def _result(self, manifest: dict[str, Any]) -> RunResult:
        return read_run_result(self.work_dir, manifest, self.stats)

    def _progress_bar(self, initial: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=self.config.n,
            initial=initial,
            unit="dlg",
            desc=f"simulate {self.sim.name}",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
            smoothing=0.1,
        )

    def _postfix(self, bar: Any, started: float) -> None:
        if bar is None:
            return
        elapsed = max(time.perf_counter() - started, 1e-9)
        bar.set_postfix_str(
            f"{self.stats.turns / elapsed:.2f} turns/s, {self.stats.completion_tokens / elapsed:.0f} tok/s",
            refresh=False,
        )


def check_resume(work_dir: str | Path, config: dict[str, Any], ignore: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The manifest of an earlier run in ``work_dir`` if its configuration matches ``config``; None when there
    is none. Raises :class:`RunConfigMismatch` naming every differing key otherwise. Keys in ``ignore``, the
    scheduling keys (batch size, shard size, crsdata version) and ``n`` are not compared: a run may grow, but an
    ``n`` below the dialogues it already holds is refused too."""
    path = Path(work_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BadInputError(
            path, "", "", f"unreadable run manifest ({err}); delete the folder to start over", "corrupt-run"
        ) from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise BadInputError(
            path, "", "format", f"not a crsdata simulation run ({manifest.get('format')!r})", "corrupt-run"
        )
    saved = _without_added_defaults(manifest.get("config", {}))
    config = _without_added_defaults(config)
    skip = set(SCHEDULING_KEYS) | set(GROWABLE_KEYS) | set(ignore)
    differences = [
        f"{key}: {saved.get(key)!r} in the existing run, {config.get(key)!r} now"
        for key in sorted(set(saved) | set(config))
        if key not in skip and saved.get(key) != config.get(key)
    ]
    if differences:
        raise RunConfigMismatch(
            path,
            "config",
            differences[0].split(":")[0],
            "this folder holds a run with a different configuration, so resuming would mix two runs ("
            + "; ".join(differences)
            + "). Run again with the same options, or use another --out folder.",
            "config-mismatch",
        )
    held = sum(shard.get("rows", 0) for shard in manifest.get("shards", []))
    if "n" in config and held > config["n"]:
        raise RunConfigMismatch(
            path,
            "config",
            "n",
            f"this run already holds {held} dialogues, more than --n {config['n']}; a run grows but never "
            f"shrinks: use --n {held} or more, or another --out folder",
            "config-mismatch",
        )
    return manifest
