"""SR / ET / FR: hand-computed classifications, corner cases; decisions and outcome shares read from dialogues."""

from __future__ import annotations

import pytest

from crsdata.metrics import (
    Decision,
    MetricError,
    classify_outcomes,
    decisions_from_dialogue,
    dialogue_outcomes,
    sr_et_fr,
)
from crsdata.schema import item_ref, new_dialogue, new_turn


@pytest.mark.parametrize(
    ("decisions", "target", "expected"),
    [
        ([("a", False), ("t", True)], "t", "success"),
        ([("t", True)], "t", "success"),
        ([("b", True)], "t", "early_termination"),
        ([("a", False), ("b", True), ("t", True)], "t", "early_termination"),  # judged at the first acceptance
        ([("t", False), ("c", False)], "t", "failure"),
        ([("a", False), ("c", False)], "t", "failure"),  # target never proposed, nothing accepted
        ([], "t", "failure"),  # no recommendation at all
        ([("t", False), ("b", True)], "t", "failure"),  # target turned down, then another accepted
        ([("t", False), ("b", True), ("t", True)], "t", "failure"),
        ([("a", True, 3), ("t", True, 3)], "t", "success"),  # accepted together with the target
        ([("a", True, 3), ("t", False, 3)], "t", "failure"),  # target proposed in the same round, rejected
        ([("u", True)], ["t", "u"], "success"),  # any of several targets
        ([{"item": "b", "accepted": True}], "t", "early_termination"),
        ([Decision("t", True, 0)], "t", "success"),
    ],
)
def test_classification(decisions: list, target: object, expected: str) -> None:
    assert classify_outcomes([decisions], [target]) == [expected]


def test_rates_are_exclusive_and_sum_to_one() -> None:
    decisions = [
        [("a", False), ("t", True)],
        [("b", True)],
        [("t", False)],
        [("t", False), ("b", True)],
        [],
    ]
    result = sr_et_fr(decisions, ["t"] * 5)
    assert result["sr"] == pytest.approx(1 / 5)
    assert result["et"] == pytest.approx(1 / 5)
    assert result["fr"] == pytest.approx(3 / 5)
    assert result["sr"] + result["et"] + result["fr"] == pytest.approx(1.0)
    assert result["counts"] == {"success": 1, "early_termination": 1, "failure": 3}
    assert result["n_dialogues"] == 5


def test_rounds_order_decisions_not_positions() -> None:
    # Given out of order, rounds decide: b (round 1) was accepted before t was proposed (round 2).
    assert classify_outcomes([[("t", True, 2), ("b", True, 1)]], ["t"]) == ["early_termination"]


@pytest.mark.parametrize(
    ("decisions", "targets", "message"),
    [
        ([], [], "no dialogues"),
        ([[("a", True)]], [""], "no target"),
        ([[("a", True)]], [[]], "no target"),
        ([[("a", True)], []], ["t"], "2 decision sequences but 1 targets"),
        ([[("a",)]], ["t"], "(item, accepted)"),
    ],
)
def test_bad_input_is_a_clear_error(decisions: list, targets: list, message: str) -> None:
    with pytest.raises(MetricError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sr_et_fr(decisions, targets)


def _dialogue(turns: list[tuple[str, str, list[str]]], target: str = "m2", accepted: str = "") -> dict:
    built = [
        new_turn(i, role, f"turn {i}", action=action, items=[item_ref(x, x.upper()) for x in items])
        for i, (role, action, items) in enumerate(turns)
    ]
    outcome = {"accepted_item": item_ref(accepted, accepted.upper())} if accepted else None
    return new_dialogue("d1", "interplay-sim", "test", built, target_items=[item_ref(target, "M2")], outcome=outcome)


def test_decisions_from_dialogue_reject_then_accept() -> None:
    record = _dialogue(
        [
            ("user", "greeting", []),
            ("recommender", "recommend", ["m1"]),
            ("user", "feedback", []),
            ("recommender", "recommend", ["m2"]),
            ("user", "accept", []),
        ]
    )
    assert decisions_from_dialogue(record) == [Decision("m1", False, 2), Decision("m2", True, 4)]
    assert dialogue_outcomes([record])["target_accept_rate"] == 1.0


def test_accept_names_one_of_several_items() -> None:
    record = _dialogue([("recommender", "recommend", ["m1", "m2"]), ("user", "accept", ["m1"])])
    assert decisions_from_dialogue(record) == [Decision("m1", True, 1), Decision("m2", False, 1)]
    # m2, the target, was proposed in the same round and not accepted: a failure, not an early termination.
    assert classify_outcomes([decisions_from_dialogue(record)], ["m2"]) == ["failure"]


def test_accept_without_names_uses_outcome_then_everything() -> None:
    two = [("recommender", "recommend", ["m1", "m2"]), ("user", "accept", [])]
    by_outcome = decisions_from_dialogue(_dialogue(two, accepted="m1"))
    assert [(d.item, d.accepted) for d in by_outcome] == [("m1", True), ("m2", False)]
    everything = decisions_from_dialogue(_dialogue(two))
    assert [(d.item, d.accepted) for d in everything] == [("m1", True), ("m2", True)]


def test_consecutive_recommend_turns_are_answered_together() -> None:
    record = _dialogue(
        [("recommender", "recommend", ["m1"]), ("recommender", "recommend", ["m3"]), ("user", "accept", ["m3"])]
    )
    assert decisions_from_dialogue(record) == [Decision("m1", False, 2), Decision("m3", True, 2)]
    assert dialogue_outcomes([record])["early_accept_rate"] == 1.0


def test_pending_items_at_the_end_follow_the_outcome() -> None:
    ends_on_offer = [("user", "disclose-goal", []), ("recommender", "recommend", ["m2"])]
    assert decisions_from_dialogue(_dialogue(ends_on_offer, accepted="m2")) == [Decision("m2", True, 2)]
    assert decisions_from_dialogue(_dialogue(ends_on_offer)) == [Decision("m2", False, 2)]


def test_unlinked_items_compare_by_title() -> None:
    turns = [
        new_turn(0, "recommender", "Try Heat", action="recommend", items=[item_ref("", "Heat  (1995)")]),
        new_turn(1, "user", "ok", action="accept"),
    ]
    record = new_dialogue("d", "interplay-sim", "test", turns, target_items=[item_ref("", "heat (1995)")])
    assert dialogue_outcomes([record])["target_accept_rate"] == 1.0


def test_dialogues_without_labels_or_targets() -> None:
    unlabelled = _dialogue([("recommender", "none", ["m2"]), ("user", "none", [])])
    assert decisions_from_dialogue(unlabelled) == []
    result = dialogue_outcomes([unlabelled])
    assert result["failure_rate"] == 1.0 and result["accept_rate"] == 0.0 and result["n_without_recommendation"] == 1
    no_target = new_dialogue("x", "redial", "test", [])
    with pytest.raises(MetricError, match="dialogue x has no target_items"):
        dialogue_outcomes([no_target])


def test_dialogue_outcomes_accept_rate_counts_any_acceptance() -> None:
    """accept_rate counts a dialogue whose user accepted anything; the three classes still sum to 1."""
    target_first = _dialogue([("recommender", "recommend", ["m2"]), ("user", "accept", [])])
    other_first = _dialogue([("recommender", "recommend", ["m1"]), ("user", "accept", ["m1"])])
    turned_down = _dialogue(
        [
            ("recommender", "recommend", ["m2"]),
            ("user", "feedback", []),
            ("recommender", "recommend", ["m3"]),
            ("user", "accept", []),
        ]
    )
    nothing = _dialogue([("recommender", "recommend", ["m1"]), ("user", "feedback", [])])
    result = dialogue_outcomes([target_first, other_first, turned_down, nothing])
    assert result["accept_rate"] == 0.75  # the fourth user accepted nothing
    assert (result["target_accept_rate"], result["early_accept_rate"], result["failure_rate"]) == (0.25, 0.25, 0.5)
    assert result["counts"] == {"success": 1, "early_termination": 1, "failure": 2} and result["n_dialogues"] == 4


def test_is_self_play_reads_the_provenance() -> None:
    from crsdata.metrics import is_self_play

    record = _dialogue([])
    assert not is_self_play(record)
    record["provenance"].update(user_model="u", recommender_model="r")
    assert is_self_play(record)
    record["provenance"]["recommender_model"] = ""  # a real recommender, a simulated user: not self-play
    assert not is_self_play(record)


# ---------------------------------------------------------------------------------------------------------
# One target, the trivial baselines and per-proposal decision scores, by hand


def test_sr_et_fr_takes_exactly_one_target_per_dialogue() -> None:
    assert sr_et_fr([[("t", True)]], [["t"]])["sr"] == 1.0  # a list of one is one target
    with pytest.raises(MetricError, match="2 target items"):
        sr_et_fr([[("t", True)]], [["t", "u"]])


# Three dialogues, target "t": proposals (round, items).
PROPOSALS = [
    [(1, ["t"]), (3, ["x"])],  # the target comes first
    [(1, ["x", "y"]), (3, ["t"])],  # another proposal first
    [(2, ["x"])],  # the target is never proposed
]


def test_baselines_by_hand() -> None:
    from crsdata.metrics.outcomes import baseline_rates

    rates = baseline_rates(PROPOSALS, ["t", "t", "t"], accept_rate=0.0, seed=0)
    # accept_first: success, early termination (x, y accepted before t came up), early termination.
    assert rates["accept_first"] == pytest.approx({"sr": 1 / 3, "et": 2 / 3, "fr": 0.0})
    assert rates["never"] == {"sr": 0.0, "et": 0.0, "fr": 1.0}
    assert rates["random"] == rates["never"]  # accept rate 0: random never accepts
    # Accept rate 1: random accepts the first proposal, as accept_first does.
    assert baseline_rates(PROPOSALS, ["t"] * 3, accept_rate=1.0, seed=5)["random"] == rates["accept_first"]
    for policy in rates.values():
        assert sum(policy.values()) == pytest.approx(1.0)


def test_random_baseline_is_seeded_and_follows_the_accept_rate() -> None:
    from crsdata.metrics.outcomes import baseline_rates

    many = PROPOSALS * 400
    first = baseline_rates(many, ["t"] * len(many), accept_rate=0.3, seed=7)["random"]
    assert first == baseline_rates(many, ["t"] * len(many), accept_rate=0.3, seed=7)["random"]
    assert sum(first.values()) == pytest.approx(1.0)
    # Expected by hand with p = 0.3: dialogue 1 succeeds with p (0.3); dialogue 2 ends early with p, succeeds
    # with (1 - p) p (0.21); dialogue 3 ends early with p. SR = (0.3 + 0.21) / 3 = 0.17, ET = 0.2.
    assert first["sr"] == pytest.approx(0.17, abs=0.03) and first["et"] == pytest.approx(0.2, abs=0.03)
    with pytest.raises(MetricError, match="accept_rate"):
        baseline_rates(PROPOSALS, ["t"] * 3, accept_rate=1.5, seed=0)


def test_decision_scores_by_hand() -> None:
    from crsdata.metrics.outcomes import decision_scores

    decisions = [
        [("x", False, 1), ("t", True, 3)],  # declined a non-target (tn), accepted the target (tp)
        [("x", False, 1), ("y", True, 1)],  # one round, accepted, no target in it (fp)
        [("t", False, 1), ("z", False, 2)],  # declined the target (fn), declined another (tn)
    ]
    scores = decision_scores(decisions, ["t", "t", "t"])
    assert scores["decision_counts"] == {"tp": 1, "fp": 1, "tn": 2, "fn": 1, "n": 5}
    assert scores["decision_accuracy"] == pytest.approx(3 / 5)
    assert scores["accept_precision"] == pytest.approx(1 / 2)
    assert scores["accept_recall"] == pytest.approx(1 / 2)
    assert scores["decision_balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # Never accepting: no precision, recall 0, balanced accuracy 0.5 whatever the class balance.
    never = decision_scores([[("x", False, 1), ("t", False, 2)]], ["t"])
    assert never["accept_precision"] is None and never["accept_recall"] == 0.0
    assert never["decision_balanced_accuracy"] == 0.5
