"""``crsdata simulate``: help, clear errors for bad input, and whole runs into a dataset folder with its card.

Runs here swap the model for fake backends (``make_backends`` is patched), so they test the command, the
accounting and the card quickly; the tiny and embedded models run in the resume and RecLLMSim tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from fixtures.fake_backends import FakeBackend, TransientFailures
from fixtures.simulate_records import recllmsim_records, user_text

from crsdata.backends.base import ChatRequest, Generation
from crsdata.build import BuildResult
from crsdata.cli import main
from crsdata.export import export_folder
from crsdata.schema import new_dialogue

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
CATALOG = ("--catalog", str(SHARED / "redial" / "redial__id2info.json"))


@pytest.fixture
def built(tmp_path: Path) -> Path:
    records = recllmsim_records()
    splits: dict[str, list[dict]] = {}
    for record in records:
        splits.setdefault(record["split"], []).append(record)
    return export_folder(BuildResult(source="recllmsim", splits=splits), tmp_path / "built")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch):
    """Patches the command's backends with one FakeBackend; returns a setter for its behaviour."""
    holder = {"backend": FakeBackend("fake-model", text=user_text)}
    monkeypatch.setattr(
        "crsdata.simulate.job.make_backends",
        lambda config: {"user": holder["backend"], "recommender": holder["backend"]},
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
        "one split",
        "KIND --help",
    ):
        assert phrase in text, phrase
    common = (
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
        "--threads",
        "--kv-cache-mb",
        "--dtype",
        "--max-retries",
    )
    own = {
        "interplay": ("--prompt-style", "--catalog", "--infer-actions", "target's attributes"),
        "recllmsim": ("--profiles", "--drop-flagged", "scenario templates"),
    }
    for kind, options in own.items():
        with pytest.raises(SystemExit) as exit_info:
            main(["simulate", kind, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        for option in common + options:
            assert option in text, (kind, option)
        other = next(o for k, o in own.items() if k != kind)
        assert not any(option in text for option in other[:2]), kind  # another kind's options are not offered
    words = " ".join(text.split())
    assert "ends with end_reason error" in words and "unknown" not in words


def test_unknown_kind_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "pearl", "--source", "x", "--n", "1", "--out", "y"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'pearl'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "interplay", "--source", "x", "--n", "1", "--out", "y", "--profiles", "pool"])
    assert exit_info.value.code == 2  # a recllmsim option is not an interplay option
    assert "unrecognized arguments: --profiles" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kind", "source", "message"),
    [
        ("recllmsim", "no/such/folder", "unknown source"),
        ("interplay", "scenarios", "no such folder; --source takes a folder written by `crsdata build`"),
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
    rows = datasets.load_dataset(str(out), "dialogues", split="simulated").to_list()
    meta = json.loads((out / "crsdata.json").read_text())
    accounting = meta["accounting"]
    # 10 requested, 10 written: the English record without a task context is skipped each time it is drawn
    # (the 6 English records come in a seeded order, so it is met once or twice) and the next record drawn.
    assert len(rows) == 10 and accounting["balanced"]
    assert accounting["read"] == 10 + accounting["skipped"] and accounting["skipped"] >= 1
    assert meta["skipped"]["by_reason"] == {"missing-task": accounting["skipped"]}
    assert f"10 of 10 requested written (0 of them dropped), {accounting['skipped']} source records skipped" in printed
    for row in rows:
        assert row["source"] == "recllmsim-sim" and row["language"] == "en" and row["split"] == "simulated"
        assert row["outcome"]["end_reason"] in ("end_phrase", "max_turns")
        assert row["provenance"]["user_model"] == "fake-model" and row["provenance"]["seed"] == 2
        assert json.loads(row["extra"])["source_dialogue_id"].startswith("simulated/")
    card = (out / "README.md").read_text()
    for section in ("## Simulation", "## Outcomes", "## Quality filters", "## Run counters", "## Plots"):
        assert section in card, section
    # Only the simulated split was drawn (the only one with English records), and the card says so.
    assert "`simulated`: drawn from the source split of that name only (the only split with records" in card
    assert "Splits of the source not drawn from: `human` (3 records)" in card
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
    rows = datasets.load_dataset(str(out), "dialogues", split="simulated").to_list()
    assert all(not json.loads(r["extra"])["quality"] for r in rows)


def test_backend_errors_and_timeouts_lose_nothing(tmp_path, fake):
    def always_fails_some(request: ChatRequest) -> str:
        return "HTTP 503" if "making the gift" in json.dumps(request.messages) else ""

    transient = TransientFailures(times=1, every=2)
    fake(FakeBackend("fake-model", text=user_text, fail=lambda r: always_fails_some(r) or transient(r)))
    out = tmp_path / "sim"
    assert simulate("recllmsim", "--source", "scenarios", "--n", "16", "--out", str(out), "--max-retries", "2") == 0
    rows = datasets.load_dataset(str(out), "dialogues", split="train").to_list()
    meta = json.loads((out / "crsdata.json").read_text())
    counters = json.loads((out / "simulation.json").read_text())["counters"]
    # Every gift request fails, so each gift dialogue ends with `error` at its first turn: written and counted,
    # then left out of the folder as `no_turns` (not a dialogue). Nothing is lost: 16 = kept + dropped.
    abandoned = counters["abandoned"]
    assert abandoned > 0 and counters["end_reason.error"] == abandoned
    assert len(rows) + meta["accounting"]["dropped"] == 16 and meta["accounting"]["balanced"]
    assert meta["dropped"] == {"filter-no_turns": abandoned}
    assert counters["backend_errors"] >= 3 * abandoned + 1  # every gift turn failed 3 times, others retried
    assert rows and all(r["task"] != "preparing gifts" for r in rows)
    assert all(r["outcome"]["end_reason"] in ("end_phrase", "max_turns") for r in rows)
    card = (out / "README.md").read_text()
    assert f"ended by backend errors after retries (`error`) | {abandoned} |" in card
    assert f"ended before any turn, left out of the folder (`no_turns`) | {abandoned} |" in card
    assert f"Dropped, by reason: `filter-no_turns` {abandoned}." in card


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
    from fixtures.fake_backends import ScriptedBackend, recommender, user
    from fixtures.simulate_records import redial_records

    records = redial_records(8)
    folder = export_folder(BuildResult(source="redial", splits={"validation": records}), tmp_path / "redial")
    backends = {"user": ScriptedBackend("u-model", user()), "recommender": ScriptedBackend("r-model", recommender())}
    monkeypatch.setattr("crsdata.simulate.job.make_backends", lambda config: backends)
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
        # The scripted policies read Interplay's layout; the default pair's catalog blocks are not what they parse.
        "--grounding",
        "none",
    )
    assert code == 0
    rows = datasets.load_dataset(str(out), "dialogues", split="validation").to_list()
    meta = json.loads((out / "crsdata.json").read_text())
    # Read counts the records drawn, one skipped on the way included (its persona cannot be built).
    assert meta["accounting"]["read"] == 7 and meta["accounting"]["balanced"]
    assert rows and all(r["source"] == "interplay-sim" for r in rows)
    assert all(r["outcome"]["end_reason"] == "accept" for r in rows)
    card = (out / "README.md").read_text()
    assert "## Target leak" in card and "Leak rate:" in card
    assert "dialogues with an accepted item" in card


# ---------------------------------------------------------------------------------------------------------
# Splits: one source split per run, named in the output and the card


@pytest.fixture
def redial_splits(tmp_path: Path) -> Path:
    """A built ReDial-like folder with real records in train, validation and test."""
    from fixtures.simulate_records import redial_records

    records = redial_records(12)
    splits = {"train": records[:4], "validation": records[4:8], "test": records[8:]}
    for name, rows in splits.items():
        for row in rows:
            row["split"] = name
    return export_folder(BuildResult(source="redial", splits=splits), tmp_path / "redial")


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch):
    from fixtures.fake_backends import ScriptedBackend, recommender, user

    backends = {"user": ScriptedBackend("u-model", user()), "recommender": ScriptedBackend("r-model", recommender())}
    monkeypatch.setattr("crsdata.simulate.job.make_backends", lambda config: backends)
    return backends


def _source_ids(out: Path, split: str) -> set[str]:
    rows = datasets.load_dataset(str(out), "dialogues", split=split).to_list()
    assert {r["split"] for r in rows} == {split}
    return {json.loads(r["extra"])["source_dialogue_id"] for r in rows}


@pytest.mark.skipif(not (SHARED / "redial").is_dir(), reason="shared ReDial data not available")
def test_a_run_draws_from_one_split_and_names_its_output_after_it(tmp_path, redial_splits, scripted, capsys):
    source_ids = {
        name: {r["dialogue_id"] for r in datasets.load_dataset(str(redial_splits), "dialogues", split=name)}
        for name in ("train", "validation", "test")
    }
    out = tmp_path / "default"
    assert simulate("interplay", *CATALOG, "--source", str(redial_splits), "--n", "8", "--out", str(out)) == 0
    # By default train only: 8 dialogues from its 4 records (each drawn twice), no test persona among them.
    assert _source_ids(out, "train") <= source_ids["train"]
    assert datasets.load_dataset(str(out), "dialogues").keys() == {"train"}
    card = (out / "README.md").read_text()
    assert "`train`: drawn from the source split of that name only (the default, train)" in card
    assert "Splits of the source not drawn from: `test` (4 records), `validation` (4 records)." in card
    assert json.loads((out / "simulation.json").read_text())["config"]["split"] == "train"

    out = tmp_path / "test"
    assert (
        simulate(
            "interplay", *CATALOG, "--source", str(redial_splits), "--split", "test", "--n", "3", "--out", str(out)
        )
        == 0
    )
    assert _source_ids(out, "test") <= source_ids["test"]
    # The same folder with another split would mix two splits: refused.
    assert (
        simulate(
            "interplay",
            *CATALOG,
            "--source",
            str(redial_splits),
            "--split",
            "validation",
            "--n",
            "3",
            "--out",
            str(out),
        )
        == 1
    )
    assert "split: 'test' in the existing run, 'validation' now" in capsys.readouterr().err


@pytest.mark.skipif(not (SHARED / "redial").is_dir(), reason="shared ReDial data not available")
def test_several_splits_without_train_ask_for_split(tmp_path, scripted, capsys):
    from fixtures.simulate_records import redial_records

    records = redial_records(6)
    folder = export_folder(
        BuildResult(source="redial", splits={"validation": records[:3], "test": records[3:]}), tmp_path / "redial"
    )
    assert simulate("interplay", *CATALOG, "--source", str(folder), "--n", "2", "--out", str(tmp_path / "o")) == 1
    err = capsys.readouterr().err
    assert "several splits and none named train: validation (3 usable records), test (3 usable records)" in err
    assert "choose one with --split" in err
    assert not (tmp_path / "o").exists()
    only = export_folder(BuildResult(source="redial", splits={"validation": records}), tmp_path / "only")
    assert simulate("interplay", *CATALOG, "--source", str(only), "--n", "2", "--out", str(tmp_path / "o")) == 0
    assert len(_source_ids(tmp_path / "o", "validation")) >= 1


# ---------------------------------------------------------------------------------------------------------
# Every option that changes a dialogue is checked on resume; the others may change


@pytest.mark.skipif(not (SHARED / "redial").is_dir(), reason="shared ReDial data not available")
def test_every_option_that_changes_a_dialogue_refuses_a_resume(tmp_path, redial_splits, scripted, capsys):
    base = ["interplay", *CATALOG, "--source", str(redial_splits), "--n", "3", "--out", str(tmp_path / "o")]
    assert simulate(*base) == 0
    capsys.readouterr()
    changes = {
        "infer_actions": ["--infer-actions"],
        "prompt_style": ["--prompt-style", "instruct"],  # the default is the shipped simulators' finetuned
        "catalog": ["--catalog", str(SHARED / "movielens-sample" / "movies_w_keywords.csv")],
        "seed": ["--seed", "1"],
        "max_turns": ["--max-turns", "4"],
        "max_new_tokens": ["--max-new-tokens", "64"],
        "temperature": ["--temperature", "0.5"],
        "top_p": ["--top-p", "0.5"],
        "max_retries": ["--max-retries", "1"],
        "max_resamples": ["--max-resamples", "0"],
        # The default pair is catalog-grounded; a model that says nothing is taken as ungrounded unless told.
        "user_model": ["--user-model", "other", "--grounding", "catalog"],
        "recommender_model": ["--recommender-model", "other", "--grounding", "catalog"],
        "dtype": ["--dtype", "bfloat16"],
        "backend": ["--backend", "http://127.0.0.1:9"],
        "split": ["--split", "test"],
    }
    for name, extra in changes.items():
        assert simulate(*base, *extra) == 1, name
        err = capsys.readouterr().err
        assert "different configuration" in err, (name, err)
        assert name.split("_model")[0] in err.replace("models", "user recommender"), (name, err)
    # Scheduling, memory, threads, progress and the version stamp change no dialogue: a resume may change them.
    same = ["--batch-size", "2", "--shard-size", "1", "--kv-cache-mb", "0", "--threads", "1", "--version", "0.2.0"]
    assert simulate(*base, *same) == 0


def test_drop_flagged_may_change_on_resume_it_only_changes_the_export(tmp_path, fake):
    out = tmp_path / "sim"
    assert simulate("recllmsim", "--source", "scenarios", "--n", "12", "--out", str(out)) == 0
    kept = datasets.load_dataset(str(out), "dialogues", split="train").num_rows
    assert simulate("recllmsim", "--source", "scenarios", "--n", "12", "--out", str(out), "--drop-flagged") == 0
    dropped = json.loads((out / "crsdata.json").read_text())["accounting"]["dropped"]
    assert dropped > 0 and datasets.load_dataset(str(out), "dialogues", split="train").num_rows == kept - dropped


def test_the_command_grows_a_run_and_keeps_the_first_dialogues(tmp_path, fake):
    out = tmp_path / "sim"
    assert simulate("recllmsim", "--source", "scenarios", "--n", "6", "--out", str(out)) == 0
    first = datasets.load_dataset(str(out), "dialogues", split="train").to_list()
    assert simulate("recllmsim", "--source", "scenarios", "--n", "10", "--out", str(out)) == 0
    grown = datasets.load_dataset(str(out), "dialogues", split="train").to_list()
    assert len(grown) == 10 and grown[:6] == first
    summary = json.loads((out / "simulation.json").read_text())
    assert summary["config"]["n"] == 10 and [s["resumed_from"] for s in summary["sessions"]] == [0, 6]


# ---------------------------------------------------------------------------------------------------------
# A dialogue that ended before any turn is not a dialogue


@pytest.mark.skipif(not (SHARED / "redial").is_dir(), reason="shared ReDial data not available")
def test_dialogues_without_turns_are_dropped_counted_and_named_in_the_card(tmp_path, redial_splits, monkeypatch):
    from fixtures.fake_backends import ScriptedBackend, recommender, user

    class ShyRecommender(ScriptedBackend):
        """Writes no parseable opening for two seeds in three: a dialogue whose three attempts all fail ends with
        parse_error before its first turn."""

        def generate(self, requests, params):
            out = super().generate(requests, params)
            for i, request in enumerate(requests):
                if len(request.messages) == 2 and request.seed % 3:  # the opening: system prompt and kick-off
                    out[i] = Generation("I am not following the format at all", "stop", 8)
            return out

    backends = {"user": ScriptedBackend("u-model", user()), "recommender": ShyRecommender("r-model", recommender())}
    monkeypatch.setattr("crsdata.simulate.job.make_backends", lambda config: backends)
    out = tmp_path / "sim"
    # Instruct-style models that the recommender opens for (the shipped default pair reads another layout).
    models = ["--user-model", "u-model", "--recommender-model", "r-model"]
    assert simulate("interplay", *CATALOG, *models, "--source", str(redial_splits), "--n", "12", "--out", str(out)) == 0
    summary = json.loads((out / "simulation.json").read_text())
    meta = json.loads((out / "crsdata.json").read_text())
    parse_errors = summary["counters"].get("end_reason.parse_error", 0)
    assert 0 < parse_errors < 12
    assert meta["dropped"] == {"filter-no_turns": parse_errors} and meta["accounting"]["balanced"]
    rows = datasets.load_dataset(str(out), "dialogues", split="train").to_list()
    assert len(rows) == 12 - parse_errors and all(r["turns"] for r in rows)
    card = (out / "README.md").read_text()
    assert f"ended before any turn, left out of the folder (`no_turns`) | {parse_errors} |" in card
    assert f"Dropped, by reason: `filter-no_turns` {parse_errors}." in card


@pytest.mark.skipif(not (SHARED / "redial").is_dir(), reason="shared ReDial data not available")
def test_options_come_from_a_config_file_and_a_flag_overrides_it(tmp_path, redial_splits, scripted, capsys):
    """`crsdata simulate interplay --config run.yaml`: the same dialogues as the same options given as flags, keys
    written either way (max_turns, max-turns); a flag on the command line wins over the file."""
    run = tmp_path / "run.yaml"
    run.write_text(
        f"source: {redial_splits}\nn: 2\nout: {tmp_path / 'from-file'}\nseed: 4\nmax-turns: 6\n"
        f"catalog: [{CATALOG[1]}]\nsplit: validation\n"
    )
    assert simulate("interplay", "--config", str(run), "--n", "3") == 0
    flags = ["--source", str(redial_splits), "--n", "3", "--seed", "4", "--max-turns", "6", *CATALOG]
    assert simulate("interplay", *flags, "--split", "validation", "--out", str(tmp_path / "from-flags")) == 0
    from_file = datasets.load_dataset(str(tmp_path / "from-file"), "dialogues", split="validation").to_list()
    from_flags = datasets.load_dataset(str(tmp_path / "from-flags"), "dialogues", split="validation").to_list()
    assert len(from_file) == 3  # --n 3 on the command line over n: 2 in the file
    assert [(r["dialogue_id"], r["turns"]) for r in from_file] == [(r["dialogue_id"], r["turns"]) for r in from_flags]
    capsys.readouterr()
    run.write_text(f"source: {redial_splits}\nn: 2\nout: {tmp_path / 'x'}\nmax_turnz: 6\n")
    assert simulate("interplay", "--config", str(run)) == 1
    err = capsys.readouterr().err
    assert str(run) in err and "max_turnz" in err and "not an option of this command" in err


@pytest.mark.parametrize(("flag", "value"), [("--max-resamples", "-1"), ("--candidates", "0")])
def test_interplay_options_out_of_range_are_refused_before_loading(tmp_path, built, capsys, flag, value):
    """A kind's own options are checked with the command's: one line naming the flag, no model loaded."""
    out = tmp_path / "o"
    assert simulate("interplay", "--source", str(built), "--n", "1", flag, value, "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert flag in err and "must be at least" in err and "Loading weights" not in err
    assert not out.exists()
