"""Throughput of the simulation run engine against a one-dialogue-at-a-time loop and the backend's raw batch.

    python benchmarks/simulate.py                    # embedded SmolLM2, RecLLMSim scenarios, ~8 min on 2 cores
    python benchmarks/simulate.py --dialogues 16 --batch-size 16 --threads 1

Measures, with the same model, prompts and sampling settings:

(a) engine      the batched run engine (``RunEngine``): ``--batch-size`` dialogues in flight, one backend call
                per step, finished dialogues replaced at once; ``--dialogues`` dialogues.
(b) sequential  a plain loop over the first ``--sequential-dialogues`` of the same dialogues (same records and
                seeds), one request per backend call.
(c) raw batch   the backend's own batched generation on one full batch of real requests taken from run (a)
                (``LocalBackend.raw_generate``, plain ``model.generate``, when the backend has it; its batch-invariant
                ``generate`` is timed too), ``--raw-repeats`` times.

Reported: dialogues per minute and generated tokens per second for each, and the ratios (a)/(b) (target >= 4)
and (a)/(c) (target >= 0.8). Timings include prompt processing. The local backend keeps each conversation's
key/value states between turns (``--kv-cache-mb``, 0 turns that off), so a turn processes only its new text; the
store is emptied before each of (a), (b) and (c), so no run reuses another's work, and the share of prompt tokens
reused is printed for each. The load average is printed before and after, since other jobs on the machine change
every figure.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crsdata.backends.base import DEFAULT_PREFIX_CACHE_MB, Backend, ChatRequest, Generation, SamplingParams
from crsdata.simulate.engine import RunConfig, RunEngine, dialogue_seed, source_index
from crsdata.simulate.recllmsim import RecLLMSimSimulation, scenario_source


class Recording(Backend):
    """Passes calls through and keeps the requests of every full batch (for the raw-batch measurement)."""

    def __init__(self, inner: Backend, batch_size: int) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.batch_size = batch_size
        self.full_batches: list[list[ChatRequest]] = []

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        if len(requests) == self.batch_size:
            self.full_batches.append(list(requests))
        return self.inner.generate(requests, params)

    def option_probabilities(self, requests: list[ChatRequest], options: list[str]) -> list[dict[str, float]]:
        return self.inner.option_probabilities(requests, options)


def simulation(backend: Backend, args: argparse.Namespace) -> RecLLMSimSimulation:
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    return RecLLMSimSimulation(
        {"user": backend, "recommender": backend}, {"user": params, "recommender": params}, args.max_turns
    )


def run_engine(backend: Backend, args: argparse.Namespace, source: Any) -> dict[str, float]:
    sim = simulation(backend, args)
    config = RunConfig(
        simulation=sim.name,
        n=args.dialogues,
        seed=args.seed,
        max_turns=args.max_turns,
        split="train",
        backend="local",
        models={"user": args.model, "recommender": args.model},
        model_ids={"user": backend.model_id, "recommender": backend.model_id},
        sampling={},
        source=source.name,
        source_kind=source.kind,
        source_fingerprint=source.fingerprint,
        options={},
        prompt_hashes=sim.prompt_hashes(),
        batch_size=args.batch_size,
        shard_size=max(args.dialogues, 1),
    )
    with tempfile.TemporaryDirectory() as work:
        result = RunEngine(sim, source, config, Path(work), progress=False).run()
    stats = result.stats
    return {
        "dialogues": stats.dialogues,
        "turns": stats.turns,
        "tokens": stats.completion_tokens,
        "seconds": stats.wall_seconds,
    }


def run_sequential(backend: Backend, args: argparse.Namespace, source: Any) -> dict[str, float]:
    """Dialogues 0..k-1 of the same run (same records and seeds), each to its end before the next starts."""
    sim = simulation(backend, args)
    records = source.records
    dialogues = turns = tokens = 0
    started = time.perf_counter()
    for index in range(args.sequential_dialogues):
        record = records[source_index(args.seed, index, len(records))]
        state = sim.start(record, f"seq-{index}", dialogue_seed(args.seed, index))
        while not state.finished:
            role = sim.next_role(state)
            (generation,) = backend.generate([sim.request(state, role)], sim.sampling(state, role))
            tokens += generation.completion_tokens
            sim.apply(state, role, generation)
        dialogues += 1
        turns += len(state.turns)
    return {"dialogues": dialogues, "turns": turns, "tokens": tokens, "seconds": time.perf_counter() - started}


def run_raw(backend: Any, batches: list[list[ChatRequest]], args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """A full batch from the middle of run (a), through plain model.generate and through generate, each repeat
    from scratch."""
    batch = batches[len(batches) // 2]
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    out = {}
    methods = [("raw_generate", backend.raw_generate)] if hasattr(backend, "raw_generate") else []
    methods.append(("generate", backend.generate))
    for name, method in methods:
        fresh_start(backend)
        tokens = 0
        started = time.perf_counter()
        for _ in range(args.raw_repeats):
            fresh_start(backend, keep_counts=True)  # a repeat must not reuse the previous one's states
            tokens += sum(g.completion_tokens for g in method(batch, params))
        out[name] = {
            "requests": len(batch) * args.raw_repeats,
            "tokens": tokens,
            "seconds": time.perf_counter() - started,
        } | prompt_reuse(backend)
    return out


def fresh_start(backend: Backend, *, keep_counts: bool = False) -> None:
    """Empties the backend's kept conversation states and zeroes its prompt counters, when it has them."""
    store = getattr(backend, "prefix_store", None)
    if store is not None:
        store.clear()
    stats = getattr(backend, "prompt_stats", None)
    if stats is not None and not keep_counts:
        stats.prompt_tokens = stats.reused_tokens = 0


def prompt_reuse(backend: Backend) -> dict[str, float]:
    stats = getattr(backend, "prompt_stats", None)
    if stats is None:
        return {}
    return {"prompt_tokens": stats.prompt_tokens, "reused_fraction": stats.reused_fraction}


def rate(entry: dict[str, float], key: str, per: float = 1.0) -> float:
    return per * entry[key] / entry["seconds"] if entry["seconds"] else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--dialogues", type=int, default=32, help="dialogues for the engine run (default 32)")
    parser.add_argument("--sequential-dialogues", type=int, default=8, help="dialogues for the loop (default 8)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--raw-repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--kv-cache-mb", type=int, default=DEFAULT_PREFIX_CACHE_MB, help="0 recomputes every prompt")
    args = parser.parse_args(argv)

    import torch

    from crsdata.backends import make_backend

    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"load average before: {os.getloadavg()[0]:.2f} (1 min); torch threads {torch.get_num_threads()}; "
        f"cpu count {os.cpu_count()}",
        flush=True,
    )
    backend = make_backend("local", args.model, max_batch_size=args.batch_size, prefix_cache_mb=args.kv_cache_mb)
    source = scenario_source()
    recording = Recording(backend, args.batch_size)

    print(f"(a) engine: {args.dialogues} dialogues, batch {args.batch_size} ...", flush=True)
    fresh_start(backend)
    engine = run_engine(recording, args, source) | prompt_reuse(backend)
    print(f"(b) sequential: {args.sequential_dialogues} dialogues ...", flush=True)
    fresh_start(backend)
    sequential = run_sequential(backend, args, source) | prompt_reuse(backend)
    if not recording.full_batches:
        print("no full batch was recorded; raise --dialogues", file=sys.stderr)
        return 1
    print(f"(c) raw batch: {args.raw_repeats} x {args.batch_size} requests ...", flush=True)
    raw = run_raw(backend, recording.full_batches, args)  # clears the store before each method
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")

    rows = [("(a) engine", engine), ("(b) sequential", sequential)]
    rows += [(f"(c) {name}", entry) for name, entry in raw.items()]
    print(
        f"model {backend.model_id}; max_turns {args.max_turns}, max_new_tokens {args.max_new_tokens}, "
        f"temperature {args.temperature}, seed {args.seed}\n"
    )
    print(
        "| run | dialogues | turns or requests | generated tokens | prompt tokens (reused) | seconds "
        "| dialogues/min | tokens/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, entry in rows:
        dialogues = entry.get("dialogues")
        per_minute = f"{rate(entry, 'dialogues', 60):.2f}" if dialogues is not None else "-"
        count = entry.get("turns", entry.get("requests"))
        prompt = f"{entry['prompt_tokens']:,} ({entry['reused_fraction']:.0%})" if "prompt_tokens" in entry else "-"
        print(
            f"| {name} | {dialogues if dialogues is not None else '-'} | {count} | {entry['tokens']:,} | {prompt} | "
            f"{entry['seconds']:.1f} | {per_minute} | {rate(entry, 'tokens'):.1f} |"
        )
    reference = raw.get("raw_generate", raw["generate"])
    ratios = {
        "(a)/(b) dialogues per minute (target >= 4)": rate(engine, "dialogues") / rate(sequential, "dialogues"),
        "(a)/(b) tokens per second (target >= 4)": rate(engine, "tokens") / rate(sequential, "tokens"),
        "(a)/(c) tokens per second, raw_generate (target >= 0.8)": rate(engine, "tokens") / rate(reference, "tokens"),
    }
    if "raw_generate" in raw:
        ratios["(a)/(c) tokens per second, generate"] = rate(engine, "tokens") / rate(raw["generate"], "tokens")
    print()
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
