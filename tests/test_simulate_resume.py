"""A run killed with SIGKILL mid-way and started again with the same command ends with exactly the records of an
uninterrupted run: no dialogue lost, none duplicated, same texts.

Two levels: a runner script (the engine with the RecLLMSim simulation on a slow deterministic fake backend,
fast and exact), and the real ``crsdata simulate`` command on the tiny random model through the local backend.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fixtures.processes import _kill_after_first_shard, _shards
from fixtures.simulate_records import SHORT_PROFILE
from fixtures.tiny_models import widened

TESTS = Path(__file__).resolve().parent

RUNNER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {tests!r})
    from fixtures.fake_backends import FakeBackend
    from fixtures.fake_simulation import make_config
    from crsdata.backends.base import SamplingParams
    from crsdata.simulate.engine import RunEngine
    from crsdata.simulate.recllmsim import END_PHRASE, RecLLMSimSimulation, scenario_source

    def text(request, digest):
        if "playing a person" in request.messages[0]["content"]:
            return END_PHRASE if int(digest[:4], 16) % 4 == 0 else "Can you say more about " + digest[:8] + "?"
        return "Here is a suggestion " + digest[:12] + "."

    work, out = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        # Die like a SIGKILL in the middle of committing shard number argv[3]: its file is renamed into place,
        # the manifest that would list it is not written yet (the orphan-shard path).
        import os, signal
        import crsdata.simulate.engine as engine
        written, kill_at = [0], int(sys.argv[3])
        real_write_shard = engine.write_shard

        def write_shard(path, records):
            digest = real_write_shard(path, records)
            written[0] += 1
            if written[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return digest

        engine.write_shard = write_shard
    backend = FakeBackend(text=text, delay=0.03)
    params = {{r: SamplingParams(max_new_tokens=32) for r in ("user", "recommender")}}
    sim = RecLLMSimSimulation({{"user": backend, "recommender": backend}}, params, 8)
    source = scenario_source()
    config = make_config(sim, source, n=40, seed=11, batch_size=5, shard_size=4, max_turns=8)
    result = RunEngine(sim, source, config, work, progress=False).run()
    with open(out, "w") as handle:
        json.dump(result.records, handle)
    """
)


def _texts(records: list[dict]) -> list[tuple]:
    return [
        (r["dialogue_id"], [(t["role"], t["text"]) for t in r["turns"]], r["outcome"]["end_reason"]) for r in records
    ]


def test_runner_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(tests=str(TESTS)))

    def command(name: str) -> list[str]:
        return [sys.executable, str(script), str(tmp_path / name), str(tmp_path / f"{name}.json")]

    _kill_after_first_shard(command("killed"), tmp_path / "killed")
    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert manifest["status"] == "running"
    assert 0 < sum(s["rows"] for s in manifest["shards"]) < 40
    assert not (tmp_path / "killed.json").exists()

    subprocess.run(command("killed"), check=True, timeout=300)
    subprocess.run(command("clean"), check=True, timeout=300)
    resumed = json.loads((tmp_path / "killed.json").read_text())
    clean = json.loads((tmp_path / "clean.json").read_text())
    assert len(resumed) == 40
    assert _texts(resumed) == _texts(clean)
    assert resumed == clean  # every field, counters and seeds included
    final = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    ids = [i for s in final["shards"] for i in s["dialogue_ids"]]
    assert len(ids) == len(set(ids)) == 40  # nothing duplicated, nothing lost
    assert len(final["sessions"]) == 2 and final["sessions"][1]["resumed_from"] > 0


def test_killed_between_a_shard_and_its_manifest_resumes_over_the_orphan_shard(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(tests=str(TESTS)))
    work = tmp_path / "killed"
    killed = subprocess.run(
        [sys.executable, str(script), str(work), str(tmp_path / "killed.json"), "3"], timeout=300, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL
    manifest = json.loads((work / "manifest.json").read_text())
    # Shards 0 and 1 are committed; shard 2's file exists but the manifest does not list it.
    assert [s["file"] for s in manifest["shards"]] == ["shards/shard-00000.parquet", "shards/shard-00001.parquet"]
    orphan = work / "shards" / "shard-00002.parquet"
    assert orphan.is_file() and orphan.stat().st_size > 0
    assert not list(work.rglob("*.tmp"))

    subprocess.run([sys.executable, str(script), str(work), str(tmp_path / "killed.json")], check=True, timeout=300)
    subprocess.run([sys.executable, str(script), str(tmp_path / "clean"), str(tmp_path / "clean.json")], check=True)
    resumed = json.loads((tmp_path / "killed.json").read_text())
    clean = json.loads((tmp_path / "clean.json").read_text())
    assert len(resumed) == 40 and resumed == clean
    final = json.loads((work / "manifest.json").read_text())
    ids = [i for s in final["shards"] for i in s["dialogue_ids"]]
    assert len(ids) == len(set(ids)) == 40  # the orphan's dialogues were run again and written once
    assert final["shards"][2]["file"] == "shards/shard-00002.parquet"  # the orphan file was overwritten in place


LOCK_RUNNER = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {tests!r})
    from fixtures.fake_backends import FakeBackend
    from fixtures.simulate_records import user_text
    import crsdata.simulate.job as job
    from crsdata.cli import main

    class Held(FakeBackend):
        # After 8 calls (a shard is committed by then), waits while the file argv[2] exists.

        def generate(self, requests, params):
            while len(self.calls) >= 8 and os.path.exists(sys.argv[2]):
                time.sleep(0.05)
            return super().generate(requests, params)

    backend = Held("fake-model", text=user_text)
    job.make_backends = lambda config: {{"user": backend, "recommender": backend}}
    sys.exit(main(["simulate", "recllmsim", "--source", "scenarios", "--n", "30", "--out", sys.argv[1],
                   "--batch-size", "4", "--shard-size", "4", "--seed", "3", "--no-progress"]))
    """
)


def test_a_second_process_on_the_same_out_is_refused_and_a_killed_run_is_taken_over(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(LOCK_RUNNER.format(tests=str(TESTS)))
    out = tmp_path / "out"
    hold = tmp_path / "hold"
    hold.touch()  # the first run stays in flight while this file exists

    def command(held: bool = True) -> list[str]:
        return [sys.executable, str(script), str(out), str(hold if held else tmp_path / "no-hold")]

    first = subprocess.Popen(command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while _shards(out / ".simulate-run") < 1:
            assert first.poll() is None, "the first run ended before it could be raced"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # The twin is refused at once, names the running process, and writes nothing.
        sessions = len(json.loads((out / ".simulate-run" / "manifest.json").read_text())["sessions"])
        twin = subprocess.run(command(), capture_output=True, text=True, timeout=120)
        assert twin.returncode == 1
        assert f"another `crsdata simulate` (pid {first.pid}) is running in this output folder" in twin.stderr
        assert twin.stderr.startswith("crsdata simulate: error:") and "Traceback" not in twin.stderr
        assert first.poll() is None  # the refusal did not disturb the first run
        assert len(json.loads((out / ".simulate-run" / "manifest.json").read_text())["sessions"]) == sessions
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait()
    # Its lock died with it: the same command takes the folder over at once and finishes the run.
    resumed = subprocess.run(command(held=False), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "from an earlier run" in resumed.stdout
    clean = tmp_path / "clean"
    unheld = [sys.executable, str(script), str(clean), str(tmp_path / "no-hold")]
    subprocess.run(unheld, check=True, capture_output=True, timeout=300)

    import datasets

    resumed_rows = datasets.load_dataset(str(out), "dialogues", split="train").to_list()
    clean_rows = datasets.load_dataset(str(clean), "dialogues", split="train").to_list()
    assert len(resumed_rows) == len(clean_rows) > 0 and _texts(resumed_rows) == _texts(clean_rows)


@pytest.fixture
def short_source(tmp_path: Path) -> tuple[Path, Path]:
    scenarios = tmp_path / "short.yaml"
    scenarios.write_text(
        "scenarios:\n"
        "- type: recipe planning\n  template: Plan a meal [WHO].\n  variables:\n    WHO: [for one, for two, for four]\n"
        "- type: preparing gifts\n  template: Find a gift for my [WHO].\n  variables:\n    WHO: [aunt, teacher]\n"
    )
    pool = tmp_path / "pool.txt"
    pool.write_text(SHORT_PROFILE + "\n\n" + SHORT_PROFILE.replace("Female", "Male"))
    return scenarios, pool


def test_cli_killed_with_sigkill_resumes_with_the_same_command(tmp_path, tiny_model_dir, short_source, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = widened(tiny_model_dir, tmp_path / "tiny")
    scenarios, pool = short_source

    def command(out: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "crsdata.cli",
            "simulate",
            "recllmsim",
            "--source",
            str(scenarios),
            "--profiles",
            str(pool),
            "--n",
            "16",
            "--out",
            str(tmp_path / out),
            "--user-model",
            str(model),
            "--recommender-model",
            str(model),
            "--max-new-tokens",
            "8",
            "--max-turns",
            "4",
            "--batch-size",
            "3",
            "--shard-size",
            "2",
            "--seed",
            "5",
            "--no-progress",
            "--threads",
            "1",
        ]

    _kill_after_first_shard(command("killed"), tmp_path / "killed" / ".simulate-run")
    assert not (tmp_path / "killed" / "README.md").exists()
    subprocess.run(command("killed"), check=True, timeout=600, capture_output=True)
    subprocess.run(command("clean"), check=True, timeout=600, capture_output=True)
    resumed = datasets.load_dataset(str(tmp_path / "killed"), "dialogues", split="train").to_list()
    clean = datasets.load_dataset(str(tmp_path / "clean"), "dialogues", split="train").to_list()
    assert [r["dialogue_id"] for r in resumed] == [f"recllmsim-s5-{i:06d}" for i in range(16)]
    assert _texts(resumed) == _texts(clean)
    assert sum(len(r["turns"]) for r in resumed) > 0
    summary = json.loads((tmp_path / "killed" / "simulation.json").read_text())
    assert len(summary["sessions"]) == 2
