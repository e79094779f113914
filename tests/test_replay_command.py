"""``crsdata replay`` end to end: real ReDial test dialogues (built from the official release) replayed to the tiny
random model through the local backend, results/decisions/card written, a killed run resumed to the same
decisions, and bad input refused in one line (no split, no targets, --out inside --source)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.processes import _kill_after_first_shard
from fixtures.tiny_models import widened

from crsdata.build import BuildResult
from crsdata.cli import main
from crsdata.export import export_folder
from crsdata.schema import item_ref
from crsdata.simulate.replay import replay_turns

REDIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "redial"
CATALOGS = [REDIAL / "redial__id2info.json", REDIAL / "official" / "movies_with_mentions.csv"]
N_SOURCE = 30  # the first dialogues of the official test file


@pytest.fixture(scope="module")
def redial_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first dialogues of ReDial's official test_data.jsonl, built by `crsdata build redial` (split test)."""
    folder = tmp_path_factory.mktemp("redial-official")
    lines = (REDIAL / "official" / "test_data.jsonl").read_text(encoding="utf-8").splitlines()[:N_SOURCE]
    (folder / "test_data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    catalogs = [arg for path in CATALOGS for arg in ("--catalog", str(path))]
    build = ["build", "redial", "--input", str(folder / "test_data.jsonl"), "--out", str(folder / "built")]
    assert main([*build, *catalogs]) == 0
    return folder / "built"


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Persona plus a real conversation is longer than the fixture's 512 positions in its small vocabulary.
    return widened(tiny_model_dir, tmp_path_factory.mktemp("tiny") / "model", positions=4096)


def replay_args(source: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [
        "replay",
        "--source",
        str(source),
        "--split",
        "test",
        "--out",
        str(out),
        "--user-model",
        str(model),
        "--max-new-tokens",
        "6",
        "--batch-size",
        "4",
        "--shard-size",
        "2",
        "--threads",
        "1",
        "--no-progress",
        *extra,
    ]


def test_replay_of_real_test_dialogues_with_the_tiny_model(redial_test, tiny, tmp_path, capsys):
    out = tmp_path / "replay"
    assert main(replay_args(redial_test, out, tiny, "--n", "8", "--bootstrap", "200")) == 0
    stdout = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    decisions = json.loads((out / "decisions.json").read_text())
    # N dialogues scored; those drawn before them that could not be replayed are counted by reason; each source
    # dialogue at most once.
    assert results["n_dialogues"] == 8 and results["n_skipped"] > 0
    assert results["n_dialogues"] + results["n_skipped"] <= N_SOURCE
    assert results["n_skipped"] == sum(results["skipped"].values())
    assert results["n_dialogues"] == len(decisions) > 0
    assert len({d["source_dialogue_id"] for d in decisions}) == len(decisions)
    assert results["sr"] + results["et"] + results["fr"] == pytest.approx(1.0)
    assert set(results["intervals"]) == {"sr", "et", "fr"}
    assert results["split"] == "test" and results["user_model"].endswith("model")
    # The trivial policies on the same dialogues, and the per-proposal decision scores.
    assert set(results["baselines"]) == {"accept_first", "never", "random", "exact_match", "similarity"}
    for rates in results["baselines"].values():
        assert {"sr", "et", "fr"} <= set(rates) and rates["sr"] + rates["et"] + rates["fr"] == pytest.approx(1.0)
    assert results["baselines"]["never"]["fr"] == 1.0
    for key in ("decision_accuracy", "decision_balanced_accuracy", "accept_precision", "accept_recall"):
        assert key in results
    built = {r["dialogue_id"]: r for r in _records(redial_test)}
    for row in decisions:
        source = built[row["source_dialogue_id"]]
        # Exactly one target: the builder's (the first film a recommender named that the seeker wanted).
        assert row["target_ids"] == [source["target_items"][0]["item_id"]] and len(source["target_items"]) == 1
        # One answer per judged proposal, every decision about an item a real recommender turn named there.
        rounds = {d["round"] for d in row["decisions"]}
        assert rounds == {a["round"] for a in row["answers"]}
        for decision in row["decisions"]:
            turn = replay_turns(source)[decision["round"]]  # rounds index the merged turns replay feeds
            assert turn["role"] == "recommender"
            assert decision["item_id"] in {i["item_id"] for i in turn["items"]}
        assert row["outcome"] in ("success", "early_termination", "failure")
    card = (out / "README.md").read_text()
    assert "| SR (target accepted) |" in card and "## Accounting" in card and "## Protocol" in card
    assert f"SR {results['sr']:.3f}" in stdout and f"over {results['n_dialogues']} dialogues" in stdout
    assert "baselines on the same dialogues: accept_first SR" in stdout and "| baseline `accept_first`" in card
    # `crsdata evaluate` on the folder prints its figures, the baselines beside the model's.
    assert main(["evaluate", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "a `crsdata replay` folder" in printed and "one target per dialogue" in printed
    assert f"SR {results['sr']:.3f}" in printed and "never SR 0.000 ET 0.000 FR 1.000" in printed


def _records(folder: Path) -> list[dict]:
    import datasets

    return datasets.load_dataset(str(folder), "dialogues", split="test").to_list()


def test_without_n_every_dialogue_of_the_split_is_replayed_once(redial_test, tmp_path, monkeypatch, capsys):
    from fixtures.fake_backends import ScriptedBackend

    backend = ScriptedBackend("scripted", lambda own, last: "<action><feedback></action><response>No.</response>")
    monkeypatch.setattr("crsdata.simulate.job.make_backends", lambda config: {"user": backend, "recommender": backend})
    out = tmp_path / "all"
    # The language model decides (the shipped user's decision scorer would accept where the script never does).
    args = ["replay", "--source", str(redial_test), "--split", "test", "--out", str(out), "--no-progress"]
    assert main([*args, "--decision-scorer", "none"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n_requested"] == N_SOURCE == results["n_dialogues"] + results["n_skipped"]
    assert results["fr"] == 1.0  # a user who never accepts fails every dialogue
    decisions = json.loads((out / "decisions.json").read_text())
    assert all(not d["accepted"] for row in decisions for d in row["decisions"])


def test_a_killed_replay_resumes_to_the_uninterrupted_decisions(redial_test, tiny, tmp_path):
    def command(name: str) -> list[str]:
        args = replay_args(redial_test, tmp_path / name, tiny, "--n", "12", "--seed", "3")
        return [sys.executable, "-m", "crsdata.cli", *args]

    _kill_after_first_shard(command("killed"), tmp_path / "killed" / ".simulate-run")
    assert not (tmp_path / "killed" / "results.json").exists()
    resumed = subprocess.run(command("killed"), check=True, timeout=600, capture_output=True, text=True)
    assert "from an earlier run" in resumed.stdout
    subprocess.run(command("clean"), check=True, timeout=600, capture_output=True)
    killed = json.loads((tmp_path / "killed" / "decisions.json").read_text())
    clean = json.loads((tmp_path / "clean" / "decisions.json").read_text())
    assert killed == clean and len(killed) > 0
    results = json.loads((tmp_path / "killed" / "results.json").read_text())
    assert {k: results[k] for k in ("sr", "et", "fr", "n_dialogues", "n_skipped")} == {
        k: json.loads((tmp_path / "clean" / "results.json").read_text())[k]
        for k in ("sr", "et", "fr", "n_dialogues", "n_skipped")
    }
    manifest = json.loads((tmp_path / "killed" / ".simulate-run" / "manifest.json").read_text())
    assert len(manifest["sessions"]) == 2 and manifest["sessions"][1]["resumed_from"] > 0


# ---------------------------------------------------------------------------------------------------------
# Bad input: one line


def _one_line(capsys: pytest.CaptureFixture[str], command: str, *fragments: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"crsdata {command}: error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _folder(tmp_path: Path, records: list[dict], split: str = "test") -> Path:
    for record in records:
        record["split"] = split
    return export_folder(BuildResult(source="redial", splits={split: records}), tmp_path / "built")


def test_a_source_without_the_split(redial_test, tmp_path, capsys):
    assert main(["replay", "--source", str(redial_test), "--split", "validation", "--out", str(tmp_path / "o")]) == 1
    _one_line(capsys, "replay", "no split 'validation' (it has test)")


def test_a_source_without_targets_or_recommender_items(redial_test, tmp_path, capsys):
    records = [r for r in _records(redial_test) if any(t["item_id"] for t in r["target_items"])][:6]
    for record in records[:3]:
        record["target_items"] = []
    for record in records[3:]:
        for turn in record["turns"]:
            if turn["role"] == "recommender":
                turn["items"] = [item_ref("", i["title"]) for i in turn["items"]]
    folder = _folder(tmp_path, records)
    assert main(["replay", "--source", str(folder), "--split", "test", "--out", str(tmp_path / "o")]) == 1
    # Refused before any model is loaded (nothing else on stderr), every reason counted.
    expected = "no dialogue of split test can be replayed (no_recommender_items: 3, no_target_items: 3)"
    _one_line(capsys, "replay", expected)


@pytest.mark.parametrize("command", ["replay", "simulate"])
def test_out_inside_source_is_refused(redial_test, tmp_path, capsys, command):
    for out in (redial_test, redial_test / "replay"):
        args = ["--source", str(redial_test), "--split", "test", "--out", str(out), "--n", "2"]
        argv = ["replay", *args] if command == "replay" else ["simulate", "interplay", *args]
        assert main(argv) == 1
        _one_line(capsys, command, "option --out:", "is the --source folder or inside it")
    assert not (redial_test / "replay").exists() and not (redial_test / ".simulate-run").exists()


def test_options_come_from_a_config_file_and_a_flag_overrides_it(redial_test, tmp_path, monkeypatch, capsys):
    """`crsdata replay --config run.yaml`: the file's keys are the flags; --n on the command line wins over n.
    Replay's own default temperature (0: greedy) holds unless the file or a flag says otherwise."""
    from fixtures.fake_backends import ScriptedBackend

    backend = ScriptedBackend("scripted", lambda own, last: "<action><feedback></action><response>No.</response>")
    monkeypatch.setattr("crsdata.simulate.job.make_backends", lambda config: {"user": backend, "recommender": backend})
    run = tmp_path / "run.yaml"
    run.write_text(f"source: {redial_test}\nsplit: test\nout: {tmp_path / 'o'}\nn: 2\nno-progress: true\n")
    assert main(["replay", "--config", str(run), "--n", "4"]) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["source"] == str(redial_test) and results["split"] == "test"
    assert results["n_requested"] == 4  # the flag, not the file's 2
    assert results["sampling"]["temperature"] == 0.0  # replay decodes greedily unless told otherwise
    run.write_text(f"source: {redial_test}\nsplit: test\nout: {tmp_path / 't'}\nn: 2\ntemperature: 0.7\n")
    assert main(["replay", "--config", str(run), "--no-progress"]) == 0
    assert json.loads((tmp_path / "t" / "results.json").read_text())["sampling"]["temperature"] == 0.7
    capsys.readouterr()
    run.write_text(f"source: {redial_test}\nout: {tmp_path / 'x'}\nuser_modle: tiny\n")
    assert main(["replay", "--config", str(run)]) == 1
    err = capsys.readouterr().err
    assert str(run) in err and "user_modle" in err and "not an option of this command" in err
