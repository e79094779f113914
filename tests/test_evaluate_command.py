"""``crsdata evaluate`` on a small exported folder whose numbers are worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crsdata.build import BuildResult
from crsdata.cli import main
from crsdata.evaluation import SECTION_TITLE, EvaluateConfig, evaluate, update_card
from crsdata.export import export_folder
from crsdata.schema import item_ref, new_dialogue, new_turn

TITLES = {"m1": "Heat", "m2": "Ronin", "m3": "Up", "m4": "Coco"}


def _dialogue(dialogue_id: str, split: str, target: str, turns: list[tuple[str, str, str, list[str]]]) -> dict:
    built = [
        new_turn(i, role, text, action=action, items=[item_ref(x, TITLES[x]) for x in items])
        for i, (role, action, text, items) in enumerate(turns)
    ]
    # Self-play: models played both sides, as `crsdata simulate` records in the provenance.
    return new_dialogue(
        dialogue_id,
        "interplay-sim",
        split,
        built,
        target_items=[item_ref(target, TITLES[target])],
        provenance={"user_model": "tiny-user", "recommender_model": "tiny-recommender"},
    )


def _records() -> dict[str, list[dict]]:
    test = [
        # success: m1 turned down, the target m2 accepted
        _dialogue(
            "d1",
            "test",
            "m2",
            [
                ("user", "greeting", "Hi, I want a tense crime film tonight", []),
                ("recommender", "recommend", "You could watch Heat", ["m1"]),
                ("user", "feedback", "Seen it already, something else please", []),
                ("recommender", "recommend", "Then try Ronin", ["m2"]),
                ("user", "accept", "Ronin sounds great, thanks", []),
            ],
        ),
        # early termination: m1 accepted before the target m3 came up
        _dialogue(
            "d2",
            "test",
            "m3",
            [
                ("recommender", "recommend", "How about Heat", ["m1"]),
                ("user", "accept", "Heat it is", ["m1"]),
            ],
        ),
        # failure: the target m2 rejected, then m4 not accepted either
        _dialogue(
            "d3",
            "test",
            "m2",
            [
                ("recommender", "recommend", "Maybe Ronin", ["m2"]),
                ("user", "reject", "No, I do not like car chases", []),
                ("recommender", "recommend", "Coco then", ["m4"]),
                ("user", "feedback", "Hmm, not really my thing", []),
            ],
        ),
    ]
    train = [
        _dialogue("t1", "train", "m1", [("recommender", "recommend", "Heat", ["m1"]), ("user", "accept", "ok", [])]),
        _dialogue(
            "t2",
            "train",
            "m2",
            [
                ("recommender", "recommend", "Heat or Coco", ["m1", "m4"]),
                ("user", "reject", "no", []),
                ("recommender", "recommend", "Ronin", ["m2"]),
                ("user", "accept", "yes", []),
            ],
        ),
    ]
    return {"train": train, "test": test}


def _items() -> list[dict]:
    plots = {"m1": "Bank robbers and a detective.", "m2": "Mercenaries chase a case.", "m3": "A flying house."}
    plots["m4"] = "A boy in the land of the dead."
    return [
        {
            "item_id": k,
            "title": t,
            "year": None,
            "genres": [],
            "plot": plots[k],
            "people": [],
            "imdb_id": "",
            "keywords": [],
            "sources": ["test"],
        }
        for k, t in TITLES.items()
    ]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "dataset"
    export_folder(BuildResult(source="interplay-sim", splits=_records(), items=_items()), out)
    return out


@pytest.fixture(scope="module")
def bare_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No items config, no dialogue acts and no models in the provenance, like a corpus built without a catalog."""
    records = _records()
    for split in records.values():
        for record in split:
            record["provenance"].update(user_model="", recommender_model="")
            for turn in record["turns"]:
                turn["action"] = "none"
    out = tmp_path_factory.mktemp("bare") / "dataset"
    export_folder(BuildResult(source="redial", splits=records), out)
    return out


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["evaluate", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_hand_computed_metrics_and_json(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scores.json"
    code, stdout, _ = _run(
        capsys,
        folder,
        "--metrics",
        "self_play_outcomes,recall_at_1,ranking,dist",
        "--baseline",
        "popularity",
        "--k",
        "1,2",
        "--json",
        out,
    )
    assert code == 0
    assert "split test, 3 dialogues" in stdout and "ndcg@2" in stdout
    payload = json.loads(out.read_text())
    values = {(r["metric"], r["scope"].split(" (")[0]): r["value"] for r in payload["results"]}
    # d1 accepts the target, d2 another film before the target came up, d3 nothing: named as self-play outcomes.
    assert values[("self_play_accept_rate", "self-play dialogues")] == pytest.approx(2 / 3)
    assert values[("self_play_target_accept_rate", "self-play dialogues")] == pytest.approx(1 / 3)
    assert values[("self_play_early_accept_rate", "self-play dialogues")] == pytest.approx(1 / 3)
    assert values[("self_play_failure_rate", "self-play dialogues")] == pytest.approx(1 / 3)
    assert not {"sr", "et", "fr"} & {metric for metric, _ in values}
    assert "not Interplay's SR/ET/FR" in stdout and "crsdata replay" in stdout
    # Recommend turns: [m1]|m2, [m2]|m2, [m1]|m3, [m2]|m2, [m4]|m2 -> 2 of 5 first items are the target.
    assert values[("recall@1", "recommendation turns")] == pytest.approx(0.4)
    # Popularity from train: m1 (2 turns), then m2 and m4 (1 each, ties by id). Ground truth per test turn is the
    # turn's items minus earlier mentions: hits at rank 1, 1, 1, 2, 2.
    baseline = "popularity baseline"
    assert values[("recall@1", baseline)] == pytest.approx(3 / 5)
    assert values[("recall@2", baseline)] == pytest.approx(1.0)
    assert values[("mrr@2", baseline)] == pytest.approx((3 + 0.5 + 0.5) / 5)
    assert values[("ndcg@2", baseline)] == pytest.approx((3 + 2 / 1.584962500721156) / 5)
    assert payload["details"]["ranking"]["popularity"] == {"split": "train", "turns": 3, "items": 3}

    from crsdata.metrics import distinct_n

    user = [t["text"] for r in _records()["test"] for t in r["turns"] if t["role"] == "user"]
    assert values[("dist_4", "user turns")] == pytest.approx(distinct_n(user, 4))
    assert values[("dist_4_per_utterance", "user turns")] == pytest.approx(
        distinct_n(user, 4, normalize_by="utterances")
    )
    assert payload["command"].startswith(
        f"crsdata evaluate {folder} --metrics self_play_outcomes,recall_at_1,ranking,dist"
    )


def test_predictions_file_for_ranking(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predictions = tmp_path / "preds.jsonl"
    lines = [
        {"dialogue_id": "d1", "index": 3, "items": ["m4", "m2"]},  # ground truth m2 (m1 mentioned before)
        {"dialogue_id": "d2", "index": 0, "items": ["m1"]},
    ]
    predictions.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "p.json"
    code, _, _ = _run(capsys, folder, "--metrics", "ranking", "--predictions", predictions, "--k", "1,2", "--json", out)
    assert code == 0
    values = {r["metric"]: r["value"] for r in json.loads(out.read_text())["results"] if r["scope"] == "predictions"}
    assert values["recall@1"] == 0.5 and values["mrr@2"] == pytest.approx(0.75)

    predictions.write_text(json.dumps({"dialogue_id": "d1", "index": 4, "items": ["m1"]}) + "\n")
    code, _, err = _run(capsys, folder, "--metrics", "ranking", "--predictions", predictions)
    assert code == 1 and "turn 4 is not a recommendation turn" in err


def test_match_score_uses_the_items_config(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crsdata.metrics import ItemEmbeddings, match_score

    out = tmp_path / "m.json"
    code, _, _ = _run(capsys, folder, "--metrics", "match_score", "--embedding-cache", tmp_path, "--json", out)
    assert code == 0
    row = json.loads(out.read_text())["results"][0]
    embeddings = ItemEmbeddings(_items(), cache_dir=tmp_path)
    recommended = [["m1"], ["m2"], ["m1"], ["m2"], ["m4"]]
    expected = match_score(recommended, ["m2", "m2", "m3", "m2", "m2"], embeddings)
    assert row["value"] == pytest.approx(expected["match_score"], abs=1e-6) and row["n"] == 5


def test_missing_inputs_give_clear_errors(bare_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        ("match_score", "no `items` config"),
        ("self_play_outcomes", "no self-play dialogue"),
        ("sr_et_fr", "SR/ET/FR are defined by replay"),
        ("ranking", "--predictions FILE (with items) or --baseline popularity"),
        ("bertscore", "--predictions FILE with `text`"),
        ("nonsense", "unknown metric"),
    ]
    for metric, message in cases:
        code, _, err = _run(capsys, bare_folder, "--metrics", metric)
        assert code == 1, metric
        assert message in err and err.count("\n") == 1, err  # one line, no traceback
    code, _, err = _run(capsys, bare_folder, "--metrics", "dist", "--split", "validation")
    assert code == 1 and "no split 'validation'" in err
    code, _, err = _run(
        capsys, bare_folder, "--metrics", "ranking", "--baseline", "popularity", "--popularity-split", "test"
    )
    assert code == 1 and "popularity must come from another" in err


def test_auto_skips_what_the_folder_lacks(bare_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(capsys, bare_folder)
    assert code == 0
    assert "dist_4" in stdout and "recall@1" in stdout  # unlabelled turns fall back to turns that name items
    assert "skipped self_play_outcomes: no self-play dialogue" in stdout
    assert "skipped match_score: the folder has no `items` config" in stdout


def test_update_card_keeps_front_matter_and_replaces_the_section(
    bare_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = bare_folder / "README.md"
    before = readme.read_text(encoding="utf-8")
    front = before[: before.index("\n---\n", 4) + 5]
    for _ in range(2):
        code, _, _ = _run(capsys, bare_folder, "--metrics", "dist", "--update-card")
        assert code == 0
    after = readme.read_text(encoding="utf-8")
    assert after.startswith(front)
    assert after.count(SECTION_TITLE + "\n") == 1
    assert after.startswith(before.rstrip("\n"))  # the rest of the card is untouched, the section appended
    assert "| dist_4 | user turns |" in after and "crsdata evaluate" in after

    from datasets import load_dataset

    assert load_dataset(str(bare_folder), "dialogues")["test"].num_rows == 3  # the YAML still loads


def test_update_card_replaces_a_middle_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("---\ntitle: x\n---\n# T\n\n## Evaluation\n\nold\n\n## Citation\n\ncite\n", encoding="utf-8")
    update_card(readme, "## Evaluation\n\nnew\n")
    assert readme.read_text() == "---\ntitle: x\n---\n# T\n\n## Evaluation\n\nnew\n\n## Citation\n\ncite\n"
    plain = tmp_path / "plain.md"
    update_card(plain, "## Evaluation\n\nfirst\n")
    assert plain.read_text() == "## Evaluation\n\nfirst\n"


def test_a_registry_entry_is_all_a_new_metric_needs(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The evaluator runs any entry of the registry: it checks the needs, computes, makes rows, keeps details."""
    from crsdata.errors import BadInputError
    from crsdata.metrics import registry

    def mean_turns(ctx: registry.Context) -> dict:
        return {"mean": sum(len(r["turns"]) for r in ctx.records) / len(ctx.records), "n": len(ctx.records)}

    def rows(result: dict, ctx: registry.Context) -> list[registry.Row]:
        return [registry.Row("turns_per_dialogue", "dialogues", result["mean"], result["n"])]

    unicorn = registry.Need("a unicorn", "the folder has no unicorn", lambda ctx: False)
    entries = [
        registry.Metric("turns_per_dialogue", "mean turns", (registry.TURN_TEXT,), mean_turns, rows, note="a note"),
        registry.Metric("unicorns", "never runs", (registry.TURN_TEXT, unicorn), mean_turns, rows),
    ]
    for entry in entries:
        monkeypatch.setitem(registry.METRICS_BY_NAME, entry.name, entry)
    result = evaluate(EvaluateConfig(folder=folder, metrics="turns_per_dialogue"))
    assert [(r.metric, r.value, r.n) for r in result.rows] == [("turns_per_dialogue", pytest.approx(11 / 3), 3)]
    assert result.details == {"turns_per_dialogue": {"mean": pytest.approx(11 / 3), "n": 3}}
    assert result.notes == ["a note"]
    with pytest.raises(BadInputError, match="cannot compute unicorns: the folder has no unicorn"):
        evaluate(EvaluateConfig(folder=folder, metrics="turns_per_dialogue,unicorns"))


def test_help_lists_every_registered_metric(capsys: pytest.CaptureFixture[str]) -> None:
    from crsdata.metrics.registry import METRICS

    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert all(f"  {metric.name} " in out for metric in METRICS)
    assert "  sr_et_fr            not computed here. SR/ET/FR are defined by replay" in out
