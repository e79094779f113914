"""The Interplay simulation loop with scripted backends, the tiny random model and the run engine."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from fixtures.fake_backends import ScriptedBackend, recommender, user
from fixtures.simulate_records import catalog, inspired_records, redial_record, redial_records

from crsdata.backends.base import ChatRequest, SamplingParams
from crsdata.errors import BadInputError
from crsdata.schema import item_ref, new_turn, validate_dialogue
from crsdata.simulate.interplay import InterplaySimulation, request_seed
from crsdata.simulate.leak import TargetLeakError, normalize_text, title_variants
from crsdata.simulate.persona import Persona, WatchedItem, all_target_titles
from crsdata.simulate.prompts import FINETUNED_STOP, finetuned_pieces, finetuned_prompt


def _simulation(user_policy, rec_policy, **kwargs) -> InterplaySimulation:
    backends = {
        "user": ScriptedBackend("user-model", user_policy),
        "recommender": ScriptedBackend("rec-model", rec_policy),
    }
    kwargs.setdefault("catalog", catalog())
    return InterplaySimulation(backends, kwargs.pop("params", None), kwargs.pop("max_turns", 10), **kwargs)


def _run(sim: InterplaySimulation, records: list[dict], seed: int = 7) -> list:
    """Drives dialogues like the engine does: one batched call per role and step."""
    states = [sim.start(r, f"sim-{i}", seed + i) for i, r in enumerate(records)]
    while any(not s.finished for s in states):
        for role in sim.roles:
            active = [s for s in states if not s.finished and sim.next_role(s) == role]
            if active:
                gens = sim.backends[role].generate([sim.request(s, role) for s in active], sim.params[role])
                for state, gen in zip(active, gens, strict=True):
                    sim.apply(state, role, gen)
    return states


def test_accept_ends_the_dialogue_with_the_recommended_item():
    record = redial_record("16162")
    sim = _simulation(user(), recommender())
    (state,) = _run(sim, [record])
    assert state.finished and state.end_reason == "accept"
    assert [(t["role"], t["action"]) for t in state.turns] == [
        ("recommender", "greeting"),
        ("user", "disclose-goal"),
        ("recommender", "inquire"),
        ("user", "feedback"),
        ("recommender", "recommend"),
        ("user", "accept"),
    ]
    assert state.turns[4]["items"] == [item_ref("202190", "The Shining (1980)")]
    assert state.turns[4]["text"] == "Try The Shining (1980)."
    assert state.accepted_item == item_ref("202190", "The Shining (1980)")

    out = sim.to_record(state)
    validate_dialogue(out)
    assert out["source"] == "interplay-sim" and out["split"] == record["split"]
    assert out["target_items"] == record["target_items"]
    assert out["outcome"]["accepted_item"] == item_ref("202190", "The Shining (1980)")
    assert out["outcome"]["end_reason"] == "accept"
    prov = out["provenance"]
    assert (prov["builder"], prov["user_model"], prov["recommender_model"], prov["seed"]) == (
        "interplay",
        "user-model",
        "rec-model",
        7,
    )
    hashes = json.loads(prov["prompt_sha256"])
    assert set(hashes) == {"interplay.user.instruct", "interplay.recommender.instruct"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes.values())
    assert out["user_profile"]["target_attributes"] == sim.persona(state).target_attributes
    extra = json.loads(out["extra"])
    assert extra["source_dialogue_id"] == "16162" and extra["counters"]["turns"] == 6


def test_max_turns():
    sim = _simulation(user(accept=False), recommender(), max_turns=7)
    (state,) = _run(sim, [redial_record("16162")])
    assert state.end_reason == "max_turns" and len(state.turns) == 7
    assert state.accepted_item == item_ref()
    validate_dialogue(sim.to_record(state))


def test_user_may_open_the_dialogue():
    sim = _simulation(user(), recommender(), first_speaker="user")
    (state,) = _run(sim, [redial_record("16162")])
    assert state.turns[0]["role"] == "user" and state.turns[0]["action"] == "disclose-goal"
    assert state.end_reason == "accept"


def test_parse_error_after_consecutive_failures_with_new_seeds():
    sim = _simulation(lambda own, last: "I like scary movies, you know?", recommender(), max_parse_failures=3)
    (state,) = _run(sim, [redial_record("16162")])
    assert state.end_reason == "parse_error"
    assert len(state.turns) == 1  # the greeting; no failed turn is appended
    assert state.counters["parse_failures"] == 3 and state.counters["parse_failures.user"] == 3
    seeds = [r.seed for r in sim.backends["user"].requests]
    assert seeds == [request_seed(7, 1, attempt) for attempt in range(3)] and len(set(seeds)) == 3


def test_a_failure_then_success_resets_the_count():
    answers = iter(["no tags here", "<action><disclose-goal></action><response>Horror please.</response>"])
    sim = _simulation(lambda own, last: next(answers, "<accept> yes"), recommender(), max_turns=3)
    (state,) = _run(sim, [redial_record("16162")])
    assert state.counters["parse_failures.user"] == 1 and state.context["failures"]["user"] == 0
    assert state.end_reason == "max_turns"


def test_empty_generation_ends_the_dialogue():
    sim = _simulation(user(), lambda own, last: "  ")
    (state,) = _run(sim, [redial_record("16162")])
    assert state.end_reason == "empty" and state.turns == []
    sim = _simulation(lambda own, last: "<action><feedback></action><response></response>", recommender())
    (state,) = _run(sim, [redial_record("16162")])
    assert state.end_reason == "empty" and len(state.turns) == 1


def test_accept_before_any_recommendation_is_feedback():
    sim = _simulation(lambda own, last: "<action><accept></action><response>ok</response>", recommender(), max_turns=4)
    (state,) = _run(sim, [redial_record("16162")])
    assert state.turns[1]["action"] == "feedback"
    assert json.loads(state.turns[1]["extra"])["generated_action"] == "accept"
    assert state.counters["accept_without_recommendation"] == 2
    assert state.end_reason == "max_turns"


def test_plain_text_turns_with_inferred_actions():
    def plain_recommender(own: int, last: str) -> str:
        return "Try The Shining (1980), it is a classic." if own else "Hello! What are you in the mood for?"

    def plain_user(own: int, last: str) -> str:
        return "I want something scary." if own == 0 else "Sounds good, I will watch it."

    strict = _simulation(plain_user, plain_recommender, max_turns=4)
    (state,) = _run(strict, [redial_record("16162")])
    assert state.end_reason == "parse_error" and state.turns == []

    sim = _simulation(plain_user, plain_recommender, max_turns=4, infer_actions=True)
    (state,) = _run(sim, [redial_record("16162")])
    assert [(t["role"], t["action"]) for t in state.turns] == [
        ("recommender", "inquire"),
        ("user", "disclose-goal"),  # the user's first statement discloses the goal
        ("recommender", "recommend"),
        ("user", "feedback"),  # never an inferred accept
    ]
    assert state.turns[2]["items"] == [item_ref("202190", "The Shining (1980)")]
    assert state.end_reason == "max_turns"
    assert state.counters["repair.action_inferred"] == 4
    assert json.loads(sim.to_record(state)["extra"])["infer_actions"] is True


def test_repairs_and_unlinked_titles_are_counted():
    def sloppy_recommender(own: int, last: str) -> str:
        return '<Recommend> You should see "Zzyzx Qqq Nonexistent"' if own else "<greeting> Hello!"

    sim = _simulation(user(), sloppy_recommender)
    (state,) = _run(sim, [redial_record("16162")])
    assert state.end_reason == "accept"
    assert state.accepted_item == item_ref("", "Zzyzx Qqq Nonexistent")
    assert state.counters["repairs"] == 2
    assert state.counters["repair.missing_action_wrapper"] == 2
    assert state.counters["repair.titles_from_quotes"] == 1 and state.counters["unlinked_titles"] == 1


def test_roles_are_independent():
    record = redial_record("16162")
    for show_profile in (False, True):
        sim = _simulation(user(), recommender(), show_profile=show_profile)
        (state,) = _run(sim, [record])
        persona = sim.persona(state)
        user_requests = sim.backends["user"].requests
        rec_requests = sim.backends["recommender"].requests
        assert len(user_requests) == 3 and len(rec_requests) == 3
        for request in user_requests:
            assert persona.target_attributes in request.messages[0]["content"]
        for request in rec_requests:
            text = " ".join(m["content"] for m in request.messages)
            assert persona.target_attributes[:40] not in text and "What you want now" not in text
            assert ("The Babadook (2014)" in text) is show_profile
            assert (persona.general_preferences in text) is show_profile


def test_finetuned_layout_is_exactly_as_documented():
    persona = Persona(
        "I enjoy horror.",
        [WatchedItem("1", "It Follows (2014)", "Creepy."), WatchedItem("", "Heat", "Tense.")],
        "Snow.",
    )
    turns = [
        new_turn(0, "recommender", "Hi! What do you like?", "greeting"),
        new_turn(1, "user", "Horror, please.", "disclose-goal"),
        new_turn(2, "recommender", "Try Alien (1979).", "recommend", [item_ref("9", "Alien (1979)")]),
    ]
    assert finetuned_prompt("user", persona, turns) == (
        "[ROLE] user\n"
        "[PERSONA]\n"
        "General preferences: I enjoy horror.\n"
        "Watched movies:\n"
        "- It Follows (2014): Creepy.\n"
        "- Heat: Tense.\n"
        "Target attributes: Snow.\n"
        "[CONVERSATION]\n"
        "recommender: <action><greeting></action><response>Hi! What do you like?</response>\n"
        "user: <action><disclose-goal></action><response>Horror, please.</response>\n"
        "recommender: <action><recommend></action><response>Try <movie_title>Alien (1979)</movie_title>."
        "</response>\n"
        "user:"
    )
    assert finetuned_prompt("recommender", persona, turns[:2]) == (
        "[ROLE] recommender\n"
        "[CONVERSATION]\n"
        "recommender: <action><greeting></action><response>Hi! What do you like?</response>\n"
        "user: <action><disclose-goal></action><response>Horror, please.</response>\n"
        "recommender:"
    )
    profile = finetuned_prompt("recommender", persona, [], show_profile=True)
    assert profile.startswith("[ROLE] recommender\n[USER PROFILE]\nGeneral preferences: I enjoy horror.\n")
    assert "Snow" not in profile
    # Training reads the whole dialogue once; only the user's turn (its newline included) is trained.
    pieces = finetuned_pieces("user", persona, turns)
    trained = [text for text, on in pieces if on]
    assert trained == [" <action><disclose-goal></action><response>Horror, please.</response>\n"]
    before = "".join(text for text, _ in pieces[: pieces.index((trained[0], True))])
    assert before == finetuned_prompt("user", persona, turns[:1])
    assert not any(on for _, on in finetuned_pieces("user", persona, turns, untrained=frozenset({1})))


def test_finetuned_style_runs_on_raw_prompts_with_stops():
    sim = _simulation(user(), recommender(), style="finetuned")
    for role in ("user", "recommender"):
        assert set(FINETUNED_STOP) <= set(sim.params[role].stop)
    (state,) = _run(sim, [redial_record("16162")])
    assert state.end_reason == "accept"
    for role, backend in sim.backends.items():
        assert all(r.prompt is not None and not r.messages for r in backend.requests)
        assert all(r.prompt.endswith(f"\n{role}:") for r in backend.requests)
    assert set(json.loads(sim.to_record(state)["provenance"]["prompt_sha256"])) == {
        "interplay.user.finetuned",
        "interplay.recommender.finetuned",
    }


def test_mixed_styles_and_bad_options():
    sim = _simulation(user(), recommender(), style={"user": "finetuned", "recommender": "instruct"})
    (state,) = _run(sim, [redial_record("16162")])
    assert state.end_reason == "accept"
    with pytest.raises(ValueError, match="style of user"):
        _simulation(user(), recommender(), style="chatty")
    with pytest.raises(ValueError, match="missing: recommender"):
        InterplaySimulation({"user": ScriptedBackend("u", user())})


def test_runs_are_deterministic_and_seeds_follow_turns():
    records = redial_records(5)
    first = [_simulation(user(), recommender()).to_record(s) for s in _run(_simulation(user(), recommender()), records)]
    sim = _simulation(user(), recommender())
    second = [sim.to_record(s) for s in _run(sim, records)]
    for a, b in zip(first, second, strict=True):
        a["provenance"].pop("crsdata_version")
        b["provenance"].pop("crsdata_version")
        assert a == b
    seeds = [r.seed for r in sim.backends["recommender"].requests[:3]]
    assert seeds[0] == request_seed(7, 0) and len(set(seeds)) == 3


def test_start_rejects_records_without_targets():
    record = redial_records(1)[0]
    record["target_items"] = []
    with pytest.raises(BadInputError) as err:
        _simulation(user(), recommender()).start(record, "x", 0)
    assert err.value.field == "target_items"


# ---------------------------------------------------------------------------------------------------------
# The reference-free guarantee over hundreds of prompts from real records.


def _checked_part(request: ChatRequest) -> str:
    """The part of a request built from the record (persona / profile), not from conversation turns."""
    if request.prompt is not None:
        return request.prompt.split("[CONVERSATION]", 1)[0]
    return request.messages[0]["content"]


def test_no_prompt_names_a_target_over_hundreds_of_real_records():
    """Every request passes the guard (it runs inside ``request``), and an independent check agrees: no
    multi-word or dated form of a target title is in the persona or profile part of any prompt. The
    conversation then has the recommender name the target, which the user's next prompt may (must) show."""
    records = redial_records(120) + inspired_records(40)
    prompts = 0
    usable = 0
    for style, show_profile in (("instruct", True), ("finetuned", True), ("instruct", False)):
        sim = _simulation(user(), recommender(), style=style, show_profile=show_profile)
        for i, record in enumerate(records):
            try:
                state = sim.start(record, f"d{i}", i)
            except BadInputError:
                continue
            usable += 1
            target = state.record["target_items"][0]["title"]
            script = [
                ("recommender", "Hi! What are you looking for?", "greeting", []),
                ("user", "A creepy film.", "disclose-goal", []),
                ("recommender", f"Try {target}.", "recommend", [item_ref("", target)]),
                ("user", f"Is {target} long?", "inquire", []),
            ]
            titles = all_target_titles(record, catalog())
            variants = [v for t in titles for v in title_variants(t) if " " in v]
            for k in range(len(script) + 1):
                state.turns = [new_turn(j, *script[j]) for j in range(k)]
                for role in ("user", "recommender"):
                    request = sim.request(state, role)
                    prompts += 1
                    fixed = f" {normalize_text(_checked_part(request))} "
                    assert not [v for v in variants if f" {v} " in fixed], (record["dialogue_id"], role)
                    if k >= 3 and role == "user":  # the recommender has named the target: the user hears it
                        assert normalize_text(target) in normalize_text(request.prompt or str(request.messages))
    assert usable >= 3 * 100
    assert prompts >= 3000


def test_guard_stops_a_persona_that_names_the_target():
    record = redial_record("16162")
    sim = _simulation(user(), recommender())
    state = sim.start(record, "d", 0)
    state.context["persona"]["general_preferences"] += " My favourite is The Shining."
    with pytest.raises(TargetLeakError, match="Shining"):
        sim.request(state, "user")
    sim.request(state, "recommender")  # the recommender does not see the general preferences by default
    with pytest.raises(TargetLeakError):
        _simulation(user(), recommender(), show_profile=True).request(state, "recommender")


# ---------------------------------------------------------------------------------------------------------
# With the run engine and with a real (tiny, random) model.


def test_run_engine_drives_the_simulation(tmp_path):
    engine = pytest.importorskip("crsdata.simulate.engine")
    records = redial_records(12)
    sim = _simulation(user(), recommender(inquiries=2), max_turns=12)
    from crsdata.simulate.source import SimulationSource, fingerprint_records

    source = SimulationSource("redial-valid", "dataset", records, fingerprint_records(records))
    config = engine.RunConfig(
        simulation="interplay",
        n=6,
        seed=3,
        max_turns=12,
        split="test",
        backend="scripted",
        models={"user": "u", "recommender": "r"},
        model_ids={"user": "user-model", "recommender": "rec-model"},
        sampling={r: {} for r in ("user", "recommender")},
        source="redial-valid",
        source_kind="dataset",
        source_fingerprint=source.fingerprint,
        options={"style": "instruct"},
        prompt_hashes=sim.prompt_hashes(),
        batch_size=4,
        shard_size=3,
    )
    result = engine.RunEngine(sim, source, config, tmp_path / "run", progress=False).run()
    assert len(result.records) == 6
    for out in result.records:
        validate_dialogue(out)
        assert out["outcome"]["end_reason"] == "accept" and len(out["turns"]) == 8
        assert out["outcome"]["accepted_item"]["item_id"] == "202190"


def test_tiny_random_model_plays_both_roles(tmp_path):
    tiny = pytest.importorskip("tests.fixtures.tiny_models", reason="tiny model fixture not available")
    from crsdata.backends import make_backend

    folder = tiny.build_tiny_chat_model(tmp_path / "tiny")
    # The fixture's 512 positions are too few for a persona prompt in its byte-level vocabulary.
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 8192
    (folder / "config.json").write_text(json.dumps(config))
    backend = make_backend("local", str(folder), device="cpu", model_id="tiny")
    params = {r: SamplingParams(max_new_tokens=16, temperature=1.0) for r in ("user", "recommender")}
    for style in ("instruct", "finetuned"):
        sim = InterplaySimulation(
            {"user": backend, "recommender": backend}, params, 3, catalog=catalog(), style=style, max_parse_failures=2
        )
        states = _run(sim, redial_records(1))
        for state in states:
            out = sim.to_record(state)
            validate_dialogue(out)
            counters = Counter(state.counters)
            # Gibberish rarely parses: each dialogue ends on the turn cap, on unparseable or empty output.
            assert out["outcome"]["end_reason"] in {"max_turns", "parse_error", "empty", "accept"}
            assert counters["turns"] == len(state.turns)
            if out["outcome"]["end_reason"] == "parse_error":
                assert counters["parse_failures"] >= 2
            assert out["provenance"]["user_model"] == "tiny"


def test_finetuned_requests_mark_where_each_turn_starts():
    """A raw prompt carries its turns' offsets, so a backend short of context drops whole turns from the oldest
    and keeps the header (crsdata.backends.context); the prompt itself is finetuned_prompt's."""
    from crsdata.backends.context import fit_request

    sim = _simulation(user(), recommender(), style="finetuned")
    state = sim.start(redial_records(1)[0], "d", 0)
    script = [
        ("recommender", "Hi! What are you looking for?", "greeting", []),
        ("user", "A creepy film.", "disclose-goal", []),
        ("recommender", "Maybe a classic?", "inquire", []),
    ]
    state.turns = [new_turn(j, *script[j]) for j in range(3)]
    request = sim.request(state, "user")
    pieces = finetuned_pieces("user", sim.persona(state), state.turns)
    assert request.prompt == "".join(text for text, _ in pieces) + "user:"
    assert len(request.turn_starts) == 3 and request.turn_starts[0] == len(pieces[0][0])
    for start, (role, *_rest) in zip(request.turn_starts, script, strict=True):
        assert request.prompt[start:].startswith(f"{role}:")
    # Dropping the first turn leaves the header and the other two turns, unchanged.
    fitted, dropped = fit_request(request, len(request.prompt) - 10, 0, lambda r: len(r.prompt))
    assert dropped == 1
    assert fitted.prompt == pieces[0][0] + request.prompt[request.turn_starts[1] :]


def test_persona_history_defaults_to_the_one_the_user_model_was_trained_with(tmp_path):
    """No --persona-history: the history in the user model's crsdata.json (a train folder's, or the shipped
    adapter's), interplay for a model that does not say; the recommender's model plays no part."""
    from crsdata.backends.embedded import DEFAULT_PAIR, persona_history_of
    from crsdata.simulate.interplay import InterplayOptions, InterplaySimulation, trained_persona_history

    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "crsdata.json").write_text(
        json.dumps({"recipe": "user-simulator", "config": {"persona_history": "reported", "grounding": "catalog"}})
    )
    assert trained_persona_history(str(folder)) == "reported"
    assert trained_persona_history("base") == "interplay" and persona_history_of("base") is None
    assert trained_persona_history(str(tmp_path)) == "interplay"  # no crsdata.json
    shipped = persona_history_of(DEFAULT_PAIR["user"])
    options = InterplayOptions()
    InterplaySimulation.complete_options(options, {"user": str(folder), "recommender": DEFAULT_PAIR["recommender"]})
    assert options.persona_history == "reported"
    options = InterplayOptions()
    InterplaySimulation.complete_options(options, {"user": DEFAULT_PAIR["user"], "recommender": str(folder)})
    assert options.persona_history == (shipped or "interplay")


def test_the_accept_bias_defaults_to_the_user_models_calibration_and_biases_the_user_alone(tmp_path):
    """No --accept-bias: the calibrated bias in the user model's crsdata.json (`decision`), 0 for a model without
    one. It becomes a sequence bias on " <action><accept" in the fine-tuned user's sampling only, recorded in the
    settings; an instruct user (no action markup to bias) gets none."""
    from crsdata.simulate.interplay import ACCEPT_PREFIX, InterplayOptions, InterplaySimulation, trained_accept_bias

    folder = tmp_path / "user"
    folder.mkdir()
    metadata = {"recipe": "user-simulator", "config": {"grounding": "none"}, "decision": {"accept_bias": 1.25}}
    (folder / "crsdata.json").write_text(json.dumps(metadata))
    assert trained_accept_bias(str(folder)) == 1.25 and trained_accept_bias("base") == 0.0
    options = InterplayOptions()
    InterplaySimulation.complete_options(options, {"user": str(folder), "recommender": "base"})
    assert options.accept_bias == 1.25
    options = InterplayOptions(accept_bias=-0.5)  # the flag wins
    InterplaySimulation.complete_options(options, {"user": str(folder), "recommender": "base"})
    assert options.accept_bias == -0.5

    assert ACCEPT_PREFIX == " <action><accept"
    sim = _simulation(user(), recommender(), style="finetuned", accept_bias=1.25)
    assert sim.params["user"].sequence_bias == ((ACCEPT_PREFIX, 1.25),)
    assert sim.params["recommender"].sequence_bias == ()
    assert sim.settings()["accept_bias"] == 1.25
    plain = _simulation(user(), recommender(), accept_bias=1.25)  # instruct prompts
    assert plain.params["user"].sequence_bias == () and "accept_bias" not in plain.settings()


def test_persona_history_reported_lists_every_watched_film():
    """`--persona-history` (simulate and replay alike): Interplay's three watched films by default; `reported`
    lists every film the seeker reported, so a user can decline a proposal it has seen."""
    from crsdata.simulate.interplay import PERSONA_HISTORIES, InterplayOptions

    assert InterplayOptions().persona_history is None and PERSONA_HISTORIES == {"interplay": 3, "reported": None}
    records = redial_records(12)

    def watched(n_watched: int | None) -> list[int]:
        sim = _simulation(user(), recommender(), n_watched=n_watched)
        counts = []
        for i, record in enumerate(records):
            try:
                state = sim.start(record, f"sim-{i}", i)
            except BadInputError:  # no usable history at all: the same records in both settings
                continue
            counts.append(len(state.context["persona"]["watched"]))
        return counts

    interplay, reported = watched(3), watched(None)
    assert max(interplay) <= 3 and all(r >= i for r, i in zip(reported, interplay, strict=True))
    assert sum(reported) > sum(interplay)


def _echo_then(answer: str, echoes: int):
    """A user that copies the recommender's last response ``echoes`` times, then says ``answer``."""
    calls = iter(range(10**6))

    def policy(own: int, last: str) -> str:
        said = re.search(r"<response>(.*?)</response>", last)
        if said and next(calls) < echoes:
            return f"<action><feedback></action><response>{said.group(1)}</response>"
        return answer

    return policy


def test_a_turn_that_echoes_the_other_speaker_is_sampled_again_with_the_next_seed():
    horror = "<action><disclose-goal></action><response>Horror please.</response>"
    sim = _simulation(_echo_then(horror, 2), recommender(), max_turns=2, max_resamples=3)
    (state,) = _run(sim, [redial_record("16162")])
    assert [t["text"] for t in state.turns] == ["Hi! What kind of movie are you after?", "Horror please."]
    assert state.counters["resampled"] == 2 and state.counters["resampled.repeat"] == 2
    assert "resample_exhausted" not in state.counters
    assert [r.seed for r in sim.backends["user"].requests] == [request_seed(7, 1, a) for a in range(3)]
    # Off (the engine's own default, and --max-resamples 0): the echo is kept as written.
    sim = _simulation(_echo_then(horror, 2), recommender(), max_turns=2)
    (state,) = _run(sim, [redial_record("16162")])
    assert state.turns[1]["text"] == state.turns[0]["text"] and "resampled" not in state.counters


def test_a_copy_with_another_title_in_it_is_still_a_repeat():
    """Titles are left out of the comparison (round 6's self-play: the user copied the recommender's sentence
    with another film in it, under the 0.9 bar); different words around the same title are not a repeat."""
    from crsdata.simulate.filters import repeats_earlier

    earlier = [
        {
            "text": "I've seen it all. You know what they say about the old adage. Titanic (1997) is a good movie.",
            "items": [{"item_id": "1", "title": "Titanic (1997)"}],
        }
    ]
    copy = "I've seen it all. You know what they say about the old adage. Battlefield Earth (2000) is a good movie."
    assert repeats_earlier(copy, earlier, titles=["Battlefield Earth (2000)"])
    assert not repeats_earlier("Have you seen Titanic (1997)? It is a long one.", earlier, titles=["Titanic (1997)"])
    assert not repeats_earlier("Titanic (1997)", earlier, titles=["Titanic (1997)"])  # nothing but the title


def test_a_second_greeting_is_resampled_and_the_last_try_kept_when_they_run_out():
    greetings = iter(["Hello!", "Hi there!", "Hey!", "Good evening!", "Howdy!"])
    sim = _simulation(
        lambda own, last: f"<action><greeting></action><response>{next(greetings)}</response>",
        recommender(inquiries=3),
        max_turns=4,
        max_resamples=2,
    )
    (state,) = _run(sim, [redial_record("16162")])
    user_turns = [t for t in state.turns if t["role"] == "user"]
    # The first greeting is kept; the second is tried three times (two resamples) and the last try kept, counted.
    assert [t["text"] for t in user_turns] == ["Hello!", "Good evening!"]
    assert state.counters["resampled.greeting"] == 2 and state.counters["resample_exhausted"] == 1
    assert state.context["resamples"] == {"user": 0, "recommender": 0}
    # Each retry may not use the greeting words already rejected; the kept turn clears them.
    bans = [r.banned_words for r in sim.backends["user"].requests]
    assert bans == [(), (), ("hi", "there"), ("hey", "hi", "there")]
    assert state.context["banned"] == {}


def test_a_greeting_rejected_as_a_repeat_bans_its_words_too():
    """Round 7's self-play: "Hello." from both speakers, rejected as a repeat (checked first), came back for every
    seed; a rejected turn that only greets bans its words on the next tries, whatever the reason."""
    sim = _simulation(
        lambda own, last: "<action><greeting></action><response>Hello.</response>",
        recommender(inquiries=3),
        max_turns=4,
        max_resamples=2,
    )
    (state,) = _run(sim, [redial_record("16162")])
    assert state.counters["resampled.repeat"] == 2
    assert [r.banned_words for r in sim.backends["user"].requests] == [(), (), ("hello",), ("hello",)]


def test_an_accept_is_never_resampled():
    # The accept copies the recommender's sentence word for word; it ends the dialogue and is kept.
    sim = _simulation(
        lambda own, last: "<action><accept></action><response>Try The Shining (1980).</response>",
        lambda own, last: (
            "<action><recommend></action><response>Try <movie_title>The Shining (1980)</movie_title>.</response>"
        ),
        max_resamples=3,
    )
    (state,) = _run(sim, [redial_record("16162")])
    assert state.end_reason == "accept" and len(state.turns) == 2 and "resampled" not in state.counters
