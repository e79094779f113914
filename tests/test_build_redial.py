"""The ReDial builder on the real release files, and on bad input written to temporary files."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from crsdata.build import BuildResult, split_from_name
from crsdata.builders import BUILDERS
from crsdata.builders.redial import RedialBuilder
from crsdata.errors import BadInputError, SkipLog
from crsdata.fileio import sha256_file
from crsdata.schema import ITEM_FEATURES, load_extra, validate_dialogue

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REDIAL = DATA / "redial"
VALID = REDIAL / "redial__valid_data.jsonl"
CATALOGS = [REDIAL / "redial__id2info.json", REDIAL / "official" / "movies_with_mentions.csv"]
pytestmark = pytest.mark.skipif(not VALID.is_file(), reason=f"ReDial data not found under {REDIAL}")


def raw_lines() -> list[str]:
    return VALID.read_text(encoding="utf-8").splitlines()


def raw_dialogue(conversation_id: str) -> dict:
    return next(d for d in map(json.loads, raw_lines()) if d["conversationId"] == conversation_id)


@pytest.fixture(scope="module")
def valid_build() -> tuple[BuildResult, float]:
    started = time.perf_counter()
    result = RedialBuilder().build([VALID], catalogs=CATALOGS, skip=SkipLog())
    return result, time.perf_counter() - started


def by_id(result: BuildResult) -> dict[str, dict]:
    return {d["dialogue_id"]: d for rows in result.splits.values() for d in rows}


def test_registered() -> None:
    assert BUILDERS["redial"] is RedialBuilder


def test_counts_splits_provenance(valid_build: tuple[BuildResult, float]) -> None:
    result, elapsed = valid_build
    print(f"redial: 1,000 dialogues built in {elapsed:.2f}s; link stats {result.link_stats.as_dict()}")
    assert list(result.splits) == ["validation"]
    assert len(result.splits["validation"]) == len(raw_lines()) == 1000
    assert result.accounting() == {"read": 1000, "kept": 1000, "skipped": 0, "dropped": 0, "balanced": True}
    digest = sha256_file(VALID)
    assert [(f.path, f.sha256, f.records) for f in result.inputs] == [(VALID.name, digest, 1000)]
    for dialogue in result.splits["validation"]:
        validate_dialogue(dialogue)
        assert dialogue["source"] == "redial" and dialogue["split"] == "validation"
        assert dialogue["provenance"]["source_file"] == VALID.name
        assert dialogue["provenance"]["source_sha256"] == digest
        assert "@1" not in " ".join(t["text"] for t in dialogue["turns"])  # no numeric placeholder left
    assert elapsed < 20  # a few seconds when the machine is not shared; a guard against slow regressions


def test_link_rate_and_items(valid_build: tuple[BuildResult, float]) -> None:
    result, _ = valid_build
    assert result.link_stats.mentions > 6000
    assert result.link_stats.rate >= 0.95
    item_ids = {row["item_id"] for row in result.items}
    for row in result.items:
        assert set(row) == set(ITEM_FEATURES)
    referenced = {ref["item_id"] for d in result.splits["validation"] for t in d["turns"] for ref in t["items"]} | {
        row["item_id"] for d in result.splits["validation"] for row in d["item_feedback"]
    }
    assert referenced <= item_ids  # the folder's catalog covers every item the dialogues refer to
    assert len(item_ids) == len(result.items)


def test_placeholders_resolved(valid_build: tuple[BuildResult, float]) -> None:
    dialogues = by_id(valid_build[0])
    raw = raw_dialogue("16162")
    assert raw["movieMentions"]["202190"] == "The Shining  (1980)"  # two spaces in the release
    assert raw["messages"][2]["text"] == "I think one of the creepiest one is @202190 Have you seen @83192 ?"
    turn = dialogues["16162"]["turns"][2]
    resolved = "I think one of the creepiest one is The Shining (1980) Have you seen What Lies Beneath (2000) ?"
    assert turn["text"] == resolved
    assert turn["items"] == [
        {"item_id": "202190", "title": "The Shining (1980)"},
        {"item_id": "83192", "title": "What Lies Beneath (2000)"},
    ]
    assert turn["role"] == "recommender"  # sent by worker 147, the respondent
    assert dialogues["16162"]["turns"][1]["role"] == "user"
    # iEvaLM's annotations are kept, its copies of items and positions are not.
    assert set(load_extra(turn["extra"])) == {"entity", "masked_text", "word"}
    # @115908 is not in this dialogue's movieMentions: the catalog gives the title.
    assert "115908" not in raw_dialogue("1382")["movieMentions"]
    turn = dialogues["1382"]["turns"][3]
    assert turn["text"] == "I really liked 50 First Dates (2004)"
    assert turn["items"] == [{"item_id": "115908", "title": "50 First Dates (2004)"}]
    # "@Seven" (a title typed by hand) is not a placeholder and stays as written.
    assert any("@Seven" in t["text"] for t in dialogues["588"]["turns"])


def test_questionnaires_and_targets(valid_build: tuple[BuildResult, float]) -> None:
    dialogue = by_id(valid_build[0])["16162"]
    feedback = {(r["reporter"], r["item_id"]): r for r in dialogue["item_feedback"]}
    assert feedback[("recommender", "131178")] == {
        "item_id": "131178",
        "title": "The Others (2001)",
        "reporter": "recommender",
        "suggested": True,
        "seen": None,
        "liked": None,  # answers 1, 2, 2
    }
    assert feedback[("user", "135508")]["suggested"] is False
    raw = raw_dialogue("16162")["initiatorQuestions"]
    liked = {i for i, a in raw.items() if a["suggested"] == 1 and a["liked"] == 1}
    assert liked == {"202190", "83192", "76012", "131178"}
    # The seeker had seen all four liked suggestions: none is a film it would go and watch, so no target.
    assert all(raw[i]["seen"] == 1 for i in liked)
    assert dialogue["target_items"] == []
    extra = load_extra(dialogue["extra"])
    assert extra["target_items_from"] == "initiatorQuestions"
    assert extra["target_rule_miss"] == "no-suggested-unseen-liked-film"
    assert {w["item_id"] for w in dialogue["user_profile"]["watched_items"]} == set(raw)  # all six seen


def test_empty_questionnaires(valid_build: tuple[BuildResult, float]) -> None:
    lines = [json.loads(line) for line in raw_lines()]
    empty = [d for d in lines if d["initiatorQuestions"] == [] and d["respondentQuestions"] == []]
    assert empty, "the valid file has dialogues without questionnaires"
    built = by_id(valid_build[0])
    for raw in empty:
        assert built[raw["conversationId"]]["item_feedback"] == []
        assert built[raw["conversationId"]]["target_items"] == []


def test_duplicates_across_files_are_dropped_and_counted() -> None:
    kepler = REDIAL / "train_partial" / "kepler_train_subset_500.jsonl"
    if not kepler.is_file():
        pytest.skip(f"{kepler} not found")
    overlap = {json.loads(line)["conversationId"] for line in raw_lines()} & {
        json.loads(line)["conversationId"] for line in kepler.read_text(encoding="utf-8").splitlines()
    }
    assert len(overlap) == 43
    result = RedialBuilder().build([VALID, kepler], catalogs=[], skip=SkipLog())
    assert result.dropped == {"duplicate-conversation-id": 43}
    assert len(result.splits["validation"]) == 1000 and len(result.splits["train"]) == 500 - 43
    assert result.accounting()["balanced"] and result.accounting()["read"] == 1500
    assert any("43 dialogue(s) dropped" in note for note in result.notes)
    # Without a catalog, placeholders still resolve from movieMentions; the items come from those titles, and no
    # mention counts as linked (not even the second mention of an id whose row the first one created).
    assert {row["sources"][0] for row in result.items} == {"redial_mentions"}
    assert result.link_stats.mentions > 9000 and result.link_stats.linked == 0


def test_split_from_file_name_and_override(tmp_path: Path) -> None:
    assert split_from_name(Path("test_data.jsonl")) == "test"
    assert split_from_name(Path("redial__valid_data.jsonl")) == "validation"
    assert split_from_name(Path("kgsf_train_subset_901.jsonl")) == "train"
    assert split_from_name(Path("dev.jsonl")) == "validation"
    assert split_from_name(Path("sample.jsonl"), "dev") == "validation"
    with pytest.raises(BadInputError) as err:
        split_from_name(tmp_path / "sample.jsonl")
    assert "sample.jsonl" in str(err.value) and "--split" in str(err.value)
    with pytest.raises(BadInputError, match="it names test, train"):
        split_from_name(Path("train_test.jsonl"))
    sample = tmp_path / "sample.jsonl"
    sample.write_text("\n".join(raw_lines()[:3]) + "\n", encoding="utf-8")
    with pytest.raises(BadInputError):
        RedialBuilder().build([sample], catalogs=[], skip=SkipLog())
    result = RedialBuilder().build([tmp_path], catalogs=[], skip=SkipLog(), split="train")
    assert list(result.splits) == ["train"] and len(result.splits["train"]) == 3
    with pytest.raises(ValueError, match="unknown split"):
        RedialBuilder().build([sample], catalogs=[], skip=SkipLog(), split="holdout")


def bad_records() -> dict[str, tuple[str | bytes, str, str]]:
    """reason -> (line content, expected record text, expected field) on real dialogues made bad."""
    first = json.loads(raw_lines()[0])
    missing = {k: v for k, v in first.items() if k != "messages"}
    wrong_type = dict(first, messages="hello")
    bad_answer = json.loads(json.dumps(first))
    bad_answer["initiatorQuestions"]["202190"]["liked"] = "yes"
    unknown = json.loads(json.dumps(first))
    unknown["messages"][3]["text"] = "I thought @999999999 was creepy"
    utf8 = raw_lines()[0].encode("utf-8").replace(b"Hi, what kind", b"Hi\xff, what kind")
    return {
        "invalid-json": (raw_lines()[0][:250], "line 1", ""),
        "missing-field": (json.dumps(missing), "line 1 (conversationId 16162)", "messages"),
        "wrong-type": (json.dumps(wrong_type), "line 1 (conversationId 16162)", "messages"),
        "wrong-value": (json.dumps(bad_answer), "line 1 (conversationId 16162)", "initiatorQuestions.202190.liked"),
        "unknown-placeholder": (json.dumps(unknown), "line 1 (conversationId 16162)", "messages[3].text"),
        "not-utf8": (utf8, "line 1", ""),
    }


@pytest.mark.parametrize("reason", list(bad_records()))
def test_bad_input_names_file_record_field(tmp_path: Path, reason: str) -> None:
    content, record, field = bad_records()[reason]
    path = tmp_path / "test_data.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(BadInputError) as err:
        RedialBuilder().build([path], catalogs=[], skip=SkipLog())
    error = err.value
    assert error.path == str(path) and error.record == record and error.field == field and error.reason == reason
    assert str(path) in str(error) and record in str(error)
    if field:
        assert f"field '{field}'" in str(error)


def test_skip_bad_counts_add_up(tmp_path: Path) -> None:
    good = raw_lines()[1:4]
    bad = [content for content, _, _ in bad_records().values()]
    lines = [g.encode("utf-8") for g in good]
    lines += [b if isinstance(b, bytes) else b.encode("utf-8") for b in bad]
    lines.append(good[0].encode("utf-8"))  # the same conversation again: dropped, not skipped
    path = tmp_path / "valid_data.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    skip = SkipLog(skip_bad=True)
    result = RedialBuilder().build([path], catalogs=[], skip=skip)
    assert result.accounting() == {"read": 10, "kept": 3, "skipped": 6, "dropped": 1, "balanced": True}
    assert dict(skip.counts) == {reason: 1 for reason in bad_records()}
    assert all(str(path) in example for example in skip.examples)
