"""RecLLMSim: task-based recommendation conversations (simulated users and real human users).

Input: the RecLLMSim data folder (``RecLLMSim/data`` of wzf2000/RecLLMSim) or any folder or file below it.
Three origins are read, each into its own split, because the source defines no train/validation/test split
and the origins differ in who played the user, in language and in annotations (``split=`` / CLI ``--split``
puts all of them into one split instead; ``extra.origin`` and the dialogue id still tell them apart):

======================  ===========  ========  ==========================================================
folder                  split        language  layout and annotations
======================  ===========  ========  ==========================================================
``LLM_agent_user/``     ``simulated`` ``en``    ``<task>/<n>.json``; LLM user; English text with Chinese
                                               translation; one intent per user turn; hallucination flag
                                               per assistant turn; seven-criterion rating per dialogue
``real_human_user/``    ``human``     ``zh``    ``User_k/<task_zh>/<n>.json``; real users, Chinese only;
                                               a list of intents per user turn; hallucination per
                                               assistant turn; questionnaire per dialogue
``human_exp_V2/``       ``human_v2``  ``zh``    ``User_k/<task_zh>/<n>.json``; a second human experiment,
                                               Chinese only, no intents; satisfaction (1-5), reason and
                                               hallucination per assistant turn; assistant model named
======================  ===========  ========  ==========================================================

Mapping (documented in the card through :data:`NOTES`):

- roles ``user`` -> ``user``, ``assistant`` -> ``recommender``. ``action`` stays ``none``: the RecLLMSim
  labels say what kind of help the user asks for (search, recommendation, planning), not which dialogue act
  a turn performs, and assistant turns carry no label, so no mapping onto :class:`~crsdata.schema.Action`
  would be faithful.
- ``turns[].intents`` is always a list. Simulated turns carry one English label; human turns carry a list
  of Chinese labels, mapped through :data:`INTENT_ZH_TO_EN` to the simulated label set; the source labels
  are kept in turn ``extra.intent_zh``. ``评估`` (evaluation: asking the assistant to judge a plan or an
  option) has no counterpart in the simulated set and maps to ``Others``.
- ``task``: the simulated data's English task name; human task folders are Chinese and are translated with
  :data:`TASK_ZH_TO_EN`. ``new travel planning`` is kept apart from ``travel planning`` as in the source (a
  second batch of travel scenarios with different templates).
- ``user_profile.profile_text``: the English ``preference`` text for simulated users; the human ``profile``
  dict rendered as ``Label: value`` lines (English labels, values as the user wrote them).
  ``user_profile.general_preferences``: the simulated ``preference_summary`` phrases (GPT-4's summary of the
  preferences the simulator showed, paper section 4.1), joined with ", ".
- ``outcome.rating``: the seven annotator scores of a simulated dialogue as one number in [0, 1]: their sum
  divided by the sum of the scale maxima (Memorization and Additional Preferences are 0/1, the others 0-2,
  paper section 4.2); the scores themselves stay in ``extra.rating``. Human dialogues have no rating.
- ``outcome.end_reason``: ``end_phrase`` when the last user turn closes the conversation (a farewell, or a
  thank-you that is not followed by a question; :func:`is_closing`), else ``source``.
- Everything else of a record (task contexts, Chinese texts, strategies, questionnaires, profile mappings)
  goes to the dialogue or turn ``extra`` under its source name; Chinese task contexts as
  ``task_context_zh``, the English one (simulated only) as ``task_context``.

Dialogue ids are ``<split>/<task>/<n>`` (simulated) and ``<split>/<User_k>/<task>/<n>`` (human), built from
the path below the origin folder with the English task name (spaces as ``_``), so they do not depend on
which folder was given as input.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crsdata.build import Builder, BuildResult, InputFile, resolve_split
from crsdata.errors import BadInputError, SkipLog
from crsdata.fileio import sha256_file
from crsdata.readers import read_json, require
from crsdata.schema import EndReason, Role, new_dialogue, new_turn, validate_dialogue

SOURCE = "recllmsim"


@dataclass(frozen=True)
class Origin:
    folder: str
    split: str
    language: str
    # Path parts below the origin folder: <task>/<n>.json (2) or User_k/<task>/<n>.json (3).
    depth: int


ORIGINS: tuple[Origin, ...] = (
    Origin("LLM_agent_user", "simulated", "en", 2),
    Origin("real_human_user", "human", "zh", 3),
    Origin("human_exp_V2", "human_v2", "zh", 3),
)
_BY_FOLDER = {o.folder: o for o in ORIGINS}

# Chinese task folder / ``task_type`` -> the English task name the simulated data uses.
TASK_ZH_TO_EN: dict[str, str] = {
    "旅行规划": "travel planning",
    "技能学习规划": "skills learning planning",
    "礼物准备": "preparing gifts",
    "菜谱规划": "recipe planning",
}
ENGLISH_TASKS: frozenset[str] = frozenset({*TASK_ZH_TO_EN.values(), "new travel planning"})

# The simulated data's intent labels (paper section 4.3) and the Chinese labels of both data sets.
INTENTS_EN: tuple[str, ...] = ("Search", "Recommendation", "Search & Recommendation", "Planning", "Others")
INTENT_ZH_TO_EN: dict[str, str] = {
    "检索": "Search",
    "推荐": "Recommendation",
    "检索+推荐": "Search & Recommendation",
    "规划": "Planning",
    "其他": "Others",  # the simulated data's spelling
    "其它": "Others",  # the human data's spelling
    "评估": "Others",  # evaluation: not in the simulated label set
}

# Hallucination answers of the human annotators: yes / no / cannot tell.
HALLUCINATION_ZH: dict[str, bool | None] = {"是": True, "否": False, "无法判断": None}

# Why a human_exp_V2 user was not fully satisfied with an assistant turn.
SATISFACTION_REASON_ZH_TO_EN: dict[str, str] = {
    "不够细致": "not detailed enough",
    "不满足需求": "does not meet the need",
    "不够多样": "not diverse enough",
    "不可用": "not usable",
    "其它": "other",
}

# Scale maxima of the simulated dialogues' annotator scores (paper section 4.2).
RATING_MAX: dict[str, int] = {
    "Preference Alignment": 2,
    "Additional Preferences": 1,
    "Role-Playing Completeness": 2,
    "Memorization": 1,
    "Detail Level": 2,
    "Practical Usefulness": 2,
    "Diversity": 2,
}

# Human profile keys -> the labels the simulated profiles use (``background`` only in human_exp_V2).
PROFILE_LABELS: dict[str, str] = {
    "gender": "Gender",
    "age": "Age",
    "background": "Background",
    "personality": "Personality",
    "occupation": "Occupation",
    "daily_interests": "Daily Interests and Hobbies",
    "travel_habits": "Travel Habits",
    "dining_preferences": "Dining Preferences",
    "spending_habits": "Spending Habits",
    "other_aspects": "Other Aspects",
}

_ROLES = {"user": Role.USER, "assistant": Role.RECOMMENDER}

# The simulator was told to end with "Thank you, goodbye."; the stored dialogues end on the assistant and
# the last user turn mostly says goodbye in other words, so closings are recognised by pattern.
_FAREWELL = re.compile(
    r"good\s*-?\s*bye|\bbye\b|farewell|take care|have an? (?:\w+ ){0,3}(?:day|evening|night|weekend|trip|time|one)\b"
    r"|再见|拜拜",
    re.IGNORECASE,
)
_THANKS = re.compile(r"thank|\bthanks\b|谢谢|感谢|多谢", re.IGNORECASE)
_QUESTION = re.compile(r"[?？]")
# Asking for more: Chinese request and question words (questions often lack "？"), English polite requests.
_REQUEST = re.compile(
    r"请|帮我|给我|能否|能不能|吗|呢|什么|怎么|哪|\bplease\b|\b(?:could|can|would) you\b", re.IGNORECASE
)
_SENTENCE_ENDS = ("。", "！", "!", "？", "?", ". ", "\n")

NOTES: list[str] = [
    "Splits: the source defines none. Each origin is its own split: `simulated` (LLM_agent_user, LLM users, "
    "English with Chinese translations), `human` (real_human_user, real users, Chinese), `human_v2` "
    "(human_exp_V2, a second human experiment, Chinese, no intent labels). Load one with "
    "`load_dataset(repo, 'dialogues', split='human')`.",
    "Tasks: human task folders are translated to the simulated data's names: "
    + ", ".join(f"{zh} = {en}" for zh, en in TASK_ZH_TO_EN.items())
    + ". `new travel planning` is a second batch of simulated travel scenarios, kept apart as in the source. "
    "Each dialogue's scenario text is in `extra.task_context` (English, simulated only) and "
    "`extra.task_context_zh` (Chinese).",
    "Intents: `turns[].intents` uses the simulated label set (" + ", ".join(INTENTS_EN) + "). Human labels are "
    "mapped " + ", ".join(f"{zh} = {en}" for zh, en in INTENT_ZH_TO_EN.items()) + " (评估, evaluation, has no "
    "simulated counterpart); the source labels are in turn `extra.intent_zh`. `action` is `none`: the labels "
    "describe the help requested, not a dialogue act.",
    "Rating: `outcome.rating` is the sum of a simulated dialogue's seven annotator scores divided by the sum of "
    "their scale maxima (" + ", ".join(f"{k} 0-{v}" for k, v in RATING_MAX.items()) + "), so 1.0 is best; the "
    "scores are in `extra.rating`. Human dialogues have no rating (questionnaire answers in `extra`, "
    "per-turn satisfaction 1-5 in human_v2 turn `extra.satisfaction`).",
    "End reason: `end_phrase` when the last user turn says goodbye or thanks without asking anything further "
    "(the simulator was told to close with 'Thank you, goodbye.'), else `source`.",
    "Text: simulated `turns[].text` is English, the source's Chinese translation is in turn `extra.content_zh`; "
    "human dialogues are Chinese only (`language` = zh).",
]


def is_closing(text: str) -> bool:
    """True when a user turn ends the conversation: a farewell, or thanks that asks for nothing more.

    Chinese requests often end without a question mark ("那你帮我汇总一下谢谢"), so a thank-you counts only
    when neither the rest of the turn nor the sentence it closes asks for something.
    """
    if _FAREWELL.search(text):
        return True
    last = None
    for match in _THANKS.finditer(text):
        last = match
    if last is None:
        return False
    tail = text[last.end() :]
    if _QUESTION.search(tail) or _REQUEST.search(tail):
        return False
    sentence_start = max(text.rfind(mark, 0, last.start()) for mark in _SENTENCE_ENDS) + 1
    return not _REQUEST.search(text[sentence_start : last.start()])


def scenario_note(scenarios: dict[str, set[str]]) -> str:
    """Card line: how many distinct English scenario texts (task contexts) each simulated task has."""
    counts = ", ".join(f"{task} {len(texts)}" for task, texts in sorted(scenarios.items()))
    total = sum(len(texts) for texts in scenarios.values())
    return f"Simulated scenarios (distinct English task contexts): {total} in all; {counts or 'none'}."


def task_slug(task: str) -> str:
    return task.replace(" ", "_")


def _natural_key(parts: tuple[str, ...]) -> tuple[Any, ...]:
    # 2.json before 10.json and User_2 before User_10, so that builds list files in the order a person would.
    key = []
    for part in (*parts[:-1], parts[-1].rsplit(".", 1)[0]):
        prefix, _, number = part.rpartition("_") if "_" in part else ("", "", part)
        key.append((prefix, int(number)) if number.isdigit() else (part, -1))
    return tuple(key)


@dataclass
class _File:
    path: Path
    rel: Path  # relative to the input path the user gave (what the card and provenance show)
    origin: Origin
    parts: tuple[str, ...]  # path parts below the origin folder
    group: str  # the InputFile this file is counted under


def _origin_of(path: Path) -> tuple[Origin, Path] | None:
    """The origin whose folder is ``path`` or one of its ancestors, and that folder."""
    for candidate in (path, *path.parents):
        if candidate.name in _BY_FOLDER:
            return _BY_FOLDER[candidate.name], candidate
    return None


def _discover(inputs: list[Path]) -> list[_File]:
    """The JSON files of every origin under the inputs, each once, in a stable order."""
    seen: set[Path] = set()
    files: list[_File] = []
    for given in inputs:
        given = Path(given)
        if not given.exists():
            raise BadInputError(given, "", "", "no such file or folder", "not-found")
        # Resolved once per input, not per file: resolving thousands of paths costs more than reading them.
        base = given.resolve()
        found = _origin_of(base)
        if found is not None:
            roots = [found]
        else:
            roots = [(o, base / o.folder) for o in ORIGINS if (base / o.folder).is_dir()]
            if not roots:
                raise BadInputError(
                    given,
                    "",
                    "",
                    "not a RecLLMSim data folder: expected "
                    + ", ".join(f"{o.folder}/" for o in ORIGINS)
                    + " in it or above it",
                    "not-recllmsim",
                )
        for origin, origin_dir in roots:
            if base.is_file():
                paths = [base]
            else:
                paths = sorted((base if found else origin_dir).rglob("*.json"))
            for path in paths:
                if path in seen:
                    continue
                seen.add(path)
                rel = Path(given.name) if base.is_file() else path.relative_to(base)
                group = rel.parts[0] if len(rel.parts) > 1 else rel.as_posix()
                files.append(_File(path, rel, origin, path.relative_to(origin_dir).parts, group))
    order = {o.folder: i for i, o in enumerate(ORIGINS)}
    files.sort(key=lambda f: (order[f.origin.folder], _natural_key(f.parts)))
    return files


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path, record: str, prefix: str) -> Any:
    """:func:`require` with the field named by its full path (``history[3].role``)."""
    try:
        return require(obj, key, kind, path, record)
    except BadInputError as err:
        raise BadInputError(path, record, f"{prefix}.{key}", err.message, err.reason) from None


def _intents(value: Any, path: Path, record: str, field: str) -> tuple[list[str], list[str]]:
    """(English labels, Chinese labels as given) of a turn's ``intent``: a label or a list of labels."""
    labels = [value] if isinstance(value, str) else value
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise BadInputError(path, record, field, f"expected a label or a list of labels, got {value!r}", "wrong-type")
    english: list[str] = []
    chinese: list[str] = []
    for label in labels:
        label = label.strip()
        if label in INTENT_ZH_TO_EN:
            chinese.append(label)
            mapped = INTENT_ZH_TO_EN[label]
        elif label in INTENTS_EN:
            mapped = label
        else:
            raise BadInputError(path, record, field, f"unknown intent label {label!r}", "unknown-label")
        if mapped not in english:  # 其它 and 评估 both become Others
            english.append(mapped)
    return english, chinese


def _hallucination(value: Any, path: Path, record: str, field: str) -> dict[str, Any]:
    if isinstance(value, dict) and isinstance(value.get("hallucination"), bool):
        out: dict[str, Any] = {"hallucination": value["hallucination"]}
        if value.get("memo"):
            out["hallucination_memo"] = value["memo"]
        return out
    if isinstance(value, bool):
        return {"hallucination": value}
    if isinstance(value, str) and value.strip() in HALLUCINATION_ZH:
        return {"hallucination": HALLUCINATION_ZH[value.strip()], "hallucination_zh": value.strip()}
    raise BadInputError(path, record, field, f"unrecognised hallucination annotation {value!r}", "bad-value")


def _satisfaction(value: Any, path: Path, record: str, field: str) -> int:
    try:
        score = int(str(value).strip())
    except ValueError:
        score = 0
    if isinstance(value, bool) or not 1 <= score <= 5:
        raise BadInputError(path, record, field, f"expected a score from 1 to 5, got {value!r}", "bad-value")
    return score


def _rating(value: Any, path: Path, record: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not value:
        raise BadInputError(
            path, record, "rating", f"expected an object of criterion scores, got {value!r}", "wrong-type"
        )
    total = 0
    maximum = 0
    for criterion, score in value.items():
        top = RATING_MAX.get(criterion)
        if top is None:
            raise BadInputError(path, record, f"rating.{criterion}", "unknown rating criterion", "unknown-label")
        if isinstance(score, bool) or not isinstance(score, int) or not 0 <= score <= top:
            raise BadInputError(path, record, f"rating.{criterion}", f"expected 0 to {top}, got {score!r}", "bad-value")
        total += score
        maximum += top
    return total / maximum


def render_profile(profile: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A human profile as ``Label: value`` lines, and the entries that are not attributes (dicts)."""
    lines = []
    other: dict[str, Any] = {}
    for key, value in profile.items():
        if isinstance(value, dict):  # e.g. complete_tid: experiment bookkeeping, not a user attribute
            other[key] = value
            continue
        label = PROFILE_LABELS.get(key, key.replace("_", " ").capitalize())
        text = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        lines.append(f"{label}: {text}")
    return "\n".join(lines), other


class RecLLMSimBuilder(Builder):
    name = "recllmsim"
    pretty_name = "RecLLMSim (crsdata)"
    description = (
        "RecLLMSim: task-based conversational recommendation (travel planning, skills learning planning, recipe "
        "planning, preparing gifts) with LLM-simulated users and with real human users, with per-utterance "
        "user intents and hallucination annotations."
    )
    license = "Apache-2.0 (RecLLMSim repository licence)"
    license_id = "apache-2.0"
    # The paper was under anonymous review when the data was released; cite the repository until it is out.
    citation = """@misc{recllmsim,
  title = {RecLLMSim: A Comprehensive Task-based Recommendation Conversation Dataset Generated by Large
           Language Models},
  howpublished = {\\url{https://github.com/wzf2000/RecLLMSim}}
}"""
    homepage = "https://github.com/wzf2000/RecLLMSim"
    input_help = (
        "the RecLLMSim data folder (holding LLM_agent_user/, real_human_user/, human_exp_V2/), or any folder or "
        "JSON file below it"
    )

    def build(
        self, inputs: list[Path], *, catalogs: list[Path], skip: SkipLog, split: str | None = None
    ) -> BuildResult:
        """Reads RecLLMSim folders or files; ``split`` (CLI ``--split``) puts every origin in that one split
        (the origin stays in ``extra.origin`` and in the dialogue id)."""
        override = resolve_split(split) if split is not None else None
        # RecLLMSim items are free-text suggestions (destinations, dishes, gifts) without a catalog, so
        # ``catalogs`` is accepted for the common interface and not used.
        files = _discover([Path(p) for p in inputs])
        self._scenarios: dict[str, set[str]] = defaultdict(set)
        splits: dict[str, list[dict[str, Any]]] = {}
        groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for file in files:
            digest = sha256_file(file.path)
            groups[file.group].append((file.rel.as_posix(), digest))
            record = self._read(file, digest, skip)
            if record is not None:
                if override:
                    record["split"] = override
                splits.setdefault(override or file.origin.split, []).append(record)
        notes = list(NOTES)
        if override:
            notes[0] = (
                f"Splits: the source defines none; this build put every origin in `{override}` (--split). "
                "`extra.origin` says which folder a dialogue came from: LLM_agent_user (LLM users), "
                "real_human_user or human_exp_V2 (real users)."
            )
        result = BuildResult(source=SOURCE, splits=splits, skipped=skip, notes=notes, info=self.info())
        result.notes.append(scenario_note(self._scenarios))
        # One InputFile per top-level folder of the input: thousands of one-dialogue files would bury the card.
        # Its sha256 is that of the sorted "<path>\t<file sha256>" lines, so any changed file changes it.
        for group, members in groups.items():
            manifest = "".join(f"{p}\t{h}\n" for p, h in sorted(members)).encode("utf-8")
            result.inputs.append(InputFile(group, hashlib.sha256(manifest).hexdigest(), len(members)))
        return result

    def _read(self, file: _File, digest: str, skip: SkipLog) -> dict[str, Any] | None:
        """One file -> one schema dialogue, or ``None`` after handing the error to ``skip``."""
        try:
            dialogue_id = self._dialogue_id(file)
            record_name = f"dialogue {dialogue_id}"
            obj = read_json(file.path)
            if not isinstance(obj, dict):
                raise BadInputError(
                    file.path, record_name, "", f"expected a JSON object, got {type(obj).__name__}", "wrong-type"
                )
            record = self._convert(obj, file, dialogue_id, record_name, digest)
            validate_dialogue(record, str(file.path), record_name)
            return record
        except BadInputError as err:
            skip.handle(err)
            return None

    @staticmethod
    def _task_of(file: _File) -> str:
        folder = file.parts[-2]
        task = TASK_ZH_TO_EN.get(folder, folder)
        if task not in ENGLISH_TASKS:
            raise BadInputError(file.path, "file path", "", f"unknown task folder {folder!r}", "unknown-label")
        return task

    def _dialogue_id(self, file: _File) -> str:
        if len(file.parts) != file.origin.depth:
            layout = "<task>/<n>.json" if file.origin.depth == 2 else "User_k/<task>/<n>.json"
            raise BadInputError(
                file.path,
                "file path",
                "",
                f"unexpected location: {file.origin.folder}/ holds {layout}",
                "unexpected-path",
            )
        middle = list(file.parts[:-2])  # User_k for the human origins
        return "/".join([file.origin.split, *middle, task_slug(self._task_of(file)), Path(file.parts[-1]).stem])

    def _convert(self, obj: dict[str, Any], file: _File, dialogue_id: str, rid: str, digest: str) -> dict[str, Any]:
        path = file.path
        origin = file.origin
        history = require(obj, "history", list, path, rid)
        if not history:
            raise BadInputError(path, rid, "history", "no turns", "empty-dialogue")
        turns = [self._turn(i, t, path, rid) for i, t in enumerate(history)]

        extra: dict[str, Any] = {"origin": origin.folder}
        consumed = {"history"}
        profile: dict[str, Any] = {}
        outcome: dict[str, Any] = {}
        provenance: dict[str, Any] = {"source_file": file.rel.as_posix(), "source_sha256": digest}
        if origin.split == "simulated":
            task = self._task_of(file)
            if isinstance(obj.get("task"), str) and obj["task"].strip():
                task = obj["task"].strip()
            consumed |= {"task", "preference", "preference_summary", "rating", "task_context"}
            profile["profile_text"] = require(obj, "preference", str, path, rid).strip() if "preference" in obj else ""
            summary = obj.get("preference_summary") or []
            if not isinstance(summary, list):
                raise BadInputError(path, rid, "preference_summary", "expected a list of phrases", "wrong-type")
            profile["general_preferences"] = ", ".join(str(s) for s in summary)
            outcome["rating"] = _rating(obj.get("rating"), path, rid)
            extra["rating"] = obj.get("rating")
            extra["preference_summary"] = summary
            if isinstance(obj.get("task_context"), str):
                extra["task_context"] = obj["task_context"]
                self._scenarios[task].add(obj["task_context"])
        else:
            task = self._task_of(file)
            consumed |= {"profile", "task_context", "chat_model"}
            raw_profile = obj.get("profile") or {}
            if not isinstance(raw_profile, dict):
                raise BadInputError(path, rid, "profile", "expected an object", "wrong-type")
            profile["profile_text"], other = render_profile(raw_profile)
            extra["profile"] = raw_profile
            if other:
                extra["profile_other"] = other
            if isinstance(obj.get("task_context"), str):
                extra["task_context_zh"] = obj["task_context"]
            if isinstance(obj.get("chat_model"), str):
                provenance["recommender_model"] = obj["chat_model"]
        # Everything not mapped above stays with the record under its source name.
        for key, value in obj.items():
            if key not in consumed and key not in extra:
                extra[key] = value

        last_user = next((t for t in reversed(turns) if t["role"] == Role.USER), None)
        closing = last_user is not None and is_closing(last_user["text"])
        outcome["end_reason"] = EndReason.END_PHRASE.value if closing else EndReason.SOURCE.value
        return new_dialogue(
            dialogue_id,
            SOURCE,
            origin.split,
            turns,
            language=origin.language,
            task=task,
            user_profile=profile,
            outcome=outcome,
            provenance=provenance,
            extra=extra,
        )

    @staticmethod
    def _turn(index: int, raw: Any, path: Path, rid: str) -> dict[str, Any]:
        where = f"history[{index}]"
        if not isinstance(raw, dict):
            raise BadInputError(path, rid, where, f"expected an object, got {type(raw).__name__}", "wrong-type")
        role_name = _field(raw, "role", str, path, rid, where)
        if role_name not in _ROLES:
            raise BadInputError(
                path, rid, f"{where}.role", f"unknown role {role_name!r} (user, assistant)", "bad-value"
            )
        text = _field(raw, "content", str, path, rid, where)
        extra: dict[str, Any] = {}
        intents: list[str] = []
        if raw.get("intent") is not None:
            intents, chinese = _intents(raw["intent"], path, rid, f"{where}.intent")
            if chinese:
                extra["intent_zh"] = chinese
        if isinstance(raw.get("intent_zh"), str):
            extra["intent_zh"] = [raw["intent_zh"]]
        if raw.get("hallucination") is not None:
            extra.update(_hallucination(raw["hallucination"], path, rid, f"{where}.hallucination"))
        if raw.get("satisfaction") is not None:
            extra["satisfaction"] = _satisfaction(raw["satisfaction"], path, rid, f"{where}.satisfaction")
        if isinstance(raw.get("reason"), str) and raw["reason"].strip():
            reason = raw["reason"].strip()
            extra["satisfaction_reason_zh"] = reason
            extra["satisfaction_reason"] = SATISFACTION_REASON_ZH_TO_EN.get(reason, "")
        for key, value in raw.items():  # content_zh, content_zh_old and anything new
            if key not in {"role", "content", "intent", "intent_zh", "hallucination", "satisfaction", "reason"}:
                extra[key] = value
        return new_turn(index, _ROLES[role_name], text, intents=intents, extra=extra)
