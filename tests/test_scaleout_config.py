"""The parts of a distributed run that need no model server: options, the plan, Slurm submission scripts, the vLLM
command each task would start, the endpoint's answers, and recovery of a task killed while closing its output.

There is no Slurm here: ``sbatch`` is a script on PATH that keeps what it is given and answers like sbatch, so the
test reads the exact job scripts datatrove and crsdata submit. There is no GPU either: the vLLM command is the one
datatrove's ``VLLMServer`` builds from the submitted pipeline, captured instead of executed.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("datatrove", reason="needs the scale extra (pip install -e '.[scale]')")

from fixtures.fake_backends import FakeBackend  # noqa: E402
from fixtures.simulate_records import recllmsim_records  # noqa: E402

from crsdata.cli import main  # noqa: E402
from crsdata.scaleout.config import ScaleOutConfig, parse_key_values  # noqa: E402
from crsdata.scaleout.pipeline import OUTPUT_DIR, OpenAIEndpoint  # noqa: E402
from crsdata.scaleout.plan import make_plan, reset_interrupted  # noqa: E402
from crsdata.simulate.engine import RunEngine  # noqa: E402
from crsdata.simulate.recllmsim import RecLLMSimSimulation  # noqa: E402
from crsdata.simulate.source import SimulationSource, fingerprint_records  # noqa: E402

# ------------------------------------------------------------------------------------------------ options


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--executor", "local"], "needs the URL of an OpenAI-compatible server"),
        (["--executor", "local", "--backend", "http://127.0.0.1:9", "--server", "vllm"], "not both or neither"),
        (["--executor", "slurm", "--server", "vllm"], "--executor slurm needs the partition"),
        (["--executor", "local", "--server", "vllm", "--tasks", "0"], "option --tasks: must be at least 1"),
        (["--executor", "local", "--server", "vllm", "--server-arg", "=1"], "expected KEY=VALUE or KEY"),
        (["--executor", "local", "--server", "vllm", "--recommender-model", "other"], "one model"),
    ],
)
def test_bad_scale_out_options_are_one_line_errors(tmp_path, capsys, extra, message):
    code = main(["simulate", "recllmsim", "--source", "scenarios", "--n", "2", "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 1 and message in err and err.startswith("crsdata simulate: error:") and "Traceback" not in err


def test_key_values_and_flags():
    assert parse_key_values(["gpu-memory-utilization=0.9", "--enforce-eager"], "--server-arg", flag=True) == {
        "gpu-memory-utilization": "0.9",
        "enforce-eager": True,
    }
    assert parse_key_values(["account=crs", "exclusive"], "--slurm-arg") == {"account": "crs", "exclusive": ""}
    assert ScaleOutConfig("slurm", tasks=4, server="vllm", tensor_parallel=2).task_gpus == 2
    assert ScaleOutConfig("local", tasks=4, workers=9, endpoint="http://h:1").workers_at_once == 4


# ------------------------------------------------------------------------------------------------ the plan


def test_the_plan_draws_and_skips_exactly_like_the_engine(tmp_path):
    """RecLLMSim records, two of them unusable (no task description), and more dialogues than usable records, so
    the draw goes round the source several times and skips the broken records again on each pass."""
    records = [r for r in recllmsim_records(n_en=6, broken=2) if RecLLMSimSimulation.eligible(r) == ""]
    source = SimulationSource("records", "dataset", records, fingerprint_records(records))
    backend = FakeBackend(text=lambda request, digest: "Thank you, goodbye.")
    sim = RecLLMSimSimulation({"user": backend, "recommender": backend})
    from crsdata.simulate.engine import RunConfig

    config = RunConfig("recllmsim", 10, 3, 4, "train", "fake", {}, {}, {}, "records", "dataset", "", {}, {})
    manifest = RunEngine(sim, source, config, tmp_path / "run", progress=False).run().manifest
    plan = make_plan(sim, records, run_seed=3, n=10)
    assert plan.entries == sorted(i for shard in manifest["shards"] for i in shard["indices"])
    assert plan.skipped == manifest["skipped"] and len(plan.skipped) > 2  # broken records met on several passes
    assert [len(block) for block in plan.blocks(3)] == [3, 3, 4]


def test_a_task_killed_while_closing_its_last_chunk_starts_again(tmp_path):
    """datatrove's runner records a chunk as closed (checkpoints/last_chunk) just before it writes the chunk's
    parquet file; a task killed between the two would skip that chunk forever, so it is started again."""
    folder, logs = tmp_path / "scaleout", tmp_path / "logs"
    manifest = {"records_per_chunk": 2, "tasks": [{"rank": 0, "dialogues": 3}, {"rank": 1, "dialogues": 3}]}
    for rank in (0, 1):
        (folder / "checkpoints" / "last_chunk").mkdir(parents=True, exist_ok=True)
        (folder / "checkpoints" / "last_chunk" / f"{rank:05d}.txt").write_text("1")
        (folder / "checkpoints" / f"{rank:05d}").mkdir()
        out = folder / OUTPUT_DIR / f"{rank:05d}"
        out.mkdir(parents=True)
        pq.write_table(pa.table({"x": [1, 2]}), out / "chunk-0.parquet")
    pq.write_table(pa.table({"x": [3]}), folder / OUTPUT_DIR / "00000" / "chunk-1.parquet")
    (folder / OUTPUT_DIR / "00001" / "chunk-1.parquet").write_bytes(b"PAR1")  # never closed: no footer
    assert reset_interrupted(folder, logs, manifest) == [1]
    assert (folder / OUTPUT_DIR / "00000" / "chunk-1.parquet").is_file()
    assert not (folder / OUTPUT_DIR / "00001").exists() and not (folder / "checkpoints" / "00001").exists()
    assert not (folder / "checkpoints" / "last_chunk" / "00001.txt").exists()


# ------------------------------------------------------------------------------------------------ Slurm and vLLM

FAKE_SBATCH = """#!/bin/sh
# Keeps the job script and arguments it is given, and answers like sbatch.
n=$(ls "$SBATCH_CAPTURE" | grep -c '^script-')
for arg; do last="$arg"; done
cp "$last" "$SBATCH_CAPTURE/script-$n.sh"
echo "$@" > "$SBATCH_CAPTURE/args-$n.txt"
echo "Submitted batch job $((4242 + n))"
"""


@pytest.fixture(scope="module")
def submitted(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Any]:
    """``crsdata simulate ... --executor slurm --server vllm`` run as a user would, with the sbatch above."""
    tmp = tmp_path_factory.mktemp("slurm")
    bin_dir, capture = tmp / "bin", tmp / "capture"
    bin_dir.mkdir()
    capture.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    out = tmp / "out"
    args = [
        *("recllmsim", "--source", "scenarios", "--n", "5", "--out", str(out), "--batch-size", "24"),
        *("--user-model", str(tiny_model_dir), "--recommender-model", str(tiny_model_dir)),
        *("--executor", "slurm", "--tasks", "3", "--workers", "2", "--server", "vllm"),
        *("--slurm-partition", "gpu", "--slurm-time", "02:00:00", "--slurm-arg", "account=crs"),
        *("--server-arg", "gpu-memory-utilization=0.85", "--server-arg", "enforce-eager"),
    ]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SBATCH_CAPTURE": str(capture)}
    done = subprocess.run(
        [sys.executable, "-m", "crsdata.cli", "simulate", *args], env=env, capture_output=True, text=True
    )
    scripts = {p.name: p.read_text() for p in sorted(capture.glob("script-*.sh"))}
    return {"done": done, "scripts": scripts, "out": out, "args": args}


def test_slurm_submits_the_task_array_and_a_merge_job(submitted):
    done = submitted["done"]
    assert done.returncode == 0, done.stderr[-3000:]
    assert "submitted 3 Slurm tasks as job 4242; job 4244 writes the folder when they succeed" in done.stdout
    array, merge_stats, merge = (submitted["scripts"][f"script-{i}.sh"] for i in range(3))
    logs = submitted["out"] / ".simulate-run" / "scaleout" / "logs"
    for line in (
        "#SBATCH --array=0-2%2",
        "#SBATCH --partition=gpu",
        "#SBATCH --time=02:00:00",
        "#SBATCH --gpus=1",
        "#SBATCH --account=crs",
        "#SBATCH --job-name=crsdata-simulate",
        f"source {Path(sys.prefix) / 'bin' / 'activate'}",
        f"srun  -l -n 1 launch_pickled_pipeline {logs / 'executor.pik'}",
    ):
        assert line in array, line
    assert (logs / "launch_script.slurm").read_text() == array
    assert "merge_stats" in merge_stats and "--dependency=afterok:4242" in merge_stats
    # The merge job runs the same command after the array succeeded, on one CPU and no GPU: it finds every task
    # done and writes the folder.
    assert "#SBATCH --dependency=afterok:4242" in merge and "#SBATCH --cpus-per-task=1" in merge
    assert "--array" not in merge and "--gpus" not in merge
    assert merge.rstrip().endswith("crsdata simulate " + " ".join(submitted["args"]))
    assert (logs / "merge_script.slurm").read_text() == merge
    plan = json.loads((submitted["out"] / ".simulate-run" / "scaleout" / "manifest.json").read_text())
    assert [t["dialogues"] for t in plan["tasks"]] == [1, 2, 2]
    assert plan["sessions"][0]["job_ids"] == ["4242", "4244"]


def test_each_task_would_start_this_vllm_server(submitted, tiny_model_dir, monkeypatch):
    """Not run (no GPU, no vllm wheel for this CPU stack): the command datatrove's VLLMServer would execute in a
    task, from the pickled executor the array job loads."""
    import dill
    from datatrove.pipeline.inference.servers import vllm_server

    logs = submitted["out"] / ".simulate-run" / "scaleout" / "logs"
    with (logs / "executor.pik").open("rb") as f:
        executor = dill.load(f)
    runner = executor.pipeline[1]
    config = runner.config
    assert (config.server_type, config.model_name_or_path, config.use_chat) == ("vllm", str(tiny_model_dir), True)
    assert (config.max_concurrent_generations, config.max_concurrent_documents, config.tp) == (24, 24, 1)
    assert runner.checkpoint_manager.records_per_chunk == 50 and runner.spec.endpoint is None

    captured: list[tuple[str, ...]] = []

    async def capture(*argv: str, **kwargs: Any) -> None:
        captured.append(argv)

    monkeypatch.setattr(vllm_server, "check_required_dependencies", lambda *a, **k: None)
    monkeypatch.setattr(asyncio, "create_subprocess_exec", capture)

    async def start() -> None:
        server = vllm_server.VLLMServer(config, rank=0)
        server._port = 8000
        await server._start_vllm_task()

    asyncio.run(start())
    assert captured == [
        (
            *("vllm", "serve", str(tiny_model_dir), "--port", "8000", "--max-model-len", "8192"),
            *("--trust-remote-code", "--disable-uvicorn-access-log"),
            *("--gpu-memory-utilization=0.85", "--enforce-eager"),
        )
    ]


# ------------------------------------------------------------------------------------------------ the endpoint


@pytest.fixture
def statuses() -> Iterator[tuple[str, dict[str, Any]]]:
    """An HTTP server on 127.0.0.1 answering each path with the status the test sets (500 for /v1/models, as
    transformers serve does without HF_HUB_CACHE); it records the last Authorization header."""
    state: dict[str, Any] = {"status": 200, "auth": None}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            self._send(500, {"detail": "no cache folder"})

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            state["auth"] = self.headers.get("Authorization")
            choice = {"message": {"content": "hello"}, "finish_reason": "stop"}
            self._send(state["status"], {"choices": [choice], "usage": {"completion_tokens": 1}})

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    httpd.shutdown()
    httpd.server_close()


def test_the_endpoint_maps_answers_to_what_the_runner_retries_or_stops_on(statuses, monkeypatch):
    from datatrove.pipeline.inference.run_inference import InferenceConfig
    from datatrove.pipeline.inference.types import InferenceError, ServerError

    url, state = statuses
    monkeypatch.setenv("CRSDATA_TEST_KEY", "sk-test")
    config = InferenceConfig(server_type="endpoint", model_name_or_path="m", endpoint_url=url, request_timeout=5)
    outcomes: dict[int, Any] = {}

    async def probe() -> bool:
        endpoint = OpenAIEndpoint(config, 0, url, "CRSDATA_TEST_KEY")
        ready = await endpoint.is_ready()
        for status in (200, 400, 404, 401, 429, 503):
            state["status"] = status
            try:
                outcomes[status] = await endpoint._make_request({"model": "m", "messages": []})
            except Exception as err:  # the type is what the test checks
                outcomes[status] = err
        await endpoint.__aexit__(None, None, None)
        return ready

    assert asyncio.run(probe()) is True  # a 500 on /v1/models still means the server is up
    assert outcomes[200]["choices"][0]["message"]["content"] == "hello" and state["auth"] == "Bearer sk-test"
    assert isinstance(outcomes[400], InferenceError) and "BadRequestError" in str(outcomes[400])
    assert isinstance(outcomes[404], ServerError) and isinstance(outcomes[401], ServerError)
    assert isinstance(outcomes[429], ConnectionError) and isinstance(outcomes[503], ConnectionError)


def test_a_runner_error_is_refused_only_for_the_servers_4xx() -> None:
    """datatrove's runner raises InferenceError at once for a request the server refuses; the task marks it
    refused, so the dialogue ends with the reason instead of sending it again (as the single-process engine)."""
    from datatrove.pipeline.inference.types import InferenceError

    from crsdata.scaleout.pipeline import _refused

    class StatusError(Exception):
        def __init__(self, status_code: int) -> None:
            self.status_code = status_code

    def raised(error: str, cause: Exception | None) -> InferenceError:
        try:
            raise InferenceError(None, error) from cause
        except InferenceError as err:
            return err

    assert _refused(raised("Error code: 400 - {'detail': 'The prompt has 901 tokens'}", StatusError(400)))
    assert not _refused(raised("Error code: 429", StatusError(429)))
    assert _refused(raised('Got BadRequestError from server: {"detail": "too long"}', None))
    assert not _refused(raised("Failed to process request after 5 attempts", None))
