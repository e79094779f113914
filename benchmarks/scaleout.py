"""Throughput of distributed runs (``crsdata.scaleout`` on datatrove) against the single-process engine and the
server alone.

    python benchmarks/scaleout.py                          # ~25 min on 2 shared cores
    python benchmarks/scaleout.py --dialogues 16 --tasks 1,2,4

Same model (the embedded SmolLM2-135M-Instruct), prompts, greedy decoding and RecLLMSim scenario dialogues in
every run:

(a) engine, local       the single-process engine with the model in this process (``--batch-size`` in flight);
(b) engine, server      the single-process engine against ``transformers serve`` on 127.0.0.1 (the same number of
                        requests in flight); every request it sends is recorded;
(c) raw server          the requests of (b), replayed by a plain async HTTP client with the same concurrency and no
                        dialogue logic: what the server alone needs for this work (the baseline);
(d) datatrove, T tasks  ``run_distributed`` on datatrove's LocalPipelineExecutor, for each T of ``--tasks``;
(e) the client's ceiling the engine and datatrove runs again against an instant server (a separate process answering
                        every request at once with a fixed text): how many requests per second the dialogue
                        logic, HTTP and orchestration can send, i.e. how many tasks a fast (GPU) server needs;
(f) planning            how long the driver takes to decide the dialogues of a run (``make_plan``: every draw
                        starts its dialogue, no model), for RecLLMSim scenarios and for Interplay personas from
                        the ReDial validation dialogues with the ReDial catalog (``--plan-dialogues`` each).

``--endpoint URL --served-model NAME`` measures (b) to (e)'s server runs against a server you started instead
(for example vLLM on a GPU machine; (a) is skipped): the figures a scaling plan needs from a GPU run.

Reported: dialogues per minute and generated tokens per second, the ratio of each run's wall time to (c) (the
orchestration overhead of (d) is that ratio minus one; target under 20%), where the time of each (d) goes
(planning, task processes, the runner's inference loop, the merge), and whether (b) and every (d) wrote the same
records. The load average is printed before and after: the machine is shared and every figure moves with it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from crsdata.backends import make_backend
from crsdata.backends.base import SamplingParams
from crsdata.backends.embedded import embedded_model_path
from crsdata.backends.openai_compat import OpenAICompatibleBackend
from crsdata.scaleout import ScaleOutConfig
from crsdata.scaleout.run import run_distributed, served_backends
from crsdata.servers import transformers_serve
from crsdata.simulate.engine import RunConfig, RunEngine
from crsdata.simulate.recllmsim import RecLLMSimSimulation, scenario_source


class RecordingBackend(OpenAICompatibleBackend):
    """The OpenAI-compatible backend, keeping (path, body) of every request it posts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.sent.append((path, payload))
        return super()._post(path, payload)


def instant_server(port: int) -> None:
    """An OpenAI-compatible stand-in that answers every request at once (for the client's ceiling, (e))."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    reply = json.dumps(
        {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Could you give me one more idea?"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 8},
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(b'{"object": "list", "data": []}')

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self._answer(reply)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


def wait_ready(url: str, timeout_s: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(f"{url}/v1/models", timeout=2)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_config(args: argparse.Namespace, sim: RecLLMSimSimulation, source: Any, backend: str) -> RunConfig:
    return RunConfig(
        simulation="recllmsim",
        n=args.dialogues,
        seed=0,
        max_turns=args.max_turns,
        split="train",
        backend=backend,
        models={"user": args.model, "recommender": args.model},
        model_ids={r: b.model_id for r, b in sim.backends.items()},
        sampling={r: asdict(p) for r, p in sim.params.items()},
        source=source.name,
        source_kind=source.kind,
        source_fingerprint=source.fingerprint,
        options={"profiles": "pool"},
        prompt_hashes=sim.prompt_hashes(),
        batch_size=args.batch_size,
        shard_size=50,
    )


def engine_run(args: argparse.Namespace, sim: RecLLMSimSimulation, source: Any, backend: str, work: Path) -> Any:
    started = time.perf_counter()
    result = RunEngine(sim, source, run_config(args, sim, source, backend), work, progress=False).run()
    return result, time.perf_counter() - started


async def replay(url: str, sent: list[tuple[str, dict[str, Any]]], concurrency: int) -> tuple[float, int]:
    """Sends every recorded request again, ``concurrency`` at a time; returns (seconds, generated tokens)."""
    import httpx

    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(path: str, body: dict[str, Any]) -> int:
            async with gate:
                response = await client.post(f"{url}/v1{path}", json=body)
                response.raise_for_status()
                return int(response.json()["usage"]["completion_tokens"])

        started = time.perf_counter()
        tokens = await asyncio.gather(*(one(path, body) for path, body in sent))
    return time.perf_counter() - started, sum(tokens)


def task_inference_seconds(logging_dir: Path) -> list[float]:
    """Each task's inference loop time (datatrove's ``inference_time`` stat: from the server being ready to the
    last dialogue written)."""
    out = []
    for path in sorted((logging_dir / "stats").glob("*.json")):
        for step in json.loads(path.read_text()):
            metric = step.get("stats", {}).get("inference_time")
            if metric:
                out.append(metric["total"] if isinstance(metric, dict) else metric)
    return out


def datatrove_run(args: argparse.Namespace, source: Any, url: str, tasks: int, work: Path) -> tuple[Any, float]:
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
    factory = functools.partial(
        RecLLMSimSimulation, params={"user": params, "recommender": params}, max_turns=args.max_turns
    )
    sim = factory(served_backends({"user": args.model, "recommender": args.model}))
    scale = ScaleOutConfig("local", tasks=tasks, endpoint=url, concurrency=args.batch_size)
    started = time.perf_counter()
    result = run_distributed(factory, source, run_config(args, sim, source, url), scale, work, progress=False)
    return result, time.perf_counter() - started


def measure_server(args: argparse.Namespace, source: Any, url: str, tmp: Path, rows: list, details: list) -> float:
    """(b), (c) and (d) against the server at ``url``; returns (c)'s seconds."""
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
    backend = RecordingBackend(url, args.model, max_concurrency=args.batch_size, timeout_s=600)
    sim = RecLLMSimSimulation(
        {"user": backend, "recommender": backend}, {"user": params, "recommender": params}, args.max_turns
    )
    engine_result, seconds = engine_run(args, sim, source, url, tmp / "b")
    rows.append(("(b) engine, server", len(engine_result.records), engine_result.stats.completion_tokens, seconds))
    print(rows[-1], f"{len(backend.sent)} requests", flush=True)
    backend.close()

    raw_seconds, raw_tokens = asyncio.run(replay(url, backend.sent, args.batch_size))
    rows.append((f"(c) raw server, {len(backend.sent)} requests", 0, raw_tokens, raw_seconds))
    print(rows[-1], flush=True)

    for tasks in [int(t) for t in args.tasks.split(",")]:
        work = tmp / f"d{tasks}"
        result, seconds = datatrove_run(args, source, url, tasks, work)
        same = result.records == engine_result.records
        rows.append(
            (f"(d) datatrove local, {tasks} task(s)", len(result.records), result.stats.completion_tokens, seconds)
        )
        timings = result.manifest["sessions"][-1]["timings"]
        loops = task_inference_seconds(work / "scaleout" / "logs")
        details.append((tasks, seconds, timings, loops, same))
        print(rows[-1], timings, f"inference loops {[round(x, 1) for x in loops]}", f"same as (b): {same}", flush=True)
    return raw_seconds


def measure_ceiling(args: argparse.Namespace, source: Any, tmp: Path) -> list[tuple[str, int, int, float]]:
    """(e): the engine and datatrove against a server that answers at once."""
    import multiprocessing

    from crsdata.servers import free_port

    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=instant_server, args=(port,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    ceiling = argparse.Namespace(**{**vars(args), "dialogues": args.ceiling_dialogues, "batch_size": 32})
    out = []
    try:
        wait_ready(url)
        params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
        backend = make_backend(url, args.model, max_concurrency=32)
        sim = RecLLMSimSimulation(
            {"user": backend, "recommender": backend}, {"user": params, "recommender": params}, args.max_turns
        )
        result, seconds = engine_run(ceiling, sim, source, url, tmp / "e-engine")
        out.append(("(e) engine, instant server", len(result.records), result.stats.requests, seconds))
        backend.close()
        for tasks in (1, 2):
            result, seconds = datatrove_run(ceiling, source, url, tasks, tmp / f"e-d{tasks}")
            out.append(
                (
                    f"(e) datatrove local, {tasks} task(s), instant server",
                    len(result.records),
                    result.stats.requests,
                    seconds,
                )
            )
            print(out[-1], flush=True)
    finally:
        server.terminate()
        server.join()
    return out


def measure_planning(n: int) -> list[tuple[str, int, int, float]]:
    """(f): ``make_plan`` for ``n`` dialogues of each kind; returns (name, dialogues, skips, seconds)."""
    from crsdata.builders.redial import RedialBuilder
    from crsdata.catalog import Catalog
    from crsdata.errors import SkipLog
    from crsdata.scaleout.plan import make_plan
    from crsdata.simulate.interplay import InterplaySimulation

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "redial"
    backends = served_backends({"user": "m", "recommender": "m"})
    out = []
    recllmsim = RecLLMSimSimulation(backends, max_turns=4)
    started = time.perf_counter()
    plan = make_plan(recllmsim, scenario_source().records, 0, n)
    out.append(("(f) plan RecLLMSim scenarios", len(plan.entries), len(plan.skipped), time.perf_counter() - started))
    catalogs = [data / "redial__id2info.json"]
    built = RedialBuilder().build([data / "redial__valid_data.jsonl"], catalogs=catalogs, skip=SkipLog())
    records = [r for split in built.splits.values() for r in split]
    interplay = InterplaySimulation(backends, max_turns=12, catalog=Catalog.from_paths(catalogs))
    started = time.perf_counter()
    plan = make_plan(interplay, records, 0, n)
    name = f"(f) plan Interplay, ReDial valid ({len(records)} records)"
    out.append((name, len(plan.entries), len(plan.skipped), time.perf_counter() - started))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=6, help="dialogues (and requests) in flight")
    parser.add_argument("--tasks", default="1,2,4", help="task counts for (d)")
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of (a) and of the server (default 1: on a shared machine several times faster than 2; "
        "0: torch's choice)",
    )
    parser.add_argument("--ceiling-dialogues", type=int, default=200, help="dialogues of each (e) run (0: skip)")
    parser.add_argument("--skip-local", action="store_true", help="skip (a)")
    parser.add_argument("--plan-dialogues", type=int, default=20000, help="dialogues of each (f) plan (0: skip)")
    parser.add_argument("--only", help="run only these parts, e.g. 'e,f' (default: all)")
    parser.add_argument("--endpoint", help="a running server to measure instead of transformers serve")
    parser.add_argument("--served-model", help="the model name that server serves (with --endpoint)")
    args = parser.parse_args()
    model_dir = None if args.endpoint else embedded_model_path()
    args.model = args.served_model or str(model_dir)
    source = scenario_source()
    tmp = Path(tempfile.mkdtemp(prefix="crsdata-bench-scaleout-"))
    rows: list[tuple[str, int, int, float]] = []
    details: list[Any] = []
    print(f"load average before: {load()}; {os.cpu_count()} CPUs; work files in {tmp}", flush=True)

    parts = set((args.only or "a,b,c,d,e,f").split(","))
    if "a" in parts and not (args.skip_local or args.endpoint):
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
        local = make_backend("local", str(model_dir), max_batch_size=args.batch_size)
        sim = RecLLMSimSimulation(
            {"user": local, "recommender": local}, {"user": params, "recommender": params}, args.max_turns
        )
        result, seconds = engine_run(args, sim, source, "local", tmp / "a")
        rows.append(("(a) engine, local backend", len(result.records), result.stats.completion_tokens, seconds))
        print(rows[-1], flush=True)
        local.close()
        del local, sim

    raw_seconds = 0.0
    if parts & {"b", "c", "d"} and args.endpoint:
        raw_seconds = measure_server(args, source, args.endpoint.rstrip("/").removesuffix("/v1"), tmp, rows, details)
    elif parts & {"b", "c", "d"}:
        with transformers_serve(model_dir, tmp, threads=args.threads or None) as url:
            raw_seconds = measure_server(args, source, url, tmp, rows, details)
    ceiling = measure_ceiling(args, source, tmp) if args.ceiling_dialogues and "e" in parts else []
    planning = measure_planning(args.plan_dialogues) if args.plan_dialogues and "f" in parts else []

    print(f"\nload average after: {load()}")
    table(
        "",
        ["run", "dialogues", "generated tokens", "seconds", "dialogues/min", "tokens/s", "time / (c)"],
        [
            [
                name,
                dialogues or "-",
                f"{tokens:,}",
                f"{seconds:.1f}",
                f"{60 * dialogues / seconds:.2f}" if dialogues else "-",
                f"{tokens / seconds:.1f}",
                f"{seconds / raw_seconds:.2f}" if raw_seconds else "-",
            ]
            for name, dialogues, tokens, seconds in rows
        ],
    )
    table(
        "where the time of (d) goes (seconds):",
        ["tasks", "wall", "plan", "executor (processes + tasks)", "longest inference loop", "merge", "same as (b)"],
        [
            [
                tasks,
                f"{seconds:.1f}",
                f"{timings.get('plan_seconds', 0.0):.1f}",
                f"{timings.get('executor_seconds', 0.0):.1f}",
                f"{max(loops, default=0.0):.1f}",
                f"{timings.get('merge_seconds', 0.0):.1f}",
                "yes" if same else "NO",
            ]
            for tasks, seconds, timings, loops, same in details
        ],
    )
    table(
        "the client's ceiling (instant server):",
        ["run", "dialogues", "requests", "seconds", "dialogues/s", "requests/s"],
        [[name, d, r, f"{t:.1f}", f"{d / t:.1f}", f"{r / t:.1f}"] for name, d, r, t in ceiling],
    )
    table(
        "planning (the driver, no model):",
        ["run", "dialogues planned", "skips", "seconds", "microseconds per dialogue"],
        [[name, f"{n:,}", f"{k:,}", f"{t:.1f}", f"{1e6 * t / n:.0f}"] for name, n, k, t in planning],
    )


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    """A markdown table (nothing when there are no rows); the first column left-aligned, the others right."""
    if not rows:
        return
    print(f"\n{title}" if title else "")
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


if __name__ == "__main__":
    main()
