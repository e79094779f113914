"""RecLLMSim task conversations: an LLM user with a profile and a task talks to an LLM assistant.

After RecLLMSim (Apache-2.0; paper section 3): the user simulator gets a user profile, a scenario-specific task
description (travel planning, recipe planning, gifts, ...) and rules, and talks to an assistant until it says
the end phrase. After every assistant turn the user simulator also reads an end prompt, "[System]: If you wish
to conclude this conversation, please reply with 'Thank you, goodbye.'", which makes the conversation length
controllable by checking the user's reply. The prompts here are our own wording of that setup.

Where profiles and tasks come from (``--source``):

- a built RecLLMSim folder (``crsdata build recllmsim``): each dialogue takes the profile
  (``user_profile.profile_text``), task type (``task``) and task description (``extra.task_context``) of a
  source record. Only English records are drawn (the human splits are Chinese); the others are counted as
  excluded, by reason, in the manifest and card.
- ``scenarios`` (or a scenario YAML file): every task description the scenario templates expand to (see
  :mod:`crsdata.simulate.scenarios`), crossed with the distinct profiles of the packaged RecLLMSim pool (it
  has 100 entries, 85 distinct), or with profiles the user model writes itself (``profiles="generate"``).

The loop
- With ``generate`` profiles the dialogue first asks the user model for a profile with RecLLMSim's nine
  fields (two pool profiles as examples). The answer is parsed and validated (all nine fields, a plausible
  age, not a copy of an example); a failure asks again with a new seed, at most ``max_profile_attempts``
  times, then a pool profile chosen by the dialogue seed is used and ``profile.fallback`` is counted.
- The user speaks first, then the roles alternate. A generation is cleaned (a leading speaker label is
  removed; text after a line where the model starts writing the other party's part is cut, counted as
  ``repair.*``). An answer that is empty after cleaning is asked again with a new seed up to
  ``max_empty_retries`` times, then the dialogue ends with ``empty``.
- A user turn that contains the end phrase (tolerant of case, punctuation and "thanks"/"good bye" spellings)
  ends the dialogue with ``end_phrase``; otherwise it ends with ``max_turns`` once ``max_turns`` turns (both
  roles together) are written.
- Quality filters (:mod:`crsdata.simulate.filters`: empty turns, role confusion, repetition) run on the
  finished dialogue; hits go to ``extra.quality`` and the ``filter.*`` counters.

Seeds: the request for turn ``t``, attempt ``a`` has seed ``derive_seed("recllmsim", state.seed, t, a)``; the
profile request for attempt ``a`` has ``derive_seed("recllmsim-profile", state.seed, a)``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crsdata.backends.base import Backend, ChatRequest, Generation, SamplingParams
from crsdata.errors import BadInputError
from crsdata.schema import EndReason, Role, load_extra, new_dialogue, new_turn
from crsdata.simulate import filters
from crsdata.simulate.base import DialogueState, Simulation, SimulationOptions, option
from crsdata.simulate.engine import derive_seed
from crsdata.simulate.scenarios import (
    PROFILE_FIELDS,
    SCENARIO_DIR,
    format_profile,
    load_profiles,
    load_scenarios,
    parse_profile,
    task_descriptions,
)
from crsdata.simulate.source import SimulationSource, fingerprint_records, load_dataset_source

SOURCE = "recllmsim-sim"
SCENARIO_SOURCE = "recllmsim-scenarios"  # the source name of records made from scenario templates
ACCEPTED_SOURCES = ("recllmsim", SOURCE, SCENARIO_SOURCE)
USER = Role.USER.value
ASSISTANT = Role.RECOMMENDER.value

END_PHRASE = "Thank you, goodbye."
END_PROMPT = f"[System]: If you wish to conclude this conversation, please reply with '{END_PHRASE}'"

# The rules come before the person and the task: every dialogue of a run then starts with the same tokens, whose
# key/value states the local backend computes once (see crsdata.backends.kv_cache).
USER_SYSTEM = """\
You are playing a person who is chatting with an AI assistant to get help with a task. Stay in this role. \
Write only your own next message to the assistant, as this person, in one to three sentences. Ask for help \
step by step and mention your preferences when they matter. Never answer as the assistant and never write the \
plan yourself. When you are satisfied with the plan, reply with exactly: {end_phrase}

About you:
{profile}

Your task:
{task}"""

USER_OPENING = "[System]: The conversation starts now. Write your first message to the assistant."

ASSISTANT_SYSTEM = (
    "You are a helpful assistant. Help the user complete their task with concrete, practical suggestions "
    "that fit what they tell you about themselves. Keep each answer under 100 words."
)

PROFILE_SYSTEM = "You write short, realistic and varied profiles of people for a study of everyday conversations."
PROFILE_REQUEST = """\
Write the profile of one new person, different from the examples. Use exactly these nine numbered lines and \
nothing else:
{fields}

Example:
{example_1}

Another example:
{example_2}

Now the new person's profile:"""

TEMPLATES: dict[str, str] = {
    "recllmsim.user.system": USER_SYSTEM,
    "recllmsim.user.opening": USER_OPENING,
    "recllmsim.user.end_prompt": END_PROMPT,
    "recllmsim.assistant.system": ASSISTANT_SYSTEM,
    "recllmsim.profile.system": PROFILE_SYSTEM,
    "recllmsim.profile.request": PROFILE_REQUEST,
}

# "thank you goodbye" after lower-casing and turning punctuation into spaces; "thanks" and "good bye" too.
_END = re.compile(r"\bthank(?:s| you)(?: very much| so much)?\s+good\s?bye\b")
# A line where the model starts writing someone else's part: another speaker label or the system prompt.
_SPEAKER = r"(?:user|assistant|ai|ai assistant|me|you|person|human|system|\[system\])"
_LEADING_LABEL = re.compile(rf"^\s*\**{_SPEAKER}\**\s*:\s*", re.IGNORECASE)
_OTHER_PART = re.compile(rf"^\s*\**(?:{_SPEAKER}|\[system\])\**\s*:", re.IGNORECASE | re.MULTILINE)
_SYSTEM_ECHO = re.compile(r"\[system\]", re.IGNORECASE)


def says_goodbye(text: str) -> bool:
    """True when ``text`` contains the end phrase, ignoring case, punctuation and spacing."""
    norm = re.sub(r"[^a-z]+", " ", text.lower().replace("\u2019", "'")).strip()
    return bool(_END.search(norm))


def clean_generation(text: str) -> tuple[str, list[str]]:
    """The generated turn without a leading speaker label and without anything after the model starts writing
    another part; returns the text and the repairs made (``label``, ``cut``)."""
    repairs = []
    text = text.strip()
    stripped = _LEADING_LABEL.sub("", text, count=1)
    if stripped != text:
        repairs.append("label")
        text = stripped.strip()
    cut = _OTHER_PART.search(text)
    if cut is None:
        echo = _SYSTEM_ECHO.search(text)
        cut = echo if echo and echo.start() > 0 else None
    if cut is not None and cut.start() > 0:
        repairs.append("cut")
        text = text[: cut.start()].strip()
    elif cut is not None:
        # The whole generation is someone else's part (starts with "[System]:" or a label after the label).
        repairs.append("cut")
        text = ""
    return text, repairs


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


PROFILE_MODES = ("pool", "generate")


@dataclass
class RecLLMSimOptions(SimulationOptions):
    """``crsdata simulate recllmsim`` options. ``profiles`` is resolved against the source and recorded in the run
    configuration through :meth:`RecLLMSimSimulation.settings`; ``drop_flagged`` changes only the export."""

    profiles: str | None = option(
        None,
        "with --source scenarios or a .yaml: `pool` (the packaged RecLLMSim profile pool, default), `generate` "
        "(the user model writes a profile per dialogue) or a pool file",
        in_run_config=False,
    )
    drop_flagged: bool = option(
        False,
        "leave dialogues flagged by a quality filter (empty turn, role confusion, repetition) out of the folder; "
        "they are counted as dropped. Default: keep them, flags in extra.quality",
        in_run_config=False,
    )


def is_scenario_source(source: str) -> bool:
    """``scenarios``, a scenario YAML file, or the name of a packaged scenario file."""
    if source == "scenarios" or source.endswith((".yaml", ".yml")):
        return True
    return "/" not in source and (SCENARIO_DIR / f"{source}.yaml").is_file()


class RecLLMSimSimulation(Simulation):
    """Task conversations after RecLLMSim; see the module docstring for the loop, filters and seeds.

    ``backends`` and ``params`` have entries for ``"user"`` (the user simulator, which also writes generated
    profiles) and ``"recommender"`` (the assistant). ``profile_pool``: profiles for generation examples and
    fallback (default: the packaged pool). ``profile_max_new_tokens``: budget of a generated profile.
    ``profile_mode``: where the profiles of the source come from, recorded in the run configuration.
    """

    name = "recllmsim"
    roles = (USER, ASSISTANT)
    summary = 'task conversations after RecLLMSim (travel, recipes, gifts...) until "Thank you, goodbye."'
    description = """\
Task conversations after RecLLMSim (travel planning, recipes, gifts, skills...): the user simulator has a
profile and a task description and talks to an assistant until it says "Thank you, goodbye.". Quality filters
(empty turns, role confusion, repetition) flag dialogues; the card counts them.

--source is a built RecLLMSim folder (profiles and tasks of its English records), or `scenarios` (the packaged
scenario templates crossed with the 85 distinct profiles of RecLLMSim's pool; see --profiles), or a scenario
YAML file converted with `python -m crsdata.simulate.scenarios convert`."""
    examples = """\
crsdata build recllmsim --input ../shared/data/recllmsim --out out/recllmsim
crsdata simulate recllmsim --source out/recllmsim --n 20 --out out/recllmsim-sim
crsdata simulate recllmsim --source scenarios --profiles generate --n 50 --out out/tasks --seed 7"""
    default_max_turns = 10
    output_source = SOURCE
    card_info = {
        "name": "crsdata simulate recllmsim",
        "pretty_name": "RecLLMSim-style simulated task conversations (crsdata)",
        "description": "Task-based recommendation conversations simulated by two LLMs after RecLLMSim: a user "
        "simulator with a profile and a scenario task (travel planning, recipes, gifts, skills) talks to an "
        "assistant until it says 'Thank you, goodbye.'.",
        "license": "Apache-2.0 for the scenario templates and profiles (RecLLMSim); generated text is subject "
        "to the licences of the models named in provenance",
        "license_id": "apache-2.0",
        "homepage": "https://github.com/wzf2000/RecLLMSim",
        "citation": "",
    }
    options_class = RecLLMSimOptions
    options: RecLLMSimOptions

    def __init__(
        self,
        backends: dict[str, Backend],
        params: dict[str, SamplingParams] | None = None,
        max_turns: int = 10,
        *,
        profile_pool: list[str] | None = None,
        max_profile_attempts: int = 3,
        max_empty_retries: int = 2,
        similarity: float = filters.DEFAULT_SIMILARITY,
        profile_max_new_tokens: int = 192,
        profile_mode: str = "pool",
    ) -> None:
        missing = [r for r in self.roles if r not in backends]
        if missing:
            raise ValueError(f"RecLLMSimSimulation needs a backend for each role; missing: {', '.join(missing)}")
        if max_turns < 1 or max_profile_attempts < 1 or max_empty_retries < 0:
            raise ValueError("max_turns and max_profile_attempts must be at least 1, max_empty_retries at least 0")
        params = {r: (params or {}).get(r, SamplingParams()) for r in self.roles}
        super().__init__(backends, params, max_turns)
        # RecLLMSim's pool repeats some profiles (85 distinct of 100); duplicates would skew the examples.
        self.profile_pool = list(dict.fromkeys(profile_pool if profile_pool is not None else load_profiles()))
        if len(self.profile_pool) < 2:
            raise ValueError("the profile pool needs at least two profiles (generation shows two examples)")
        self.max_profile_attempts = max_profile_attempts
        self.max_empty_retries = max_empty_retries
        self.similarity = similarity
        self.profile_params = dataclasses.replace(
            params[USER], max_new_tokens=max(params[USER].max_new_tokens, profile_max_new_tokens)
        )
        self.profile_mode = profile_mode  # where profiles come from: pool, generate, a pool file, or "source" records

    # -- which records can drive it ----------------------------------------------------------------------

    @classmethod
    def eligible(cls, record: dict[str, Any]) -> str:
        """``""`` when a dataset record can be drawn, else why not (counted as excluded, never silently)."""
        if record.get("source") not in ACCEPTED_SOURCES:
            return f"source-{record.get('source') or 'unknown'}"
        if record.get("language", "en") != "en":
            return f"language-{record.get('language')}"
        return ""

    @classmethod
    def load_source(cls, source: str, split: str | None, options: SimulationOptions) -> SimulationSource:
        """A built folder (English records of one split), or scenario templates crossed with profiles."""
        assert isinstance(options, RecLLMSimOptions)
        if Path(source).is_dir():
            if options.profiles:
                raise BadInputError(
                    source,
                    "",
                    "--profiles",
                    "applies to scenario sources only; a built folder has its own profiles",
                    "bad-option",
                )
            return load_dataset_source(source, split, cls.eligible)
        if is_scenario_source(source):
            if split is not None:
                raise BadInputError(
                    source, "", "--split", "applies to built dataset folders; scenario records have none", "bad-option"
                )
            profiles = options.profiles or "pool"
            if profiles not in PROFILE_MODES and not Path(profiles).is_file():
                raise BadInputError(
                    profiles, "", "--profiles", "expected pool, generate or a profile pool file", "bad-option"
                )
            return scenario_source(None if source == "scenarios" else source, profiles)
        raise BadInputError(
            source,
            "",
            "--source",
            "unknown source: not a folder, and not `scenarios` or a scenario .yaml file "
            "(build a corpus first with `crsdata build`)",
            "unknown-source",
        )

    @classmethod
    def constructor_options(cls, options: SimulationOptions, source: SimulationSource) -> dict[str, Any]:
        assert isinstance(options, RecLLMSimOptions)
        return {"profile_mode": (options.profiles or "pool") if source.kind == "scenarios" else "source"}

    def settings(self) -> dict[str, Any]:
        return {
            "profiles": self.profile_mode,
            "max_profile_attempts": self.max_profile_attempts,
            "max_empty_retries": self.max_empty_retries,
            "similarity": self.similarity,
            "profile_max_new_tokens": self.profile_params.max_new_tokens,
        }

    # -- contract ------------------------------------------------------------------------------------------

    def start(self, record: dict[str, Any], dialogue_id: str, seed: int) -> DialogueState:
        rid = f"dialogue {record.get('dialogue_id', '?')}"
        where = (record.get("provenance") or {}).get("source_file") or "<source>"
        try:
            extra = load_extra(record.get("extra") or "")
        except ValueError:
            raise BadInputError(where, rid, "extra", "not a JSON object", "bad-extra") from None
        task_type = str(record.get("task") or "").strip()
        task_text = str(extra.get("task_context") or "").strip()
        if not task_type:
            raise BadInputError(where, rid, "task", "no task type", "missing-task")
        if not task_text:
            raise BadInputError(where, rid, "extra.task_context", "no English task description", "missing-task")
        profile = str((record.get("user_profile") or {}).get("profile_text") or "").strip()
        generate = extra.get("profile") == "generate"
        if not profile and not generate:
            raise BadInputError(where, rid, "user_profile.profile_text", "no user profile", "missing-profile")
        state = DialogueState(dialogue_id=dialogue_id, record=record, seed=seed)
        state.context = {
            "task_type": task_type,
            "task_text": task_text,
            "variables": extra.get("scenario_variables") or {},
            "profile": "" if generate else profile,
            "profile_source": "generated" if generate else "given",
            "profile_attempts": 0,
            "attempt": 0,  # retries of the current turn after an empty answer
        }
        return state

    def next_role(self, state: DialogueState) -> str:
        # Profile generation is the user model's job too, so it batches with other user turns.
        if not state.turns or state.turns[-1]["role"] == ASSISTANT:
            return USER
        return ASSISTANT

    def sampling(self, state: DialogueState, role: str) -> SamplingParams:
        """Sampling for this dialogue's next request: a profile needs a larger budget than a turn."""
        if role == USER and not state.context["profile"]:
            return self.profile_params
        return self.params[role]

    def request(self, state: DialogueState, role: str) -> ChatRequest:
        ctx = state.context
        if role == USER and not ctx["profile"]:
            return self._profile_request(state)
        seed = derive_seed("recllmsim", state.seed, len(state.turns), ctx["attempt"])
        if role == USER:
            system = USER_SYSTEM.format(profile=ctx["profile"], task=ctx["task_text"], end_phrase=END_PHRASE)
            # The user simulator is the "assistant" of its own chat: the assistant's turns come to it as user
            # messages, each followed by the end prompt, as in RecLLMSim.
            messages = [{"role": "system", "content": system}, {"role": "user", "content": USER_OPENING}]
            for turn in state.turns:
                if turn["role"] == USER:
                    messages.append({"role": "assistant", "content": turn["text"]})
                else:
                    messages.append({"role": "user", "content": f"{turn['text']}\n\n{END_PROMPT}"})
        else:
            messages = [{"role": "system", "content": ASSISTANT_SYSTEM}]
            for turn in state.turns:
                messages.append({"role": "user" if turn["role"] == USER else "assistant", "content": turn["text"]})
        return ChatRequest(messages=messages, seed=seed)

    def apply(self, state: DialogueState, role: str, generation: Generation) -> None:
        ctx = state.context
        if role == USER and not ctx["profile"]:
            self._apply_profile(state, generation)
            return
        if generation.finish_reason == "error":
            # The engine retries errors itself; a direct caller gets a clear end instead of a silent loop.
            self._count(state, "backend_errors")
            self._finish(state, EndReason.ERROR)
            return
        text, repairs = clean_generation(generation.text)
        for kind in repairs:
            self._count(state, f"repair.{kind}")
        if generation.finish_reason == "length":
            self._count(state, "truncated")
        if not text:
            self._count(state, "empty_generations")
            ctx["attempt"] += 1
            if ctx["attempt"] > self.max_empty_retries:
                self._finish(state, EndReason.EMPTY)
            return
        ctx["attempt"] = 0
        extra = {"repaired": repairs} if repairs else None
        state.turns.append(new_turn(len(state.turns), role, text, extra=extra))
        self._count(state, "turns")
        if role == USER and says_goodbye(text):
            self._finish(state, EndReason.END_PHRASE)
        elif len(state.turns) >= self.max_turns:
            self._finish(state, EndReason.MAX_TURNS)

    def to_record(self, state: DialogueState) -> dict[str, Any]:
        ctx = state.context
        record = state.record
        hits = filters.check(state.turns, self.similarity)
        # Set, not added: to_record may be called more than once for a state.
        state.counters.update(filters.counters(hits))
        provenance = record.get("provenance") or {}
        extra = {
            "task_context": ctx["task_text"],
            "scenario_variables": ctx["variables"],
            "profile_source": ctx["profile_source"],
            "source_dialogue_id": record.get("dialogue_id", ""),
            "source": record.get("source", ""),
            "quality": {name: indices for name, indices in hits.items() if indices},
            "counters": dict(sorted(state.counters.items())),
        }
        return new_dialogue(
            state.dialogue_id,
            SOURCE,
            record.get("split", "") or "train",
            [dict(t) for t in state.turns],
            language="en",
            task=ctx["task_type"],
            user_profile={"profile_text": ctx["profile"]},
            outcome={"end_reason": state.end_reason or EndReason.UNKNOWN.value},
            provenance={
                "builder": SOURCE,
                "source_file": provenance.get("source_file", ""),
                "source_sha256": provenance.get("source_sha256", ""),
                "user_model": self.backends[USER].model_id,
                "recommender_model": self.backends[ASSISTANT].model_id,
                "prompt_sha256": json.dumps(self.prompt_hashes(), sort_keys=True),
            },
            extra=extra,
        )

    def prompt_hashes(self) -> dict[str, str]:
        return {name: _sha256(text) for name, text in TEMPLATES.items()}

    # -- output --------------------------------------------------------------------------------------------

    def drop_reason(self, record: dict[str, Any]) -> str:
        """``no_turns``, or with ``--drop-flagged`` the first filter (in FILTERS order) that flagged it."""
        reason = super().drop_reason(record)
        if reason or not self.options.drop_flagged:
            return reason
        flags = quality_flags(record)
        return next((f for f in filters.FILTERS if f in flags), "")

    def card_sections(self, records: list[dict[str, Any]], counters: Counter[str]) -> dict[str, str]:
        rows = [
            f"| `{name}` | {counters.get(f'filter.{name}.dialogues', 0)} dialogues, "
            f"{counters.get(f'filter.{name}.turns', 0)} turns |"
            for name in filters.FILTERS
        ]
        flagged = sum(1 for r in records if quality_flags(r))
        rows.append(f"| any filter | {flagged} dialogues ({100 * flagged / max(len(records), 1):.1f}%) |")
        kept = (
            "Flagged dialogues were left out (--drop-flagged)."
            if self.options.drop_flagged
            else "Flagged dialogues are kept; filter them with `extra.quality`."
        )
        return {
            "Quality filters": "Each finished dialogue is checked for empty turns, a user turn that reads like the "
            'assistant ("As an AI", offers of help, long numbered plans) and a turn repeating an earlier turn of the '
            f"same role (similarity >= 0.9). Hits are in `extra.quality`. {kept}\n\n"
            "| filter | flagged |\n|---|---|\n" + "\n".join(rows)
        }

    def plot_panels(self, records: list[dict[str, Any]], counters: Counter[str]) -> list[tuple[str, Counter[str]]]:
        hits = Counter({name: counters.get(f"filter.{name}.dialogues", 0) for name in filters.FILTERS})
        return [("dialogues flagged by filter", hits)]

    # -- profiles ------------------------------------------------------------------------------------------

    def _examples(self, state: DialogueState, attempt: int) -> list[str]:
        rng = random.Random(derive_seed("recllmsim-profile-examples", state.seed, attempt))
        return rng.sample(self.profile_pool, 2)

    def _profile_request(self, state: DialogueState) -> ChatRequest:
        attempt = state.context["profile_attempts"]
        first, second = self._examples(state, attempt)
        fields = "\n".join(f"{i}. {name}: ..." for i, name in enumerate(PROFILE_FIELDS, start=1))
        prompt = PROFILE_REQUEST.format(fields=fields, example_1=first, example_2=second)
        messages = [{"role": "system", "content": PROFILE_SYSTEM}, {"role": "user", "content": prompt}]
        return ChatRequest(messages=messages, seed=derive_seed("recllmsim-profile", state.seed, attempt))

    def _apply_profile(self, state: DialogueState, generation: Generation) -> None:
        ctx = state.context
        attempt = ctx["profile_attempts"]
        fields = parse_profile(generation.text) if generation.finish_reason != "error" else None
        problem = "" if fields else "unparsable"
        if fields:
            text = format_profile(fields)
            if text in self._examples(state, attempt) or text in self.profile_pool:
                problem = "copied"
        if not problem:
            ctx["profile"] = text
            self._count(state, "profile.generated")
            return
        self._count(state, f"profile.{problem}")
        ctx["profile_attempts"] = attempt + 1
        if ctx["profile_attempts"] >= self.max_profile_attempts:
            rng = random.Random(derive_seed("recllmsim-profile-fallback", state.seed))
            ctx["profile"] = rng.choice(self.profile_pool)
            ctx["profile_source"] = "pool-fallback"
            self._count(state, "profile.fallback")

    # -- helpers -------------------------------------------------------------------------------------------

    @staticmethod
    def _count(state: DialogueState, key: str, n: int = 1) -> None:
        state.counters[key] = state.counters.get(key, 0) + n

    @staticmethod
    def _finish(state: DialogueState, reason: EndReason) -> None:
        state.finished = True
        state.end_reason = reason.value


def quality_flags(record: dict[str, Any]) -> list[str]:
    """The filters that flagged a written dialogue (from ``extra.quality``)."""
    quality = load_extra(record["extra"]).get("quality") or {}
    return [name for name, hits in quality.items() if hits]


# ---------------------------------------------------------------------------------------------------------
# Scenario sources: task descriptions x profiles, as records the engine draws from.


def scenario_source(scenarios: str | None = None, profiles: str = "pool") -> SimulationSource:
    """Records for every (task description, profile) pair: ``scenarios`` is a YAML file or packaged name
    (default: task_context_new); ``profiles`` is ``pool`` (packaged), ``generate`` (the user model writes one
    per dialogue) or a pool file. Record order is fixed, so the engine's seeded draw is reproducible."""
    tasks = task_descriptions(load_scenarios(scenarios))
    generate = profiles == "generate"
    pool: dict[str | None, int] = {None: 0}
    if not generate:
        # Each distinct profile once (the shipped pool repeats 15 of its 100), keeping its first pool position
        # as profile_id so a record can be traced back to the pool file.
        pool = {}
        for position, text in enumerate(load_profiles(None if profiles == "pool" else profiles)):
            pool.setdefault(text, position)
    records = []
    for t, task in enumerate(tasks):
        for profile, p in pool.items():
            rid = f"scenario-{t:03d}" + ("" if profile is None else f"-profile-{p:03d}")
            extra: dict[str, Any] = {"task_context": task.text, "scenario_variables": dict(task.variables)}
            if profile is None:
                extra["profile"] = "generate"
            else:
                extra["profile_id"] = p
            records.append(
                new_dialogue(
                    rid,
                    SCENARIO_SOURCE,
                    "train",
                    [],
                    task=task.type,
                    user_profile={"profile_text": profile or ""},
                    extra=extra,
                )
            )
    for record in records:
        # The crsdata version is not part of the content: a new release with the same scenarios may resume.
        record["provenance"]["crsdata_version"] = ""
    what = f"{len(tasks)} task descriptions x " + (
        "generated profiles" if generate else f"{len(pool)} distinct profiles"
    )
    return SimulationSource(
        name=scenarios or "scenarios",
        kind="scenarios",
        records=records,
        fingerprint=fingerprint_records(records),
        description=f"scenario templates {scenarios or 'task_context_new'}: {what}",
        total=len(records),
        split="train",
        split_choice="scenario templates have no splits: one train split",
    )
