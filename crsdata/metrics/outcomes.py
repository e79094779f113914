"""Success rate, early termination and failure rate of a simulated user (Interplay, section 4.3.1).

Interplay *replays* a real dialogue: the real recommender's turns are fed to the user simulator, which accepts
or rejects each proposed item (``crsdata replay`` records these decisions; :func:`sr_et_fr` scores them). The
same classes read from the accepts inside dialogues as written, self-play above all, are a different quantity
and are named as one: :func:`dialogue_outcomes`.

A replayed dialogue falls into exactly one of three classes, judged against its ground-truth target:

- **success (SR)**: the user accepts the target;
- **early termination (ET)**: the user accepts another item before the target has been proposed;
- **failure (FR)**: the user rejects everything, the target included.

The paper's wording leaves corner cases open; here each dialogue is judged **at its first acceptance**, since a
dialogue ends when the user accepts (decisions after it, which a replay may still produce, are ignored):

==========================================================  ===========
situation                                                   class
==========================================================  ===========
first acceptance includes a target item                      success
first acceptance is another item; no target proposed before  early termination
first acceptance is another item; a target was proposed      failure (the user turned the target down)
  (and not accepted) before it or in the same round
nothing accepted (target rejected or never proposed)         failure
no recommendation at all                                     failure
==========================================================  ===========

A *round* groups decisions taken at the same moment (several items proposed together and answered in one user
turn). Decisions given without a round each get their own round, in order. So the three rates are exclusive
and sum to 1 by construction.

Interplay's protocol has **one target per dialogue**, and :func:`sr_et_fr` takes exactly one (a dialogue given
several is an error): with every liked film as a target, accepting whatever comes first already scores SR 0.78
on ReDial's test split, and SR could not tell a user simulator from a trivial policy. The trivial policies'
figures on the same dialogues (:func:`baseline_rates`: accept the first proposal, never accept, accept at
random) go beside every SR, and :func:`decision_scores` scores each answer on its own: accepting is right only
at the proposal that names the target.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crsdata.metrics.common import MetricError
from crsdata.titles import item_key

SUCCESS = "success"
EARLY_TERMINATION = "early_termination"
FAILURE = "failure"
OUTCOME_CLASSES = (SUCCESS, EARLY_TERMINATION, FAILURE)


@dataclass(frozen=True)
class Decision:
    """The user's answer to one proposed item. ``round`` orders decisions in time; equal rounds are simultaneous."""

    item: str
    accepted: bool
    round: int | None = None


DecisionLike = Decision | Sequence[Any] | Mapping[str, Any]


def _as_decision(value: DecisionLike) -> Decision:
    if isinstance(value, Decision):
        return value
    if isinstance(value, Mapping):
        # The replay runner (crsdata.simulate.replay) writes "item_id"; hand-written cases often say "item".
        key = "item_id" if "item_id" in value else "item"
        if key not in value or "accepted" not in value:
            raise MetricError(f"a decision mapping needs 'item_id' (or 'item') and 'accepted', got {dict(value)!r}")
        return Decision(str(value[key]), bool(value["accepted"]), value.get("round"))
    if len(value) == 2:
        return Decision(str(value[0]), bool(value[1]))
    if len(value) == 3:
        return Decision(str(value[0]), bool(value[1]), value[2])
    raise MetricError(f"a decision is (item, accepted) or (item, accepted, round), got {value!r}")


def _one_target(value: str | Iterable[str], index: int) -> str:
    """The one target of dialogue ``index``: a string, or a sequence holding exactly one."""
    targets = [value] if isinstance(value, str) else [str(v) for v in value]
    targets = [t for t in targets if t]
    if not targets:
        raise MetricError(f"dialogue {index} has no target item: SR/ET/FR need the ground truth (one per dialogue)")
    if len(targets) != 1:
        raise MetricError(
            f"dialogue {index} has {len(targets)} target items ({targets[:5]}): SR/ET/FR take exactly one target per "
            "dialogue (Interplay's protocol)"
        )
    return targets[0]


def _as_targets(value: str | Iterable[str], index: int) -> set[str]:
    targets = {value} if isinstance(value, str) else {str(v) for v in value}
    targets.discard("")
    if not targets:
        raise MetricError(f"dialogue {index} has no target item: SR/ET/FR need the ground truth")
    return targets


def classify_outcomes(decisions: Sequence[Sequence[DecisionLike]], targets: Sequence[str | Iterable[str]]) -> list[str]:
    """One class per dialogue: ``"success"``, ``"early_termination"`` or ``"failure"`` (see the module doc).

    ``decisions[i]`` is dialogue ``i``'s sequence of decisions in order (``Decision``, ``(item, accepted)``,
    ``(item, accepted, round)`` or a dict with those keys); ``targets[i]`` its target item or items.
    """
    if len(decisions) != len(targets):
        raise MetricError(f"{len(decisions)} decision sequences but {len(targets)} targets")
    if len(decisions) == 0:
        raise MetricError("nothing to score: no dialogues")
    rows: list[int] = []
    rounds: list[float] = []
    accepted: list[bool] = []
    is_target: list[bool] = []
    for row, (sequence, target) in enumerate(zip(decisions, targets, strict=True)):
        wanted = _as_targets(target, row)
        for position, raw in enumerate(sequence):
            decision = _as_decision(raw)
            rows.append(row)
            rounds.append(float(position if decision.round is None else decision.round))
            accepted.append(decision.accepted)
            is_target.append(decision.item in wanted)
    n = len(decisions)
    row_a = np.asarray(rows, dtype=np.int64)
    round_a = np.asarray(rounds, dtype=np.float64)
    acc_a = np.asarray(accepted, dtype=bool)
    tgt_a = np.asarray(is_target, dtype=bool)

    # Per dialogue: the round of the first acceptance and of the first time a target was proposed.
    first_accept = np.full(n, np.inf)
    np.minimum.at(first_accept, row_a[acc_a], round_a[acc_a])
    first_target = np.full(n, np.inf)
    np.minimum.at(first_target, row_a[tgt_a], round_a[tgt_a])
    # Success when a target is among the items accepted in that first accepting round.
    in_first = acc_a & tgt_a & (round_a == first_accept[row_a])
    success = np.zeros(n, dtype=bool)
    success[row_a[in_first]] = True
    early = ~success & np.isfinite(first_accept) & (first_target > first_accept)

    labels = np.full(n, FAILURE, dtype=object)
    labels[early] = EARLY_TERMINATION
    labels[success] = SUCCESS
    return labels.tolist()


def sr_et_fr(decisions: Sequence[Sequence[DecisionLike]], targets: Sequence[str | Iterable[str]]) -> dict[str, Any]:
    """SR, ET and FR over dialogues, with the counts behind them; ``targets[i]`` is dialogue ``i``'s one target
    (a string, or a sequence of exactly one: more is a :class:`MetricError`).

    >>> sr_et_fr([[("a", False), ("t", True)], [("b", True)], [("t", False)]], ["t", "t", "t"])["sr"]
    0.3333333333333333
    """
    if len(decisions) != len(targets):
        raise MetricError(f"{len(decisions)} decision sequences but {len(targets)} targets")
    labels = classify_outcomes(decisions, [_one_target(t, i) for i, t in enumerate(targets)])
    counts = {name: labels.count(name) for name in OUTCOME_CLASSES}
    n = len(labels)
    return {
        "sr": counts[SUCCESS] / n,
        "et": counts[EARLY_TERMINATION] / n,
        "fr": counts[FAILURE] / n,
        "n_dialogues": n,
        "counts": counts,
    }


Proposal = tuple[int, Sequence[str]]  # (round, the items proposed together in it)


def policy_decisions(proposals: Sequence[Proposal], accept_at: int | None) -> list[Decision]:
    """The decisions of a policy that accepts the whole proposal number ``accept_at`` (0-based; None: none) and
    declines every one before it; the dialogue ends at the accept, as a replay does."""
    decisions = []
    for position, (round_, items) in enumerate(proposals):
        accepted = position == accept_at
        decisions.extend(Decision(str(item), accepted, round_) for item in items)
        if accepted:
            break
    return decisions


def baseline_rates(
    proposals: Sequence[Sequence[Proposal]], targets: Sequence[str | Iterable[str]], accept_rate: float, seed: int
) -> dict[str, dict[str, float]]:
    """SR/ET/FR of the three trivial policies on the same dialogues, each ``{"sr", "et", "fr"}``:

    - ``accept_first``: accepts the first proposal (every item it names);
    - ``never``: accepts nothing (FR 1 by construction);
    - ``random``: accepts each proposal with probability ``accept_rate`` (the simulator's own observed rate of
      accepts per proposal answered), the first accept ending the dialogue; seeded by ``seed``.

    ``proposals[i]`` is dialogue ``i``'s proposals in order, ``(round, items)``; ``targets[i]`` its one target.
    A policy accepting a whole proposal is generous to it when a proposal names several films (a user simulator
    accepts one), so these figures are upper bounds of what each policy scores.
    """
    out = {}
    for name, labels in baseline_outcomes(proposals, targets, accept_rate, seed).items():
        n = len(labels)
        out[name] = {rate: labels.count(cls) / n for rate, cls in zip(("sr", "et", "fr"), OUTCOME_CLASSES, strict=True)}
    return out


def baseline_outcomes(
    proposals: Sequence[Sequence[Proposal]], targets: Sequence[str | Iterable[str]], accept_rate: float, seed: int
) -> dict[str, list[str]]:
    """Each trivial policy's class per dialogue (:func:`baseline_rates` counts them; intervals resample them)."""
    if not 0.0 <= accept_rate <= 1.0:
        raise MetricError(f"accept_rate must be in [0, 1], got {accept_rate}")
    if len(proposals) != len(targets):
        raise MetricError(f"{len(proposals)} proposal sequences but {len(targets)} targets")
    one = [_one_target(t, i) for i, t in enumerate(targets)]
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[list[Decision]]] = {"accept_first": [], "never": [], "random": []}
    for points in proposals:
        draws = rng.random(len(points)) < accept_rate
        first_random = int(np.argmax(draws)) if draws.any() else None
        chosen["accept_first"].append(policy_decisions(points, 0 if points else None))
        chosen["never"].append(policy_decisions(points, None))
        chosen["random"].append(policy_decisions(points, first_random))
    return {name: classify_outcomes(decisions, one) for name, decisions in chosen.items()}


def decision_scores(
    decisions: Sequence[Sequence[DecisionLike]], targets: Sequence[str | Iterable[str]]
) -> dict[str, Any]:
    """Every answered proposal as a labelled example: accepting is right only at a proposal naming the target,
    and declining is right at every other (those before it, and those after a declined target).

    A proposal is a round of decisions; it counts as accepted when any of its items was. Returns
    ``decision_accuracy``, ``decision_balanced_accuracy`` (the mean of the accept and decline recalls; None when
    one class is absent), ``accept_precision`` (None without accepts), ``accept_recall`` (None without a target
    proposal) and ``decision_counts`` (``tp``, ``fp``, ``tn``, ``fn``, ``n``).
    """
    if len(decisions) != len(targets):
        raise MetricError(f"{len(decisions)} decision sequences but {len(targets)} targets")
    tp = fp = tn = fn = 0
    for index, (sequence, target) in enumerate(zip(decisions, targets, strict=True)):
        wanted = _one_target(target, index)
        rounds: dict[float, list[bool]] = {}
        for position, raw in enumerate(sequence):
            decision = _as_decision(raw)
            state = rounds.setdefault(float(position if decision.round is None else decision.round), [False, False])
            state[0] |= decision.accepted
            state[1] |= decision.item == wanted
        for accepted, positive in rounds.values():
            tp += accepted and positive
            fp += accepted and not positive
            tn += not accepted and not positive
            fn += not accepted and positive
    n = tp + fp + tn + fn
    recall = tp / (tp + fn) if tp + fn else None
    specificity = tn / (tn + fp) if tn + fp else None
    both = recall is not None and specificity is not None
    return {
        "decision_accuracy": (tp + tn) / n if n else None,
        "decision_balanced_accuracy": (recall + specificity) / 2 if both else None,
        "accept_precision": tp / (tp + fp) if tp + fp else None,
        "accept_recall": recall,
        "decision_counts": {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "n": n},
    }


def decisions_from_dialogue(record: Mapping[str, Any]) -> list[Decision]:
    """The user's decisions on recommended items, read from a dialogue in the crsdata schema.

    - A proposal is a recommender turn with action ``recommend`` and its ``items``.
    - Its answer is the next user turn (two recommend turns in a row are answered together); the decisions
      get that user turn's index as their round.
    - A user turn with action ``accept`` accepts the proposed items it names; if it names none of them, the
      dialogue's ``outcome.accepted_item`` when that was proposed; otherwise every pending item (the user took
      the suggestion as a whole). Any other user action rejects the pending items: Interplay's users have no
      explicit reject act, not accepting is rejecting.
    - Items still pending when the dialogue ends are accepted only if they are ``outcome.accepted_item``.

    Items are compared by :func:`~crsdata.titles.item_key` (catalog id, else normalised title).
    Corpora without action labels have no ``recommend`` turns and hence no decisions.
    """
    turns = record.get("turns") or []
    outcome_key = item_key(((record.get("outcome") or {}).get("accepted_item")) or {})
    decisions: list[Decision] = []
    pending: list[str] = []

    def settle(accepted: set[str], round_: int) -> None:
        decisions.extend(Decision(key, key in accepted, round_) for key in pending)
        pending.clear()

    last_round = -1
    for position, turn in enumerate(turns):
        # The turn's own index when it has one, so that rounds point back at the turn that decided.
        last_round = max(last_round + 1, int(turn.get("index") if turn.get("index") is not None else position))
        role, action = turn.get("role"), turn.get("action")
        if role == "recommender" and action == "recommend":
            for key in (item_key(ref) for ref in turn.get("items") or []):
                if key and key not in pending:
                    pending.append(key)
        elif role == "user" and pending:
            index = last_round
            if action == "accept":
                named = {item_key(ref) for ref in turn.get("items") or []} & set(pending)
                if named:
                    settle(named, index)
                elif outcome_key in pending:
                    settle({outcome_key}, index)
                else:
                    settle(set(pending), index)
            else:
                settle(set(), index)
    if pending:
        settle({outcome_key} if outcome_key in pending else set(), last_round + 1)
    return decisions


def dialogue_targets(record: Mapping[str, Any]) -> list[str]:
    return [key for key in (item_key(ref) for ref in record.get("target_items") or []) if key]


def is_self_play(record: Mapping[str, Any]) -> bool:
    """Whether models played both sides of the dialogue (``provenance.user_model`` and ``recommender_model``)."""
    provenance = record.get("provenance") or {}
    return bool(provenance.get("user_model")) and bool(provenance.get("recommender_model"))


def dialogue_outcomes(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Who accepted what inside dialogues as they were written, judged against their targets.

    Not Interplay's SR / ET / FR: those replay *real* recommender turns to the user simulator and judge its
    decisions (section 4.3.1; :func:`sr_et_fr` over ``crsdata replay``'s decisions). Here the decisions are
    read from the dialogues themselves (:func:`decisions_from_dialogue`), which in self-play are the simulated
    user answering the simulated recommender: the same classes, a different quantity. Returns

    - ``accept_rate``: dialogues in which the user accepted a recommended item;
    - ``target_accept_rate``, ``early_accept_rate``, ``failure_rate``: the classes of :func:`classify_outcomes`
      (first acceptance includes a target; another item accepted first, before a target was proposed;
      neither), which sum to 1;
    - ``n_dialogues``, ``counts`` (per class), ``n_without_recommendation``.

    Dialogues without a target cannot be judged and raise :class:`MetricError` naming the first one.
    """
    decisions, targets = [], []
    for record in records:
        wanted = dialogue_targets(record)
        if not wanted:
            raise MetricError(f"dialogue {record.get('dialogue_id', '?')} has no target_items: outcomes need them")
        decisions.append(decisions_from_dialogue(record))
        targets.append(wanted)
    labels = classify_outcomes(decisions, targets)
    counts = {name: labels.count(name) for name in OUTCOME_CLASSES}
    n = len(labels)
    return {
        "accept_rate": sum(any(d.accepted for d in sequence) for sequence in decisions) / n,
        "target_accept_rate": counts[SUCCESS] / n,
        "early_accept_rate": counts[EARLY_TERMINATION] / n,
        "failure_rate": counts[FAILURE] / n,
        "n_dialogues": n,
        "counts": counts,
        "n_without_recommendation": sum(1 for d in decisions if not d),
    }
