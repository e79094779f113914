"""The ``replay`` kind on real ReDial dialogues with a scripted user simulator: its decisions, what it is shown
(teacher forcing, no target title outside real recommender turns), its skips, and the SR/ET/FR bookkeeping with
bootstrap intervals on hand-computed cases. The kind runs through the real run engine here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.fake_backends import ScriptedBackend
from fixtures.fake_simulation import make_config
from fixtures.simulate_records import catalog, redial_record

from crsdata.schema import item_ref, load_extra, new_dialogue, new_turn
from crsdata.simulate.engine import RunEngine
from crsdata.simulate.leak import normalize_text, title_variants
from crsdata.simulate.replay import ReplaySimulation, proposals, score_replay
from crsdata.simulate.source import SimulationSource, fingerprint_records


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


def run_replay(
    tmp_path: Path, records: list[dict], style: str = "instruct", batch_size: int = 4
) -> tuple[ScriptedBackend, list[dict], dict]:
    """Replays ``records`` (each once) through the run engine; returns the backend, the records by source id,
    and the manifest."""
    backend = ScriptedBackend("user-model", scripted_user)
    sim = ReplaySimulation({"user": backend, "recommender": backend}, catalog=catalog(), style=style)
    source = SimulationSource("real", "dataset", records, fingerprint_records(records), "real", split="validation")
    config = make_config(sim, source, n=len(records), batch_size=batch_size, split="validation")
    result = RunEngine(sim, source, config, tmp_path / "run", progress=False).run()
    by_source = sorted(result.records, key=lambda r: load_extra(r["extra"])["source_dialogue_id"])
    return backend, by_source, result.manifest


# The validation dialogues these tests replay have no film their seekers marked suggested, unseen and liked (the
# builder's target rule), so each gets a hand-chosen target here: the mechanics do not depend on which.
TARGETS = {"16162": "76012", "4362": "161546", "15266": "197388"}  # The Exorcist, Trainspotting, Hide and Seek


def targeted(dialogue_id: str) -> dict:
    record = redial_record(dialogue_id)
    item = next(i for t in record["turns"] for i in t["items"] if i["item_id"] == TARGETS[dialogue_id])
    record["target_items"] = [item_ref(item["item_id"], item["title"])]
    return record


def decisions(record: dict) -> list[dict]:
    return load_extra(record["extra"])["decisions"]


def test_proposals_are_new_linked_items_of_recommender_turns():
    record = redial_record("4362", builder_targets=True)
    found, unlinked = proposals(record["turns"])
    # Turn 2 also names The Shape of Water, which the seeker brought up first: the recommender names it, so it is
    # proposed (the target rule counts any film named in a recommender message); turn 6 names Slumdog
    # Millionaire, which only the seeker named before.
    assert [(i, [x["item_id"] for x in items]) for i, items in found] == [
        (2, ["120092", "117515"]),
        (4, ["152082"]),
        (6, ["121678", "161546"]),
    ]
    assert unlinked == 0


def test_decisions_on_real_dialogues(tmp_path):
    records = [targeted("16162"), targeted("4362"), targeted("15266")]
    backend, replayed, manifest = run_replay(tmp_path, records)
    assert [load_extra(r["extra"])["source_dialogue_id"] for r in replayed] == ["15266", "16162", "4362"]
    by_id = {load_extra(r["extra"])["source_dialogue_id"]: r for r in replayed}
    assert decisions(by_id["16162"]) == [
        {"item_id": "202190", "accepted": False, "round": 2},
        {"item_id": "83192", "accepted": False, "round": 2},
        # The accepting answer names The Exorcist: it is the accepted item, listed after the other one.
        {"item_id": "131178", "accepted": False, "round": 4},
        {"item_id": "76012", "accepted": True, "round": 4},
    ]
    assert by_id["16162"]["outcome"]["end_reason"] == "accept"
    assert by_id["16162"]["outcome"]["accepted_item"]["item_id"] == "76012"
    # Accepting a non-target before any target was proposed (early termination, in the metrics' terms).
    assert decisions(by_id["4362"]) == [
        {"item_id": "120092", "accepted": False, "round": 2},
        {"item_id": "117515", "accepted": True, "round": 2},
    ]
    assert decisions(by_id["15266"]) == [
        {"item_id": i, "accepted": False, "round": r}
        for i, r in (("188047", 0), ("152521", 2), ("197388", 4), ("106233", 6))
    ]
    assert by_id["15266"]["outcome"]["end_reason"] == "reject"
    # One request per proposal until the first accept; each dialogue's turns end at its last judged turn.
    assert len(backend.requests) == 2 + 1 + 4
    assert [len(r["turns"]) for r in replayed] == [7, 5, 3]
    assert manifest["counters"]["questions"] == 7 and manifest["counters"]["accepted"] == 2
    assert manifest["counters"]["unparsed_answers"] == 1
    answers = load_extra(by_id["15266"]["extra"])["answers"]
    assert [a["action"] for a in answers].count("") == 1  # the garbled answer, kept as written
    assert any(a["response"] == "sure whatever" for a in answers)
    # The real recommender is not a model: a replayed dialogue is not self-play.
    assert all(r["provenance"]["recommender_model"] == "" for r in replayed)
    assert all(r["provenance"]["user_model"] == "user-model" for r in replayed)


def test_results_do_not_depend_on_batching(tmp_path):
    records = [targeted("16162"), targeted("4362"), targeted("15266")]
    _, one, _ = run_replay(tmp_path / "one", records, batch_size=1)
    _, many, _ = run_replay(tmp_path / "many", records, batch_size=3)
    assert [decisions(r) for r in one] == [decisions(r) for r in many]


def test_the_simulator_sees_the_real_dialogue_up_to_the_proposal(tmp_path):
    backend, _, _ = run_replay(tmp_path, [targeted("16162")])
    first, second = backend.requests
    # Teacher forcing: the real turns up to and including the recommender turn, nothing after it.
    assert first.messages[-1]["content"].startswith("<action><recommend></action><response>I think one of the")
    assert "It Follows" not in first.messages[-1]["content"]
    assert any("I thought <movie_title>It Follows (2014)</movie_title>" in m["content"] for m in second.messages)
    assert "Nothing beats <movie_title>The Exorcist (1973)</movie_title>" in second.messages[-1]["content"]
    assert "What you want now:" in first.messages[0]["content"]


def _occurrences(text: str, titles: list[str]) -> int:
    norm = f" {normalize_text(text)} "
    return sum(norm.count(f" {v} ") for t in titles for v in title_variants(t))


@pytest.mark.parametrize("style", ["instruct", "finetuned"])
def test_target_titles_reach_the_simulator_only_inside_real_recommender_turns(tmp_path, style):
    """The leak guard of the replay protocol, checked on every prompt of real dialogues whose seekers name the
    targets themselves (after the recommender did): user turns are scrubbed, the persona never has them."""
    named_by_recommender = real_user_mentions = 0
    for record in [targeted("16162"), targeted("4362"), targeted("15266")]:
        titles = [t["title"] for t in record["target_items"]]
        real_user_mentions += sum(_occurrences(t["text"], titles) for t in record["turns"] if t["role"] == "user")
        backend, _, _ = run_replay(tmp_path / record["dialogue_id"], [record], style=style)
        for request in backend.requests:
            if style == "instruct":
                # The recommender's turns are the chat's `user` messages; the simulator's own are `assistant`.
                persona = request.messages[0]["content"]
                own = [m["content"] for m in request.messages[1:] if m["role"] == "assistant"]
                other = [m["content"] for m in request.messages[1:] if m["role"] == "user"]
            else:
                persona, conversation = request.prompt.split("[CONVERSATION]\n", 1)
                own = [line for line in conversation.splitlines() if line.startswith("user:")]
                other = [line for line in conversation.splitlines() if line.startswith("recommender:")]
            assert _occurrences(persona, titles) == 0, persona
            assert all(_occurrences(text, titles) == 0 for text in own), own
            named_by_recommender += sum(_occurrences(text, titles) for text in other)
    assert real_user_mentions > 0  # the real seekers do name targets: those turns reached the simulator scrubbed
    assert named_by_recommender > 0  # the protocol: the real recommender does name targets


def test_a_target_title_outside_recommender_turns_raises(tmp_path):
    from crsdata.simulate.leak import TargetLeakError

    backend = ScriptedBackend("user-model", scripted_user)
    sim = ReplaySimulation({"user": backend, "recommender": backend}, catalog=catalog())
    state = sim.start(targeted("16162"), "x", 0)
    # A real user turn that slipped through unscrubbed would tell the simulator the answer.
    first_user = next(i for i, t in enumerate(state.turns) if t["role"] == "user")
    state.turns[first_user] = {**state.turns[first_user], "text": "I loved The Exorcist (1973)"}
    with pytest.raises(TargetLeakError, match="Exorcist"):
        sim.request(state, "user")


def test_dialogues_without_targets_or_proposals_are_skipped_with_reasons(tmp_path):
    no_targets = redial_record("16162", builder_targets=True)  # the builder found none: its reason is the skip's
    no_targets["dialogue_id"] = "no-targets"
    assert no_targets["target_items"] == []
    quiet = targeted("16162")
    quiet["dialogue_id"] = "quiet"
    for turn in quiet["turns"]:
        if turn["role"] == "recommender":
            turn["items"] = [item_ref("", i["title"]) for i in turn["items"]]  # unlinked: nothing to score
    shining = new_turn(0, "recommender", "Try The Shining (1980)", items=[item_ref("202190", "x")])
    no_history = new_dialogue("bare", "redial", "test", [shining])
    no_history["target_items"] = [item_ref("202190", "The Shining (1980)")]
    rejected = targeted("15266")  # a dialogue that ended in a reject: the seeker did not want the film
    rejected["dialogue_id"] = "rejected"
    rejected["outcome"] = {**rejected["outcome"], "end_reason": "reject"}
    records = [no_targets, quiet, no_history, rejected, targeted("4362")]
    backend, replayed, manifest = run_replay(tmp_path, records)
    assert [load_extra(r["extra"])["source_dialogue_id"] for r in replayed] == ["4362"]
    reasons = sorted((s["source_record"], s["reason"]) for s in manifest["skipped"])
    assert reasons == [
        ("bare", "no-history"),
        ("no-targets", "no-suggested-unseen-liked-film"),
        ("quiet", "no_recommender_items"),
        ("rejected", "target_rejected"),
    ]
    # Each record once: the run does not draw the skipped records' places again from a second pass.
    assert len(backend.requests) == 1


# ---------------------------------------------------------------------------------------------------------
# Bookkeeping: SR/ET/FR and their intervals, by hand


def _replayed(
    source_id: str,
    target: str,
    decided: list[tuple[str, bool, int]],
    end: str = "reject",
    proposed: list[tuple[int, list[str]]] | None = None,
) -> dict:
    """A replayed record as the kind writes it; ``proposed`` defaults to the rounds of ``decided``."""
    if proposed is None:
        rounds: dict[int, list[str]] = {}
        for item, _, round_ in decided:
            rounds.setdefault(round_, []).append(item)
        proposed = list(rounds.items())
    record = new_dialogue(
        f"replay-{source_id}",
        "replay",
        "test",
        [],
        target_items=[item_ref(target, target)],
        outcome={"end_reason": end},
        extra={
            "source_dialogue_id": source_id,
            "target_id": target,
            "decisions": [{"item_id": i, "accepted": a, "round": r} for i, a, r in decided],
            "answers": [{"round": r, "action": "", "response": ""} for r in dict.fromkeys(r for _, _, r in decided)],
            "proposals": [[r, items] for r, items in proposed],
        },
    )
    return record


def test_sr_et_fr_bookkeeping_by_hand():
    records = [
        _replayed("a", "t", [("x", False, 1), ("t", True, 3)], "accept"),  # success
        _replayed("b", "t", [("x", True, 1)], "accept"),  # early termination: t never proposed before
        _replayed("c", "t", [("t", False, 1), ("x", True, 3)], "accept"),  # failure: turned the target down
        _replayed("d", "u", [("x", False, 1), ("u", True, 1)], "accept"),  # success: the target among two
        _replayed("e", "t", [("t", False, 1), ("x", False, 2)]),  # failure: nothing accepted
        _replayed("f", "t", [("t", True, 1)], "error"),  # a backend error: left out, counted
    ]
    scored = score_replay(records, {"no_target_items": 3}, samples=2000, seed=1)
    assert scored["n_dialogues"] == 5 and scored["n_skipped"] == 4
    assert scored["skipped"] == {"backend_error": 1, "no_target_items": 3}
    assert (scored["sr"], scored["et"], scored["fr"]) == pytest.approx((2 / 5, 1 / 5, 2 / 5))
    assert scored["counts"] == {"success": 2, "early_termination": 1, "failure": 2}
    assert [d["outcome"] for d in scored["dialogues"]] == [
        "success",
        "early_termination",
        "failure",
        "success",
        "failure",
    ]
    # Percentile bootstrap over five dialogues: each interval holds its rate, stays in [0, 1], and with two
    # successes of five the lower bound of SR is 0 (a resample without either) and the upper 0.8 or 1.
    for rate in ("sr", "et", "fr"):
        low, high = scored["intervals"][rate]
        assert 0 <= low <= scored[rate] <= high <= 1
    assert scored["intervals"]["sr"][0] == 0.0 and scored["intervals"]["sr"][1] >= 0.8
    # The same seed gives the same intervals; no resamples, no intervals.
    assert score_replay(records, {"no_target_items": 3}, samples=2000, seed=1)["intervals"] == scored["intervals"]
    assert score_replay(records, {}, samples=0)["intervals"] == {}
    json.dumps(scored)


def test_all_the_same_outcome_gives_a_degenerate_interval():
    records = [_replayed(str(i), "t", [("t", True, 1)], "accept") for i in range(4)]
    scored = score_replay(records, {}, samples=500)
    assert scored["sr"] == 1.0 and scored["intervals"]["sr"] == [1.0, 1.0]
    assert scored["intervals"]["fr"] == [0.0, 0.0]


def test_nothing_scored_gives_no_rates():
    scored = score_replay([_replayed("f", "t", [], "error")], {"no_recommender_items": 2})
    assert scored["sr"] is None and scored["n_dialogues"] == 0 and scored["n_skipped"] == 3


def test_results_carry_baselines_and_decision_scores_on_the_same_dialogues():
    records = [
        # proposals (round, items); target t. The simulator: declines x, accepts t.
        _replayed("a", "t", [("x", False, 1), ("t", True, 3)], "accept"),
        # accepts y in a round that also proposed x; t would have come at round 5.
        _replayed("b", "t", [("x", False, 1), ("y", True, 1)], "accept", [(1, ["x", "y"]), (5, ["t"])]),
        # declines everything; t came first.
        _replayed("c", "t", [("t", False, 1), ("z", False, 2)], "reject"),
    ]
    scored = score_replay(records, {}, samples=0, seed=3)
    assert (scored["sr"], scored["et"], scored["fr"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    # accept_first: a accepts x (t not yet proposed: ET), b accepts x and y (ET), c accepts t (success).
    assert scored["baselines"]["accept_first"] == pytest.approx({"sr": 1 / 3, "et": 2 / 3, "fr": 0.0})
    assert scored["baselines"]["never"] == {"sr": 0.0, "et": 0.0, "fr": 1.0}
    # With resamples the baselines get intervals too, from the same resamples of the same dialogues.
    resampled = score_replay(records, {}, samples=200, seed=3)["baseline_intervals"]
    assert set(resampled) == {"accept_first", "never", "random"}
    assert resampled["never"] == {"sr": [0.0, 0.0], "et": [0.0, 0.0], "fr": [1.0, 1.0]}
    # The simulator's own accept rate: 2 accepts in 5 answers.
    assert scored["baseline_random_accept_rate"] == pytest.approx(2 / 5)
    for rates in [scored["baselines"][name] for name in ("accept_first", "never", "random")] + [scored]:
        assert rates["sr"] + rates["et"] + rates["fr"] == pytest.approx(1.0)
    # Per proposal answered: tn (a, x), tp (a, t), fp (b), fn (c, t), tn (c, z).
    assert scored["decision_counts"] == {"tp": 1, "fp": 1, "tn": 2, "fn": 1, "n": 5}
    assert scored["decision_accuracy"] == pytest.approx(3 / 5)
    assert scored["accept_precision"] == scored["accept_recall"] == pytest.approx(1 / 2)
    assert scored["decision_balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    # decisions.json rows: the corpus's own dialogue id and exactly one target.
    assert [(r["source_dialogue_id"], r["target_ids"]) for r in scored["dialogues"]] == [
        ("a", ["t"]),
        ("b", ["t"]),
        ("c", ["t"]),
    ]


def test_summary_line_prints_the_baselines_beside_the_model():
    from crsdata.simulate.replay import summary_line

    records = [_replayed(str(i), "t", [("x", False, 1), ("t", True, 2)], "accept") for i in range(3)]
    scored = score_replay(records, {"no-questionnaire": 1}, samples=0)
    line = summary_line({**scored, "intervals": {}})
    assert line.startswith("SR 1.000, ET 0.000, FR 0.000 over 3 dialogues; 1 skipped (1 no-questionnaire)")
    assert "accept_first SR 0.000 ET 1.000 FR 0.000; never SR 0.000 ET 0.000 FR 1.000; random SR" in line
    assert "decision_accuracy 1.000" in line
