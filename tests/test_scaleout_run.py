"""Distributed runs (``crsdata simulate ... --executor``) on real components: ``transformers serve`` on 127.0.0.1
with the tiny test model, datatrove's LocalPipelineExecutor, a real Ray cluster, and a SIGKILL in the middle of
a run. Each run is compared with the single-process engine against the same server at temperature 0 (greedy;
``transformers serve`` decodes one request at a time, so an answer does not depend on what else is in flight).

The server is started without a model, so that a request may name any local folder: the two-model test uses the
tiny model under two names. The tiny model is widened to 2,048 positions: these prompts outgrow its 512, which
``transformers serve`` refuses (tests/test_backend_context_limit.py tests that case). Everything is asserted through
crsdata's own outputs (records, provenance, manifests), never through the server's log format.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
import pytest
from fixtures.tiny_models import widened

from crsdata.build import BuildResult
from crsdata.cli import main
from crsdata.export import export_folder
from crsdata.scaleout.plan import done_count
from crsdata.schema import DIALOGUE_FEATURES, load_extra
from crsdata.servers import RAY_LOCAL_ENV, ray_head, stop_session, transformers_serve

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
N = 6


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("fastapi", reason="needs pip install 'transformers[serving]'")
    workdir = tmp_path_factory.mktemp("serve")
    with transformers_serve(None, workdir) as url:
        yield url, workdir / "serve.log"


@pytest.fixture(scope="module")
def wide_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with room for these prompts (2,048 positions)."""
    return widened(tiny_model_dir, tmp_path_factory.mktemp("wide") / "tiny-wide")


def recllmsim_args(url: str, model: Path, out: Path) -> list[str]:
    return [
        "recllmsim",
        "--source",
        "scenarios",
        "--n",
        str(N),
        "--max-turns",
        "3",
        "--max-new-tokens",
        "12",
        "--temperature",
        "0",
        "--shard-size",
        "2",
        "--backend",
        url,
        "--user-model",
        str(model),
        "--recommender-model",
        str(model),
        "--out",
        str(out),
        "--no-progress",
    ]


def rows(out: Path) -> list[dict[str, Any]]:
    """The folder's dialogues as ``load_dataset`` gives them. Prepared again each time: datasets' cache may
    otherwise hand back an earlier folder of the same name and size from another test run."""
    loaded = datasets.load_dataset(str(out), "dialogues", download_mode="force_redownload")
    return [row for split in loaded.values() for row in split.to_list()]


@pytest.fixture(scope="module")
def reference(server: Any, wide_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The single-process engine's records for the recllmsim run, against the same server."""
    out = tmp_path_factory.mktemp("single") / "out"
    assert main(["simulate", *recllmsim_args(server[0], wide_model_dir, out)]) == 0
    records = rows(out)
    assert len(records) == N and all(r["turns"] for r in records)
    return records


def test_local_executor_with_two_tasks_writes_what_the_engine_writes(
    server, reference, wide_model_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    args = ["simulate", *recllmsim_args(server[0], wide_model_dir, out), "--executor", "local", "--tasks", "2"]
    assert main(args) == 0
    assert rows(out) == reference

    # Each task wrote parquet shards in the crsdata schema; the merge wrote the engine's run folder.
    work = out / ".simulate-run"
    chunks = sorted((work / "scaleout" / "tasks").glob("*/chunk-*.parquet"))
    assert {p.parent.name for p in chunks} == {"00000", "00001"}
    assert all(pq.read_schema(p).remove_metadata() == DIALOGUE_FEATURES.arrow_schema.remove_metadata() for p in chunks)
    assert sum(pq.ParquetFile(p).metadata.num_rows for p in chunks) == N
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["status"] == "complete" and sum(s["rows"] for s in manifest["shards"]) == N
    assert manifest["executor"]["executor"] == "local" and manifest["executor"]["tasks"] == 2
    assert manifest["executor"]["endpoint"] == server[0]
    assert manifest["sessions"][0]["dialogues"] == N and manifest["sessions"][0]["completion_tokens"] > 0

    # Provenance and card name the executor, the tasks and the server.
    card = (out / "README.md").read_text()
    assert "executor=local" in card and "tasks=2" in card and server[0] in card
    summary = json.loads((out / "simulation.json").read_text())
    assert summary["sessions"][0]["executor"] == "local" and summary["sessions"][0]["server"] == server[0]

    # The same command again finds the run finished and writes the same folder; with the merged run folder gone
    # (killed while merging), it finds every task done and merges again without running any.
    assert main(args) == 0
    assert rows(out) == reference
    (work / "manifest.json").unlink()
    shutil.rmtree(work / "shards")
    assert main(args) == 0
    assert rows(out) == reference
    assert json.loads((work / "manifest.json").read_text())["sessions"][-1]["dialogues"] == 0

    # A chunk that is not the task's own (here: copied from the other task) is refused, never merged twice.
    stray = work / "scaleout" / "tasks" / "00001" / "chunk-9.parquet"
    shutil.copy(work / "scaleout" / "tasks" / "00000" / "chunk-0.parquet", stray)
    (work / "manifest.json").unlink()
    assert main(args) == 1
    assert "task 1's output does not match its plan (2 not in its plan)" in capsys.readouterr().err
    stray.unlink()
    assert main(args) == 0
    assert rows(out) == reference

    # The engine grows a run with a larger --n; a distributed run's plan is fixed, so it is refused, not cut short.
    grown = [a if a != str(N) else str(N + 1) for a in args]
    assert main(grown) == 1
    assert f"planned for --n {N}, not {N + 1}" in capsys.readouterr().err


def test_a_run_killed_mid_way_resumes_with_every_dialogue_exactly_once(server, reference, wide_model_dir, tmp_path):
    out = tmp_path / "out"
    # One dialogue in flight per task, so that the dialogues finish one after another and the kill lands between
    # them even on a fast machine (the batch size changes when work is done, never what is written).
    args = [*recllmsim_args(server[0], wide_model_dir, out), "--executor", "local", "--tasks", "2", "--batch-size", "1"]
    work = out / ".simulate-run"
    folder, logs = work / "scaleout", work / "scaleout" / "logs"
    command = [sys.executable, "-m", "crsdata.cli", "simulate", *args]
    with (tmp_path / "killed.log").open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            done = 0
            deadline = time.monotonic() + 240
            while process.poll() is None and time.monotonic() < deadline:
                if (folder / "manifest.json").is_file():
                    done = done_count(folder, logs, json.loads((folder / "manifest.json").read_text()))
                    if done >= 1:
                        os.killpg(process.pid, signal.SIGKILL)  # the driver and both task processes
                        break
                time.sleep(0.05)
        finally:
            stop_session(process, grace_s=0)
    assert 1 <= done < N, f"the run was not caught mid-way ({done} dialogues done); see {tmp_path / 'killed.log'}"
    assert not (work / "manifest.json").exists()

    assert main(["simulate", *args]) == 0
    records = rows(out)
    assert len(records) == N and len({r["dialogue_id"] for r in records}) == N
    assert records == reference
    manifest = json.loads((work / "manifest.json").read_text())
    assert len(manifest["sessions"]) == 2
    assert sorted(load_extra(r["extra"])["run"]["index"] for r in records) == list(range(N))


def test_ray_executor_on_a_real_cluster_writes_what_the_engine_writes(server, reference, wide_model_dir, tmp_path):
    pytest.importorskip("ray", reason="needs the scale extra (pip install -e '.[scale]')")
    out = tmp_path / "out"
    args = [*recllmsim_args(server[0], wide_model_dir, out), "--executor", "ray", "--tasks", "2"]
    with ray_head(tmp_path) as address:
        env = {**os.environ, **RAY_LOCAL_ENV, "RAY_ADDRESS": address}
        done = subprocess.run(
            [sys.executable, "-m", "crsdata.cli", "simulate", *args], env=env, capture_output=True, text=True
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"Connecting to existing Ray cluster at address: {address}" in done.stderr
    assert rows(out) == reference
    logs = out / ".simulate-run" / "scaleout" / "logs"
    assert sorted(p.name for p in (logs / "completions").iterdir()) == ["00000", "00001"]
    assert "Processing done for rank=1" in (logs / "logs" / "task_00001.log").read_text()
    assert "executor=ray" in (out / "README.md").read_text()


@pytest.mark.skipif(not (SHARED / "redial").is_dir(), reason="shared ReDial data not available")
def test_interplay_with_two_models_and_raw_prompts(server, wide_model_dir, tmp_path):
    """Interplay's first request is the recommender's, so the runner serves the recommender's model over the
    completions endpoint (raw prompts); the user, another model, goes through the task's second client. Same
    records as the engine."""
    from fixtures.simulate_records import redial_records

    recommender_model = tmp_path / "tiny-recommender"
    shutil.copytree(wide_model_dir, recommender_model)
    folder = export_folder(BuildResult(source="redial", splits={"validation": redial_records(6)}), tmp_path / "redial")
    common = [
        "interplay",
        "--source",
        str(folder),
        "--split",
        "validation",
        "--n",
        "3",
        "--max-turns",
        "4",
        "--max-new-tokens",
        "12",
        "--temperature",
        "0",
        "--prompt-style",
        "finetuned",
        "--infer-actions",
        "--catalog",
        str(SHARED / "redial" / "redial__id2info.json"),
        "--backend",
        server[0],
        "--user-model",
        str(wide_model_dir),
        "--recommender-model",
        str(recommender_model),
        "--no-progress",
    ]
    assert main(["simulate", *common, "--out", str(tmp_path / "single")]) == 0
    out = tmp_path / "scaled"
    assert main(["simulate", *common, "--out", str(out), "--executor", "local", "--tasks", "2"]) == 0
    scaled = rows(out)
    assert scaled == rows(tmp_path / "single") and len(scaled) == 3
    assert {r["provenance"]["recommender_model"] for r in scaled} == {str(recommender_model)}
    plan = json.loads((out / ".simulate-run" / "scaleout" / "manifest.json").read_text())
    assert plan["runner"] == {"model": str(recommender_model), "chat": False}
    # Provenance names the model of each role (the server's log format is not ours to test).
    assert {r["provenance"]["user_model"] for r in scaled} == {str(wide_model_dir)}
