"""Replaying real ReDial dialogues to a scripted user simulator: decisions in the metrics' format."""

from __future__ import annotations

import json

import pytest
from simulate_fixtures import ScriptedBackend, catalog, recommender, redial_record

from crsdata.errors import BadInputError, SkipLog
from crsdata.schema import item_ref, new_dialogue, new_turn
from crsdata.simulate.interplay import InterplaySimulation
from crsdata.simulate.replay import proposals, replay_decisions


def scripted_user(own: int, last: str) -> str:
    """Accepts The Exorcist (naming it) and Pan's Labyrinth (naming nothing); garbles one answer."""
    if "Exorcist" in last:
        return (
            "<action><accept></action><response>Yes! <movie_title>The Exorcist (1973)</movie_title> it is.</response>"
        )
    if "Pan's Labyrinth" in last:
        return "<action><accept></action><response>Sounds great, I'll watch it.</response>"
    if "Hide and Seek" in last:
        return "sure whatever"
    return "<action><feedback></action><response>Not really my thing.</response>"


def _simulation(style: str = "instruct") -> InterplaySimulation:
    backends = {
        "user": ScriptedBackend("user-model", scripted_user),
        "recommender": ScriptedBackend("r", recommender()),
    }
    return InterplaySimulation(backends, catalog=catalog(), style=style)


def test_proposals_are_new_linked_items_of_recommender_turns():
    record = redial_record("4362")
    found, unlinked = proposals(record["turns"])
    # Turn 2 also names The Shape of Water, which the seeker brought up first: not a proposal.
    assert [(i, [x["item_id"] for x in items]) for i, items in found] == [(2, ["117515"]), (6, ["161546"])]
    assert unlinked == 0


def test_replay_decisions_on_real_dialogues():
    records = [redial_record("16162"), redial_record("4362"), redial_record("15266")]
    sim = _simulation()
    result = replay_decisions(records, sim, seed=5)
    assert result.dialogues == [
        {
            "dialogue_id": "16162",
            "target_ids": ["202190", "83192", "76012", "131178"],
            "decisions": [
                {"item_id": "202190", "accepted": False, "round": 2},
                {"item_id": "83192", "accepted": False, "round": 2},
                # The accepting answer names The Exorcist: it is the accepted item, listed after the other one.
                {"item_id": "131178", "accepted": False, "round": 4},
                {"item_id": "76012", "accepted": True, "round": 4},
            ],
        },
        # Accepting a non-target before any target was proposed (early termination, in the metrics' terms).
        {
            "dialogue_id": "4362",
            "target_ids": ["152082", "161546"],
            "decisions": [{"item_id": "117515", "accepted": True, "round": 2}],
        },
        {
            "dialogue_id": "15266",
            "target_ids": ["188047", "152521", "197388", "106233"],
            "decisions": [
                {"item_id": i, "accepted": False, "round": r}
                for i, r in (("188047", 0), ("152521", 2), ("197388", 4), ("106233", 6))
            ],
        },
    ]
    json.dumps(result.dialogues)  # the metrics read it as JSON lines
    # One backend call per step, batched across dialogues: 3, then 2 (16162 and 15266 left), then 15266 twice.
    backend = sim.backends["user"]
    assert result.backend_calls == backend.calls == 4
    assert len(backend.requests) == 3 + 2 + 1 + 1
    assert sim.backends["recommender"].calls == 0
    assert result.counters["accepted"] == 2 and result.counters["unparsed_answers"] == 1
    assert result.counters["questions"] == 7


def test_replay_feeds_the_real_dialogue_up_to_the_proposal():
    sim = _simulation()
    replay_decisions([redial_record("16162")], sim)
    first, second = sim.backends["user"].requests
    # Teacher forcing: the real turns up to and including the recommender turn, nothing after it.
    assert first.messages[-1]["content"].startswith("<action><recommend></action><response>I think one of the")
    assert "It Follows" not in first.messages[-1]["content"]
    assert any("I thought <movie_title>It Follows (2014)</movie_title>" in m["content"] for m in second.messages)
    assert "Nothing beats <movie_title>The Exorcist (1973)</movie_title>" in second.messages[-1]["content"]
    # The persona is in the system prompt, and the targets the real recommender named are only in turns.
    assert "What you want now:" in first.messages[0]["content"]
    assert "Shining" not in first.messages[0]["content"]


def test_replay_with_raw_prompts():
    sim = _simulation("finetuned")
    result = replay_decisions([redial_record("16162")], sim)
    assert result.dialogues[0]["decisions"][-1] == {"item_id": "76012", "accepted": True, "round": 4}
    assert all(r.prompt.endswith("\nuser:") for r in sim.backends["user"].requests)


def test_unusable_and_proposal_free_dialogues():
    no_history = new_dialogue(
        "bare",
        "redial",
        "test",
        [new_turn(0, "recommender", "Try The Shining (1980)", items=[item_ref("202190", "x")])],
    )
    no_history["target_items"] = [item_ref("202190", "The Shining (1980)")]
    quiet = redial_record("16162")
    quiet["dialogue_id"] = "quiet"
    for turn in quiet["turns"]:
        if turn["role"] == "recommender":
            turn["items"] = [item_ref("", i["title"]) for i in turn["items"]]  # unlinked: nothing to score
    result = replay_decisions([no_history, quiet], _simulation())
    assert result.skipped.total == 1 and result.skipped.counts["no-history"] == 1
    assert result.dialogues == [
        {"dialogue_id": "quiet", "target_ids": ["202190", "83192", "76012", "131178"], "decisions": []}
    ]
    assert result.counters["no_proposals"] == 1 and result.counters["unlinked_proposals"] == 4
    assert result.backend_calls == 0


def test_strict_skip_log_raises():
    record = redial_record("16162")
    record["target_items"] = []
    with pytest.raises(BadInputError) as err:
        replay_decisions([record], _simulation(), skip=SkipLog())
    assert err.value.field == "target_items"


def test_decisions_feed_the_outcome_metrics():
    from crsdata.metrics.outcomes import classify_outcomes, sr_et_fr

    records = [redial_record("16162"), redial_record("4362"), redial_record("15266")]
    result = replay_decisions(records, _simulation())
    # the replay rows go to the metrics as they are, no reshaping
    decisions = [row["decisions"] for row in result.dialogues]
    targets = [row["target_ids"] for row in result.dialogues]
    assert classify_outcomes(decisions, targets) == ["success", "early_termination", "failure"]
    rates = sr_et_fr(decisions, targets)
    assert (rates["sr"], rates["et"], rates["fr"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
