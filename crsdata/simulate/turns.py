"""Turns as the Interplay simulators see them, the same in training and in replay.

ReDial keeps every chat message as a turn, a third of them right after one of the same speaker, while the
simulators alternate. Both the user simulator's training sequences (:mod:`crsdata.training.interplay`) and
replay (:mod:`crsdata.simulate.replay`) merge consecutive messages of one speaker into one turn with
:func:`merge_consecutive_turns`, so a replayed simulator answers the turns it was trained on.
"""

from __future__ import annotations

from typing import Any

from crsdata.schema import Action

# Which source label a merged turn keeps when its messages carry several: the one that says most.
_ACTION_RANK = (
    Action.ACCEPT.value,
    Action.RECOMMEND.value,
    Action.DISCLOSE_GOAL.value,
    Action.INQUIRE.value,
    Action.FEEDBACK.value,
    Action.GREETING.value,
)
UNLABELLED = ("", Action.NONE.value)


def _stronger(a: str, b: str) -> str:
    """The merged label of two messages: a label beats none, and ranked labels beat the others."""
    if a in UNLABELLED:
        return b
    if b in UNLABELLED:
        return a
    rank = {name: i for i, name in enumerate(_ACTION_RANK)}
    return a if rank.get(a, len(rank)) <= rank.get(b, len(rank)) else b


def merge_consecutive_turns(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive turns of one speaker as one turn: texts joined by a space, items in first-mention order
    without repeats, the most telling source action (see the module doc). ``index`` is the new position."""
    merged: list[dict[str, Any]] = []
    for turn in turns:
        items = [dict(i) for i in turn.get("items", [])]
        if merged and merged[-1]["role"] == turn["role"]:
            last = merged[-1]
            last["text"] = f"{last['text']} {turn.get('text', '')}".strip()
            last["items"] += [i for i in items if i not in last["items"]]
            last["action"] = _stronger(last["action"], turn.get("action", ""))
            continue
        merged.append(
            {
                "index": len(merged),
                "role": turn["role"],
                "text": (turn.get("text") or "").strip(),
                "action": turn.get("action") or Action.NONE.value,
                "items": items,
            }
        )
    return merged


def merged_record(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with its turns merged (:func:`merge_consecutive_turns`); actions left as the source had them."""
    return {**record, "turns": merge_consecutive_turns(record.get("turns", []))}
