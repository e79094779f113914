"""RecLLMSim builder: the real release (skipped without /work/shared/data) and bad input in tmp folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crsdata.build import BuildResult
from crsdata.builders.recllmsim import RecLLMSimBuilder, is_closing
from crsdata.errors import BadInputError, SkipLog
from crsdata.schema import load_extra, validate_dialogue

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "recllmsim"
needs_data = pytest.mark.skipif(
    not (DATA / "LLM_agent_user").is_dir(), reason=f"RecLLMSim release not found at {DATA} (shared data folder)"
)

# Counts of the release (wzf2000/RecLLMSim @ d680f2f9), one file per dialogue; see /work/shared/data/README.md.
SIMULATED = 1856
HUMAN = 291
HUMAN_V2 = 1833
SIMULATED_PER_TASK = {
    "preparing gifts": 474,
    "skills learning planning": 473,
    "travel planning": 358,
    "recipe planning": 352,
    "new travel planning": 199,
}


def build(*inputs: Path, skip_bad: bool = False) -> BuildResult:
    return RecLLMSimBuilder().build(list(inputs), catalogs=[], skip=SkipLog(skip_bad=skip_bad))


@pytest.fixture(scope="module")
def full() -> BuildResult:
    if not (DATA / "LLM_agent_user").is_dir():
        pytest.skip(f"RecLLMSim release not found at {DATA}")
    return build(DATA)


def by_id(result: BuildResult) -> dict[str, dict[str, Any]]:
    return {d["dialogue_id"]: d for rows in result.splits.values() for d in rows}


# ------------------------------------------------------------------------------------------------- real data


@needs_data
def test_counts_per_origin_and_accounting(full: BuildResult) -> None:
    assert {split: len(rows) for split, rows in full.splits.items()} == {
        "simulated": SIMULATED,
        "human": HUMAN,
        "human_v2": HUMAN_V2,
    }
    assert full.accounting() == {
        "read": SIMULATED + HUMAN + HUMAN_V2,
        "kept": SIMULATED + HUMAN + HUMAN_V2,
        "skipped": 0,
        "dropped": 0,
        "balanced": True,
    }
    assert sorted((f.path, f.records) for f in full.inputs) == [
        ("LLM_agent_user", SIMULATED),
        ("human_exp_V2", HUMAN_V2),
        ("real_human_user", HUMAN),
    ]
    tasks: dict[str, int] = {}
    for d in full.splits["simulated"]:
        tasks[d["task"]] = tasks.get(d["task"], 0) + 1
    assert tasks == SIMULATED_PER_TASK
    # The paper's Table 1 counts 22 scenarios; the card states how many distinct task contexts were read.
    assert any(
        note.startswith("Simulated scenarios (distinct English task contexts): 22 in all;") for note in full.notes
    )
    # 7,096 labelled user turns in the simulated data (data README); every one keeps exactly one label.
    user_turns = [t for d in full.splits["simulated"] for t in d["turns"] if t["role"] == "user"]
    assert len(user_turns) == 7096
    assert all(len(t["intents"]) == 1 for t in user_turns)


@needs_data
def test_every_record_fits_the_schema_and_ids_are_unique(full: BuildResult) -> None:
    ids = set()
    for split, rows in full.splits.items():
        for d in rows:
            validate_dialogue(d)
            assert d["split"] == split and d["source"] == "recllmsim"
            assert d["dialogue_id"].startswith(split + "/")
            assert d["language"] == ("en" if split == "simulated" else "zh")
            assert d["task"] in SIMULATED_PER_TASK
            assert all(t["action"] == "none" for t in d["turns"])
            ids.add(d["dialogue_id"])
    assert len(ids) == SIMULATED + HUMAN + HUMAN_V2


@needs_data
def test_simulated_dialogue_by_hand(full: BuildResult) -> None:
    # LLM_agent_user/recipe planning/10.json, read by hand: 10 turns, ratings 2,0,2,1,2,1,0 of maxima 2,1,2,1,2,2,2.
    d = by_id(full)["simulated/recipe_planning/10"]
    raw = json.loads((DATA / "LLM_agent_user" / "recipe planning" / "10.json").read_text(encoding="utf-8"))
    assert d["task"] == "recipe planning"
    assert [t["role"] for t in d["turns"]] == ["user", "recommender"] * 5
    assert d["turns"][0]["intents"] == ["Planning"]
    assert d["turns"][2]["intents"] == ["Search & Recommendation"]
    assert d["turns"][6]["intents"] == ["Others"]
    assert d["turns"][1]["intents"] == []
    assert d["outcome"]["rating"] == pytest.approx(8 / 12)
    assert load_extra(d["extra"])["rating"]["Diversity"] == 0
    # The last user turn closes with "... Thank you once again, and have a wonderful day!".
    assert d["outcome"]["end_reason"] == "end_phrase"
    assert d["user_profile"]["general_preferences"] == "balanced, nutritious"
    assert d["user_profile"]["profile_text"] == raw["preference"].strip()
    assert d["turns"][0]["text"] == raw["history"][0]["content"]
    first = load_extra(d["turns"][0]["extra"])
    assert first["content_zh"] == raw["history"][0]["content_zh"] and first["intent_zh"] == ["规划"]
    assert load_extra(d["turns"][1]["extra"])["hallucination"] is False
    extra = load_extra(d["extra"])
    assert extra["task_context"] == raw["task_context"] and extra["task_context_zh"] == raw["task_context_zh"]
    assert d["provenance"]["source_file"] == "LLM_agent_user/recipe planning/10.json"
    assert len(d["provenance"]["source_sha256"]) == 64


@needs_data
def test_simulated_hallucination_flag(full: BuildResult) -> None:
    # new travel planning/35.json: the assistant's turn 5 is annotated as a hallucination (a URL that does not exist).
    turn = load_extra(by_id(full)["simulated/new_travel_planning/35"]["turns"][5]["extra"])
    assert turn["hallucination"] is True and turn["hallucination_memo"] == "网址不存在"


@needs_data
def test_human_dialogue_by_hand(full: BuildResult) -> None:
    # real_human_user/User_1/菜谱规划/2.json: intents [推荐], [推荐, 规划], [推荐, 规划], [评估, 其它].
    d = by_id(full)["human/User_1/recipe_planning/2"]
    assert d["language"] == "zh" and d["task"] == "recipe planning" and d["split"] == "human"
    user = [t for t in d["turns"] if t["role"] == "user"]
    assert [t["intents"] for t in user] == [
        ["Recommendation"],
        ["Recommendation", "Planning"],
        ["Recommendation", "Planning"],
        ["Others"],
    ]
    assert load_extra(user[3]["extra"])["intent_zh"] == ["评估", "其它"]
    assert d["outcome"]["rating"] is None
    assert d["user_profile"]["profile_text"].startswith("Gender: ")
    extra = load_extra(d["extra"])
    assert extra["task_type"] == "菜谱规划" and "task_context_zh" in extra and "questionnaire" in extra
    # User_12/技能学习规划/15.json: the first assistant turn is marked 是 (a hallucination).
    first = next(t for t in by_id(full)["human/User_12/skills_learning_planning/15"]["turns"] if t["role"] != "user")
    assert load_extra(first["extra"]) == {"hallucination": True, "hallucination_zh": "是"}


@needs_data
def test_human_v2_satisfaction_and_model(full: BuildResult) -> None:
    d = by_id(full)["human_v2/User_0/skills_learning_planning/0"]
    assert d["provenance"]["recommender_model"] == "gpt-4-turbo-preview"
    assert load_extra(d["turns"][1]["extra"])["satisfaction"] == 4
    scores = [
        load_extra(t["extra"])["satisfaction"]
        for d in full.splits["human_v2"]
        for t in d["turns"]
        if t["role"] != "user"
    ]
    assert set(scores) == {1, 2, 3, 4, 5}
    assert all(t["intents"] == [] for d in full.splits["human_v2"] for t in d["turns"])


@needs_data
def test_subfolder_input_gives_the_same_ids(full: BuildResult) -> None:
    sub = build(DATA / "real_human_user" / "User_1")
    assert set(sub.splits) == {"human"}
    ids = {d["dialogue_id"] for d in sub.splits["human"]}
    assert "human/User_1/recipe_planning/2" in ids
    assert ids <= set(by_id(full))
    assert sub.splits["human"][0]["provenance"]["source_file"].count("/") == 1  # <task>/<n>.json below User_1


@needs_data
def test_loads_with_load_dataset(full: BuildResult, tmp_path: Path) -> None:
    export = pytest.importorskip("crsdata.export")
    from datasets import load_dataset

    # A few dialogues of each origin are enough to test that the origin splits load.
    sample = BuildResult(
        source=full.source,
        splits={split: rows[:5] for split, rows in full.splits.items()},
        info=full.info,
        notes=full.notes,
    )
    folder = export.export_folder(sample, tmp_path / "recllmsim")
    human = load_dataset(str(folder), "dialogues", split="human")
    assert human.num_rows == 5 and human[0]["language"] == "zh"
    loaded = load_dataset(str(folder), "dialogues")
    assert set(loaded) == {"simulated", "human", "human_v2"}
    assert loaded["simulated"][0]["dialogue_id"] == full.splits["simulated"][0]["dialogue_id"]


# ------------------------------------------------------------------------------------------------- bad input


def good_record() -> dict[str, Any]:
    """A hand-written record in the simulated layout."""
    return {
        "task": "travel planning",
        "preference": "1. Gender: Female\n2. Age: 30",
        "task_context": "You are planning a weekend trip.",
        "history": [
            {
                "role": "user",
                "content": "Plan my weekend trip, please.",
                "content_zh": "请规划周末旅行。",
                "intent": "Planning",
            },
            {"role": "assistant", "content": "Here is a plan.", "hallucination": {"hallucination": False, "memo": ""}},
            {"role": "user", "content": "Thank you, goodbye.", "intent": "Others"},
            {"role": "assistant", "content": "Have a good trip!"},
        ],
        "rating": {"Memorization": 1, "Diversity": 1},
    }


def make_tree(root: Path, files: dict[str, bytes | dict[str, Any]]) -> Path:
    for rel, content in files.items():
        path = root / "LLM_agent_user" / "travel planning" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode("utf-8"))
    return root


def test_good_hand_written_record(tmp_path: Path) -> None:
    result = build(make_tree(tmp_path, {"0.json": good_record()}))
    (d,) = result.splits["simulated"]
    assert d["dialogue_id"] == "simulated/travel_planning/0"
    assert d["outcome"] == {"accepted_item": {"item_id": "", "title": ""}, "end_reason": "end_phrase", "rating": 2 / 3}
    assert [t["role"] for t in d["turns"]] == ["user", "recommender", "user", "recommender"]
    assert load_extra(d["extra"])["task_context"] == "You are planning a weekend trip."


def bad_cases() -> dict[str, tuple[bytes | dict[str, Any], str, str]]:
    """file name -> (content, field named in the error, reason)."""
    no_history = good_record()
    del no_history["history"]
    wrong_type = good_record()
    wrong_type["history"] = "user: hi"
    no_role = good_record()
    del no_role["history"][2]["role"]
    bad_role = good_record()
    bad_role["history"][1]["role"] = "system"
    bad_intent = good_record()
    bad_intent["history"][0]["intent"] = "Chit-chat"
    truncated = json.dumps(good_record()).encode("utf-8")[:-25]
    not_utf8 = json.dumps(good_record()).encode("utf-8").replace(b"Plan my", b"Plan \xff my", 1)
    return {
        "1.json": (truncated, "", "invalid-json"),
        "2.json": (no_history, "history", "missing-field"),
        "3.json": (wrong_type, "history", "wrong-type"),
        "4.json": (no_role, "history[2].role", "missing-field"),
        "5.json": (bad_role, "history[1].role", "bad-value"),
        "6.json": (bad_intent, "history[0].intent", "unknown-label"),
        "7.json": (not_utf8, "", "not-utf8"),
    }


@pytest.mark.parametrize("name", sorted(bad_cases()))
def test_bad_input_names_file_record_and_field(tmp_path: Path, name: str) -> None:
    content, field, reason = bad_cases()[name]
    root = make_tree(tmp_path, {name: content})
    with pytest.raises(BadInputError) as caught:
        build(root)
    err = caught.value
    assert err.path.endswith(f"travel planning/{name}") and err.field == field and err.reason == reason
    assert err.record  # a line number or the dialogue id
    message = str(err)
    assert name in message and err.record in message and (f"field '{field}'" in message if field else True)
    if field:  # a readable file: the record is the dialogue, named by its id
        assert err.record == f"dialogue simulated/travel_planning/{Path(name).stem}"


def test_skip_bad_counts_add_up(tmp_path: Path) -> None:
    cases = bad_cases()
    root = make_tree(
        tmp_path, {"0.json": good_record(), "10.json": good_record(), **{n: c for n, (c, _, _) in cases.items()}}
    )
    result = build(root, skip_bad=True)
    assert len(result.splits["simulated"]) == 2
    reasons: dict[str, int] = {}
    for _, _, reason in cases.values():
        reasons[reason] = reasons.get(reason, 0) + 1
    assert result.skipped.as_dict()["by_reason"] == dict(sorted(reasons.items()))
    assert result.accounting() == {"read": 9, "kept": 2, "skipped": 7, "dropped": 0, "balanced": True}


def test_same_file_given_twice_is_read_once(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"0.json": good_record()})
    result = build(root, root / "LLM_agent_user", root / "LLM_agent_user" / "travel planning" / "0.json")
    assert result.accounting()["read"] == 1 and len(result.splits["simulated"]) == 1


def test_not_a_recllmsim_folder(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="not a RecLLMSim data folder"):
        build(tmp_path)


def test_human_layout_and_unknown_task_folder(tmp_path: Path) -> None:
    record = {
        "history": [
            {"role": "user", "content": "推荐一道菜", "intent": ["推荐", "评估"]},
            {"role": "assistant", "content": "好的"},
        ],
        "task_type": "菜谱规划",
        "profile": {"gender": "Female", "age": 30, "personality": ["乐观"], "complete_tid": {"菜谱规划": [0]}},
    }
    for folder in ("菜谱规划", "未知任务"):
        path = tmp_path / "real_human_user" / "User_3" / folder / "0.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
    result = build(tmp_path, skip_bad=True)
    (d,) = result.splits["human"]
    assert d["dialogue_id"] == "human/User_3/recipe_planning/0"
    assert d["turns"][0]["intents"] == ["Recommendation", "Others"]
    assert d["user_profile"]["profile_text"] == "Gender: Female\nAge: 30\nPersonality: 乐观"
    assert load_extra(d["extra"])["profile_other"] == {"complete_tid": {"菜谱规划": [0]}}
    assert result.skipped.as_dict()["by_reason"] == {"unknown-label": 1}


@pytest.mark.parametrize(
    ("text", "closing"),
    [
        ("Thank you, goodbye.", True),
        ("Thanks again, and have a wonderful day!", True),
        ("Thank you for your help! Is there anything else I should consider?", False),
        ("Could you list the ingredients? I want to shop today.", False),
        ("好的，谢谢", True),
        ("那你帮我简单汇总一下谢谢", False),
        ("谢谢！但是我觉得你的安排太粗略了，能否再详细一些", False),
        ("I'll pick the first option.", False),
    ],
)
def test_closing_phrases(text: str, closing: bool) -> None:
    assert is_closing(text) is closing


def test_split_override_keeps_origin(tmp_path: Path) -> None:
    root = make_tree(tmp_path, {"0.json": good_record()})
    human = root / "real_human_user" / "User_0" / "礼物准备" / "1.json"
    human.parent.mkdir(parents=True)
    human.write_text(
        json.dumps({"history": [{"role": "user", "content": "送什么礼物好？", "intent": ["推荐"]}]}), "utf-8"
    )
    result = RecLLMSimBuilder().build([root], catalogs=[], skip=SkipLog(), split="train")
    assert list(result.splits) == ["train"]
    rows = result.splits["train"]
    assert [(d["dialogue_id"], d["split"], load_extra(d["extra"])["origin"]) for d in rows] == [
        ("simulated/travel_planning/0", "train", "LLM_agent_user"),
        ("human/User_0/preparing_gifts/1", "train", "real_human_user"),
    ]
    assert [d["language"] for d in rows] == ["en", "zh"]
