"""Quality filters for simulated dialogues (RecLLMSim's "basic conversation quality validation").

Each filter looks at a finished dialogue's turns and returns the indices of the turns it objects to. A
dialogue is *flagged* by a filter when that list is not empty. Filters never edit text: the run keeps every
dialogue and records the hits in the record (``extra.quality``) and in per-filter counters, and the CLI
either keeps flagged dialogues (default) or drops them with ``--drop-flagged``, counted per filter, so the
accounting ``drawn = kept + skipped + dropped`` always holds.

- ``empty_turn``: a turn with no text after stripping.
- ``role_confusion``: a *user* turn that reads like the assistant: it says "As an AI", offers help ("I'd be
  happy to help", "How can I assist you"), or lays out a long numbered plan. Small models drift into the
  other role; RecLLMSim's authors checked that "both the user simulator and assistant were playing ... their
  roles correctly". The heuristics are deliberately conservative: a user may number two questions.
- ``repetition``: a turn that is nearly the same text as an earlier turn of the same role (normalised
  Levenshtein similarity at or above a threshold, 0.9 by default): the loop two models fall into when neither
  moves the conversation on.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from rapidfuzz import fuzz

FILTERS: tuple[str, ...] = ("empty_turn", "role_confusion", "repetition")
DEFAULT_SIMILARITY = 0.9

# Phrases an assistant says and a user asking for help does not. Matched on lower-cased text with curly
# apostrophes straightened.
ASSISTANT_PHRASES: tuple[str, ...] = (
    "as an ai",
    "as a language model",
    "i am an ai",
    "i'm an ai",
    "your ai assistant",
    "i'm here to help you",
    "i am here to help you",
    "i'm here to assist you",
    "i'd be happy to help",
    "i would be happy to help",
    "i'd be glad to help",
    "i'm happy to help",
    "i am happy to help",
    "happy to assist",
    "how can i assist you",
    "how can i help you",
    "how may i help you",
    "how may i assist you",
    "i hope this helps",
    "feel free to ask",
    "let me know if you have any other questions",
    "let me know if you need any further assistance",
    "here's a suggested",
    "here is a suggested",
    "here's a plan for you",
    "here is a plan for you",
)

# A "long numbered plan": at least this many numbered or bulleted lines in a turn at least this long.
PLAN_MIN_ITEMS = 4
PLAN_MIN_CHARS = 400
_LIST_LINE = re.compile(r"^\s*(?:\d+[.)]|[-*•]|day \d+\s*[:.-])\s+\S", re.IGNORECASE | re.MULTILINE)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u2019", "'").lower()).strip()


def empty_turns(turns: list[dict[str, Any]]) -> list[int]:
    return [t["index"] for t in turns if not t["text"].strip()]


def looks_like_assistant(text: str) -> str:
    """Why a user turn reads like the assistant's (the matched phrase or ``"numbered plan"``), or ``""``."""
    norm = _normalise(text)
    for phrase in ASSISTANT_PHRASES:
        if phrase in norm:
            return phrase
    if len(text) >= PLAN_MIN_CHARS and len(_LIST_LINE.findall(text)) >= PLAN_MIN_ITEMS:
        return "numbered plan"
    return ""


def role_confusion(turns: list[dict[str, Any]]) -> list[int]:
    return [t["index"] for t in turns if t["role"] == "user" and looks_like_assistant(t["text"])]


def repetition(turns: list[dict[str, Any]], threshold: float = DEFAULT_SIMILARITY) -> list[int]:
    """Turns whose text is at least ``threshold`` similar to an earlier non-empty turn of the same role."""
    hits = []
    earlier: dict[str, list[str]] = {}
    for turn in turns:
        text = _normalise(turn["text"])
        if not text:
            continue
        previous = earlier.setdefault(turn["role"], [])
        if _near_any(text, previous, threshold):
            hits.append(turn["index"])
        previous.append(text)
    return hits


def repeats_earlier(
    text: str, turns: list[dict[str, Any]], threshold: float = DEFAULT_SIMILARITY, *, titles: Iterable[str] = ()
) -> bool:
    """Whether ``text`` is at least ``threshold`` similar to the text of any of ``turns``, whoever spoke it: the
    check a simulation makes before keeping a turn (a small user copies the recommender's sentence). Titles are
    left out of both sides, ``titles`` (those ``text`` names) and each turn's ``items``: a copy with another
    film's title in it is still a copy ("I've seen it all. ... Battlefield Earth (2000) is a good movie.")."""
    norm = _without_titles(text, titles)
    others = (_without_titles(t["text"], (i.get("title", "") for i in t.get("items") or [])) for t in turns)
    return bool(norm) and _near_any(norm, others, threshold)


def _without_titles(text: str, titles: Iterable[str]) -> str:
    """The normalised ``text`` with each of ``titles`` (normalised) and any year in brackets taken out."""
    norm = _normalise(text)
    for title in sorted({_normalise(t) for t in titles if t.strip()}, key=len, reverse=True):
        norm = norm.replace(title, " ")
    return _normalise(re.sub(r"\(\d{4}\)", " ", norm))


def _near_any(norm: str, others: Iterable[str], threshold: float) -> bool:
    """Whether the normalised ``norm`` is at least ``threshold`` similar to any of the normalised ``others``."""
    return any(fuzz.ratio(norm, other) / 100.0 >= threshold for other in others)


# Words of a turn that only greets: "Hi!", "Hello there.", "Good morning!", and the "Great!" / "Welcome!" that
# small models trade in a greeting loop. A turn is a greeting when it is labelled `greeting`, or when it names
# no item, is not an accept, and its text is one to four of these words and nothing else (punctuation aside).
GREETING_WORDS = frozenset(
    {"hi", "hello", "hey", "hiya", "howdy", "greetings", "welcome", "great", "good", "morning", "afternoon"}
    | {"evening", "day", "there"}
)
GREETING_LOOP = 2  # a dialogue with more greeting turns than this is in a greeting loop (issue 21's target)


def greeting_words(text: str) -> list[str]:
    """The words of :data:`GREETING_WORDS` in ``text``, lower-case, in order, each once."""
    return list(dict.fromkeys(w for w in re.findall(r"[a-z]+", text.lower()) if w in GREETING_WORDS))


def is_greeting_turn(turn: dict[str, Any]) -> bool:
    """Whether ``turn`` only greets (the rule of :data:`GREETING_WORDS`): a loop of these is a conversation that
    never starts, whatever the turns are labelled."""
    if turn["action"] == "greeting":
        return True
    if turn["items"] or turn["action"] == "accept":
        return False
    words = re.findall(r"[a-z]+", turn["text"].lower())
    return 1 <= len(words) <= 4 and all(w in GREETING_WORDS for w in words)


def check(turns: list[dict[str, Any]], similarity: float = DEFAULT_SIMILARITY) -> dict[str, list[int]]:
    """Every filter's hits (turn indices) for one dialogue, keyed by filter name, all filters present."""
    checks: dict[str, Callable[[list[dict[str, Any]]], list[int]]] = {
        "empty_turn": empty_turns,
        "role_confusion": role_confusion,
        "repetition": lambda ts: repetition(ts, similarity),
    }
    return {name: checks[name](turns) for name in FILTERS}


def counters(hits: dict[str, list[int]]) -> dict[str, int]:
    """Per-filter counters for the run manifest: ``filter.<name>.turns`` and ``filter.<name>.dialogues``."""
    out: dict[str, int] = {}
    for name in FILTERS:
        out[f"filter.{name}.turns"] = len(hits.get(name, []))
        out[f"filter.{name}.dialogues"] = int(bool(hits.get(name)))
    return out
