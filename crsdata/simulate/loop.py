"""One dialogue of a run, step by step: the rules every runner of the :class:`~crsdata.simulate.base.Simulation`
contract shares, so that a dialogue comes out the same whichever runner ran it.

Two runners drive the contract:

- the single-process engine (:mod:`crsdata.simulate.engine`) advances many dialogues together and batches their
  requests into one backend call per step;
- a datatrove task (:mod:`crsdata.scaleout`) runs each dialogue as its own coroutine, :func:`run_dialogue`, with
  requests going to an OpenAI-compatible server as they come.

What they share, and what this module holds:

- which indices a run uses (:class:`IndexDraw`): dialogue ``i`` takes source record
  ``source_index(seed, i, n_records)`` and seed ``dialogue_seed(seed, i)``; a record whose ``sim.start`` raises
  :class:`~crsdata.errors.BadInputError` is skipped (recorded, counted) and the next index drawn, so the run
  writes the first ``n`` indices that start;
- the sampling parameters of a request (:func:`sampling_for`: the simulation's optional ``sampling(state, role)``
  hook, else ``sim.params[role]``);
- applying a generation (:func:`apply_generation`): a ``finish_reason="error"`` generation is counted and the
  same request is sent again (same seed) up to ``max_retries`` times, then the dialogue ends with
  ``end_reason="error"``; a dialogue that never ends is stopped after a generous number of requests;
- the finished record (:func:`finish_record`): the split, the run seed and ``extra.run`` (index, dialogue seed,
  source record, counters, and why it was abandoned when it was);
- the result of a run read back from its manifest and shards (:func:`load_run_result`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.backends.base import ChatRequest, Generation, SamplingParams
from crsdata.errors import BadInputError, SkipLog
from crsdata.schema import EndReason, dump_extra, load_extra, validate_dialogue
from crsdata.simulate.base import DialogueState, Simulation
from crsdata.simulate.engine import RunResult, RunStats, dialogue_seed, read_shard, source_index

# Sends one request of ``role`` with these parameters and returns its generation (an error generation when the
# request failed for good; it raises only when the backend itself is gone).
AsyncGenerate = Callable[[str, ChatRequest, SamplingParams], Awaitable[Generation]]


def dialogue_id(simulation_name: str, run_seed: int, index: int) -> str:
    """The id of dialogue ``index`` of a run: ``<kind>-s<seed>-<index, 6 digits>``."""
    return f"{simulation_name}-s{run_seed}-{index:06d}"


@dataclass
class DialogueRun:
    """A dialogue in progress: its index in the run, its state, and the bookkeeping of the retry rules."""

    index: int
    state: DialogueState
    failures: int = 0  # consecutive failed generations of the current turn
    steps: int = 0  # requests served, a guard against a simulation that never finishes
    error: str = ""


@dataclass
class IndexDraw:
    """Which dialogue indices a run has used: written ones, skipped ones, the source positions found unusable,
    the next index to look at, and how many dialogues are written or running (``claimed``)."""

    written: set[int] = field(default_factory=set)
    skipped: set[int] = field(default_factory=set)
    unusable: set[int] = field(default_factory=set)
    next_index: int = 0
    claimed: int = 0

    def __post_init__(self) -> None:
        self.claimed = len(self.written)

    def next_dialogue(
        self, sim: Simulation, records: list[dict[str, Any]], run_seed: int, n: int, skips: list[dict[str, Any]]
    ) -> DialogueRun | None:
        """Starts the dialogue at the next usable index, or None when ``n`` are written or running or no record
        can start one. Every skip is appended to ``skips`` (index, dialogue id, source record, reason, message)."""
        while self.claimed < n:
            if len(self.unusable) == len(records):
                return None  # every record was skipped once: none can start a dialogue
            index = self.next_index
            self.next_index += 1
            if index in self.written or index in self.skipped:
                continue
            position = source_index(run_seed, index, len(records))
            record = records[position]
            did = dialogue_id(sim.name, run_seed, index)
            try:
                state = sim.start(record, did, dialogue_seed(run_seed, index))
            except BadInputError as err:
                skips.append(
                    {
                        "index": index,
                        "dialogue_id": did,
                        "source_record": str(record.get("dialogue_id", "")),
                        "reason": err.reason,
                        "message": str(err),
                    }
                )
                self.skipped.add(index)
                self.unusable.add(position)
                continue
            self.claimed += 1
            return DialogueRun(index, state)
        return None


def sampling_for(sim: Simulation, state: DialogueState, role: str) -> SamplingParams:
    """The parameters of ``role``'s next request: the simulation's optional ``sampling(state, role)`` hook (RecLLMSim's
    profile requests need a larger token budget), else ``sim.params[role]``."""
    hook = getattr(sim, "sampling", None)
    return hook(state, role) if hook is not None else sim.params[role]


def apply_generation(sim: Simulation, run: DialogueRun, role: str, generation: Generation, max_retries: int) -> int:
    """Applies one generation to the dialogue under the retry rules (module doc); returns the turns it added."""
    state = run.state
    run.steps += 1
    counters = state.counters
    if generation.finish_reason == "error":
        counters["backend_errors"] = counters.get("backend_errors", 0) + 1
        run.failures += 1
        run.error = generation.error or "unspecified backend error"
        if run.failures > max_retries:
            abandon(run, f"backend error after {run.failures} attempts: {run.error}", EndReason.ERROR)
        return 0
    run.failures = 0
    before = len(state.turns)
    sim.apply(state, role, generation)
    # A simulation may legitimately re-ask (an empty answer, a profile that did not parse), but not forever.
    limit = 4 * (sim.max_turns + 4) * (max_retries + 1)
    if not state.finished and run.steps >= limit:
        abandon(run, f"no end after {run.steps} requests")
    return max(0, len(state.turns) - before)


def abandon(run: DialogueRun, detail: str, reason: EndReason = EndReason.UNKNOWN) -> None:
    run.state.finished = True
    run.state.end_reason = reason.value
    run.state.counters["abandoned"] = 1
    run.error = detail


async def run_dialogue(sim: Simulation, run: DialogueRun, generate: AsyncGenerate, max_retries: int) -> int:
    """Runs one dialogue to its end, one request at a time; returns the number of turns written."""
    turns = 0
    while not run.state.finished:
        role = sim.next_role(run.state)
        params = sampling_for(sim, run.state, role)
        generation = await generate(role, sim.request(run.state, role), params)
        turns += apply_generation(sim, run, role, generation, max_retries)
    return turns


def finish_record(
    sim: Simulation, run: DialogueRun, split: str, run_seed: int, where: str
) -> tuple[dict[str, Any], dict[str, int]]:
    """The finished dialogue in the schema (validated) and its counters for the run's totals."""
    state = run.state
    record = sim.to_record(state)
    record["split"] = split
    record["provenance"]["seed"] = run_seed
    extra = load_extra(record["extra"])
    info: dict[str, Any] = {
        "index": run.index,
        "dialogue_seed": state.seed,
        "source_record": str(state.record.get("dialogue_id", "")),
        "counters": dict(sorted(state.counters.items())),
    }
    if state.counters.get("abandoned"):
        info["end_detail"] = run.error
    extra["run"] = info
    record["extra"] = dump_extra(extra)
    validate_dialogue(record, path=where, record_id=state.dialogue_id)
    return record, record_counters(record)


def record_counters(record: dict[str, Any]) -> dict[str, int]:
    """A written dialogue's contribution to the run's counters: its own (``extra.run.counters``), one dialogue,
    and one for its end reason."""
    counters = {k: int(v) for k, v in load_extra(record["extra"])["run"]["counters"].items()}
    counters["dialogues"] = 1
    counters[f"end_reason.{record['outcome']['end_reason']}"] = 1
    return counters


def load_run_result(work_dir: Path, manifest: dict[str, Any], stats: RunStats) -> RunResult:
    """The result of a finished (or partly finished) run from its manifest: every written dialogue in index order,
    the skips as a SkipLog, the counters."""
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
