"""The one dialogue schema of crsdata: the single source of truth for every dataset's features.

Builders write it, simulators read and write it, metrics read it, and the dataset cards document it from
:data:`FIELD_DOCS` below, so a field is described in exactly one place. Everything is declared as
``datasets.Features`` so that a Hub folder's ``dataset_info`` and ``load_dataset`` agree byte for byte.

Conventions
- Missing text is ``""``, a missing number or flag is ``None`` (null), a missing list is ``[]``.
- Source-specific fields that do not fit the shared schema go into ``extra``: a JSON object as a string,
  so that two sources never force two schemas.
- An item reference is ``{"item_id", "title"}``; ``item_id`` is the catalog id (``""`` when the title
  could not be linked), ``title`` the surface title as the source wrote it.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from datasets import Features, List, Value

from crsdata.errors import BadInputError


class Role(StrEnum):
    USER = "user"
    RECOMMENDER = "recommender"


class Action(StrEnum):
    """Dialogue acts, one enum for the whole project (Interplay's six plus what real corpora need)."""

    GREETING = "greeting"
    INQUIRE = "inquire"
    DISCLOSE_GOAL = "disclose-goal"
    RECOMMEND = "recommend"
    FEEDBACK = "feedback"
    ACCEPT = "accept"
    REJECT = "reject"
    CHIT_CHAT = "chit-chat"
    OTHER = "other"
    NONE = "none"


class EndReason(StrEnum):
    """Why a dialogue ended. Corpora mostly say ``source`` (it ended where the source ended)."""

    SOURCE = "source"
    ACCEPT = "accept"
    REJECT = "reject"
    END_PHRASE = "end_phrase"
    MAX_TURNS = "max_turns"
    PARSE_ERROR = "parse_error"
    EMPTY = "empty"
    ERROR = "error"  # the backend kept failing for this dialogue (server down, timeouts)
    UNKNOWN = "unknown"


ROLES: tuple[str, ...] = tuple(r.value for r in Role)
ACTIONS: tuple[str, ...] = tuple(a.value for a in Action)
END_REASONS: tuple[str, ...] = tuple(e.value for e in EndReason)

ITEM_REF = {"item_id": Value("string"), "title": Value("string")}

# (path, feature, documentation). Paths use "." for nesting and "[]" for list elements; the order here is
# the column order on disk and in the card.
_TURN_SPEC: list[tuple[str, Any, str]] = [
    ("index", Value("int32"), "Position of the turn in the dialogue, from 0."),
    ("role", Value("string"), "Who speaks: `user` (seeker) or `recommender` (assistant)."),
    ("text", Value("string"), "The utterance as written, with item placeholders resolved to titles."),
    (
        "action",
        Value("string"),
        "Dialogue act, one of: " + ", ".join(ACTIONS) + ". `none` when the source has no label.",
    ),
    ("items", List(ITEM_REF), "Items mentioned in the turn: catalog id (empty when unlinked) and surface title."),
    (
        "intents",
        List(Value("string")),
        "Intent labels of the turn (RecLLMSim's per-utterance intents); empty when unlabelled.",
    ),
    (
        "extra",
        Value("string"),
        "JSON object with source-specific turn fields (strategies, other-language text, flags).",
    ),
]

_ITEM_FEEDBACK_SPEC = {
    "item_id": Value("string"),
    "title": Value("string"),
    "reporter": Value("string"),
    "suggested": Value("bool"),
    "seen": Value("bool"),
    "liked": Value("bool"),
}

_DIALOGUE_SPEC: list[tuple[str, Any, str]] = [
    ("dialogue_id", Value("string"), "Identifier, unique within the source (the source's own id where it has one)."),
    (
        "source",
        Value("string"),
        "Corpus or simulator that produced the dialogue: redial, inspired, recllmsim, pearl, interplay-sim, "
        "recllmsim-sim.",
    ),
    ("split", Value("string"), "Split as the source defines it (train, validation, test)."),
    ("language", Value("string"), "Language of `turns[].text` as a BCP-47 code (en, zh)."),
    ("task", Value("string"), "Scenario: `movie recommendation` for movie corpora, the RecLLMSim task otherwise."),
    ("user_profile.general_preferences", Value("string"), "Natural-language summary of the user's broad tastes."),
    (
        "user_profile.watched_items",
        List({**ITEM_REF, "review": Value("string")}),
        "Items the user has seen, each with the user's review or opinion.",
    ),
    (
        "user_profile.target_attributes",
        Value("string"),
        "What the user is looking for, described without naming the target item.",
    ),
    (
        "user_profile.profile_text",
        Value("string"),
        "Free profile text for task scenarios (age, occupation, habits...).",
    ),
    ("target_items", List(ITEM_REF), "Items the dialogue is about (the ground truth). Hidden from simulators."),
    (
        "item_feedback",
        List(_ITEM_FEEDBACK_SPEC),
        "Per-item questionnaire answers: `reporter` (user or recommender) says whether the item was suggested, "
        "seen, liked; null when not answered.",
    ),
    (
        "turns",
        List({name: feature for name, feature, _ in _TURN_SPEC}),
        "The utterances in order (see the turn fields).",
    ),
    ("outcome.accepted_item", ITEM_REF, "Item the user accepted; empty id and title when none."),
    ("outcome.end_reason", Value("string"), "Why the dialogue ended, one of: " + ", ".join(END_REASONS) + "."),
    (
        "outcome.rating",
        Value("float64"),
        "Overall rating of the dialogue where the source gives one (RecLLMSim), else null.",
    ),
    ("provenance.crsdata_version", Value("string"), "Version of crsdata that built the record."),
    ("provenance.builder", Value("string"), "Builder or simulator that produced the record."),
    ("provenance.source_file", Value("string"), "Input file, relative to the `--input` path."),
    ("provenance.source_sha256", Value("string"), "SHA-256 of that input file."),
    ("provenance.user_model", Value("string"), "Model that played the user (simulated data), else empty."),
    (
        "provenance.recommender_model",
        Value("string"),
        "Model that played the recommender (simulated data), else empty.",
    ),
    (
        "provenance.prompt_sha256",
        Value("string"),
        "JSON object: prompt template name -> SHA-256 (simulated data), else empty.",
    ),
    ("provenance.seed", Value("int64"), "Random seed of the run (simulated data), else null."),
    ("extra", Value("string"), "JSON object with source-specific dialogue fields."),
]

_ITEM_SPEC: list[tuple[str, Any, str]] = [
    (
        "item_id",
        Value("string"),
        "Catalog id: the source's own id (ReDial movie id) or a stable slug for items first seen elsewhere.",
    ),
    ("title", Value("string"), "Title without the year."),
    ("year", Value("int32"), "Release year, null when unknown."),
    ("genres", List(Value("string")), "Genres, lower case."),
    ("plot", Value("string"), "Short plot summary."),
    (
        "people",
        List({"name": Value("string"), "role": Value("string")}),
        "Directors, writers and stars with their role.",
    ),
    ("imdb_id", Value("string"), "IMDb id (tt...) when known."),
    ("keywords", List(Value("string")), "Plot keywords or tags."),
    ("sources", List(Value("string")), "Catalogs this item was merged from."),
]


def _nest(spec: list[tuple[str, Any, str]]) -> dict[str, Any]:
    """Turns dotted paths into nested dicts: ``a.b`` -> ``{"a": {"b": ...}}``."""
    out: dict[str, Any] = {}
    for path, feature, _ in spec:
        node = out
        *parents, leaf = path.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = feature
    return out


DIALOGUE_FEATURES = Features(_nest(_DIALOGUE_SPEC))
ITEM_FEATURES = Features(_nest(_ITEM_SPEC))


def _type_name(feature: Any) -> str:
    if isinstance(feature, Value):
        return feature.dtype
    if isinstance(feature, List):
        return f"list<{_type_name(feature.feature)}>"
    if isinstance(feature, dict):
        return "struct{" + ", ".join(feature) + "}"
    return type(feature).__name__


def field_docs(kind: str = "dialogue") -> list[tuple[str, str, str]]:
    """``(field path, type, description)`` rows for the card, turn fields included."""
    spec = {"dialogue": _DIALOGUE_SPEC, "item": _ITEM_SPEC}[kind]
    rows = [(p, _type_name(f), d) for p, f, d in spec]
    if kind == "dialogue":
        rows += [(f"turns[].{p}", _type_name(f), d) for p, f, d in _TURN_SPEC]
    return rows


# ---------------------------------------------------------------------------------------------------------
# Record factories: builders fill what they know, the rest gets the documented defaults.


def item_ref(item_id: str | None = "", title: str | None = "") -> dict[str, str]:
    return {"item_id": item_id or "", "title": title or ""}


def new_turn(
    index: int,
    role: str,
    text: str,
    action: str = Action.NONE,
    items: list[dict[str, str]] | None = None,
    intents: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "index": index,
        "role": str(role),
        "text": text,
        "action": str(action),
        "items": items or [],
        "intents": intents or [],
        "extra": dump_extra(extra),
    }


def new_dialogue(
    dialogue_id: str,
    source: str,
    split: str,
    turns: list[dict[str, Any]],
    *,
    language: str = "en",
    task: str = "movie recommendation",
    user_profile: dict[str, Any] | None = None,
    target_items: list[dict[str, str]] | None = None,
    item_feedback: list[dict[str, Any]] | None = None,
    outcome: dict[str, Any] | None = None,
    provenance: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    from crsdata.version import __version__

    profile = {"general_preferences": "", "watched_items": [], "target_attributes": "", "profile_text": ""}
    profile.update(user_profile or {})
    end = {"accepted_item": item_ref(), "end_reason": EndReason.SOURCE.value, "rating": None}
    end.update(outcome or {})
    prov = {
        "crsdata_version": __version__,
        "builder": source,
        "source_file": "",
        "source_sha256": "",
        "user_model": "",
        "recommender_model": "",
        "prompt_sha256": "",
        "seed": None,
    }
    prov.update(provenance or {})
    return {
        "dialogue_id": str(dialogue_id),
        "source": source,
        "split": split,
        "language": language,
        "task": task,
        "user_profile": profile,
        "target_items": target_items or [],
        "item_feedback": item_feedback or [],
        "turns": turns,
        "outcome": end,
        "provenance": prov,
        "extra": dump_extra(extra),
    }


def dump_extra(extra: dict[str, Any] | None) -> str:
    """Serialises an ``extra`` object; ``""`` for none, keys sorted so that builds are reproducible."""
    if not extra:
        return ""
    return json.dumps(extra, ensure_ascii=False, sort_keys=True)


def load_extra(text: str) -> dict[str, Any]:
    return json.loads(text) if text else {}


# ---------------------------------------------------------------------------------------------------------
# Validation: cheap structural checks on the fields a builder fills, with errors that name the field.


def validate_dialogue(record: dict[str, Any], path: str = "<memory>", record_id: str | None = None) -> None:
    """Raises :class:`BadInputError` naming the field when ``record`` does not fit the schema."""
    rid = record_id or f"dialogue {record.get('dialogue_id', '?')}"

    def fail(field_name: str, message: str) -> None:
        raise BadInputError(path, rid, field_name, message, reason="schema")

    for name in DIALOGUE_FEATURES:
        if name not in record:
            fail(name, "missing")
    for name in ("dialogue_id", "source", "split", "language", "task", "extra"):
        if not isinstance(record[name], str):
            fail(name, f"expected a string, got {type(record[name]).__name__}")
    if not record["dialogue_id"]:
        fail("dialogue_id", "empty")
    turns = record["turns"]
    if not isinstance(turns, list):
        fail("turns", "expected a list")
    for i, turn in enumerate(turns):
        if turn.get("role") not in ROLES:
            fail(f"turns[{i}].role", f"{turn.get('role')!r} is not one of {', '.join(ROLES)}")
        if turn.get("action") not in ACTIONS:
            fail(f"turns[{i}].action", f"{turn.get('action')!r} is not one of {', '.join(ACTIONS)}")
        if not isinstance(turn.get("text"), str):
            fail(f"turns[{i}].text", f"expected a string, got {type(turn.get('text')).__name__}")
    if record["outcome"].get("end_reason") not in END_REASONS:
        fail("outcome.end_reason", f"{record['outcome'].get('end_reason')!r} is not one of {', '.join(END_REASONS)}")
