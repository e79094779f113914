"""Throughput of the simulation run engine: against a one-dialogue-at-a-time loop and the backend's raw batch,
beside a competing process, and in bfloat16.

    python benchmarks/simulate.py                    # embedded SmolLM2, RecLLMSim scenarios, ~8 min on 2 cores
    python benchmarks/simulate.py --dialogues 16 --batch-size 16 --threads 1
    python benchmarks/simulate.py --competition      # thread settings with and without a CPU-bound competitor
    python benchmarks/simulate.py --compare-dtypes --kind interplay   # float32 against bfloat16

Default mode measures, with the same model, prompts and sampling settings:

(a) engine      the batched run engine (``RunEngine``): ``--batch-size`` dialogues in flight, one backend call
                per step, finished dialogues replaced at once; ``--dialogues`` dialogues.
(b) sequential  a plain loop over the first ``--sequential-dialogues`` of the same dialogues (same records and
                seeds), one request per backend call. Its texts must equal (a)'s: the check of batch invariance.
(c) raw batch   the backend's own batched generation on one full batch of real requests taken from run (a)
                (``LocalBackend.raw_generate``, plain ``model.generate``, when the backend has it; its batch-invariant
                ``generate`` is timed too), ``--raw-repeats`` times.

Reported: dialogues per minute and generated tokens per second for each, and the ratios (a)/(b) (target >= 4)
and (a)/(c) (target >= 0.8). Timings include prompt processing. The local backend keeps each conversation's
key/value states between turns (``--kv-cache-mb``, 0 turns that off), so a turn processes only its new text; the
store is emptied before each of (a), (b) and (c), so no run reuses another's work, and the share of prompt tokens
reused is printed for each.

``--competition`` runs (a) in a child process per thread setting (the OpenMP wait policy must be set before torch
loads), each once alone and once beside ``nice -n 0 python -c 'while True: pass'``, stops it ``--seconds`` after its
first backend call (the slowest settings would take an hour), and prints tokens per second over the calls that
finished, and the ratio to the old default (torch's two threads, OpenMP's default waits) under the same conditions.

``--compare-dtypes`` runs (a) and (b) in float32 and in bfloat16 (child processes) and prints speed, the quality
of the dialogues (parse rate and end reasons for Interplay, filter flags and end phrase for RecLLMSim) and whether
(b)'s texts equal (a)'s, i.e. whether the dialogues stay independent of batching; and how many of eight chat
prompts answer differently in one batch than alone (``--runs alone``).

The load average is printed with every figure, since other jobs on the machine change them all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from crsdata.backends.base import DEFAULT_PREFIX_CACHE_MB, Backend, ChatRequest, Generation, SamplingParams
from crsdata.errors import BadInputError
from crsdata.simulate.base import Simulation
from crsdata.simulate.engine import DialogueTask, RunConfig, RunEngine
from crsdata.simulate.source import SimulationSource

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
COMPETITOR = "while True: pass"
# name, child arguments: torch's default before this change (two threads, GNU OpenMP's default waiting, which
# spins a while before sleeping), one thread, the thread count following the free cores, and the new default: two
# threads whose waits sleep.
THREAD_SETTINGS = {
    "old": ("2 threads, default waits (old default)", ["--threads", "2", "--omp-wait-policy", "unset"]),
    "one": ("1 thread", ["--threads", "1", "--omp-wait-policy", "unset"]),
    "free": ("free cores (re-measured every 5 s), default waits", ["--threads", "free", "--omp-wait-policy", "unset"]),
    "sleeping": ("2 threads, sleeping waits (new default)", ["--threads", "2", "--omp-wait-policy", "passive"]),
}


class Recording(Backend):
    """Passes calls through and keeps the requests of every full batch (for the raw-batch measurement); with
    ``log``, appends each call's end time (seconds since the first call began) and generated tokens to that
    file, so that a parent process can stop a slow run and still read its rate."""

    def __init__(self, inner: Backend, batch_size: int, log: str | None = None, free: Any = None) -> None:
        self.free = free
        self.inner = inner
        self.model_id = inner.model_id
        self.batch_size = batch_size
        self.full_batches: list[list[ChatRequest]] = []
        self.log = log
        self.started: float | None = None

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        if len(requests) == self.batch_size:
            self.full_batches.append(list(requests))
        if self.started is None:
            self.started = time.perf_counter()
            self._write({"start": True})
        if self.free is not None:
            self.free.maybe_update()
        generations = self.inner.generate(requests, params)
        tokens = sum(g.completion_tokens for g in generations)
        self._write({"t": time.perf_counter() - self.started, "tokens": tokens, "threads": torch_threads()})
        return generations

    def _write(self, entry: dict[str, Any]) -> None:
        if self.log:
            with open(self.log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(entry) + "\n")

    def option_probabilities(self, requests: list[ChatRequest], options: list[str]) -> list[dict[str, float]]:
        return self.inner.option_probabilities(requests, options)


def load(args: argparse.Namespace) -> tuple[type[Simulation], Any, SimulationSource]:
    """The kind, its options and its source: RecLLMSim's packaged scenarios, or for Interplay the ReDial
    validation dialogues of the shared data built into a temporary folder, with the shared catalog."""
    from crsdata.simulate.kinds import SIMULATIONS

    kind = SIMULATIONS[args.kind]
    if args.kind == "recllmsim":
        options = kind.options_class()
        return kind, options, kind.load_source("scenarios", None, options)
    from crsdata.builders.redial import RedialBuilder
    from crsdata.errors import SkipLog
    from crsdata.export import export_folder

    catalog = SHARED / "redial" / "redial__id2info.json"
    folder = Path(tempfile.mkdtemp(prefix="bench-redial-")) / "redial"
    built = RedialBuilder().build([SHARED / "redial" / "redial__valid_data.jsonl"], catalogs=[catalog], skip=SkipLog())
    export_folder(built, folder)
    options = kind.options_class(infer_actions=True, catalog=[catalog])
    return kind, options, kind.load_source(str(folder), None, options)


def simulation(kind: type[Simulation], options: Any, source: SimulationSource, backend: Backend, args: Any) -> Any:
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    backends = {"user": backend, "recommender": backend}
    return kind.from_options(backends, {"user": params, "recommender": params}, args.max_turns, options, source)


def run_engine(sim: Simulation, source: SimulationSource, args: argparse.Namespace) -> dict[str, Any]:
    """Run (a)."""
    config = RunConfig(
        simulation=sim.name,
        n=args.dialogues,
        seed=args.seed,
        max_turns=args.max_turns,
        split=source.split,
        backend="local",
        models={"user": args.model, "recommender": args.model},
        model_ids={r: b.model_id for r, b in sim.backends.items()},
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
        engine = RunEngine(sim, source, config, Path(work), progress=False)
        records = engine.run().records
    stats = engine.stats
    return {
        "dialogues": stats.dialogues,
        "turns": stats.turns,
        "tokens": stats.completion_tokens,
        "seconds": stats.wall_seconds,
        "quality": quality(records),
        "texts": [texts(r) for r in records],
    }


def run_sequential(sim: Simulation, source: SimulationSource, args: argparse.Namespace) -> dict[str, Any]:
    """Dialogues 0..k-1 of the same run (same records and seeds), each to its end before the next starts."""
    records, done = [], 0
    turns = tokens = 0
    started = time.perf_counter()
    index = 0
    while done < args.sequential_dialogues:
        try:
            task = DialogueTask.begin(sim, source.records, args.seed, index, max_retries=2)
        except BadInputError:  # a record the engine skips too
            index += 1
            continue
        while not task.finished:
            role = task.next_role()
            (generation,) = sim.backends[role].generate([task.request(role)], task.sampling(role))
            tokens += generation.completion_tokens
            turns += task.apply(role, generation)
        records.append(task.to_record(source.split, args.seed)[0])
        done += 1
        index += 1
    return {
        "dialogues": done,
        "turns": turns,
        "tokens": tokens,
        "seconds": time.perf_counter() - started,
        "texts": [texts(r) for r in records],
    }


# Eight everyday chat prompts, shared with the thread-count test in tests/test_backends_local.py.
PROMPTS = json.loads((Path(__file__).resolve().parent / "data" / "chat_prompts.json").read_text(encoding="utf-8"))


def run_alone(backend: Backend) -> dict[str, str]:
    """Eight chat prompts in one batch against each alone, 64 new tokens, sampled (temperature 0.7) and greedy:
    how many answers differ."""
    requests = [ChatRequest(messages=[{"role": "user", "content": q}], seed=i) for i, q in enumerate(PROMPTS)]
    out = {}
    for name, temperature in (("sampled", 0.7), ("greedy", 0.0)):
        params = SamplingParams(max_new_tokens=64, temperature=temperature)
        fresh_start(backend)
        together = backend.generate(requests, params)
        alone = []
        for request in requests:
            fresh_start(backend)
            alone.extend(backend.generate([request], params))
        out[name] = f"{sum(a != b for a, b in zip(together, alone, strict=True))} of {len(requests)}"
    return out


def texts(record: dict[str, Any]) -> list[str]:
    return [record["dialogue_id"], *(t["text"] for t in record["turns"])]


def quality(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What a reader of the dialogues would check first, summed over the run."""
    counters: Counter[str] = Counter()
    for record in records:
        counters.update(json.loads(record["extra"])["run"]["counters"])
    turns = sum(len(r["turns"]) for r in records)
    parsed = counters.get("parse_failures", 0)
    return {
        "end_reasons": dict(Counter(r["outcome"]["end_reason"] for r in records).most_common()),
        "mean_turns": round(turns / max(len(records), 1), 2),
        "no_turns": sum(1 for r in records if not r["turns"]),
        "parse_rate": round(turns / (turns + parsed), 3) if turns + parsed else None,
        "inferred_actions": counters.get("repair.action_inferred", 0),
        "tagged_turns": round(1 - counters.get("repair.action_inferred", 0) / turns, 3) if turns else None,
        "flagged": {
            k.split(".")[1]: v for k, v in counters.items() if k.startswith("filter.") and k.endswith("dialogues")
        },
    }


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


def rate(entry: dict[str, Any], key: str, per: float = 1.0) -> float:
    return per * entry[key] / entry["seconds"] if entry["seconds"] else 0.0


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def load_average() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------------------------
# One process: the measurements themselves


class FreeCores:
    """The alternative to sleeping waits that ``--competition`` measures (``--threads free``): torch's thread count
    set to the cores other processes leave free, from ``/proc/stat``'s busy time minus this process's own CPU time
    (niced processes left out: the scheduler favours us over them), measured again after each backend call once
    ``interval`` seconds have passed."""

    def __init__(self, interval: float = 5.0) -> None:
        self.cores = os.cpu_count() or 1
        self.interval = interval
        self.last = self.sample()
        time.sleep(0.3)
        self.update()

    @staticmethod
    def sample() -> tuple[float, float, float]:
        with open("/proc/stat", encoding="ascii") as handle:
            user, _nice, system, _idle, _iowait, irq, softirq, steal = map(int, handle.readline().split()[1:9])
        busy = (user + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        return time.monotonic(), busy, time.process_time()

    def update(self) -> None:
        import torch

        now = self.sample()
        (t0, busy0, own0), (t1, busy1, own1) = self.last, now
        self.last = now
        others = max(0.0, (busy1 - busy0 - (own1 - own0)) / max(t1 - t0, 1e-9))
        torch.set_num_threads(min(self.cores, max(1, int(self.cores - others + 0.5))))

    def maybe_update(self) -> None:
        if time.monotonic() - self.last[0] >= self.interval:
            self.update()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from crsdata.backends import make_backend

    free = None
    if args.threads == "free":
        free = FreeCores()
    elif args.threads:
        torch.set_num_threads(int(args.threads))
    before = load_average()
    print(
        f"load average before: {before} (1/5/15 min); torch threads {torch.get_num_threads()} ({args.threads}); "
        f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}; dtype {args.dtype}; cpu count {os.cpu_count()}",
        flush=True,
    )
    backend = make_backend(
        "local", args.model, max_batch_size=args.batch_size, prefix_cache_mb=args.kv_cache_mb, dtype=args.dtype
    )
    kind, options, source = load(args)
    recording = Recording(backend, args.batch_size, args.call_log, free)
    out: dict[str, Any] = {"model": backend.model_id, "load_before": before}
    runs = args.runs.split(",")
    if "engine" in runs:
        print(f"(a) engine: {args.dialogues} dialogues, batch {args.batch_size} ...", flush=True)
        fresh_start(backend)
        out["engine"] = run_engine(simulation(kind, options, source, recording, args), source, args)
        out["engine"] |= prompt_reuse(backend)
    if "sequential" in runs:
        print(f"(b) sequential: {args.sequential_dialogues} dialogues ...", flush=True)
        fresh_start(backend)
        out["sequential"] = run_sequential(simulation(kind, options, source, backend, args), source, args)
        out["sequential"] |= prompt_reuse(backend)
    if "alone" in runs:
        print("prompts in one batch against each alone ...", flush=True)
        out["alone"] = run_alone(backend)
    if "raw" in runs:
        if not recording.full_batches:
            raise SystemExit("no full batch was recorded; raise --dialogues")
        print(f"(c) raw batch: {args.raw_repeats} x {args.batch_size} requests ...", flush=True)
        out["raw"] = run_raw(backend, recording.full_batches, args)  # clears the store before each method
    out["load_after"] = load_average()
    print(f"load average after: {out['load_after']}\n", flush=True)
    return out


def report(args: argparse.Namespace, out: dict[str, Any]) -> None:
    print(
        f"model {out['model']}; {args.kind}; max_turns {args.max_turns}, max_new_tokens {args.max_new_tokens}, "
        f"temperature {args.temperature}, seed {args.seed}, dtype {args.dtype}\n"
    )
    rows = [(label, out[k]) for k, label in (("engine", "(a) engine"), ("sequential", "(b) sequential")) if k in out]
    rows += [(f"(c) {name}", entry) for name, entry in out.get("raw", {}).items()]
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
    print()
    if "engine" in out:
        print(f"quality of (a): {json.dumps(out['engine']['quality'])}")
    if "engine" in out and "sequential" in out:
        k = len(out["sequential"]["texts"])
        same = sum(a == b for a, b in zip(out["engine"]["texts"], out["sequential"]["texts"], strict=False))
        print(f"batch invariance: {same} of {k} dialogues of (b) equal (a)'s, turn for turn")
        ratios = {
            "(a)/(b) dialogues per minute (target >= 4)": rate(out["engine"], "dialogues")
            / rate(out["sequential"], "dialogues"),
            "(a)/(b) tokens per second (target >= 4)": rate(out["engine"], "tokens")
            / rate(out["sequential"], "tokens"),
        }
        raw = out.get("raw", {})
        if raw:
            reference = raw.get("raw_generate", raw["generate"])
            ratios["(a)/(c) tokens per second, raw_generate (target >= 0.8)"] = rate(out["engine"], "tokens") / rate(
                reference, "tokens"
            )
        for name, value in ratios.items():
            print(f"{name}: {value:.2f}")


# ---------------------------------------------------------------------------------------------------------
# Several processes: thread settings beside a competitor, and dtypes


def child(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    """Runs this script in a fresh process with ``extra`` arguments and returns its JSON output."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        path = handle.name
    command = [sys.executable, __file__, "--json", path, *shared_arguments(args), *extra]
    subprocess.run(command, check=True, stdout=sys.stderr)
    try:
        return json.loads(Path(path).read_text())
    finally:
        Path(path).unlink(missing_ok=True)


def shared_arguments(args: argparse.Namespace) -> list[str]:
    names = ("model", "kind", "dialogues", "sequential_dialogues", "batch_size", "max_turns", "max_new_tokens")
    names += ("temperature", "seed", "kv_cache_mb")
    return [item for name in names for item in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]


def boxed_child(args: argparse.Namespace, extra: list[str], competitors: int) -> dict[str, Any]:
    """Run (a) in a child beside ``competitors`` CPU-bound processes; stop it ``--seconds`` after its first
    backend call began (a run that is done sooner reports its own figures). The rate of a stopped run is the
    tokens of its finished calls over the time the last one ended."""
    with tempfile.TemporaryDirectory() as folder:
        log, result = Path(folder) / "calls.jsonl", Path(folder) / "out.json"
        command = [sys.executable, __file__, "--json", str(result), "--call-log", str(log), *shared_arguments(args)]
        command += [*extra, "--runs", "engine", "--dtype", args.dtype]
        rivals = [subprocess.Popen(["nice", "-n", "0", sys.executable, "-c", COMPETITOR]) for _ in range(competitors)]
        before = load_average()
        try:
            process = subprocess.Popen(command, stdout=sys.stderr)
            started = None
            while process.poll() is None:
                if started is None and log.is_file():
                    started = time.monotonic()
                if started is not None and time.monotonic() - started > args.seconds:
                    process.kill()
                    break
                time.sleep(0.2)
            process.wait()
        finally:
            for rival in rivals:
                rival.kill()
                rival.wait()
        after = load_average()
        calls = [json.loads(line) for line in log.read_text().splitlines()[1:]] if log.is_file() else []
        tokens = sum(c["tokens"] for c in calls)
        return {
            "tokens_per_second": tokens / calls[-1]["t"] if calls else 0.0,
            "threads": sorted({c["threads"] for c in calls}),
            "calls": len(calls),
            "finished": result.is_file(),
            "load": f"{before} -> {after}",
        }


def competition(args: argparse.Namespace) -> None:
    """Each setting alone and beside a competitor, ``--repeats`` rounds interleaved (the machine's other load
    drifts; the old default runs in the first round only); the median of the rounds is reported."""
    import statistics

    keys = args.settings.split(",")
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for round_ in range(args.repeats):
        for key in keys:
            if key == "old" and round_:
                continue  # it finishes no call in the time box: one round says so
            for competitors in (0, 1):
                entry = boxed_child(args, THREAD_SETTINGS[key][1], competitors)
                runs.setdefault((key, competitors), []).append(entry)
                print(f"{key}, {competitors} competitor(s): {json.dumps(entry)}", file=sys.stderr, flush=True)
    print(
        f"\n{args.kind}, batch {args.batch_size}, max_turns {args.max_turns}, max_new_tokens {args.max_new_tokens}, "
        f"{args.dtype}; each run stopped {args.seconds:.0f} s after its first backend call, tokens/s over the "
        f"calls that finished; median of {args.repeats} interleaved round(s); competitor: "
        f"nice -n 0 python -c '{COMPETITOR}'\n"
    )
    print("| threads | competitor | tokens/s (each round) | vs old default | calls | threads used | load avg |")
    print("|---|---:|---:|---:|---:|---|---|")
    # A run with no finished call decoded less than one call's tokens in the box: that bounds its rate.
    one_call = args.batch_size * args.max_new_tokens / args.seconds
    medians = {k: statistics.median(e["tokens_per_second"] for e in v) for k, v in runs.items()}
    for (key, competitors), entries in runs.items():
        old = medians.get(("old", competitors))
        value = medians[(key, competitors)]
        if old is None or key == "old":
            ratio = "1.00x" if key == "old" else "-"
        elif old:
            ratio = f"{value / old:.2f}x"
        else:
            ratio = f"> {value / one_call:.1f}x"
        each = ", ".join(f"{e['tokens_per_second']:.1f}" for e in entries)
        shown = f"{value:.1f} ({each})" + ("" if value else f"; no call finished: < {one_call:.1f}")
        used = "/".join(",".join(map(str, e["threads"])) or "-" for e in entries)
        print(
            f"| {THREAD_SETTINGS[key][0]} | {competitors} | {shown} | {ratio} | "
            f"{'/'.join(str(e['calls']) for e in entries)} | {used} | {' ; '.join(e['load'] for e in entries)} |"
        )


def compare_dtypes(args: argparse.Namespace) -> None:
    results = {}
    for dtype in ("float32", "bfloat16"):
        results[dtype] = child(args, ["--runs", args.runs, "--dtype", dtype, "--threads", args.threads])
    if all("engine" in out and "sequential" in out for out in results.values()):
        print(
            f"\n{args.kind}, {args.dialogues} dialogues at batch {args.batch_size} against the first "
            f"{args.sequential_dialogues} one at a time; max_turns {args.max_turns}, "
            f"max_new_tokens {args.max_new_tokens}\n"
        )
        print(
            "| dtype | (a) tokens/s | (a) dialogues/min | (b) tokens/s | (b) equal to (a) | quality of (a) | load avg |"
        )
        print("|---|---:|---:|---:|---:|---|---|")
        for dtype, out in results.items():
            engine, sequential = out["engine"], out["sequential"]
            same = sum(a == b for a, b in zip(engine["texts"], sequential["texts"], strict=False))
            print(
                f"| {dtype} | {rate(engine, 'tokens'):.1f} | {rate(engine, 'dialogues', 60):.2f} | "
                f"{rate(sequential, 'tokens'):.1f} | {same} of {len(sequential['texts'])} | "
                f"{json.dumps(engine['quality'])} | {out['load_before']} -> {out['load_after']} |"
            )
        f32, b16 = results["float32"]["engine"], results["bfloat16"]["engine"]
        print(f"\nbfloat16 / float32 tokens per second of (a): {rate(b16, 'tokens') / rate(f32, 'tokens'):.2f}")
    for dtype, out in results.items():
        if "alone" in out:
            print(
                f"{dtype}: answers that differ between a batch of eight prompts and each alone: {out['alone']} "
                f"(load average {out['load_before']} -> {out['load_after']})"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--kind", default="recllmsim", choices=("recllmsim", "interplay"))
    parser.add_argument("--dialogues", type=int, default=32, help="dialogues for the engine run (default 32)")
    parser.add_argument("--sequential-dialogues", type=int, default=8, help="dialogues for the loop (default 8)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-turns", type=int, default=6)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--raw-repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument(
        "--threads", default="", help="torch CPU threads (default: torch's), or free: follow the free cores"
    )
    parser.add_argument(
        "--omp-wait-policy",
        choices=("passive", "active", "unset"),
        default="passive",
        help="OMP_WAIT_POLICY for this process (passive: waiting threads sleep, as crsdata simulate sets it)",
    )
    parser.add_argument("--kv-cache-mb", type=int, default=DEFAULT_PREFIX_CACHE_MB, help="0 recomputes every prompt")
    parser.add_argument(
        "--runs",
        default="engine,sequential,raw",
        help="which of engine, sequential, raw, alone (--compare-dtypes: engine,sequential,alone unless given)",
    )
    parser.add_argument("--competition", action="store_true", help="thread settings with and without a competitor")
    parser.add_argument("--compare-dtypes", action="store_true", help="float32 against bfloat16")
    parser.add_argument(
        "--seconds", type=float, default=120, help="--competition: stop each run this long after its first call"
    )
    parser.add_argument("--repeats", type=int, default=1, help="--competition: interleaved rounds (median reported)")
    parser.add_argument("--settings", default="old,one,free,sleeping", help="--competition: which thread settings")
    parser.add_argument("--call-log", help=argparse.SUPPRESS)  # a child logs each backend call here
    parser.add_argument("--json", help=argparse.SUPPRESS)  # a child process writes its figures here
    args = parser.parse_args(argv)

    if args.competition:
        competition(args)
        return 0
    if args.compare_dtypes:
        if args.runs == parser.get_default("runs"):
            args.runs = "engine,sequential,alone"
        compare_dtypes(args)
        return 0
    if args.omp_wait_policy != "unset":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()  # before torch loads, or it has no effect
    out = measure(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out))
        return 0
    report(args, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
