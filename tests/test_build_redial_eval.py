"""The redial-eval builder (iEvaLM's processed ReDial recommendation turns) on the real files, and on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crsdata.build import BuildResult
from crsdata.builders import BUILDERS
from crsdata.builders.redial_eval import TURN_SAMPLE, RedialEvalBuilder
from crsdata.cli import main
from crsdata.errors import BadInputError, SkipLog
from crsdata.schema import load_extra, validate_dialogue

REDIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "redial"
TEST = REDIAL / "redial_eval__test_data_processed.jsonl"
VALID = REDIAL / "redial_eval__valid_data_processed.jsonl"
CATALOG = REDIAL / "redial__id2info.json"
pytestmark = pytest.mark.skipif(not TEST.is_file(), reason=f"iEvaLM's redial_eval files not found under {REDIAL}")


@pytest.fixture(scope="module")
def built() -> BuildResult:
    return RedialEvalBuilder().build([TEST, VALID], catalogs=[CATALOG], skip=SkipLog())


def test_registered() -> None:
    assert BUILDERS["redial-eval"] is RedialEvalBuilder


def test_every_turn_is_kept_and_accounted_for(built: BuildResult) -> None:
    assert {split: len(rows) for split, rows in built.splits.items()} == {"test": 3341, "validation": 2716}
    assert built.accounting() == {"read": 6057, "kept": 6057, "skipped": 0, "dropped": 0, "balanced": True}
    for record in built.splits["test"][:200]:
        validate_dialogue(record)
        assert load_extra(record["extra"])["sample"] == TURN_SAMPLE
    # The catalog is the candidate set: every item of id2info, not only those the turns mention.
    assert len(built.items) == len(json.loads(CATALOG.read_text(encoding="utf-8"))) == 6583
    # The only recommended title that fails to link is the catalog's film named just "(2007)" (3 turns).
    unlinked = [
        t["title"] for rows in built.splits.values() for r in rows for t in r["target_items"] if not t["item_id"]
    ]
    assert unlinked == ["(2007)"] * 3
    assert built.link_stats.mentions - built.link_stats.linked == 3


def test_a_turn_maps_to_context_targets_and_roles(built: BuildResult) -> None:
    """dialog 20001, turn 3: the seeker opened; Police Academy is named again with its sequel."""
    record = next(r for r in built.splits["test"] if r["dialogue_id"] == "20001-3")
    assert [(t["role"], t["text"][:22]) for t in record["turns"]] == [
        ("user", "Hi I am looking for a "),
        ("recommender", "You should watch Polic"),
        ("user", "Is that a great one? I"),
    ]
    assert [[i["item_id"] for i in t["items"]] for t in record["turns"]] == [["111776"], ["151656"], ["134643"]]
    assert record["target_items"] == [
        {"item_id": "151656", "title": "Police Academy (1984)"},
        {"item_id": "94688", "title": "Police Academy 2: Their First Assignment (1985)"},
    ]
    extra = load_extra(record["extra"])
    assert (extra["conversation_id"], extra["turn_id"]) == ("20001", 3)
    assert extra["response"].startswith("Yes Police Academy (1984) is very funny")
    assert load_extra(record["turns"][2]["extra"]) == {"entities": ["American Pie"]}


def test_padding_utterance_is_dropped_but_roles_kept(built: BuildResult) -> None:
    """iEvaLM pads a dialogue the recommender opened with an empty first utterance (dialog 20041, turn 4)."""
    record = next(r for r in built.splits["test"] if r["dialogue_id"] == "20041-4")
    assert [t["role"] for t in record["turns"]] == ["recommender", "user", "recommender", "user"]
    assert record["turns"][0]["text"] == "Hello!"


def write_lines(path: Path, objects: list[dict]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    return path


GOOD = {"dialog_id": "1", "turn_id": 1, "context": ["I like horror"], "entity": [], "rec": ["Alien (1979)"]}


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"rec": []}, "rec", "no-target"),
        ({"rec": None}, "rec", "missing-field"),
        ({"context": ["", " "]}, "context", "empty-context"),
        ({"context": ["hi", 3]}, "context[1]", "wrong-type"),
        ({"turn_id": "one"}, "turn_id", "wrong-type"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path: Path, change: dict, field: str, reason: str) -> None:
    path = write_lines(tmp_path / "bad_test_data.jsonl", [GOOD, {**GOOD, "turn_id": 2, **change}])
    with pytest.raises(BadInputError) as caught:
        RedialEvalBuilder().build([path], catalogs=[CATALOG], skip=SkipLog())
    assert caught.value.field == field and caught.value.reason == reason
    assert "line 2" in str(caught.value) and str(path) in str(caught.value)
    skip = SkipLog(skip_bad=True)
    result = RedialEvalBuilder().build([path], catalogs=[CATALOG], skip=skip)
    assert result.accounting()["read"] == 2 and result.records_kept == 1 and skip.counts[reason] == 1


def test_duplicates_are_dropped_and_counted(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "dup_test_data.jsonl", [GOOD, GOOD])
    result = RedialEvalBuilder().build([path], catalogs=[CATALOG], skip=SkipLog())
    assert result.dropped == {"duplicate-turn": 1} and result.accounting()["balanced"]
    assert result.splits["test"][0]["target_items"][0]["item_id"]  # Alien (1979) is in the catalog


def test_cli_without_catalog_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_lines(tmp_path / "x_test_data.jsonl", [GOOD])
    assert main(["build", "redial-eval", "--input", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crsdata build: error: --catalog") and "candidate set" in err[0]
