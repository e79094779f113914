"""PEARL builder on hand-written records in the public release layout (tests/data/pearl/, see its README).

No PEARL file exists on these machines; these tests check the builder against the format as published, not
against the real data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crsdata.build import BuildResult
from crsdata.builders.pearl import PearlBuilder, mask_title, mentions
from crsdata.errors import BadInputError, SkipLog
from crsdata.schema import load_extra, validate_dialogue

FIXTURES = Path(__file__).parent / "data" / "pearl"
CATALOG = FIXTURES / "catalog" / "movies.csv"


def build(*inputs: Path, catalogs: tuple[Path, ...] = (), skip_bad: bool = False) -> BuildResult:
    return PearlBuilder().build(list(inputs), catalogs=list(catalogs), skip=SkipLog(skip_bad=skip_bad))


def by_id(result: BuildResult) -> dict[str, dict[str, Any]]:
    return {d["dialogue_id"]: d for rows in result.splits.values() for d in rows}


@pytest.fixture(scope="module")
def fixtures() -> BuildResult:
    return build(FIXTURES)


def test_splits_counts_and_schema(fixtures: BuildResult) -> None:
    assert {s: [d["dialogue_id"] for d in rows] for s, rows in fixtures.splits.items()} == {
        "train": ["101", "102"],
        "validation": ["v-7"],
        "test": ["test-0"],
    }
    assert fixtures.accounting() == {"read": 4, "kept": 4, "skipped": 0, "dropped": 0, "balanced": True}
    assert sorted((f.path, f.records) for f in fixtures.inputs) == [
        ("test.json", 1),
        ("train.json", 2),
        ("valid.jsonl", 1),
    ]
    for rows in fixtures.splits.values():
        for d in rows:
            validate_dialogue(d)
            assert d["source"] == "pearl" and d["language"] == "en" and d["task"] == "movie recommendation"


def test_accepted_target_with_persona_reviews(fixtures: BuildResult) -> None:
    d = by_id(fixtures)["101"]
    raw = json.loads((FIXTURES / "train.json").read_text(encoding="utf-8"))[0]
    assert [t["role"] for t in d["turns"]] == ["user", "recommender"] * 3 + ["user"]
    assert d["turns"][0]["text"] == raw["dialogue"][0].removeprefix("Seeker: ")
    last = d["turns"][-1]
    assert (
        "[EOD]" not in last["text"]
        and last["text"].endswith("Thank you!")
        and load_extra(last["extra"]) == {"eod": True}
    )
    assert d["outcome"]["end_reason"] == "accept"
    assert d["outcome"]["accepted_item"] == {"item_id": "", "title": "Arrival (2016)"}
    assert d["target_items"] == [{"item_id": "", "title": "Arrival (2016)"}]
    # The target is named only in the recommender's fifth line (index 5); "Gravity" is another film.
    assert [i for i, t in enumerate(d["turns"]) if t["items"]] == [5]
    profile = d["user_profile"]
    assert profile["general_preferences"] == raw["user_persona"].strip()
    watched = profile["watched_items"]
    assert [w["title"] for w in watched] == raw["seen_movie_titles"]
    assert watched[2]["review"].startswith("A smart, patient story") and watched[0]["review"].endswith(
        "drags a little."
    )
    attributes = profile["target_attributes"]
    assert attributes.startswith("Genre: Drama, Mystery, Sci-Fi\nDirector: Denis Villeneuve\n")
    assert "Arrival" not in attributes and "Title:" not in attributes
    assert "Review: this movie is quiet science fiction" in attributes
    assert load_extra(d["extra"]) == {"data_id": 101, "user_id": "fixture-user-1"}
    assert d["provenance"]["source_file"] == "train.json" and len(d["provenance"]["source_sha256"]) == 64


def test_empty_line_unpaired_reviews_and_no_accept(fixtures: BuildResult) -> None:
    d = by_id(fixtures)["102"]
    assert len(d["turns"]) == 4 and [t["index"] for t in d["turns"]] == [0, 1, 2, 3]
    assert load_extra(d["extra"])["empty_lines"] == 1
    # Two persona paragraphs for three watched titles: the pairing is unclear, so no review is guessed.
    assert [w["review"] for w in d["user_profile"]["watched_items"]] == ["", "", ""]
    assert d["outcome"]["end_reason"] == "source" and d["outcome"]["accepted_item"]["title"] == ""
    # A review spanning two lines stays one attribute.
    assert d["user_profile"]["target_attributes"].endswith(
        "Review: this movie is a brisk caper told in pastel colours,\nfunny and unexpectedly melancholy by the end."
    )


def test_jsonl_validation_record_with_separate_attribute_fields(fixtures: BuildResult) -> None:
    d = by_id(fixtures)["v-7"]
    assert d["split"] == "validation"
    assert d["user_profile"]["target_attributes"] == (
        "Genre: Action, Crime, Drama\nDirector: Michael Mann\nCast: Al Pacino, Robert De Niro, Val Kilmer"
    )
    # "the heat of summer blockbusters" is not the film; "Heat (1995)" is.
    assert [bool(t["items"]) for t in d["turns"]] == [False, False, False, True, False]
    assert d["outcome"]["accepted_item"]["title"] == "Heat"


def test_fallback_id_short_title_and_accept_without_target(fixtures: BuildResult) -> None:
    d = by_id(fixtures)["test-0"]
    # The seeker accepts Coco, not the target: accepted, but no accepted item.
    assert d["outcome"]["end_reason"] == "accept" and d["outcome"]["accepted_item"] == {"item_id": "", "title": ""}
    assert all(not t["items"] for t in d["turns"])  # "I'm up for ..." is not the film "Up"
    attributes = d["user_profile"]["target_attributes"]
    assert "Review: this movie mixes a balloon adventure" in attributes and "pick it up again" in attributes
    assert d["user_profile"]["watched_items"] == [
        {
            "item_id": "",
            "title": "WALL-E (2008)",
            "review": "Pixar at its most tender; the opening ten minutes alone are worth it.",
        }
    ]


def test_catalog_linking(tmp_path: Path) -> None:
    result = build(FIXTURES, catalogs=(CATALOG,))
    ids = by_id(result)
    assert ids["101"]["target_items"] == [{"item_id": "ml:1", "title": "Arrival (2016)"}]
    assert ids["101"]["outcome"]["accepted_item"]["item_id"] == "ml:1"
    assert [w["item_id"] for w in ids["101"]["user_profile"]["watched_items"]] == ["", "ml:5", "ml:3"]
    assert ids["101"]["turns"][5]["items"] == [{"item_id": "ml:1", "title": "Arrival (2016)"}]
    assert ids["v-7"]["target_items"][0]["item_id"] == "ml:2"
    assert ids["102"]["target_items"][0]["item_id"] == ""  # not in the five-film catalog
    assert sorted(row["item_id"] for row in result.items) == ["ml:1", "ml:2", "ml:3", "ml:4", "ml:5"]
    # References: 4 targets + 10 watched titles + 2 turn mentions; linked: 3 targets, 2 watched, 2 mentions.
    assert result.link_stats.as_dict() == {"mentions": 16, "linked": 7, "rate": 7 / 16}


def test_loads_with_load_dataset(fixtures: BuildResult, tmp_path: Path) -> None:
    export = pytest.importorskip("crsdata.export")
    from datasets import load_dataset

    folder = export.export_folder(fixtures, tmp_path / "pearl")
    loaded = load_dataset(str(folder), "dialogues")
    assert {split: ds.num_rows for split, ds in loaded.items()} == {"train": 2, "validation": 1, "test": 1}
    assert loaded["validation"][0]["target_items"] == [{"item_id": "", "title": "Heat"}]


# ------------------------------------------------------------------------------------------------- bad input

RECORD: dict[str, Any] = {
    "user_persona": "Great twists.",
    "gt_movie_title": "Memento (2000)",
    "dialogue": ["Seeker: Any thriller ideas?", "Recommender: Try Memento (2000).", "Seeker: Perfect, thanks! [EOD]"],
}


def write(path: Path, records: list[Any] | bytes, jsonl: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(records, bytes):
        path.write_bytes(records)
    elif jsonl:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records), encoding="utf-8")
    return path


def with_(**changes: Any) -> dict[str, Any]:
    record = {**RECORD, **changes}
    return {k: v for k, v in record.items() if v is not None}


def bad_cases() -> dict[str, tuple[list[Any] | bytes, str, str, str]]:
    """name -> (file content, record named, field named, reason)."""
    no_prefix = with_(dialogue=["Seeker: hi", "Recommender: hello", "User: I want a thriller"])
    return {
        "no-prefix": ([RECORD, no_prefix], "record 1", "dialogue[2]", "bad-line"),
        "no-dialogue": ([with_(dialogue=None)], "record 0", "dialogue", "missing-field"),
        "dialogue-not-a-list": ([with_(dialogue="Seeker: hi")], "record 0", "dialogue", "wrong-type"),
        "line-not-a-string": ([with_(dialogue=["Seeker: hi", 7])], "record 0", "dialogue[1]", "wrong-type"),
        "persona-not-text": ([with_(user_persona=["a", "b"])], "record 0", "user_persona", "wrong-type"),
        "only-empty-lines": ([with_(dialogue=["", " ", "Recommender: "])], "record 0", "dialogue", "empty-dialogue"),
        "not-an-object": ([RECORD, "Seeker: hi"], "record 1", "", "wrong-type"),
        "truncated": (json.dumps([RECORD, RECORD]).encode()[:-30], "line 1", "", "invalid-json"),
        "not-utf8": (json.dumps([RECORD]).encode().replace(b"Great", b"Gr\xe9at"), "line 1", "", "not-utf8"),
    }


@pytest.mark.parametrize("name", sorted(bad_cases()))
def test_bad_input_names_file_record_and_field(tmp_path: Path, name: str) -> None:
    content, record, field, reason = bad_cases()[name]
    path = write(tmp_path / "train.json", content)
    with pytest.raises(BadInputError) as caught:
        build(path)
    err = caught.value
    assert (err.path, err.record, err.field, err.reason) == (str(path), record, field, reason)
    assert str(path) in str(err) and record in str(err)


def test_bad_line_in_jsonl_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "pearl_test.jsonl", [RECORD, with_(dialogue=["Seeker: hi", "hello there"])], jsonl=True)
    with pytest.raises(BadInputError, match=r"line 2, field 'dialogue\[1\]': neither 'Seeker:' nor 'Recommender:'"):
        build(path)


def test_skip_bad_counts_add_up(tmp_path: Path) -> None:
    folder = tmp_path / "release"
    for name, (content, _, _, _) in bad_cases().items():
        write(folder / name / "train.json", content)
    # JSON lines with one good record, one unparsable line and one bad record.
    (folder / "valid.jsonl").write_text(
        json.dumps(RECORD) + "\n{not json\n" + json.dumps(with_(dialogue=["Narrator: once"])) + "\n", encoding="utf-8"
    )
    result = build(folder, skip_bad=True)
    # Good records: the first of no-prefix and of not-an-object, and the first line of valid.jsonl.
    assert {s: len(rows) for s, rows in result.splits.items()} == {"train": 2, "validation": 1}
    assert result.skipped.as_dict()["by_reason"] == {
        "bad-line": 2,
        "empty-dialogue": 1,
        "invalid-json": 2,
        "missing-field": 1,
        "not-utf8": 1,
        "wrong-type": 4,
    }
    # Read: 2 + 1 + 1 + 1 + 1 + 1 + 2 records, 1 truncated and 1 undecodable file, 3 lines.
    assert result.accounting() == {"read": 14, "kept": 3, "skipped": 11, "dropped": 0, "balanced": True}


def test_prefix_without_words_and_bare_eod(tmp_path: Path) -> None:
    lines = ["Seeker: Any thriller ideas?", "Recommender:", "Recommender: Try Memento (2000).", "Seeker: [EOD]"]
    result = build(write(tmp_path / "test.json", [with_(dialogue=lines)]))
    (d,) = result.splits["test"]
    assert [(t["role"], t["text"]) for t in d["turns"]] == [
        ("user", "Any thriller ideas?"),
        ("recommender", "Try Memento (2000)."),
        ("user", ""),
    ]
    assert load_extra(d["extra"])["empty_lines"] == 1
    assert d["outcome"]["end_reason"] == "accept"
    assert d["outcome"]["accepted_item"] == {"item_id": "", "title": "Memento (2000)"}


def test_repeated_id_is_dropped(tmp_path: Path) -> None:
    write(tmp_path / "train.json", [with_(data_id=5)])
    write(tmp_path / "test.json", [with_(data_id=5), with_(data_id=6)])
    result = build(tmp_path)
    assert result.dropped == {"duplicate-id": 1}
    assert result.accounting() == {"read": 3, "kept": 2, "skipped": 0, "dropped": 1, "balanced": True}


@pytest.mark.parametrize(
    ("name", "split"),
    [("train.json", "train"), ("valid.json", "validation"), ("pearl_dev.jsonl", "validation"), ("test.jsonl", "test")],
)
def test_split_from_file_name(tmp_path: Path, name: str, split: str) -> None:
    result = build(write(tmp_path / name, [RECORD], jsonl=name.endswith(".jsonl")))
    assert list(result.splits) == [split] and result.splits[split][0]["split"] == split


def test_split_unclear_from_file_name_unless_given(tmp_path: Path) -> None:
    path = write(tmp_path / "pearl.json", [RECORD])
    with pytest.raises(BadInputError, match="cannot tell the split"):
        build(path)
    result = PearlBuilder().build([path], catalogs=[], skip=SkipLog(), split="valid")
    assert [d["split"] for d in result.splits["validation"]] == ["validation"]


def test_title_matching_rules() -> None:
    assert mentions("You could watch Heat (1995) tonight.", "Heat")
    assert not mentions("I can't stand the heat.", "Heat (1995)")
    assert not mentions("I'm up for anything.", "Up (2009)") and mentions("Try Up (2009).", "Up (2009)")
    assert mask_title("Memento (2000) plays backwards; Memento rewards a rewatch.", "Memento (2000)") == (
        "this movie plays backwards; this movie rewards a rewatch."
    )
