"""Recall/NDCG/MRR@k: hand-computed values at every k, edge cases, the popularity baseline, and agreement with
scikit-learn's ndcg_score and a plain loop on iEvaLM's ReDial test turns."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from crsdata.metrics import (
    MetricError,
    popularity_counts,
    popularity_predictions,
    popularity_ranking,
    ranking_metrics,
    ranking_scores,
    turn_recall_at_1,
)

DATA = Path(os.environ.get("CRSDATA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
LOG2_3 = math.log2(3)


def test_each_k_is_cut_at_k() -> None:
    # The published bug reported the @50 value for every k; target at rank 3 must give 0 at k = 1 and 2.
    result = ranking_metrics([["a", "b", "c"]], [["c"]], ks=[1, 2, 3, 50])
    assert [result[f"ndcg@{k}"] for k in (1, 2, 3, 50)] == [0.0, 0.0, 0.5, 0.5]
    assert [result[f"recall@{k}"] for k in (1, 2, 3, 50)] == [0.0, 0.0, 1.0, 1.0]
    assert [result[f"mrr@{k}"] for k in (1, 2, 3, 50)] == [0.0, 0.0, pytest.approx(1 / 3), pytest.approx(1 / 3)]


def test_hand_computed_two_examples() -> None:
    result = ranking_metrics(
        [["Heat", "Ronin", "Collateral"], ["Up", "Coco"]], [["Collateral"], ["Coco", "Heat"]], ks=[1, 2, 3]
    )
    second = (1 / LOG2_3) / (1 + 1 / LOG2_3)  # hit at rank 2 of two targets
    assert result["recall@2"] == pytest.approx((0 + 1 / 2) / 2)
    assert result["recall@3"] == pytest.approx((1 + 1 / 2) / 2)
    assert result["ndcg@2"] == pytest.approx((0 + second) / 2)
    assert result["ndcg@3"] == pytest.approx((0.5 + second) / 2)
    assert result["mrr@3"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert (result["n_evaluated"], result["n_skipped"]) == (2, 0)


def test_two_targets_ideal_dcg_uses_min_of_targets_and_k() -> None:
    result = ranking_metrics([["x", "y"]], [["x", "y", "z"]], ks=[1, 2, 5])
    assert result["ndcg@1"] == 1.0 and result["ndcg@2"] == 1.0
    # At k = 5 the ideal list holds all three targets, the list only two.
    assert result["ndcg@5"] == pytest.approx((1 + 1 / LOG2_3) / (1 + 1 / LOG2_3 + 0.5))
    assert result["recall@1"] == pytest.approx(1 / 3) and result["recall@5"] == pytest.approx(2 / 3)


def test_duplicates_hit_once_and_keep_positions() -> None:
    result = ranking_metrics([["x", "x", "y"]], [["x", "y"]], ks=[2, 3])
    assert result["recall@2"] == 0.5  # the repeated x is not a second hit
    assert result["recall@3"] == 1.0
    assert result["ndcg@3"] == pytest.approx((1 + 0.5) / (1 + 1 / LOG2_3))
    assert ranking_metrics([["t", "t", "t"]], [["t", "t"]], ks=[3])["recall@3"] == 1.0  # targets are a set


def test_empty_lists_short_lists_and_int_ids() -> None:
    result = ranking_metrics([[], ["a"]], ["a", "a"], ks=[1, 100])
    assert result["recall@100"] == 0.5 and result["ndcg@100"] == 0.5 and result["mrr@1"] == 0.5
    assert ranking_metrics([[3, 1, 2]], [[2]], ks=2)["recall@2"] == 0.0
    assert ranking_metrics([np.array([3, 1, 2])], [2], ks=3)["mrr@3"] == pytest.approx(1 / 3)
    assert ranking_metrics([("a", "b")], ["b"], ks=[2])["mrr@2"] == 0.5


def test_mentioned_items_are_removed_from_both_sides() -> None:
    result = ranking_metrics([["m", "a", "t"]], [["t", "m"]], ks=[1, 2], mentioned=[["m"]])
    assert result["recall@1"] == 0.0 and result["recall@2"] == 1.0  # the list closes up to [a, t]
    assert result["ndcg@2"] == pytest.approx(1 / LOG2_3)
    kept = ranking_metrics([["m", "a", "t"]], [["t", "m"]], ks=[1])
    assert kept["recall@1"] == 0.5  # without removal, re-naming m counts
    skipped = ranking_metrics([["a"], ["b"]], [["m"], ["b"]], ks=[1], mentioned=[["m"], []])
    assert (skipped["n_evaluated"], skipped["n_skipped"], skipped["recall@1"]) == (1, 1, 1.0)
    with pytest.raises(MetricError, match="every example's ground truth"):
        ranking_metrics([["a"]], [["m"]], ks=[1], mentioned=[["m"]])


def test_integer_array_path_equals_list_path() -> None:
    rng = np.random.default_rng(7)
    matrix = rng.integers(0, 30, size=(200, 12))
    matrix[::7, 9:] = -1  # padded rows
    references = [rng.choice(30, size=int(rng.integers(1, 4)), replace=False).tolist() for _ in range(200)]
    mentioned = [rng.choice(30, size=int(rng.integers(0, 4)), replace=False).tolist() for _ in range(200)]
    as_lists = [[int(x) for x in row if x >= 0] for row in matrix]
    for seen in (None, mentioned):
        ours = ranking_metrics(matrix, references, [1, 3, 10, 20], mentioned=seen)
        assert ours == pytest.approx(ranking_metrics(as_lists, references, [1, 3, 10, 20], mentioned=seen))
    assert ranking_metrics(np.array([[5, 5, 7]]), [[5, 7]], [3])["recall@3"] == 1.0  # a repeat hits once
    with pytest.raises(MetricError, match="integer ids"):
        ranking_metrics(np.array([[1, 2]]), [["a"]], [1])


def test_per_example_scores_and_bad_input() -> None:
    scores = ranking_scores([["a", "b"], ["b", "a"]], [["a"], ["a"]], ks=[1, 2])
    assert scores.values[("mrr", 2)].tolist() == [1.0, 0.5]
    assert scores.evaluated.tolist() == [0, 1]
    for kwargs, message in [
        ({"predictions": [], "references": []}, "no prediction lists"),
        ({"predictions": [["a"]], "references": [[]]}, "example 0 has no ground-truth item"),
        ({"predictions": [["a"]], "references": [["a"], ["b"]]}, "1 prediction lists but 2 references"),
        ({"predictions": [["a"]], "references": [["a"]], "ks": [0]}, "positive integer"),
        ({"predictions": [["a"]], "references": [["a"]], "ks": []}, "no k"),
        ({"predictions": [["a"]], "references": [["a"]], "mentioned": []}, "lists of mentioned"),
    ]:
        with pytest.raises(MetricError, match=message):
            ranking_metrics(**kwargs)


def test_turn_recall_at_1() -> None:
    assert turn_recall_at_1([["t", "x"], ["x", "t"], [], ["u"]], ["t", "t", "t", ["t", "u"]]) == 0.5
    with pytest.raises(MetricError):
        turn_recall_at_1([], [])


def test_popularity_baseline() -> None:
    counts = popularity_counts([["a", "b"], ["b"], ["c", "b", "b"], ["a"]])
    assert counts == {"a": 2, "b": 3, "c": 1}  # once per list
    assert popularity_ranking(counts) == ["b", "a", "c"]
    assert popularity_ranking({"z": 1, "y": 1}) == ["y", "z"]  # ties by key
    assert popularity_predictions(counts, 2, 2) == [["b", "a"], ["b", "a"]]
    assert popularity_predictions(counts, 2, 2, mentioned=[["b"], []]) == [["a", "c"], ["b", "a"]]
    with pytest.raises(MetricError, match="no popularity counts"):
        popularity_predictions({}, 1, 1)


# --------------------------------------------------------------------------------------------------------
# Real data: iEvaLM's ReDial test turns with the popularity baseline.


@pytest.fixture(scope="module")
def redial_turns() -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    test_file = DATA / "redial" / "redial_eval__test_data_processed.jsonl"
    valid_file = DATA / "redial" / "redial_eval__valid_data_processed.jsonl"
    if not test_file.is_file():
        pytest.skip("shared ReDial data not available")
    test = [json.loads(line) for line in test_file.read_text(encoding="utf-8").splitlines()]
    valid = [json.loads(line) for line in valid_file.read_text(encoding="utf-8").splitlines()]
    assert len(test) == 3341
    counts = popularity_counts(row["rec"] for row in valid)
    lists = popularity_predictions(counts, len(test), 50, [row["entity"] for row in test])
    return lists, [row["rec"] for row in test], [row["entity"] for row in test]


def test_ndcg_agrees_with_scikit_learn_on_redial(redial_turns: tuple) -> None:
    from sklearn.metrics import ndcg_score

    lists, targets, _ = redial_turns
    # One row per turn: the 50 listed items scored 50..1, targets missing from the list scored below them.
    width = 50 + max(len(t) for t in targets)
    y_true = np.zeros((len(lists), width))
    y_score = np.full((len(lists), width), -2.0)
    for row, (ranked, gold) in enumerate(zip(lists, targets, strict=True)):
        gold = set(gold)
        y_true[row, : len(ranked)] = [item in gold for item in ranked]
        y_score[row, : len(ranked)] = np.arange(len(ranked), 0, -1)
        missing = gold - set(ranked)
        y_true[row, 50 : 50 + len(missing)] = 1
        y_score[row, 50 : 50 + len(missing)] = -1
    ours = ranking_metrics(lists, targets, ks=[1, 5, 10, 50])
    for k in (1, 5, 10, 50):
        assert ours[f"ndcg@{k}"] == pytest.approx(ndcg_score(y_true, y_score, k=k), abs=1e-12)


def test_recall_and_mrr_agree_with_a_plain_loop_on_redial(redial_turns: tuple) -> None:
    lists, targets, mentioned = redial_turns
    ks = [1, 10, 50]
    ours = ranking_metrics(lists, targets, ks, mentioned=mentioned)
    sums = {f"{m}@{k}": 0.0 for m in ("recall", "mrr") for k in ks}
    n = 0
    for ranked, gold, seen in zip(lists, targets, mentioned, strict=True):
        gold = set(gold) - set(seen)
        if not gold:
            continue
        n += 1
        ranked = [i for i in ranked if i not in set(seen)]
        for k in ks:
            sums[f"recall@{k}"] += len(set(ranked[:k]) & gold) / len(gold)
            first = next((r for r, item in enumerate(ranked[:k]) if item in gold), None)
            sums[f"mrr@{k}"] += 0.0 if first is None else 1 / (first + 1)
    assert ours["n_evaluated"] == n
    for key, total in sums.items():
        assert ours[key] == pytest.approx(total / n, abs=1e-12)
    assert ours["recall@1"] < ours["recall@10"] < ours["recall@50"]  # values differ by k, unlike the @50 bug


# --------------------------------------------------------------------------------------------------------
# Random input against a plain transcription of the definitions in the module doc.


def _reference_scores(
    predictions: list[list], references: list[list], ks: list[int], mentioned: list[list] | None
) -> list[dict[str, float]]:
    """One dict of scores per evaluated example, straight from the definitions: close the list up over the
    mentioned items, take each target's first position, cut at each k."""
    rows = []
    for i, (ranked, ref) in enumerate(zip(predictions, references, strict=True)):
        seen = set(mentioned[i]) if mentioned is not None else set()
        gold = set(ref) - seen
        if not gold:
            continue
        closed = [item for item in ranked if item not in seen]
        first: dict = {}
        for rank, item in enumerate(closed):
            if item in gold:
                first.setdefault(item, rank)
        hits = sorted(first.values())
        row = {}
        for k in ks:
            within = [h for h in hits if h < k]
            row[f"recall@{k}"] = len(within) / len(gold)
            ideal = sum(1 / math.log2(j + 2) for j in range(min(len(gold), k)))
            row[f"ndcg@{k}"] = sum(1 / math.log2(h + 2) for h in within) / ideal
            row[f"mrr@{k}"] = 1 / (within[0] + 1) if within else 0.0
        rows.append(row)
    return rows


@pytest.mark.parametrize("items", ["strings", "ints"])
@pytest.mark.parametrize("with_mentions", [False, True])
def test_random_lists_agree_with_the_definitions(items: str, with_mentions: bool) -> None:
    # Repeats, empty and short lists, k beyond the list, one to six targets (both lookup strategies), targets
    # that are mentioned, mentions that are not listed.
    rng = np.random.default_rng(11)
    pool = [f"item-{j}" for j in range(12)] if items == "strings" else list(range(12))
    predictions, references, mentioned = [], [], []
    for _ in range(400):
        ranked = [pool[j] for j in rng.integers(0, len(pool), size=int(rng.integers(0, 25)))]
        seen = [pool[j] for j in rng.choice(len(pool), size=int(rng.integers(0, 4)), replace=False)]
        predictions.append(ranked)
        references.append([pool[j] for j in rng.integers(0, len(pool), size=int(rng.integers(1, 7)))])
        mentioned.append(seen)
    ks = [1, 2, 5, 10, 30]
    seen_arg = mentioned if with_mentions else None
    expected = _reference_scores(predictions, references, ks, seen_arg)
    scores = ranking_scores(predictions, references, ks, mentioned=seen_arg)
    assert len(scores.evaluated) == len(expected) and scores.n_skipped == len(predictions) - len(expected)
    for key in expected[0]:
        name, k = key.split("@")
        column = scores.values[(name, int(k))]
        assert column.tolist() == pytest.approx([row[key] for row in expected], abs=1e-12), key
    if items == "ints":  # the same lists as a padded 2-d array
        matrix = np.full((len(predictions), max(map(len, predictions))), -1)
        for row, ranked in zip(matrix, predictions, strict=True):
            row[: len(ranked)] = ranked
        assert ranking_metrics(matrix, references, ks, mentioned=seen_arg) == pytest.approx(
            ranking_metrics(predictions, references, ks, mentioned=seen_arg)
        )


def test_a_mentioned_item_listed_twice_pulls_the_target_up_twice() -> None:
    ranked = ["m", "m", "a", "t"]  # closes up to [a, t]
    for predictions in ([ranked], np.array([[9, 9, 1, 5]])):
        references, seen = ([["t"]], [["m"]]) if isinstance(predictions, list) else ([[5]], [[9]])
        assert ranking_metrics(predictions, references, ks=[1, 2], mentioned=seen)["recall@2"] == 1.0


def test_one_nesting_level_too_many_is_an_error_not_a_zero() -> None:
    with pytest.raises(MetricError, match="prediction list 1 holds a list"):
        ranking_metrics([["a"], [["a", "b"]]], [["a"], ["a"]], ks=[1])
