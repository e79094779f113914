"""Recommendation turns read from dialogues in the crsdata schema, for the turn-level metrics.

A *recommendation turn* is a recommender turn with action ``recommend`` and at least one item. Corpora without
dialogue-act labels (ReDial, INSPIRED as built: every action ``none``) have no such turn; for them
``rule="mentions"`` takes every recommender turn that mentions an item, which is how iEvaLM and GRSU build their
ReDial/INSPIRED test samples. ``rule="auto"`` uses ``recommend`` when any turn of the corpus carries it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from crsdata.metrics.common import MetricError
from crsdata.titles import item_key

TurnRule = Literal["auto", "recommend", "mentions"]


@dataclass
class RecommendationTurn:
    dialogue_id: str
    index: int
    items: list[str]  # item keys the recommender names in this turn, in order, without repeats
    targets: list[str]  # the dialogue's target items (keys)
    mentioned: list[str]  # items named in any earlier turn, by either side


def _keys(refs: Iterable[Mapping[str, Any]]) -> list[str]:
    out: list[str] = []
    for ref in refs:
        key = item_key(ref)
        if key and key not in out:
            out.append(key)
    return out


def has_recommend_actions(records: Iterable[Mapping[str, Any]]) -> bool:
    return any(
        turn.get("role") == "recommender" and turn.get("action") == "recommend"
        for record in records
        for turn in record.get("turns") or []
    )


def recommendation_turns(records: list[Mapping[str, Any]], rule: TurnRule = "auto") -> list[RecommendationTurn]:
    """The recommendation turns of ``records`` under ``rule`` (see the module doc)."""
    if rule == "auto":
        rule = "recommend" if has_recommend_actions(records) else "mentions"
    if rule not in ("recommend", "mentions"):
        raise MetricError(f"rule must be 'auto', 'recommend' or 'mentions', got {rule!r}")
    out: list[RecommendationTurn] = []
    for record in records:
        targets = _keys(record.get("target_items") or [])
        mentioned: list[str] = []
        for position, turn in enumerate(record.get("turns") or []):
            items = _keys(turn.get("items") or [])
            is_rec = turn.get("role") == "recommender" and (rule == "mentions" or turn.get("action") == "recommend")
            if is_rec and items:
                index = turn.get("index")
                out.append(
                    RecommendationTurn(
                        dialogue_id=str(record.get("dialogue_id", "")),
                        index=int(index) if index is not None else position,
                        items=items,
                        targets=targets,
                        mentioned=list(mentioned),
                    )
                )
            mentioned.extend(i for i in items if i not in mentioned)
    return out
