"""``crsdata simulate``: help, clear errors for bad input, and whole runs into a dataset folder with its card.

Runs here swap the model for fake backends (``make_backends`` is patched), so they test the command, the
accounting and the card quickly; the tiny and embedded models run in the resume and RecLLMSim tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from test_simulate_engine import FakeBackend, TransientFailures
from test_simulate_recllmsim import SHORT_PROFILE

from crsdata.backends.base import ChatRequest
from crsdata.build import BuildResult
from crsdata.cli import main
from crsdata.export import export_folder
from crsdata.schema import new_dialogue
from crsdata.simulate.recllmsim import END_PHRASE

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def recllmsim_records(n_en: int = 6, n_zh: int = 3, broken: int = 1) -> list[dict]:
    """Records shaped like the RecLLMSim builder's: English simulated ones with a task context, Chinese human
    ones without, and ``broken`` English ones whose task context is missing."""
    records = []
    for i in range(n_en):
        extra = {"task_context": f"You are planning a {i + 2}-day trip this winter."} if i >= broken else {}
        records.append(
            new_dialogue(
                f"simulated/travel_planning/{i}",
                "recllmsim",
                "simulated",
                [],
                task="travel planning",
                user_profile={"profile_text": SHORT_PROFILE},
                extra=extra,
            )
        )
    for i in range(n_zh):
        records.append(
            new_dialogue(
                f"human/User_{i}/travel_planning/0",
                "recllmsim",
                "human",
                [],
                language="zh",
                task="travel planning",
                user_profile={"profile_text": "性别: 女"},
                extra={"task_context_zh": "你计划旅行。"},
            )
        )
    return records


@pytest.fixture
def built(tmp_path: Path) -> Path:
    records = recllmsim_records()
    splits: dict[str, list[dict]] = {}
    for record in records:
        splits.setdefault(record["split"], []).append(record)
    return export_folder(BuildResult(source="recllmsim", splits=splits), tmp_path / "built")


def user_text(request: ChatRequest, digest: str) -> str:
    if "playing a person" in request.messages[0]["content"]:
        turns = sum(1 for m in request.messages if m["role"] == "assistant")
        if int(digest[:2], 16) % 3 == 0:
            return "As an AI, I'd be happy to help you plan that."  # role confusion
        return END_PHRASE if turns >= 2 else ["Where should I stay?", "And how do I get around town?"][turns]
    return f"Plan {digest[:40]}: museums."


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    """Patches the command's backends with one FakeBackend; returns a setter for its behaviour."""
    holder = {"backend": FakeBackend("fake-model", text=user_text)}
    monkeypatch.setattr(
        "crsdata.commands.simulate.make_backends",
        lambda args: {"user": holder["backend"], "recommender": holder["backend"]},
    )

    def use(backend: FakeBackend) -> FakeBackend:
        holder["backend"] = backend
        return backend

    return use


def simulate(*args: str) -> int:
    return main(["simulate", *args, "--no-progress"])


# ---------------------------------------------------------------------------------------------------------
# Help and bad input


def test_help_reads_like_the_docs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for phrase in (
        "interplay",
        "recllmsim",
        'load_dataset(OUT, "dialogues")',
        "resume",
        "embedded",
        "drawn = written + skipped",
        "examples:",
        "Thank you, goodbye.",
    ):
        assert phrase in text, phrase
    for option in (
        "--source",
        "--n",
        "--out",
        "--user-model",
        "--recommender-model",
        "--backend",
        "--batch-size",
        "--max-turns",
        "--seed",
        "--max-new-tokens",
        "--temperature",
        "--shard-size",
        "--split",
        "--prompt-style",
        "--catalog",
        "--profiles",
        "--drop-flagged",
        "--threads",
        "--kv-cache-mb",
    ):
        assert option in text, option


def test_unknown_kind_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "pearl", "--source", "x", "--n", "1", "--out", "y"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'pearl'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kind", "source", "message"),
    [
        ("recllmsim", "no/such/folder", "unknown source"),
        ("interplay", "scenarios", "scenario templates drive recllmsim, not interplay"),
        ("recllmsim", "scenarios-missing.yaml", "no such scenario file"),
    ],
)
def test_bad_sources_are_clear_errors(tmp_path, capsys, kind, source, message):
    assert simulate(kind, "--source", source, "--n", "2", "--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert err.startswith("crsdata simulate: error:") and message in err
    assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_dataset_or_has_no_usable_records(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert simulate("recllmsim", "--source", str(tmp_path / "empty"), "--n", "2", "--out", str(tmp_path / "o")) == 1
    assert "not a built dataset folder" in capsys.readouterr().err
    movies = [new_dialogue("1", "redial", "test", [])]
    folder = export_folder(BuildResult(source="redial", splits={"test": movies}), tmp_path / "redial")
    assert simulate("recllmsim", "--source", str(folder), "--n", "2", "--out", str(tmp_path / "o")) == 1
    assert "no usable records for this simulation (source-redial: 1)" in capsys.readouterr().err
    assert (
        simulate("recllmsim", "--source", str(folder), "--split", "train", "--n", "2", "--out", str(tmp_path / "o"))
        == 1
    )
    assert "no split 'train'" in capsys.readouterr().err


def test_profiles_only_with_scenarios_and_bad_numbers(tmp_path, built, capsys):
    assert (
        simulate(
            "recllmsim", "--source", str(built), "--profiles", "generate", "--n", "2", "--out", str(tmp_path / "o")
        )
        == 1
    )
    assert "applies to scenario sources only" in capsys.readouterr().err
    assert (
        simulate("recllmsim", "--source", "scenarios", "--n", "2", "--batch-size", "0", "--out", str(tmp_path / "o"))
        == 1
    )
    assert "--batch-size" in capsys.readouterr().err
    assert (
        simulate("recllmsim", "--source", "scenarios", "--n", "2", "--kv-cache-mb", "-1", "--out", str(tmp_path / "o"))
        == 1
    )
    assert "error: option --kv-cache-mb: must be 0 or more" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# Whole runs with a fake backend


def test_recllmsim_from_a_built_folder_writes_a_loadable_folder_with_a_card(tmp_path, built, fake, capsys):
    out = tmp_path / "sim"
    assert (
        simulate(
            "recllmsim",
            "--source",
            str(built),
            "--n",
            "10",
            "--out",
            str(out),
            "--seed",
            "2",
            "--batch-size",
            "4",
            "--shard-size",
            "3",
        )
        == 0
    )
    printed = capsys.readouterr().out
    rows = datasets.load_dataset(str(out), "dialogues", split="train").to_list()
    meta = json.loads((out / "crsdata.json").read_text())
    accounting = meta["accounting"]
    # 10 requested, 10 written: the English record without a task context is skipped each time it is drawn
    # (the 6 English records come in a seeded order, so it is met once or twice) and the next record drawn.
    assert len(rows) == 10 and accounting["balanced"]
    assert accounting["read"] == 10 + accounting["skipped"] and accounting["skipped"] >= 1
    assert meta["skipped"]["by_reason"] == {"missing-task": accounting["skipped"]}
    assert f"10 of 10 requested written (0 of them dropped), {accounting['skipped']} source records skipped" in printed
    for row in rows:
        assert row["source"] == "recllmsim-sim" and row["language"] == "en" and row["split"] == "train"
        assert row["outcome"]["end_reason"] in ("end_phrase", "max_turns")
        assert row["provenance"]["user_model"] == "fake-model" and row["provenance"]["seed"] == 2
        assert json.loads(row["extra"])["source_dialogue_id"].startswith("simulated/")
    card = (out / "README.md").read_text()
    for section in ("## Simulation", "## Outcomes", "## Quality filters", "## Run counters", "## Plots"):
        assert section in card, section
    assert "language-zh" in card  # the Chinese records were not drawn, and the card says so
    flagged = sum(1 for r in rows if json.loads(r["extra"])["quality"].get("role_confusion"))
    assert f"| `role_confusion` | {flagged} dialogues" in card
    assert (out / "simulation_outcomes.png").stat().st_size > 0
    assert json.loads((out / "simulation.json").read_text())["config"]["seed"] == 2


def test_drop_flagged_counts_what_it_leaves_out(tmp_path, built, fake):
    out = tmp_path / "sim"
    assert simulate("recllmsim", "--source", str(built), "--n", "12", "--out", str(out), "--drop-flagged") == 0
    meta = json.loads((out / "crsdata.json").read_text())
    accounting = meta["accounting"]
    assert accounting["dropped"] == meta["dropped"].get("filter-role_confusion", 0) > 0
    assert accounting["read"] == 12 + accounting["skipped"]
    assert accounting["read"] == accounting["kept"] + accounting["skipped"] + accounting["dropped"]
    rows = datasets.load_dataset(str(out), "dialogues", split="train").to_list()
    assert all(not json.loads(r["extra"])["quality"] for r in rows)


def test_backend_errors_and_timeouts_lose_nothing(tmp_path, fake):
    def always_fails_some(request: ChatRequest) -> str:
        return "HTTP 503" if "making the gift" in json.dumps(request.messages) else ""

    transient = TransientFailures(times=1, every=2)
    fake(FakeBackend("fake-model", text=user_text, fail=lambda r: always_fails_some(r) or transient(r)))
    out = tmp_path / "sim"
    assert simulate("recllmsim", "--source", "scenarios", "--n", "16", "--out", str(out), "--max-retries", "2") == 0
    rows = datasets.load_dataset(str(out), "dialogues", split="train").to_list()
    assert len(rows) == 16  # nothing lost
    counters = json.loads((out / "simulation.json").read_text())["counters"]
    gifts = [r for r in rows if r["task"] == "preparing gifts"]
    assert all(r["outcome"]["end_reason"] == "error" for r in gifts)
    assert counters.get("abandoned", 0) == len(gifts)
    assert counters["backend_errors"] >= 3 * len(gifts) + 1  # every gift turn failed 3 times, others retried
    others = [r for r in rows if r["task"] != "preparing gifts"]
    assert others and all(r["outcome"]["end_reason"] in ("end_phrase", "max_turns") for r in others)
    assert "ended by backend errors after retries (`unknown`) | " + str(len(gifts)) in (out / "README.md").read_text()


def test_a_different_seed_on_an_existing_run_is_refused(tmp_path, fake, capsys):
    out = tmp_path / "sim"
    assert simulate("recllmsim", "--source", "scenarios", "--n", "3", "--out", str(out)) == 0
    first = (out / "README.md").read_text()
    assert simulate("recllmsim", "--source", "scenarios", "--n", "3", "--out", str(out), "--seed", "9") == 1
    err = capsys.readouterr().err
    assert "different configuration" in err and "seed: 0 in the existing run, 9 now" in err
    assert (out / "README.md").read_text() == first
    # The same command again is a no-op resume that rewrites the same folder.
    assert simulate("recllmsim", "--source", "scenarios", "--n", "3", "--out", str(out)) == 0


@pytest.mark.skipif(not (SHARED / "redial").is_dir(), reason="shared ReDial data not available")
def test_interplay_from_a_built_folder_reports_outcomes_and_leak_rate(tmp_path, monkeypatch):
    from simulate_fixtures import ScriptedBackend, recommender, redial_records, user

    records = redial_records(8)
    folder = export_folder(BuildResult(source="redial", splits={"validation": records}), tmp_path / "redial")
    backends = {"user": ScriptedBackend("u-model", user()), "recommender": ScriptedBackend("r-model", recommender())}
    monkeypatch.setattr("crsdata.commands.simulate.make_backends", lambda args: backends)
    out = tmp_path / "sim"
    code = simulate(
        "interplay",
        "--source",
        str(folder),
        "--split",
        "validation",
        "--n",
        "6",
        "--out",
        str(out),
        "--catalog",
        str(SHARED / "redial" / "redial__id2info.json"),
    )
    assert code == 0
    rows = datasets.load_dataset(str(out), "dialogues", split="validation").to_list()
    meta = json.loads((out / "crsdata.json").read_text())
    assert meta["accounting"]["read"] == 6 and meta["accounting"]["balanced"]
    assert rows and all(r["source"] == "interplay-sim" for r in rows)
    assert all(r["outcome"]["end_reason"] == "accept" for r in rows)
    card = (out / "README.md").read_text()
    assert "## Target leak" in card and "Leak rate:" in card
    assert "dialogues with an accepted item" in card
