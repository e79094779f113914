"""GRSU's turn set on hand-written dialogues: a turn whose ground truth was mentioned before is skipped (the
reference code's ``only_new``), the context is whole, and the reference-style Recall/NDCG/MRR@k beside ours."""

from __future__ import annotations

import math

import pytest

from crsdata.grsu.data import EvalTurn, ItemTable, evaluation_turns
from crsdata.grsu.evaluation import reference_scores

ITEMS = ItemTable.from_rows(
    {"item_id": i, "title": t, "year": y}
    for i, t, y in [("1", "Alien", 1979), ("2", "Aliens", 1986), ("3", "Heat", 1995), ("4", "Up", 2009)]
)


def turn(index: int, role: str, text: str, *ids: str) -> dict:
    return {"index": index, "role": role, "text": text, "items": [{"item_id": i, "title": ""} for i in ids]}


def dialogue(dialogue_id: str, *turns: dict) -> dict:
    return {"dialogue_id": dialogue_id, "turns": list(turns), "target_items": [], "extra": ""}


LONG = "I like slow, quiet films with a lot of talking. " * 60  # 2,880 characters: the old cut dropped it


def test_a_turn_with_a_target_mentioned_before_is_skipped() -> None:
    records = [
        dialogue(
            "a",
            turn(0, "user", LONG + "I loved Alien (1979)", "1"),
            turn(1, "recommender", "Try Aliens (1986) or Heat (1995)", "2", "3"),  # new: kept
            turn(2, "user", "Seen Aliens, anything else?"),
            turn(3, "recommender", "Aliens (1986) again, or Up (2009)", "2", "4"),  # Aliens named before: skipped
            turn(4, "recommender", "Alien (1979)!", "1"),  # all mentioned: skipped
            turn(5, "recommender", "Some film not in the catalog", "99"),  # nothing rankable: skipped
        )
    ]
    turns, skipped, kind = evaluation_turns(records, ITEMS)
    assert kind == "dialogues"
    assert [t.key for t in turns] == ["a#1"]
    assert turns[0].targets == ("2", "3") and turns[0].mentioned == ("1",)
    assert turns[0].context[0] == ("user", LONG + "I loved Alien (1979)")  # the whole context, no cut
    assert skipped == {"targets-already-mentioned": 2, "targets-not-in-catalog": 1}


def test_counting_recommendations_keeps_the_new_part_of_a_turn() -> None:
    records = [
        dialogue(
            "b",
            turn(0, "user", "Anything like Alien (1979)?", "1"),
            turn(1, "recommender", "Alien (1979) and Up (2009)", "1", "4"),
        )
    ]
    assert evaluation_turns(records, ITEMS)[0] == []
    kept, _, _ = evaluation_turns(records, ITEMS, only_new=False)
    assert [t.targets for t in kept] == [("4",)]


def test_an_item_mentioned_but_not_in_the_catalog_does_not_skip() -> None:
    records = [
        dialogue(
            "c",
            turn(0, "user", "I loved some obscure film", "99"),
            turn(1, "recommender", "Then Heat (1995), or that obscure film again", "3", "99"),
        )
    ]
    turns, skipped, _ = evaluation_turns(records, ITEMS)
    assert [t.targets for t in turns] == [("3",)] and not skipped


def test_the_old_context_cut_is_still_an_option() -> None:
    records = [dialogue("d", turn(0, "user", LONG), turn(1, "user", "short"), turn(2, "recommender", "Up", "4"))]
    (cut,), _, _ = evaluation_turns(records, ITEMS, context_chars=100)
    assert cut.context == (("user", "short"),)


def eval_turn(*targets: str) -> EvalTurn:
    return EvalTurn("k", "g", (("user", "hi"),), targets, ())


def test_reference_metrics_by_hand() -> None:
    lists = [["9", "1", "8", "7", "6", "5", "4", "3", "2", "0", "x"], ["2", "9"]]
    turns = [eval_turn("1", "3"), eval_turn("x")]
    got = reference_scores(lists, turns, (1, 10, 20))
    # Turn 1: "1" at rank 1, "3" at rank 7; turn 2: "x" is not in its list.
    assert got["Recall@1"] == 0.0
    assert got["Recall@10"] == pytest.approx((2 / 2 + 0) / 2)
    one, seven = 1 / math.log2(3), 1 / math.log2(9)
    # No ideal-DCG normalisation, and the same list cut (the largest k) at every k, as the reference computes.
    for k in (1, 10, 20):
        assert got[f"NDCG@{k}"] == pytest.approx(((one + seven) / 2) / 2)
        assert got[f"MRR@{k}"] == pytest.approx(((1 / 2 + 1 / 8) / 2) / 2)


def test_reference_recall_matches_ours_with_one_target() -> None:
    from crsdata.metrics import ranking_scores

    lists = [["a", "b", "c"], ["c", "a"], ["z"]]
    turns = [eval_turn("b"), eval_turn("a"), eval_turn("a")]
    ours = ranking_scores(lists, [list(t.targets) for t in turns], (1, 2)).values
    ref = reference_scores(lists, turns, (1, 2))
    for k in (1, 2):
        assert ref[f"Recall@{k}"] == pytest.approx(float(ours[("recall", k)].mean()))
    assert ref["NDCG@2"] == pytest.approx(float(ours[("ndcg", 2)].mean()))
