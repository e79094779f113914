"""Replay real dialogues to a user simulator and record its accept/reject decisions (for SR, ET and FR).

Given real dialogues (schema records) and an :class:`~crsdata.simulate.interplay.InterplaySimulation` (its user
backend, sampling parameters and prompts: the very user simulator that Interplay runs), the runner walks each
dialogue's recommender turns in order. At every *proposal* (a recommender turn naming catalog items that no
earlier turn named) the user simulator is asked for its next turn, with the real dialogue up to and including
that recommender turn as the conversation (teacher forcing: the real user turns stay, so the context stays
coherent with what the real recommender says next). Its answer is a decision on each proposed item:

- ``accept``: the item the response names (parsed titles first, then a fuzzy title match in the text) is
  accepted, or the last proposed item of the turn when it names none; the other items of that turn are
  recorded as not accepted, before it. The dialogue stops there (first accept).
- any other action, an unparseable or empty answer, or a backend error: every proposed item is not accepted
  (counted in the counters).

Items the catalog did not link (empty ``item_id``) cannot be scored against targets and are skipped (counted
as ``unlinked_proposals``). Each step is one backend call for all dialogues that still have a proposal left.

Output, one dict per dialogue (the input of ``crsdata.metrics``' SR/ET/FR)::

    {"dialogue_id": "16162", "target_ids": ["202190", "76012"],
     "decisions": [{"item_id": "83192", "accepted": false, "round": 2},
                   {"item_id": "202190", "accepted": true, "round": 4}]}

``decisions`` are in proposal order and end at the first accepted item. ``round`` is the index of the
recommender turn that proposed the item: items proposed in one turn were answered together, so they share it
(metrics that ignore it still see the order). Dialogues without any proposal are kept with empty
``decisions`` so that the metrics can report how many there were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from crsdata.errors import BadInputError, SkipLog
from crsdata.schema import Action, Role
from crsdata.simulate.actions import ParsedTurn
from crsdata.simulate.base import DialogueState
from crsdata.simulate.interplay import InterplaySimulation
from crsdata.simulate.leak import fuzzy_title_match, normalize_text, split_title


@dataclass
class ReplayResult:
    dialogues: list[dict[str, Any]]  # {"dialogue_id", "target_ids", "decisions": [{"item_id", "accepted", "round"}]}
    counters: dict[str, int] = field(default_factory=dict)
    skipped: SkipLog = field(default_factory=lambda: SkipLog(skip_bad=True))
    backend_calls: int = 0


def proposals(turns: list[dict[str, Any]]) -> tuple[list[tuple[int, list[dict[str, str]]]], int]:
    """(turn index, newly proposed linked items) of each recommender turn that proposes, and the number of
    unlinked items that recommender turns named."""
    mentioned: set[str] = set()
    found = []
    unlinked = 0
    for index, turn in enumerate(turns):
        items = turn.get("items", [])
        if turn.get("role") == Role.RECOMMENDER.value:
            unlinked += sum(1 for i in items if not i.get("item_id"))
            new = []
            for item in items:
                if item.get("item_id") and item["item_id"] not in mentioned and item not in new:
                    new.append({"item_id": item["item_id"], "title": item.get("title", "")})
            if new:
                found.append((index, new))
        mentioned.update(i["item_id"] for i in items if i.get("item_id"))
    return found, unlinked


def _chosen(parsed: ParsedTurn, items: list[dict[str, str]]) -> dict[str, str]:
    """The proposed item the accepting answer names; the last one when it names none."""
    for title in parsed.titles:
        for item in items:
            if normalize_text(split_title(title)[0]) == normalize_text(split_title(item["title"])[0]):
                return item
    for item in reversed(items):
        if item["title"] and fuzzy_title_match(parsed.response, item["title"]):
            return item
    return items[-1]


def _decision(item: dict[str, str], accepted: bool, turn_index: int) -> dict[str, Any]:
    return {"item_id": item["item_id"], "accepted": accepted, "round": turn_index}


@dataclass
class _Replay:
    record: dict[str, Any]
    state: DialogueState
    points: list[tuple[int, list[dict[str, str]]]]
    decisions: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False


def replay_decisions(
    records: Iterable[dict[str, Any]],
    simulation: InterplaySimulation,
    *,
    seed: int = 0,
    skip: SkipLog | None = None,
) -> ReplayResult:
    """Replays ``records`` to ``simulation``'s user simulator; see the module doc for the procedure and output.

    Records the persona cannot be built for go to ``skip`` (a ``SkipLog(skip_bad=True)`` by default, so they are
    counted; pass ``SkipLog()`` to raise instead).
    """
    skip = skip if skip is not None else SkipLog(skip_bad=True)
    counters: Counter[str] = Counter()
    runs: list[_Replay] = []
    for record in records:
        try:
            state = simulation.start(record, str(record["dialogue_id"]), seed)
        except BadInputError as err:
            skip.handle(err)
            continue
        points, unlinked = proposals(record.get("turns", []))
        counters["unlinked_proposals"] += unlinked
        counters["no_proposals"] += not points
        runs.append(_Replay(record, state, points))
    result = ReplayResult([], {}, skip)
    backend = simulation.backends[Role.USER.value]
    params = simulation.params[Role.USER.value]
    step = 0
    while True:
        active = [r for r in runs if not r.done and step < len(r.points)]
        if not active:
            break
        requests = []
        for run in active:
            turn_index, _ = run.points[step]
            run.state.turns = [dict(t) for t in run.record["turns"][: turn_index + 1]]
            requests.append(simulation.request(run.state, Role.USER.value))
        generations = backend.generate(requests, params)
        result.backend_calls += 1
        for run, generation in zip(active, generations, strict=True):
            turn_index, items = run.points[step]
            counters["questions"] += 1
            parsed = simulation.parse_generation(generation, Role.USER.value)
            if parsed is None:
                counters["unparsed_answers"] += 1
            elif parsed.repaired:
                counters["repaired_answers"] += 1
            if parsed is not None and parsed.action == Action.ACCEPT:
                chosen = _chosen(parsed, items)
                run.decisions += [_decision(i, False, turn_index) for i in items if i is not chosen]
                run.decisions.append(_decision(chosen, True, turn_index))
                run.done = True
                counters["accepted"] += 1
            else:
                run.decisions += [_decision(i, False, turn_index) for i in items]
        step += 1
    for run in runs:
        result.dialogues.append(
            {
                "dialogue_id": str(run.record["dialogue_id"]),
                "target_ids": [t["item_id"] for t in run.record.get("target_items", []) if t.get("item_id")],
                "decisions": run.decisions,
            }
        )
    result.counters = dict(sorted(counters.items()))
    return result
