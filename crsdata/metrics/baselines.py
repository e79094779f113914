"""A popularity baseline for the ranking metrics: recommend the most mentioned items, minus those already named.

Popularity is a count of how often each item is the recommended (ground-truth) item in *training-side* data,
never in the data being scored. Ties are broken by the item key (ascending) so that runs are reproducible.
Items never counted are never recommended.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Sequence

from crsdata.metrics.common import MetricError


def popularity_counts(item_lists: Iterable[Iterable[Hashable]]) -> Counter[Hashable]:
    """How many lists each item occurs in (an item counts once per list)."""
    counts: Counter[Hashable] = Counter()
    for items in item_lists:
        counts.update(set(items))
    return counts


def popularity_ranking(counts: Counter[Hashable] | dict[Hashable, int]) -> list[Hashable]:
    """All counted items, most popular first, ties by ``str(item)``."""
    return [item for item, _ in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))]


def popularity_predictions(
    counts: Counter[Hashable] | dict[Hashable, int],
    n_examples: int,
    k: int,
    mentioned: Sequence[Iterable[Hashable]] | None = None,
) -> list[list[Hashable]]:
    """Top-``k`` popular items for each example, skipping the example's ``mentioned`` items."""
    if not counts:
        raise MetricError("no popularity counts: the training side has no recommended items")
    if mentioned is not None and len(mentioned) != n_examples:
        raise MetricError(f"{n_examples} examples but {len(mentioned)} lists of mentioned items")
    ranking = popularity_ranking(counts)
    if mentioned is None:
        top = ranking[:k]
        return [list(top) for _ in range(n_examples)]
    out = []
    for seen in mentioned:
        skip = set(seen)
        # Only the first k + |skip| items can be needed, so the scan stays short.
        out.append([item for item in ranking[: k + len(skip)] if item not in skip][:k])
    return out
