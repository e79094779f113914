"""Catalog grounding (``--grounding catalog``) on real ReDial validation records and the shared catalog.

- the user's cues name no people, no title words and no field shown in the facts of any film the dialogue proposes;
- a film's facts reach the user only after a recommender turn named it;
- the recommender's list at inference is exactly what retrieval returns (a target only when retrieval found it);
- training lists hold the films the real turn named plus retrieved negatives, shuffled; empty turns get a list too;
- ``none`` is the ungrounded layout byte for byte; the modes have their own prompt hashes and settings.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest
from fixtures.fake_backends import ScriptedBackend
from fixtures.simulate_records import DATA, catalog, redial_records

from crsdata.errors import BadInputError
from crsdata.schema import item_ref, new_turn
from crsdata.simulate.grounding import (
    CatalogRetriever,
    cue_phrases,
    cue_request,
    fact_fields,
    film_facts,
    named_ids,
    own_words,
    read_tags,
    record_cues,
    training_candidates,
    training_queries,
    user_query,
)
from crsdata.simulate.interplay import InterplaySimulation
from crsdata.simulate.leak import TargetLeakError, normalize_text
from crsdata.simulate.persona import all_target_titles, describe_target
from crsdata.simulate.prompts import SEEN_NOTE, finetuned_prompt
from crsdata.training.interplay import grounded_training_view

TAGS = DATA / "movielens-latest-small" / "tags.csv"
N_RECORDS = 60


@pytest.fixture(scope="module")
def records() -> list[dict]:
    return redial_records(N_RECORDS)


@pytest.fixture(scope="module")
def tags() -> dict[str, list[str]]:
    return read_tags(TAGS, catalog())


@pytest.fixture(scope="module")
def retriever(records: list[dict]) -> CatalogRetriever:
    """MiniLM retrieval over the films of these dialogues (a few hundred, vectors cached on disk)."""
    ids = {i["item_id"] for r in records for t in r["turns"] for i in t["items"] if i["item_id"]}
    ids |= {t["item_id"] for r in records for t in r["target_items"] if t["item_id"]}
    return CatalogRetriever(catalog().rows(sorted(ids)))


def _sim(
    grounding: str, retriever: CatalogRetriever | None = None, style: str = "finetuned", **options
) -> InterplaySimulation:
    backends = {"user": ScriptedBackend("u", lambda n, t: ""), "recommender": ScriptedBackend("r", lambda n, t: "")}
    return InterplaySimulation(
        backends, catalog=catalog(), style=style, grounding=grounding, retriever=retriever, candidates=5, **options
    )


def _proposed_rows(record: dict) -> list[dict]:
    ids = {i["item_id"] for t in record["turns"] if t["role"] == "recommender" for i in t["items"] if i["item_id"]}
    return [row for row in (catalog().get(i) for i in sorted(ids)) if row]


def test_cues_name_no_people_no_title_words_and_no_shown_field(records, tags) -> None:
    checked = 0
    for record in records:
        titles = all_target_titles(record, catalog())
        cues = record_cues(record, catalog(), tags, titles)
        if cues is None:
            continue
        checked += 1
        target = catalog().get(next(t["item_id"] for t in record["target_items"] if catalog().get(t["item_id"])))
        folded = normalize_text(cues)
        for person in target.get("people") or []:
            assert normalize_text(person["name"]) not in folded, (record["dialogue_id"], cues)
        title_words = set(normalize_text(target["title"]).split()) - {"the", "a", "an", "of", "and", "in", "to"}
        assert not title_words & set(folded.split()), (record["dialogue_id"], cues)
        shown = {normalize_text(f) for row in [target, *_proposed_rows(record)] for f in fact_fields(row)}
        assert not set(cue_phrases(cues)) & shown, (record["dialogue_id"], cues)
    assert checked >= N_RECORDS * 0.8


def test_cues_replace_todays_identifying_description(records, tags) -> None:
    record = records[0]
    target = catalog().get(record["target_items"][0]["item_id"])
    old = describe_target(target)
    cues = record_cues(record, catalog(), tags, all_target_titles(record, catalog()))
    assert "directed by" in old and "directed by" not in cues and "Story:" not in cues
    assert cues.startswith("Looking for: ")
    # Themes come from keywords and tags, which not every target has; most described targets do.
    all_cues = [record_cues(r, catalog(), tags, all_target_titles(r, catalog())) for r in records]
    described = [c for c in all_cues if c is not None]
    assert sum("Themes:" in c for c in described) >= len(described) / 2


def test_facts_reach_the_user_only_after_a_recommender_named_the_film(records) -> None:
    sim = _sim("catalog")
    for style in ("finetuned", "instruct"):
        sim.styles = {"user": style, "recommender": style}
        record = records[3]
        state = sim.start(record, "d", 0)
        named = next(i for t in record["turns"] if t["role"] == "recommender" for i in t["items"] if i["item_id"])
        facts = film_facts(catalog().get(named["item_id"]))

        def text(request) -> str:
            return request.prompt if request.prompt is not None else "\n".join(m["content"] for m in request.messages)

        state.turns.append(new_turn(0, "user", "I want something scary", "disclose-goal", []))
        state.turns.append(new_turn(1, "user", f"I saw {named['title']} already", "feedback", [named]))
        assert facts not in text(sim.request(state, "user")), "a user's own mention gets no facts"
        state.turns.append(new_turn(2, "recommender", "Try this one", "recommend", [item_ref(named["item_id"], "x")]))
        after = text(sim.request(state, "user"))
        assert after.count(facts) == 1 and ("[FACTS] " + facts in after or "About the films named" in after)
        assert facts not in text(sim.request(state, "recommender")), "the recommender gets candidates, not facts"


def test_a_proposed_film_the_persona_watched_says_so_where_the_user_decides(records) -> None:
    """The persona's watched list is ~600 tokens above a proposal; the facts line right before the user's answer
    says which proposed film it has seen, in the simulation and in the training view alike."""
    sim = _sim("catalog")
    record = records[3]
    state = sim.start(record, "d", 0)
    watched = [w["item_id"] for w in state.context["persona"]["watched"]]
    assert watched, "this record's persona lists watched films"
    fresh = next(row for row in _proposed_rows(record) if row["item_id"] not in watched)
    proposed = [item_ref(watched[0], "x"), item_ref(fresh["item_id"], "y")]
    state.turns.append(new_turn(0, "recommender", "Try these", "recommend", proposed))
    prompt = sim.request(state, "user").prompt
    seen_line = "[FACTS] " + film_facts(catalog().get(watched[0])) + SEEN_NOTE + "\n"
    assert seen_line in prompt
    assert "[FACTS] " + film_facts(fresh) + "\n" in prompt, "a film it has not watched has no note"
    assert prompt.count(SEEN_NOTE) == 1
    view = grounded_training_view(record, state.turns, "user", catalog(), None, seen=watched)
    assert view.facts[0] == [film_facts(catalog().get(watched[0])) + SEEN_NOTE, film_facts(fresh)]
    assert grounded_training_view(record, state.turns, "user", catalog(), None).facts[0][0].endswith(SEEN_NOTE) is False


def test_own_words_drop_the_clauses_a_removed_title_leaves_empty() -> None:
    # A 135M user copied "i like a film and i watched a film" with the placeholders dropped ("i like and ...").
    record = {
        "turns": [
            {"role": "user", "text": "Hello! i love adventure movies, i like Jumanji and yesterday i watched Hook"},
            {"role": "recommender", "text": "Try Zathura", "items": [{"title": "Zathura"}]},
        ]
    }
    assert own_words(record, ["Jumanji", "Hook"]) == "Hello! i love adventure movies"
    record["turns"][0]["text"] = "I want something scary, like Jaws. But not too gory."
    assert own_words(record, ["Jaws"]) == "I want something scary. But not too gory."
    record["turns"][0]["text"] = "Jaws"
    assert own_words(record, ["Jaws"]) == ""


def test_inference_candidates_are_pure_retrieval(records, retriever) -> None:
    sim = _sim("catalog", retriever)
    found_target = missed_target = 0
    for record in records[:20]:
        try:
            state = sim.start(record, record["dialogue_id"], 0)
        except BadInputError:  # no history to build a persona from: the engine skips such records
            continue
        turns = [t for t in record["turns"][:6]]
        state.turns = [dict(t) for t in turns]
        request = sim.request(state, "recommender")
        listed = state.context["candidates"][str(len(turns))]
        assert listed == retriever.search(user_query(turns), 5, exclude=named_ids(turns))
        targets = {t["item_id"] for t in record["target_items"]}
        hit = bool(targets & set(listed))
        found_target += hit
        missed_target += not hit
        assert "[CANDIDATES]\n- " in request.prompt
    assert missed_target, "retrieval cannot find every target; the list must not have been given it"


def test_a_grounded_recommender_is_held_to_its_list_and_the_films_named_before(records, retriever) -> None:
    """Its request's `title_choices` (what a <movie_title> tag may hold in the local backend) are the listed films
    and the catalog films the dialogue named, as the catalog names them (each links to a catalog film); the user and
    `--free-titles` get none."""
    sim = _sim("catalog", retriever)
    free = _sim("catalog", retriever, free_titles=True)
    checked = 0
    for record in records[:10]:
        try:
            state = sim.start(record, record["dialogue_id"], 0)
        except BadInputError:
            continue
        state.turns = [dict(t) for t in record["turns"][:6]]
        request = sim.request(state, "recommender")
        listed = state.context["candidates"][str(len(state.turns))]
        named = [i["item_id"] for t in state.turns for i in t["items"] if i["item_id"] and i["item_id"] in catalog()]
        assert set(request.title_choices) == {catalog().title_with_year(i) for i in [*listed, *named]}
        assert all(catalog().link(t) for t in request.title_choices)  # each is a catalog film's name
        assert len(set(request.title_choices)) == len(request.title_choices)
        assert sim.request(state, "user").title_choices == ()
        free_state = free.start(record, record["dialogue_id"], 0)
        free_state.turns = state.turns
        assert free.request(free_state, "recommender").title_choices == ()
        checked += 1
    assert checked >= 5
    assert sim.settings()["free_titles"] is False


def test_a_target_outside_retrieval_and_turns_still_trips_the_guard(records, retriever) -> None:
    sim = _sim("catalog", retriever)
    record = records[0]
    state = sim.start(record, "d", 0)
    persona = dict(state.context["persona"])
    persona["general_preferences"] = "I like " + record["target_items"][0]["title"]
    state.context["persona"] = persona
    with pytest.raises(TargetLeakError):
        sim.request(state, "user")


def test_training_lists_hold_the_named_films_and_hard_negatives(records, retriever) -> None:
    with_names = without = 0
    for record in records[:25]:
        turns = record["turns"]
        for index, turn in enumerate(turns):
            if turn["role"] != "recommender":
                continue
            listed = training_candidates(retriever, turns, index, k=5, seed=1)
            assert listed == training_candidates(retriever, turns, index, k=5, seed=1)
            named = [i for i in named_ids([turn]) if i in retriever.rows][:5]
            if named:
                with_names += 1
                assert set(named) <= set(listed) and len(listed) == 5 and len(set(listed)) == 5
                assert not (set(listed) - set(named)) & set(named_ids(turns[:index]))
            elif user_query(turns[:index]):
                without += 1
                assert listed and sorted(listed) == sorted(
                    retriever.search(user_query(turns[:index]), 5, named_ids(turns[:index]))
                )
    assert with_names > 20 and without > 5
    # The named films do not always come first: their places teach nothing.
    record = records[1]
    view = grounded_training_view(record, record["turns"], "recommender", catalog(), retriever, k=5, seed=1)
    assert view.candidates and not view.facts


def test_batched_queries_give_the_same_lists_as_one_by_one(records, retriever, monkeypatch) -> None:
    """A split's queries encoded ahead in batches (as prepare_sequences does) give exactly the lists that one
    forward pass per turn gave, on real ReDial dialogues, and no query is encoded again."""
    from crsdata.training.interplay import label_turns

    dialogues = [label_turns(record)[0] for record in records]
    reference, batched = (CatalogRetriever(retriever.rows.values(), embeddings=retriever.embeddings) for _ in "ab")
    turns_at = [(turns, i) for turns in dialogues for i, turn in enumerate(turns) if turn["role"] == "recommender"]
    expected = [training_candidates(reference, turns, i, k=5, seed=3) for turns, i in turns_at]
    view = grounded_training_view(records[1], dialogues[1], "recommender", catalog(), reference, k=5, seed=1)

    queries = training_queries(batched, dialogues, 5)
    assert len(queries) == len(turns_at)
    assert batched.encode_queries(queries) == len({q for q in queries if q.strip()}) > 100
    embedder = batched.embeddings.embedder
    calls: list[list[str]] = []
    original = embedder.encode
    monkeypatch.setattr(embedder, "encode", lambda texts: calls.append(texts) or original(texts))
    assert [training_candidates(batched, turns, i, k=5, seed=3) for turns, i in turns_at] == expected
    assert grounded_training_view(records[1], dialogues[1], "recommender", catalog(), batched, k=5, seed=1) == view
    assert not calls, "a query encoded ahead was encoded again"
    assert sum(bool(listed) for listed in expected) > 100


def test_prepare_sequences_encodes_the_splits_queries_in_one_call(
    records, retriever, tiny_model_dir, monkeypatch
) -> None:
    """The recommender's grounded training data asks the embedder once for every query of the split, not once per
    turn (the item vectors are read before, from the shared store)."""
    from transformers import AutoTokenizer

    from crsdata.training.interplay import prepare_sequences

    fresh = CatalogRetriever(retriever.rows.values(), embeddings=retriever.embeddings)
    fresh.matrix  # noqa: B018 - the item vectors, before counting
    calls: list[int] = []
    embedder = fresh.embeddings.embedder
    original = embedder.encode
    monkeypatch.setattr(embedder, "encode", lambda texts: calls.append(len(texts)) or original(texts))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    data = prepare_sequences(
        records[:20], "recommender", tokenizer, catalog(), max_length=4096, seed=0, grounding="catalog", retriever=fresh
    )
    assert data.n > 10 and len(calls) == 1 and calls[0] > 20, calls


def test_the_users_first_turn_asks_for_what_its_cues_want(records) -> None:
    from crsdata.backends.base import Generation

    sim = _sim("catalog", disclose_cues=True)
    record = next(r for r in records if cue_request(record_cues(r, catalog(), {}, all_target_titles(r, catalog()))))
    state = sim.start(record, "d", 0)
    request = cue_request(sim.persona(state).target_attributes)
    assert request.startswith("I'm looking for ") and request.endswith(".")
    prompt = sim.request(state, "user").prompt
    assert prompt.endswith("<action><disclose-goal></action><response>" + request)
    sim.apply(state, "user", Generation(" Any ideas?", "stop"))
    assert (state.turns[-1]["action"], state.turns[-1]["text"]) == ("disclose-goal", request + " Any ideas?")
    # The user's later turns are the model's own, and so is every turn with the option off, ungrounded or instruct.
    state.turns.append(new_turn(1, "recommender", "What else do you like?", "inquire", []))
    assert sim.request(state, "user").prompt.endswith("\nuser:")
    for other in (_sim("catalog"), _sim("none", disclose_cues=True), _sim("catalog", style="instruct")):
        first = other.request(other.start(record, "d", 0), "user")
        assert "I'm looking for" not in (first.prompt or str(first.messages[-1]))
    assert cue_request("A movie from the 2000s.") == cue_request("Looking for a film. Themes: heist.") == ""


def test_none_is_the_ungrounded_layout_and_modes_are_recorded(records) -> None:
    record = records[2]
    plain, none = (
        _sim("none"),
        InterplaySimulation(
            {"user": ScriptedBackend("u", lambda n, t: ""), "recommender": ScriptedBackend("r", lambda n, t: "")},
            catalog=catalog(),
            style="finetuned",
        ),
    )
    state = plain.start(record, "d", 0)
    state.turns = [dict(t) for t in record["turns"][:5]]
    persona = plain.persona(state)
    for role in ("user", "recommender"):
        shown = persona if role == "user" else dataclasses.replace(persona, target_attributes="")
        assert plain.request(state, role).prompt == finetuned_prompt(role, shown, state.turns)
        assert none.request(state, role).prompt == plain.request(state, role).prompt
    grounded = _sim("catalog")
    assert grounded.prompt_hashes().keys().isdisjoint(plain.prompt_hashes())
    assert grounded.settings()["grounding"] == "catalog" and "grounding" not in plain.settings()


def test_tags_come_from_movielens_and_are_linked(tags) -> None:
    toy_story = catalog().canonical_id("ml:1")
    assert toy_story in tags and tags[toy_story]
    assert all(isinstance(t, str) and t for values in list(tags.values())[:50] for t in values)


def test_simulate_command_with_grounding_catalog_records_it(tiny_model_dir, tmp_path) -> None:
    """`crsdata simulate interplay --grounding catalog` end to end on official test personas and the tiny model."""
    import json

    from datasets import load_dataset
    from fixtures.tiny_models import widened

    from crsdata.cli import main

    model = widened(tiny_model_dir, tmp_path / "model", positions=4096)
    lines = (DATA / "redial" / "official" / "test_data.jsonl").read_text(encoding="utf-8").splitlines()[:8]
    (tmp_path / "test.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    catalogs = ["--catalog", str(DATA / "redial" / "redial__id2info.json")]
    assert (
        main(["build", "redial", "--input", str(tmp_path / "test.jsonl"), "--out", str(tmp_path / "src"), *catalogs])
        == 0
    )
    out = tmp_path / "sim"
    argv = [
        "simulate",
        "interplay",
        "--source",
        str(tmp_path / "src"),
        "--split",
        "test",
        "--n",
        "2",
        "--out",
        str(out),
    ]
    argv += ["--user-model", str(model), "--recommender-model", str(model), "--prompt-style", "finetuned"]
    argv += ["--first-speaker", "user", "--max-turns", "4", "--max-new-tokens", "6", "--threads", "1", "--no-progress"]
    argv += ["--grounding", "catalog", "--tags", str(TAGS), "--no-repeat-ngram-size", "3", "--infer-actions"]
    assert main(argv) == 0
    config = json.loads((out / ".simulate-run" / "manifest.json").read_text())["config"]
    assert config["options"]["grounding"] == "catalog" and config["settings"]["grounding"] == "catalog"
    assert all(name.endswith(".catalog") for name in config["prompt_hashes"])
    assert config["sampling"]["user"]["no_repeat_ngram_size"] == 3
    assert config["options"]["disclose_cues"] is True and config["settings"]["disclose_cues"] is True
    card = (out / "README.md").read_text()
    assert "## Grounding" in card and "--grounding catalog" in card and "--disclose-cues false" in card
    first_user_turn = next(
        t for t in load_dataset(str(out), "dialogues", split="test")[0]["turns"] if t["role"] == "user"
    )
    assert first_user_turn["action"] == "disclose-goal" and first_user_turn["text"].startswith("I'm looking for ")
    # The card's list figures read the candidates recorded in each recommender turn's extra (a JSON text).
    sim = InterplaySimulation(
        {"user": ScriptedBackend("u", lambda n, t: ""), "recommender": ScriptedBackend("r", lambda n, t: "")},
        catalog=catalog(),
        grounding="catalog",
    )
    turn = new_turn(1, "recommender", "Try it", "recommend", [item_ref("76012", "x")], extra={"candidates": ["76012"]})
    record = {"turns": [turn], "target_items": []}
    assert "1 of them from the list" in sim.card_sections([record], Counter())["Grounding"]


def test_replay_shows_the_facts_of_the_films_real_turns_named(records) -> None:
    """Replay's stricter guard allows a target's facts line once a real recommender turn named the target."""
    from crsdata.simulate.replay import ReplaySimulation

    backends = {"user": ScriptedBackend("u", lambda n, t: ""), "recommender": ScriptedBackend("r", lambda n, t: "")}
    sim = ReplaySimulation(backends, catalog=catalog(), style="finetuned", grounding="catalog")
    shown = 0
    for record in records[:30]:
        try:
            state = sim.start(record, record["dialogue_id"], 0)
        except BadInputError:
            continue
        prompt = sim.request(state, "user").prompt
        assert prompt.rstrip().endswith("user:")
        named = [i for t in state.turns if t["role"] == "recommender" for i in t["items"] if i["item_id"]]
        rows = [catalog().get(i["item_id"]) for i in named]
        shown += any(row and row.get("genres") for row in rows)
        for row in rows:
            if row and row.get("genres"):
                assert "[FACTS] " + display_title_of(row) in prompt
    assert shown >= 10


def display_title_of(row: dict) -> str:
    return f"{row['title']} ({row['year']})" if row.get("year") else row["title"]


def test_the_default_grounding_is_the_one_the_models_were_trained_on(tmp_path) -> None:
    import json

    from crsdata.backends.embedded import (
        BASE_MODEL,
        RECOMMENDER_SIMULATOR,
        USER_SIMULATOR,
        USER_SIMULATOR_CATALOG,
        grounding_of,
    )
    from crsdata.simulate.replay import ReplaySimulation

    trained = tmp_path / "user-sim"
    trained.mkdir()
    (trained / "crsdata.json").write_text(json.dumps({"recipe": "user-simulator", "config": {"grounding": "catalog"}}))
    older = tmp_path / "older"
    older.mkdir()
    (older / "crsdata.json").write_text(json.dumps({"recipe": "user-simulator", "config": {}}))
    assert [grounding_of(m) for m in (USER_SIMULATOR_CATALOG, USER_SIMULATOR, BASE_MODEL)] == [
        "catalog",
        "none",
        "none",
    ]
    assert (grounding_of(trained), grounding_of(older), grounding_of(tmp_path)) == ("catalog", "none", None)

    pair = {"user": USER_SIMULATOR, "recommender": RECOMMENDER_SIMULATOR}
    assert InterplaySimulation.trained_grounding(pair) == "none"
    both = {"user": str(trained), "recommender": str(trained)}
    assert InterplaySimulation.trained_grounding(both) == "catalog"
    mixed = {"user": USER_SIMULATOR_CATALOG, "recommender": RECOMMENDER_SIMULATOR}
    with pytest.raises(BadInputError, match="different groundings.*give --grounding none or --grounding catalog"):
        InterplaySimulation.trained_grounding(mixed)
    # Replay plays the user alone against real recommender turns: the user's model decides.
    assert ReplaySimulation.trained_grounding(mixed) == "catalog"


def test_a_grounded_recommender_naming_a_film_the_catalog_lacks_is_resampled(records, retriever) -> None:
    """Its list holds catalog films only, so an unknown title was invented ("The Mask of a Masquerade", from the
    quick start of round 4): sampled again. The ungrounded recommender and the user may name any title."""
    from crsdata.simulate.actions import parse_turn

    invented = parse_turn(
        "<action><recommend></action><response>Try <movie_title>The Mask of a Masquerade (2003)</movie_title>"
        "</response>",
        "recommender",
    )
    known = parse_turn(
        "<action><recommend></action><response>Try <movie_title>The Shining (1980)</movie_title></response>",
        "recommender",
    )
    grounded = _sim("catalog", retriever, max_resamples=3)
    state = grounded.start(records[0], "d", 0)
    assert grounded.resample_reason(state, "recommender", invented) == "unknown-title"
    assert grounded.resample_reason(state, "recommender", known) == ""
    user_turn = dataclasses.replace(invented, action="feedback")
    assert grounded.resample_reason(state, "user", user_turn) == ""
    plain = _sim("none", max_resamples=3)
    assert plain.resample_reason(plain.start(records[0], "d", 0), "recommender", invented) == ""


def test_when_every_try_names_an_unknown_film_the_one_naming_fewest_is_kept(records, retriever) -> None:
    """Round 8's self-play kept the last try, so a turn whose three resamples all invented a title could keep the
    one inventing two. The kept try is the one naming the fewest unknown titles, the last among equals."""
    from crsdata.backends.base import Generation

    def turn(*titles: str) -> Generation:
        named = " or ".join(f"<movie_title>{t}</movie_title>" for t in titles)
        return Generation(f"<action><recommend></action><response>Try {named}</response>", "stop")

    grounded = _sim("catalog", retriever, max_resamples=3)
    state = grounded.start(records[0], "d", 0)
    tries = [
        turn("The Mask of a Masquerade (2003)", "Moon Over Nowhere (1990)"),
        turn("The Mask of a Masquerade (2003)", "The Shining (1980)"),
        turn("Moon Over Nowhere (1990)", "The Shining (1980)"),
        turn("The Little Prince by Jane Austen", "A Masquerade (1999)"),
    ]
    for generation in tries:
        grounded.apply(state, "recommender", generation)
    (kept,) = state.turns
    assert [i["title"] for i in kept["items"]] == ["Moon Over Nowhere (1990)", "The Shining (1980)"]
    assert state.counters["resampled.unknown-title"] == 3 and state.counters["resample_exhausted"] == 1
    assert state.counters["unlinked_titles"] == 1
    assert state.context["tries"] == {}
