"""The user simulator's learned accept decision (``--decision-scorer``, ``crsdata train user-decision-scorer``).

- the rule: films the persona has seen are declined, the first other film at or above the threshold is accepted;
- in a replay of real ReDial dialogues the decision reaches the model as the answer's opening (accept) or a ban
  (decline), the accepted film is the one decided, and the record keeps the scores;
- the recipe trains a LoRA adapter on real train dialogues, chooses its threshold on validation, and the folder
  loads back; the shipped user model carries its scorer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.simulate_records import catalog, redial_record

from crsdata.backends.base import Backend, ChatRequest, Generation, SamplingParams
from crsdata.cli import main
from crsdata.errors import BadInputError
from crsdata.metrics.match import default_model_dir
from crsdata.schema import item_ref, load_extra
from crsdata.simulate.decision import (
    ACCEPT_OPENING,
    DECISION_FOLDER,
    SETTINGS_NAME,
    DecisionScorer,
    proposed_films,
    scorer_folder_of,
)
from crsdata.simulate.grounding import film_facts
from crsdata.simulate.replay import ReplaySimulation

REDIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "redial"
# Three films of the ReDial catalog: a horror classic, a cartoon, a war film.
EXORCIST, TOY_STORY, SAVING_RYAN = "76012", "80067", "88141"
CUES = "Looking for: something scary, demonic possession, from the 70s era."


def films(seen: set[str] = frozenset()) -> list[tuple[str, str | None, bool]]:
    return [(i, film_facts(catalog().get(i)), i in seen) for i in (TOY_STORY, EXORCIST, SAVING_RYAN)]


@pytest.fixture(scope="module")
def zero_shot() -> DecisionScorer:
    """The wheel's MiniLM as a scorer (a full model folder; the threshold given)."""
    return DecisionScorer(default_model_dir(), threshold=0.0)


def test_seen_films_are_declined_and_the_first_other_film_at_the_threshold_is_accepted(zero_shot):
    scores = dict(zip([i for i, _, _ in films()], zero_shot.scores(CUES, [f for _, f, _ in films()]), strict=True))
    assert scores[EXORCIST] > scores[TOY_STORY]  # the cues describe The Exorcist
    zero_shot.threshold = min(scores.values()) - 1e-3
    assert zero_shot.decide(CUES, films()).accept == TOY_STORY  # the first film proposed
    # A seen film is never accepted, whatever its score, and gets no score.
    decision = zero_shot.decide(CUES, films(seen={TOY_STORY}))
    assert decision.accept == EXORCIST and decision.scores[TOY_STORY] is None
    zero_shot.threshold = (scores[EXORCIST] + scores[TOY_STORY]) / 2
    assert zero_shot.decide(CUES, films()).accept == EXORCIST
    zero_shot.threshold = max(scores.values()) + 1e-3
    declined = zero_shot.decide(CUES, films())
    assert declined.accept is None and declined.scores[EXORCIST] == pytest.approx(scores[EXORCIST], abs=1e-5)
    assert zero_shot.decide(CUES, []).accept is None


def test_proposed_films_mark_seen_films_and_skip_unknown_ones():
    items = [item_ref(EXORCIST, "The Exorcist"), item_ref("", "Unknown"), item_ref(EXORCIST, "The Exorcist")]
    assert proposed_films(catalog(), items, [EXORCIST]) == [(EXORCIST, film_facts(catalog().get(EXORCIST)), True)]


def test_a_folder_without_decision_json_is_refused_naming_the_file(tmp_path):
    with pytest.raises(BadInputError) as caught:
        DecisionScorer(tmp_path)
    assert SETTINGS_NAME in str(caught.value) and "threshold" in str(caught.value)
    assert "user-decision-scorer" in str(caught.value)
    user = tmp_path / "user"
    (user / DECISION_FOLDER).mkdir(parents=True)
    assert scorer_folder_of(str(user)) is None
    (user / DECISION_FOLDER / SETTINGS_NAME).write_text(json.dumps({"threshold": 0.5}))
    assert scorer_folder_of(str(user)) == str(user / DECISION_FOLDER)


def test_the_shipped_user_carries_its_scorer():
    from crsdata.backends.embedded import DEFAULT_PAIR

    folder = scorer_folder_of(DEFAULT_PAIR["user"])
    assert folder is not None
    scorer = DecisionScorer(folder)
    assert -1.0 < scorer.threshold < 1.0 and scorer.settings["chosen_on"] == "validation"
    assert (Path(folder) / "adapter_model.safetensors").stat().st_size < 50e6


class OpeningBackend(Backend):
    """Writes a response after a decided accept's opening, declines otherwise; keeps the requests."""

    model_id = "opening"

    def __init__(self, continuation: str = " yet, I'll watch it.") -> None:
        self.requests = []
        self.continuation = continuation

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        self.requests += requests
        return [
            Generation(self.continuation, "stop")
            if ACCEPT_OPENING in (r.prompt or "")
            else Generation("<action><feedback></action><response>Not for me.</response>", "stop")
            for r in requests
        ]

    def option_probabilities(self, requests: list[ChatRequest], options: list[str]) -> list[dict[str, float]]:
        raise NotImplementedError


def replay_once(record: dict, scorer: DecisionScorer, continuation: str = " yet.") -> tuple[OpeningBackend, dict]:
    backend = OpeningBackend(continuation)
    sim = ReplaySimulation(
        {"user": backend, "recommender": backend}, catalog=catalog(), style="finetuned", decision_scorer=scorer
    )
    state = sim.start(record, "d", 0)
    while not state.finished:
        request = sim.request(state, "user")
        sim.apply(state, "user", backend.generate([request], SamplingParams())[0])
    return backend, load_extra(sim.to_record(state)["extra"])


def test_a_replay_writes_the_decision_into_the_answer(zero_shot):
    record = redial_record("16162")
    item = next(i for t in record["turns"] for i in t["items"] if i["item_id"] == "76012")
    record["target_items"] = [item_ref(item["item_id"], item["title"])]
    zero_shot.threshold = -1.0  # every unseen film fits: the first one proposed is accepted
    backend, extra = replay_once(record, zero_shot)
    accepted = [d for d in extra["decisions"] if d["accepted"]]
    first = extra["scorer_decisions"][0]
    assert len(accepted) == 1 and accepted[0]["item_id"] == first["accept"]
    # The answer opens with the accept action and the decided film's name, as the catalog writes it.
    title = catalog().title_with_year(first["accept"])
    assert backend.requests[-1].prompt.endswith(f"{ACCEPT_OPENING}I haven't seen <movie_title>{title}</movie_title>")
    assert extra["answers"][-1]["action"] == "accept" and title in extra["answers"][-1]["response"]
    # An answer that ends right after the film's name is the same accept.
    _, ended = replay_once(record, zero_shot, continuation="")
    assert ended["decisions"] == extra["decisions"] and ended["answers"][-1]["action"] == "accept"
    zero_shot.threshold = 2.0  # nothing fits: every proposal is declined, and the model may not write accept
    backend, extra = replay_once(record, zero_shot)
    assert not any(d["accepted"] for d in extra["decisions"])
    assert all("accept" in r.banned_words and ACCEPT_OPENING not in r.prompt for r in backend.requests)
    assert all(d["accept"] is None for d in extra["scorer_decisions"])
    assert len(extra["scorer_decisions"]) == len(extra["proposals"])


@pytest.fixture(scope="module")
def redial_three_splits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 60 dialogues of a train_partial file, the validation file and the official test file, built into
    one folder with train, validation and test splits."""
    folder = tmp_path_factory.mktemp("redial-three-splits")
    inputs = []
    for name, path in (
        ("kgsf_train_subset.jsonl", REDIAL / "train_partial" / "kgsf_train_subset_901.jsonl"),
        ("valid_data.jsonl", REDIAL / "redial__valid_data.jsonl"),
        ("test_data.jsonl", REDIAL / "official" / "test_data.jsonl"),
    ):
        lines = path.read_text(encoding="utf-8").splitlines()[:60]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        inputs += ["--input", str(folder / name)]
    catalog_file = REDIAL / "redial__id2info.json"
    assert main(["build", "redial", *inputs, "--out", str(folder / "built"), "--catalog", str(catalog_file)]) == 0
    return folder / "built"


def test_the_recipe_trains_an_adapter_and_chooses_its_threshold_on_validation(redial_three_splits, tmp_path):
    out = tmp_path / "scorer"
    args = ["train", "user-decision-scorer", "--data", str(redial_three_splits), "--out", str(out)]
    assert main([*args, "--max-steps", "2", "--batch-size", "4", "--save-steps", "1"]) == 0
    settings = json.loads((out / SETTINGS_NAME).read_text())
    assert settings["chosen_on"] == "validation" and settings["persona_history"] == "reported"
    results = json.loads((out / "results.json").read_text())
    figures = results["details"]["figures"]
    assert set(figures) == {"validation", "test"}
    for split in figures.values():
        assert set(split) == {"scorer", "similarity", "accept_first_unseen"}
        assert split["scorer"]["sr"] + split["scorer"]["et"] + split["scorer"]["fr"] == pytest.approx(1.0)
    assert results["threshold"] == settings["threshold"] and results["n_train"] > 5
    assert results["details"]["run"]["optimizer_steps"] == 2
    assert (out / "adapter_config.json").is_file() and not (out / ".trainer").exists()
    card = (out / "README.md").read_text()
    assert "user-decision-scorer" in card and "validation" in card
    scorer = DecisionScorer(out)
    assert scorer.threshold == settings["threshold"]
    assert len(scorer.scores(CUES, [film_facts(catalog().get(EXORCIST))])) == 1
    # Another base is refused before anything is read.
    assert main([*args, "--base", "some/other-model"]) != 0


def test_replay_decides_with_the_shipped_scorer_unless_told_none(redial_three_splits, tmp_path, monkeypatch):
    from fixtures.fake_backends import ScriptedBackend

    backend = ScriptedBackend("scripted", lambda own, last: "<action><feedback></action><response>No.</response>")
    monkeypatch.setattr("crsdata.simulate.job.make_backends", lambda config: {"user": backend, "recommender": backend})
    figures = {}
    for name, extra in (("default", []), ("none", ["--decision-scorer", "none"])):
        out = tmp_path / name
        args = ["replay", "--source", str(redial_three_splits), "--split", "test", "--out", str(out), "--n", "4"]
        assert main([*args, "--no-progress", "--bootstrap", "0", *extra]) == 0
        figures[name] = json.loads((out / "results.json").read_text())
        manifest = (out / ".simulate-run" / "manifest.json").read_text()
        assert '"decision_scorer"' in manifest
        figures[name]["card"] = (out / "README.md").read_text()
    shipped = figures["default"]["decision_scorer"]
    assert shipped["path"].endswith(f"adapter-catalog/{DECISION_FOLDER}") and shipped["chosen_on"] == "validation"
    assert "decision scorer" in figures["default"]["card"] and "`--decision-scorer none`" in figures["none"]["card"]
    # The scripted model never accepts: with the scorer the decisions are the scorer's, without it none is taken.
    assert figures["none"]["decision_scorer"] is None and figures["none"]["fr"] == 1.0
    assert figures["default"]["counters"]["accepted"] > 0


def test_in_self_play_the_user_accepts_where_the_scorer_accepted_and_nowhere_else(zero_shot):
    from crsdata.schema import new_turn
    from crsdata.simulate.interplay import InterplaySimulation

    record = redial_record("16162")
    record["target_items"] = [item_ref("76012", "The Exorcist")]
    # The model may also end its turn right after the film's name (an empty continuation): still an accept.
    cases = ((-1.0, True, " yet."), (-1.0, True, ""), (2.0, True, " yet."), (-1.0, False, " yet."))
    for threshold, film_named, continuation in cases:
        backend = OpeningBackend(continuation)
        sim = InterplaySimulation(
            {"user": backend, "recommender": backend},
            catalog=catalog(),
            style="finetuned",
            first_speaker="user",
            decision_scorer=zero_shot,
        )
        zero_shot.threshold = threshold
        state = sim.start(record, "d", 0)
        items = [item_ref(TOY_STORY, "Toy Story")] if film_named else []
        text = "Have you seen Toy Story (1995)?" if film_named else "What kind of movies do you like?"
        state.turns = [
            new_turn(0, "user", "Hi! Anything funny?", "disclose-goal", []),
            new_turn(1, "recommender", text, "recommend" if film_named else "inquire", items),
        ]
        request = sim.request(state, "user")
        sim.apply(state, "user", backend.generate([request], SamplingParams())[0])
        if threshold < 0 and film_named:  # decided: the answer opens with the accept and the film
            assert request.prompt.endswith("I haven't seen <movie_title>Toy Story (1995)</movie_title>")
            assert state.finished and state.end_reason == "accept" and state.accepted_item["item_id"] == TOY_STORY
            assert load_extra(state.turns[-1]["extra"])["decision"]["accept"] == TOY_STORY
        else:  # declined, or no film to decide on: the model may not write accept
            assert "accept" in request.banned_words and not state.finished
