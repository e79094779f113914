"""Target-title leaks: the guard on prompts and the detector on generated dialogues.

Interplay is reference-free: neither simulator may be told the target item. Two tools enforce and measure it.

**Normalisation.** Titles and texts are compared after :func:`normalize_text`: markup tags removed, then
:func:`crsdata.titles.fold_text` (accents stripped, case folded, ``&`` read as ``and``, apostrophes dropped so
that ``Schindler's`` = ``Schindlers``, every other run of non-alphanumeric characters one space).
``"The Shining  (1980)"`` and ``"the shining, 1980"`` both become ``the shining 1980``. All matching is on whole
words of the normalised text.

**Title variants.** :func:`title_variants` gives the forms a target title is searched in: with and without the
year, and with and without a leading article (``Shining, The`` is read as ``The Shining``). A bare variant (no
year) that is a single word of fewer than :data:`MIN_BARE_CHARS` characters (``It``, ``Up``, ``Her``) is left out:
such words occur in ordinary sentences, so only the form with the year is searched for them.

**The prompt guard** (:func:`assert_no_target_leak`) runs on every request a simulator builds and raises
:class:`TargetLeakError` (never only logs). A request may legitimately contain a target title in two places only:
the conversation so far (turns in ``state.turns``: what the models generated, or the real turns a replay feeds
in; when the recommender has found the target, the user must hear it) and the fixed prompt templates (constant
across dialogues, so they cannot carry a dialogue's target). The guard counts, per variant, the whole-word
occurrences in every message and raw prompt, and raises when a message holds more than those allowed sources
can account for: any occurrence in persona text, profile text or anything else taken from the record is a leak.

**The output detector** (:func:`find_leaks`, :func:`leak_rate`) scans generated dialogues. Definition: a *leak*
is a user turn that names a target item before any recommender turn of that dialogue has named it. A turn
names a target when its linked items include the target id or a title close to it, or when its text matches a
target title variant fuzzily (leaving out the one-word form left after dropping an article): rapidfuzz
``partial_ratio`` >= :data:`LEAK_THRESHOLD` on normalised text is a fast filter, confirmed by ``ratio`` >= the
same threshold against a window of whole words about as long as the title (so ``the ring`` does not match
inside ``the ringing``, while the typo ``the shinning`` does). Titles whose normalised form without year is
shorter than :data:`MIN_BARE_CHARS` are matched only with their year or through the turn's items. The
recommender naming the target is never a leak: finding it is its job.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rapidfuzz import fuzz, process

# The title matching that the guard, the detector and persona scrubbing share lives below simulate, in
# crsdata.titles; its names stay importable from here.
from crsdata.titles import (
    MIN_BARE_CHARS,
    contains_title,
    count_variant,
    normalize_text,
    scrub_titles,
    split_title,
    title_variants,
)

__all__ = ["MIN_BARE_CHARS", "contains_title", "normalize_text", "scrub_titles", "title_variants"]

if TYPE_CHECKING:
    from crsdata.backends.base import ChatRequest
    from crsdata.simulate.base import DialogueState

# 90 accepts one typo in a ten-letter title ("shinning" for "shining" scores 95) and rejects a different title
# sharing a prefix ("the ringing" against "the ring" scores 84).
LEAK_THRESHOLD = 90.0


class TargetLeakError(RuntimeError):
    """A request built for a simulator contains a target title outside the conversation."""


def _allowed_count(variant: str, turn_texts: Sequence[str], labels: Sequence[str], static: Sequence[str]) -> int:
    """Occurrences of ``variant`` that the conversation turns and the fixed templates can account for
    (all arguments normalised)."""
    return sum(count_variant(variant, text) for group in (turn_texts, labels, static) for text in group)


@functools.cache
def _normalized_static_parts() -> tuple[str, ...]:
    from crsdata.simulate.prompts import static_template_parts

    return tuple(normalize_text(part) for part in static_template_parts())


def target_titles(state: DialogueState) -> list[str]:
    """Every known surface form of the dialogue's target titles (record titles and catalog titles)."""
    titles = list(state.context.get("target_titles") or [])
    titles += [item.get("title", "") for item in state.record.get("target_items", [])]
    return [t for t in dict.fromkeys(titles) if t]


def assert_no_target_leak(request: ChatRequest, state: DialogueState, allowed: Sequence[str] = ()) -> None:
    """Raises :class:`TargetLeakError` when ``request`` names a target title outside the conversation turns.

    See the module doc for what is allowed. Called by every request builder of the Interplay simulators.
    ``allowed``: further texts that may hold a target title, under catalog grounding only the catalog line of a
    target that the recommender named (the user's facts) or that retrieval found (the recommender's list).
    """
    contents = [m.get("content", "") for m in request.messages]
    if request.prompt is not None:
        contents.append(request.prompt)
    normalized = [normalize_text(c) for c in contents]
    turn_texts = [normalize_text(turn.get("text", "")) for turn in state.turns]
    # Speaker labels of the raw layout: one per turn, plus the role header and the final "<role>:".
    labels = [turn.get("role", "") for turn in state.turns] + ["user", "recommender"] * 2
    static = tuple(_normalized_static_parts()) + tuple(normalize_text(text) for text in allowed)
    for title in target_titles(state):
        for variant in title_variants(title):
            found = sum(count_variant(variant, text) for text in normalized)
            if found and found > _allowed_count(variant, turn_texts, labels, static):
                raise TargetLeakError(
                    f"dialogue {state.dialogue_id}: target title {title!r} (as {variant!r}) appears in the request "
                    "outside the conversation turns"
                )


# ---------------------------------------------------------------------------------------------------------
# Detector on generated dialogues.


def _windows(words: list[str], size: int) -> list[str]:
    return [" ".join(words[i : i + size]) for i in range(len(words) - size + 1)]


def fuzzy_title_match(text: str, title: str, threshold: float = LEAK_THRESHOLD) -> bool:
    """Whether ``text`` names ``title`` (fuzzy, whole words; see the module doc for the rule)."""
    norm = normalize_text(text)
    if not norm:
        return False
    base, year = split_title(title)
    if year and count_variant(f"{normalize_text(base)} {year}", norm):
        return True
    words = norm.split()
    for variant in title_variants(base, bare_article_drop=False):
        if fuzz.partial_ratio(variant, norm) < threshold:
            continue
        size = len(variant.split())
        candidates = [w for k in (size - 1, size, size + 1) if k >= 1 for w in _windows(words, k)]
        if process.extractOne(variant, candidates, scorer=fuzz.ratio, score_cutoff=threshold):
            return True
    return False


@dataclass(frozen=True)
class Leak:
    dialogue_id: str
    turn_index: int
    target_id: str
    target_title: str
    text: str


def _names_target(turn: dict[str, Any], target: dict[str, str], threshold: float) -> bool:
    for item in turn.get("items", []):
        if target["item_id"] and item.get("item_id") == target["item_id"]:
            return True
        if item.get("title") and target["title"]:
            a = normalize_text(split_title(item["title"])[0])
            b = normalize_text(split_title(target["title"])[0])
            if a and b and fuzz.ratio(a, b) >= threshold:
                return True
    return bool(target["title"]) and fuzzy_title_match(turn.get("text", ""), target["title"], threshold)


def find_leaks(record: dict[str, Any], threshold: float = LEAK_THRESHOLD) -> list[Leak]:
    """User turns that name a target before the recommender has named it (one entry per turn and target)."""
    leaks = []
    for target in record.get("target_items", []):
        named_by_recommender = False
        for turn in record.get("turns", []):
            if not _names_target(turn, target, threshold):
                continue
            if turn.get("role") == "recommender":
                named_by_recommender = True
            elif not named_by_recommender:
                leaks.append(
                    Leak(record.get("dialogue_id", ""), turn["index"], target["item_id"], target["title"], turn["text"])
                )
    return leaks


def leak_report(records: Iterable[dict[str, Any]], threshold: float = LEAK_THRESHOLD) -> dict[str, Any]:
    """Leak counts over a corpus: dialogues (with targets) and user turns, with both rates."""
    dialogues = leaked_dialogues = user_turns = 0
    leaked_turns: set[tuple[str, int]] = set()
    for record in records:
        if not record.get("target_items"):
            continue
        dialogues += 1
        user_turns += sum(1 for t in record.get("turns", []) if t.get("role") == "user")
        leaks = find_leaks(record, threshold)
        leaked_dialogues += bool(leaks)
        leaked_turns.update((leak.dialogue_id, leak.turn_index) for leak in leaks)
    return {
        "threshold": threshold,
        "dialogues": dialogues,
        "leaked_dialogues": leaked_dialogues,
        "dialogue_rate": leaked_dialogues / dialogues if dialogues else 0.0,
        "user_turns": user_turns,
        "leaked_user_turns": len(leaked_turns),
        "turn_rate": len(leaked_turns) / user_turns if user_turns else 0.0,
    }


def leak_rate(records: Iterable[dict[str, Any]], threshold: float = LEAK_THRESHOLD) -> float:
    """Share of dialogues (those with target items) with at least one leak as defined in the module doc."""
    return leak_report(records, threshold)["dialogue_rate"]
