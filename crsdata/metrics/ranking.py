"""Recall@k, NDCG@k and MRR@k of ranked recommendation lists, for many lists and many k in one call.

Definitions, per example (a ranked list ``p`` and a ground-truth set ``G``), with binary relevance:

- ``recall@k = |p[:k] ∩ G| / |G|`` (the denominator is ``|G|`` even when ``k < |G|``, as in GRSU/iEvaLM; with a
  single target, as in most CRS test turns, it is the hit rate).
- ``ndcg@k = DCG@k / IDCG@k`` with ``DCG@k = Σ_{i<k, p[i] ∈ G} 1 / log2(i + 2)`` (rank ``i`` from 0) and IDCG@k
  the DCG of a perfect list: ``Σ_{i < min(|G|, k)} 1 / log2(i + 2)``. So ``[a, b, c]`` with target ``c`` has
  NDCG@1 = NDCG@2 = 0 and NDCG@3 = 0.5.
- ``mrr@k = 1 / (r + 1)`` for the rank ``r`` of the first hit within the top ``k``, else 0.

Each value is computed from the list cut at *that* ``k``: a published implementation reported the @50 value
for every k; here a test checks NDCG@1 = 0 for the example above. Scores are averaged over examples.

Conventions for awkward input:

- ``k`` larger than a list: the missing positions are misses (a short list is not padded with hits).
- An empty prediction list scores 0 at every k.
- A repeated item keeps its positions but can hit only once (its first occurrence), so recall never exceeds 1
  and a list cannot gain by repeating a target.
- Repeated ground-truth items count once (``G`` is a set).
- ``mentioned``: items already mentioned in the conversation. As GRSU and iEvaLM evaluate, they are removed
  from the predictions (the list closes up, so an item at rank 3 may move to rank 1) *and* from the ground
  truth, since re-recommending a mentioned item is not a recommendation. An example whose ground truth is
  entirely mentioned is skipped and counted in ``n_skipped``.
- An example without any ground truth is an input error.

Items may be any hashable (strings, ints) compared by equality. Targets are few, so each is looked up in its own
list by C-level list and set operations (its first position is its rank), and numpy sums over the hits. A 2-d
integer array of predictions (a model's top-k indices; negative ids pad short rows) skips Python objects
altogether: an exact hash join (polars) of (example, id) keys.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np
import polars as pl

from crsdata.metrics.common import MetricError, gc_paused

RANKING_METRICS = ("recall", "ndcg", "mrr")


@dataclass
class RankingScores:
    """Per-example scores: ``values[("ndcg", 10)]`` is an array with one value per evaluated example."""

    ks: tuple[int, ...]
    values: dict[tuple[str, int], np.ndarray]
    evaluated: np.ndarray  # indices (into the input) of the examples that were scored
    n_skipped: int

    def mean(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in RANKING_METRICS:
            for k in self.ks:
                column = self.values[(name, k)]
                out[f"{name}@{k}"] = float(column.mean()) if len(column) else float("nan")
        return out


def _as_ks(ks: int | Iterable[int]) -> tuple[int, ...]:
    values = (ks,) if isinstance(ks, int | np.integer) else tuple(ks)
    if not values:
        raise MetricError("no k given")
    for k in values:
        if int(k) != k or k < 1:
            raise MetricError(f"k must be a positive integer, got {k!r}")
    return tuple(sorted({int(k) for k in values}))


def _as_list(value: Any) -> list[Hashable]:
    if type(value) is list:  # the common case first: this runs once per example
        return value
    # A bare item (a string or an int) is a one-item set; strings are iterable, so they must be caught first.
    if isinstance(value, str | bytes | int | np.integer):
        return [value]
    if value is None:
        return []
    return value if isinstance(value, list) else list(value)


def _is_in(keys: np.ndarray, set_keys: np.ndarray) -> np.ndarray:
    # A hash join (polars) is an order of magnitude faster here than numpy's sort-based isin or searchsorted.
    return pl.Series(keys).is_in(pl.Series(set_keys).implode()).to_numpy().copy()


def _set_pairs(sets: list[set[Hashable]]) -> tuple[np.ndarray, list[Hashable]]:
    sizes = np.fromiter(map(len, sets), dtype=np.int64, count=len(sets))
    return np.repeat(np.arange(len(sets), dtype=np.int64), sizes), list(chain.from_iterable(sets))


# Up to this many targets, each is looked for by scanning the list (C-level equality tests, no hashing); with
# more, one pass hashing the list's items into the target set is cheaper than a scan per target (measured on lists
# of 50 new strings: 1.8 against 2.8 us for one target, 3.7 against 4.1 for two, 4.9 against 4.0 for three).
_SCAN_MAX = 2


def _hit_ranks(ranked: list[Hashable], targets: set[Hashable], mentioned: set[Hashable] | None) -> list[int]:
    """Rank (from 0) of each target in one list: its first occurrence, so a repeated item hits once; with
    ``mentioned``, the rank in the list closed up over the mentioned items (targets are never mentioned)."""
    found = targets if len(targets) <= _SCAN_MAX else targets.intersection(ranked)
    ranks = [ranked.index(item) for item in found if item in ranked]
    if mentioned:
        ranks = [rank - sum(map(mentioned.__contains__, ranked[:rank])) for rank in ranks]
    return ranks


_CONTAINERS = frozenset((list, dict, set))


def _list_hits(
    preds: list[list[Hashable]], gold: list[set[Hashable]], seen: list[set[Hashable]] | None, k_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """(example, rank) of every hit, for lists of hashable items.

    Targets are few (one to three per list in CRS test sets) and hits fewer, so each target is looked up in its
    own list; keying every listed item instead (a hash per item, then a join) was 3 to 4 times slower on 100k
    lists of 50.
    """
    n = len(preds)
    # Items are compared by equality and never all hashed, so a list of lists (one nesting level too many) would
    # score silently as misses: the first item of every list is checked instead, which catches that mistake.
    if not _CONTAINERS.isdisjoint(map(type, [p[0] for p in preds if p])):
        nested = next(i for i, p in enumerate(preds) if p and type(p[0]) in _CONTAINERS)
        raise MetricError(
            f"prediction list {nested} holds a {type(preds[nested][0]).__name__}: items must be strings or ints"
        )
    try:
        found = list(map(_hit_ranks, preds, gold, repeat(None, n) if seen is None else seen))
    except TypeError as err:
        raise MetricError(f"items must be hashable (strings or ints): {err}") from None
    counts = np.fromiter(map(len, found), dtype=np.int64, count=n)
    rows = np.repeat(np.arange(n, dtype=np.int64), counts)
    ranks = np.fromiter(chain.from_iterable(found), dtype=np.int64, count=int(counts.sum()))
    # With mentioned items the lists were not cut (a mentioned item listed twice pulls later items up twice), so
    # closing up may leave hits beyond k_max. Sorted by rank within each example, so that the DCG sums add the
    # same floats in the same order as a loop would.
    order = np.lexsort((ranks, rows))
    order = order[ranks[order] < k_max]
    return rows[order], ranks[order]


def _matrix_hits(
    matrix: np.ndarray, gold: list[set[Hashable]], seen: list[set[Hashable]] | None, k_max: int
) -> tuple[np.ndarray, np.ndarray]:
    """(example, rank) of every hit, for a 2-d integer array; exact keys ``row * width + id``, no flattening."""
    n, width = matrix.shape[0], int(matrix.max(initial=-1)) + 1
    keys = np.arange(n, dtype=np.int64)[:, None] * width + matrix
    valid = matrix >= 0  # negative ids pad rows that hold fewer items
    if not valid.all():
        keys[~valid] = -1

    def member(sets: list[set[Hashable]]) -> np.ndarray:
        set_rows, members = _set_pairs(sets)
        try:
            ids = np.fromiter(members, dtype=np.int64, count=len(members))
        except (TypeError, ValueError):
            raise MetricError("predictions are an integer array, so references must be integer ids too") from None
        # An id the array cannot hold is keyed where no prediction can be.
        set_keys = np.where((ids >= 0) & (ids < width), set_rows * width + ids, -2)
        return _is_in(keys.ravel(), set_keys).reshape(keys.shape)

    if seen is not None:
        valid &= ~member(seen)
    if valid.all():
        positions = np.broadcast_to(np.arange(keys.shape[1]), keys.shape)
    else:  # the list closes up over padding and removed items
        positions = np.cumsum(valid, axis=1) - 1
    hit = member(gold) & valid & (positions < k_max)
    hit_rows, hit_cols = np.nonzero(hit)
    # A repeated item hits only at its first occurrence: np.nonzero walks rows in rank order, keys are exact.
    _, first = np.unique(keys[hit_rows, hit_cols], return_index=True)
    first.sort()
    return hit_rows[first].astype(np.int64), positions[hit_rows[first], hit_cols[first]].astype(np.int64)


def ranking_scores(
    predictions: Sequence[Iterable[Hashable]] | np.ndarray,
    references: Sequence[Iterable[Hashable] | Hashable],
    ks: int | Iterable[int] = (1, 10, 50),
    *,
    mentioned: Sequence[Iterable[Hashable]] | None = None,
) -> RankingScores:
    """Per-example Recall/NDCG/MRR at each k (see the module doc for the definitions and conventions).

    ``predictions`` is a sequence of ranked lists, or a 2-d integer array (one row per example, negative ids as
    padding), the fast path for model outputs such as top-k indices.
    """
    with gc_paused():  # one small set per example: see gc_paused
        return _ranking_scores(predictions, references, ks, mentioned)


def _ranking_scores(
    predictions: Sequence[Iterable[Hashable]] | np.ndarray,
    references: Sequence[Iterable[Hashable] | Hashable],
    ks: int | Iterable[int],
    mentioned: Sequence[Iterable[Hashable]] | None,
) -> RankingScores:
    ks_t = _as_ks(ks)
    n = len(predictions)
    if n != len(references):
        raise MetricError(f"{n} prediction lists but {len(references)} references")
    if n == 0:
        raise MetricError("nothing to score: no prediction lists")
    if mentioned is not None and len(mentioned) != n:
        raise MetricError(f"{n} prediction lists but {len(mentioned)} lists of mentioned items")
    k_max = ks_t[-1]
    gold = [set(r) if type(r) is list else set(_as_list(r)) for r in references]
    empty = next((i for i, g in enumerate(gold) if not g), None)
    if empty is not None:
        raise MetricError(f"example {empty} has no ground-truth item")
    seen = None if mentioned is None else [set(_as_list(m)) for m in mentioned]
    if seen is not None:
        gold = [g - m for g, m in zip(gold, seen, strict=True)]
    # Only the first k_max items can count; with mentioned items, removing them may pull up any later item
    # (repeats included), so the lists are kept whole.
    if isinstance(predictions, np.ndarray) and predictions.ndim == 2 and np.issubdtype(predictions.dtype, np.integer):
        matrix = predictions if seen else predictions[:, :k_max]
        hit_rows, hit_pos = _matrix_hits(matrix.astype(np.int64), gold, seen, k_max)
    else:
        if seen is None:
            preds = [p if type(p) is list and len(p) <= k_max else _as_list(p)[:k_max] for p in predictions]
        else:
            preds = [_as_list(p) for p in predictions]
        hit_rows, hit_pos = _list_hits(preds, gold, seen, k_max)

    n_targets = np.fromiter(map(len, gold), dtype=np.int64, count=n)
    evaluated = np.flatnonzero(n_targets > 0)
    n_t = n_targets[evaluated].astype(np.float64)
    discount = 1.0 / np.log2(np.arange(k_max, dtype=np.float64) + 2.0)
    ideal = np.cumsum(discount)  # ideal[j] = IDCG with j + 1 relevant items in the top
    first_hit = np.full(n, k_max, dtype=np.int64)  # rank of each example's first hit, k_max when none
    np.minimum.at(first_hit, hit_rows, hit_pos)
    first_hit = first_hit[evaluated]

    # Sums over the hits only, never over an examples x k matrix: O(hits x ks) instead of O(examples x k_max).
    values: dict[tuple[str, int], np.ndarray] = {}
    for k in ks_t:
        within = hit_pos < k
        count = np.bincount(hit_rows[within], minlength=n)[evaluated]
        dcg = np.bincount(hit_rows[within], weights=discount[hit_pos[within]], minlength=n)[evaluated]
        values[("recall", k)] = count / n_t
        values[("ndcg", k)] = dcg / ideal[np.minimum(n_t.astype(np.int64), k) - 1]
        values[("mrr", k)] = np.where(first_hit < k, 1.0 / (first_hit + 1.0), 0.0)
    return RankingScores(ks=ks_t, values=values, evaluated=evaluated, n_skipped=int(n - len(evaluated)))


def ranking_metrics(
    predictions: Sequence[Iterable[Hashable]],
    references: Sequence[Iterable[Hashable] | Hashable],
    ks: int | Iterable[int] = (1, 10, 50),
    *,
    mentioned: Sequence[Iterable[Hashable]] | None = None,
) -> dict[str, float]:
    """Mean ``recall@k``, ``ndcg@k`` and ``mrr@k`` for every k, plus ``n_evaluated`` and ``n_skipped``.

    >>> ranking_metrics([["a", "b", "c"]], [["c"]], ks=[1, 3])["ndcg@1"]
    0.0
    """
    scores = ranking_scores(predictions, references, ks, mentioned=mentioned)
    result: dict[str, float] = scores.mean()
    if len(scores.evaluated) == 0:
        raise MetricError("every example's ground truth was among its mentioned items: nothing left to score")
    result["n_evaluated"] = len(scores.evaluated)
    result["n_skipped"] = scores.n_skipped
    return result


def turn_recall_at_1(
    recommended: Sequence[Iterable[Hashable]], targets: Sequence[Iterable[Hashable] | Hashable]
) -> float:
    """Interplay's Recall@1 on recommender turns: the share of turns whose (first) recommended item is a target.

    Interplay's recommender names one item per turn and each dialogue has one target, so this is a hit rate;
    with several targets it stays a hit rate (not divided by the number of targets). A turn that recommends
    nothing is a miss.
    """
    if len(recommended) != len(targets):
        raise MetricError(f"{len(recommended)} turns but {len(targets)} target sets")
    if len(recommended) == 0:
        raise MetricError("nothing to score: no recommender turns")
    firsts = [next(iter(r), None) for r in recommended]
    hits = np.fromiter(
        (first is not None and first in set(_as_list(t)) for first, t in zip(firsts, targets, strict=True)),
        dtype=bool,
        count=len(firsts),
    )
    return float(hits.mean())


def auc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (Mann-Whitney U with tied scores sharing
    their mean rank); NaN without both classes."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    mean_rank = np.cumsum(counts) - (counts - 1) / 2.0  # 1-based mean rank of each distinct score
    ranks = mean_rank[inverse]
    return float((ranks[y].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))
