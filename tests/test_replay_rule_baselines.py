"""Replay's rule baselines (``exact_match``, ``similarity``) and ``--persona-history``: hand-computed SR/ET/FR and
decision scores of both rules, the choice of the rule and of tau on the tuning dialogues only, and real ReDial
records (train and official test dialogues built by ``crsdata build redial``, MiniLM from the wheel): the
baselines-only command, a full replay's results.json, card and ``crsdata evaluate``, and the two histories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crsdata.cli import main
from crsdata.metrics.match import TransformerMeanEmbedder
from crsdata.simulate.rule_baselines import (
    RuleDialogue,
    choose_exact_rule,
    choose_tau,
    exact_rule,
    fact_matches,
    outcomes_of,
    rule_name,
    score_rules,
    similarity_rule,
)

REDIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "redial"
CATALOG = REDIAL / "redial__id2info.json"
GENRE_DECADE = frozenset({"genre", "decade"})


def dialogue(name: str, proposals, seen=(), matches=None, scores=None) -> RuleDialogue:
    return RuleDialogue(name, "T", proposals, "cues", frozenset(seen), matches or {}, scores or {})


def hand_cases() -> list[RuleDialogue]:
    """Four dialogues whose outcomes under both rules are worked out by hand in the test below."""
    return [
        # The rules decline A, then accept the target T at round 3: success.
        dialogue("d1", [(1, ["A"]), (3, ["T"])], (), {"A": {"genre"}, "T": GENRE_DECADE}, {"A": 0.3, "T": 0.8}),
        # B is first in the turn and fits both rules, but the persona has seen it: the target is taken instead.
        dialogue("d2", [(1, ["B", "T"])], ["B"], {"B": GENRE_DECADE, "T": GENRE_DECADE}, {"B": 0.9, "T": 0.6}),
        # C fits both rules before the target is proposed: early termination.
        dialogue("d3", [(2, ["C"]), (4, ["T"])], (), {"C": GENRE_DECADE, "T": {"genre"}}, {"C": 0.7, "T": 0.4}),
        # Nothing fits exact_match (failure); similarity accepts the target at 0.55 (success).
        dialogue("d4", [(1, ["D"]), (2, ["T"])], (), {"T": {"genre"}}, {"D": 0.2, "T": 0.55}),
    ]


def test_both_rules_on_hand_computed_dialogues():
    cases = hand_cases()
    exact = outcomes_of(cases, [exact_rule(d, GENRE_DECADE) for d in cases])
    assert exact["labels"] == ["success", "success", "early_termination", "failure"]
    assert (exact["sr"], exact["et"], exact["fr"]) == (0.5, 0.25, 0.25)
    # Per proposal: d1 declines A (tn) and accepts T (tp); d2 accepts the turn naming T (tp); d3 accepts C (fp,
    # and the dialogue ends); d4 declines D (tn) and T (fn). Recall 2/3, specificity 2/3.
    assert exact["decision_counts"] == {"tp": 2, "fp": 1, "tn": 2, "fn": 1, "n": 6}
    assert exact["decision_balanced_accuracy"] == pytest.approx(2 / 3)
    # The seen film B is declined and the target accepted in the same turn.
    assert exact_rule(cases[1], GENRE_DECADE) == [
        {"item_id": "B", "accepted": False, "round": 1},
        {"item_id": "T", "accepted": True, "round": 1},
    ]
    similar = outcomes_of(cases, [similarity_rule(d, 0.5) for d in cases])
    assert similar["labels"] == ["success", "success", "early_termination", "success"]
    assert (similar["sr"], similar["et"], similar["fr"]) == (0.75, 0.25, 0.0)
    # d4 now accepts T (tp); recall 3/3, specificity 2/3 (tn: A, D; fp: C).
    assert similar["decision_counts"] == {"tp": 3, "fp": 1, "tn": 2, "fn": 0, "n": 6}
    assert similar["decision_balanced_accuracy"] == pytest.approx((1 + 2 / 3) / 2)
    # Without the seen knowledge d2 would accept B with the target beside it in the same turn: a failure.
    unseen = dialogue("d2", [(1, ["B", "T"])], (), cases[1].matches, cases[1].scores)
    assert outcomes_of([unseen], [similarity_rule(unseen, 0.5)])["labels"] == ["failure"]


def test_fact_matches_reads_the_shown_fields_in_the_cues():
    row = {
        "item_id": "1",
        "title": "Some Film",
        "year": 1994,
        "genres": ["Comedy", "Drama"],
        "people": [{"name": "Ann Director", "role": "director"}, {"name": "Bob Star", "role": "star"}],
        "plot": "Two friends open a bakery by the sea.",
    }
    # The ungrounded persona's target attributes repeat the shown fields: a lookup.
    interplay = "A comedy, drama movie from the 1990s, directed by Ann Director, starring Bob Star."
    assert fact_matches(interplay, row) == {"genre_list", "genre", "decade", "director", "star"}
    assert fact_matches("Story: two friends open a bakery.", row) == {"plot"}
    # Catalog cues name qualities in other words: only the era is left to compare.
    assert fact_matches("Looking for: something funny, from the 90s era. Themes: friendship.", row) == {"decade"}
    assert fact_matches("Looking for a film.", row) == frozenset()


def test_rule_and_tau_are_chosen_on_the_tuning_dialogues_only():
    # Tuning: the non-target D scores 0.40, the target 0.60, so every tau in (0.40, 0.60] is perfect; the lowest
    # grid value wins the tie. exact_match: only "year" tells the target apart.
    tuning = [
        dialogue(f"t{i}", [(1, ["D"]), (2, ["T"])], (), {"D": {"genre"}, "T": {"genre", "year"}}, {"D": 0.4, "T": 0.6})
        for i in range(3)
    ]
    tau, tuned = choose_tau(tuning)
    assert tau == pytest.approx(0.405) and tuned["decision_balanced_accuracy"] == 1.0
    fields, tuned = choose_exact_rule(tuning)
    assert rule_name(fields) == "year" and tuned["sr"] == 1.0
    # On the test dialogues another tau (above 0.45) would be better; the baseline keeps the tuning split's.
    test = [dialogue("x", [(1, ["D"]), (2, ["T"])], (), {"D": {"genre", "year"}}, {"D": 0.45, "T": 0.9})]
    baselines, intervals = score_rules(test, tuning, "train", samples=50, seed=0)
    assert baselines["similarity"]["tau"] == pytest.approx(0.405) and baselines["similarity"]["tau_split"] == "train"
    assert baselines["similarity"]["et"] == 1.0  # D (0.45) passes the tuned tau
    assert baselines["exact_match"]["rule"] == "year" and baselines["exact_match"]["et"] == 1.0
    assert baselines["exact_match"]["tuning"]["n_dialogues"] == 3
    assert set(intervals) == {"exact_match", "similarity"} and set(intervals["similarity"]) == {"sr", "et", "fr"}


# ---------------------------------------------------------------------------------------------------------
# Real records: a few ReDial training and official test dialogues.


@pytest.fixture(scope="module")
def redial_train_test(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 40 dialogues of a train_partial file and of the official test file, built into one folder with
    a train and a test split."""
    folder = tmp_path_factory.mktemp("redial-train-test")
    inputs = []
    for name, path in (
        ("kgsf_train_subset.jsonl", REDIAL / "train_partial" / "kgsf_train_subset_901.jsonl"),
        ("test_data.jsonl", REDIAL / "official" / "test_data.jsonl"),
    ):
        lines = path.read_text(encoding="utf-8").splitlines()[:40]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        inputs += ["--input", str(folder / name)]
    assert main(["build", "redial", *inputs, "--out", str(folder / "built"), "--catalog", str(CATALOG)]) == 0
    return folder / "built"


def test_baselines_only_on_real_dialogues(redial_train_test, tmp_path, capsys):
    figures = {}
    for history in ("interplay", "reported"):
        out = tmp_path / history
        args = ["replay", "--source", str(redial_train_test), "--split", "test", "--out", str(out)]
        assert main([*args, "--baselines-only", "--persona-history", history, "--bootstrap", "100"]) == 0
        stdout = capsys.readouterr().out
        results = json.loads((out / "baselines.json").read_text())
        assert results["persona_history"] == history and results["split"] == "test"
        assert results["n_dialogues"] > 5 and results["rule_baselines"]["tuning_dialogues"] > 5
        assert set(results["baselines"]) == {"accept_first", "exact_match", "similarity"}
        for name in ("exact_match", "similarity"):
            rates = results["baselines"][name]
            assert rates["sr"] + rates["et"] + rates["fr"] == pytest.approx(1.0)
            assert 0.0 <= rates["decision_balanced_accuracy"] <= 1.0 and rates["chosen_on"] == "train"
            assert set(results["baseline_intervals"][name]) == {"sr", "et", "fr"}
        assert 0.0 <= results["baselines"]["similarity"]["tau"] <= 1.0
        assert results["rule_baselines"]["embedder"] == TransformerMeanEmbedder().name  # the wheel's MiniLM
        assert "similarity SR" in stdout and "exact_match SR" in stdout and f"persona history {history}" in stdout
        figures[history] = results
    # Same dialogues either way; a persona that knows every film it reported declines at least as well.
    assert figures["interplay"]["n_dialogues"] == figures["reported"]["n_dialogues"]
    assert figures["interplay"]["baselines"]["accept_first"] == figures["reported"]["baselines"]["accept_first"]


def test_reported_history_lists_every_reported_film():
    from fixtures.simulate_records import catalog, redial_records

    from crsdata.simulate.replay import ReplaySimulation
    from crsdata.simulate.rule_baselines import NoModel, drawn_views

    records = [r for r in redial_records(limit=30, with_targets=False)]
    for record in records:  # validation dialogues rarely have the builder's target; any recommended film will do
        if not record["target_items"]:
            named = [i for t in record["turns"] if t["role"] == "recommender" for i in t["items"] if i["item_id"]]
            record["target_items"] = named[-1:]
    backend = NoModel()
    views = {}
    for history, n_watched in (("interplay", 3), ("reported", None)):
        sim = ReplaySimulation({"user": backend, "recommender": backend}, catalog=catalog(), n_watched=n_watched)
        assert sim.persona_history == history and sim.settings()["persona_history"] == history
        views[history] = {v.replay_id: v.seen for v in drawn_views(sim, records, seed=0)[0]}
    assert views["interplay"].keys() == views["reported"].keys() and views["interplay"]
    assert all(len(seen) <= 3 for seen in views["interplay"].values())
    assert all(views["interplay"][k] <= views["reported"][k] for k in views["interplay"])
    assert any(len(seen) > 3 for seen in views["reported"].values())


def test_a_replay_reports_the_rules_beside_the_model(redial_train_test, tmp_path, monkeypatch, capsys):
    from fixtures.fake_backends import ScriptedBackend

    def answer(own: list[str], last: str) -> str:
        return "<action><feedback></action><response>Not for me.</response>"

    backend = ScriptedBackend("scripted", answer)
    monkeypatch.setattr("crsdata.simulate.job.make_backends", lambda config: {"user": backend, "recommender": backend})
    out = tmp_path / "replay"
    args = ["replay", "--source", str(redial_train_test), "--split", "test", "--out", str(out), "--n", "6"]
    assert main([*args, "--no-progress", "--bootstrap", "100", "--persona-history", "reported"]) == 0
    stdout = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert set(results["baselines"]) == {"accept_first", "never", "random", "exact_match", "similarity"}
    # With no model option the user is the shipped default's, trained on catalog grounding (DEFAULT_PAIR).
    assert results["persona_history"] == "reported" and results["grounding"] == "catalog"
    assert results["baselines"]["similarity"]["tau_split"] == "train"
    assert set(results["baseline_intervals"]["similarity"]) == {"sr", "et", "fr"}
    manifest = json.loads((out / ".simulate-run" / "manifest.json").read_text())
    assert '"persona_history": "reported"' in json.dumps(manifest)
    card = (out / "README.md").read_text()
    assert "| baseline `exact_match`" in card and "| baseline `similarity`" in card and "tau " in card
    assert "persona history: reported" in card
    assert "similarity SR" in stdout and "exact_match SR" in stdout
    assert main(["evaluate", str(out)]) == 0
    printed = capsys.readouterr().out
    similarity = results["baselines"]["similarity"]
    assert f"similarity SR {similarity['sr']:.3f}" in printed and "chosen on train" in printed
