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
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rapidfuzz import fuzz, process

from crsdata.titles import fold_text, split_title

if TYPE_CHECKING:
    from crsdata.backends.base import ChatRequest
    from crsdata.simulate.base import DialogueState

# 90 accepts one typo in a ten-letter title ("shinning" for "shining" scores 95) and rejects a different title
# sharing a prefix ("the ringing" against "the ring" scores 84).
LEAK_THRESHOLD = 90.0
MIN_BARE_CHARS = 4

_TAG = re.compile(r"</?\s*[A-Za-z_][\w\-]*\s*/?>")
# One word of the original text for scrubbing: letters or digits, possibly joined by apostrophes; "&" is a word
# of its own. Each folds (fold_text) to the words normalize_text gives for it.
_WORD = re.compile(r"[^\W_]+(?:['\u2019`\u00b4][^\W_]+)*|&")
_fold_word = functools.lru_cache(maxsize=1 << 16)(fold_text)
_ARTICLES = {"the", "a", "an"}


class TargetLeakError(RuntimeError):
    """A request built for a simulator contains a target title outside the conversation."""


def normalize_text(text: str) -> str:
    """Lower-cased words of ``text`` joined by single spaces (tags, accents, punctuation removed)."""
    return fold_text(_TAG.sub(" ", text))


def title_variants(title: str, year: int | None = None, *, bare_article_drop: bool = True) -> list[str]:
    """Normalised forms to search for ``title`` (see the module doc); longest first, no duplicates.

    ``bare_article_drop=False`` leaves out the one-word form left after dropping an article (``shining`` for
    ``The Shining``): the prompt guard wants it (over-scrubbing a persona costs little), the output detector
    does not (``the sun was shining`` is no leak).
    """
    return list(_title_variants(title, year, bare_article_drop))


@functools.lru_cache(maxsize=1 << 14)
def _title_variants(title: str, year: int | None, bare_article_drop: bool) -> tuple[str, ...]:
    base, parsed_year = split_title(title)
    year = year or parsed_year
    norm = normalize_text(base)
    if not norm:
        return ()
    bases = [norm]
    words = norm.split()
    if len(words) > 1 and words[0] in _ARTICLES and (bare_article_drop or len(words) > 2):
        bases.append(" ".join(words[1:]))
    variants: list[str] = []
    for form in bases:
        if year:
            variants.append(f"{form} {year}")
        if " " in form or len(form) >= MIN_BARE_CHARS:
            variants.append(form)
    return tuple(sorted(dict.fromkeys(variants), key=len, reverse=True))


@functools.lru_cache(maxsize=1 << 14)
def _word_pattern(variant: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\S){re.escape(variant)}(?!\S)")


def _count(variant: str, normalized: str) -> int:
    """Whole-word occurrences of ``variant`` in ``normalized`` (both normalised), adjacent ones included."""
    return len(_word_pattern(variant).findall(normalized)) if variant in normalized else 0


def contains_title(text: str, title: str, year: int | None = None) -> bool:
    """Exact whole-word containment of any variant of ``title`` in ``text`` (after normalisation)."""
    norm = normalize_text(text)
    return any(_count(v, norm) for v in title_variants(title, year))


def scrub_titles(text: str, titles: Iterable[str], placeholder: str = "that movie") -> str:
    """``text`` with every whole-word occurrence of a variant of ``titles`` replaced by ``placeholder``.

    Works on the original text (keeping its casing and punctuation) but matches exactly what
    :func:`normalize_text` would, so text that went through here passes :func:`assert_no_target_leak`.
    A year in parentheses right after a removed title goes too (``The Shining (1980)`` -> ``that movie``).
    """
    variants = sorted({v for t in titles for v in title_variants(t)}, key=lambda v: len(v.split()), reverse=True)
    if not variants or not text:
        return text
    # A word may fold to several ("1½" -> "11 2"): each is matched, standing for the whole word's span.
    words = [(m, w) for m in _WORD.finditer(text) for w in _fold_word(m.group()).split()]
    norms = [w for _, w in words]
    # One left-to-right pass; at each word the longest variant wins, so "the shining 1980" is removed whole.
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(norms):
        for variant in variants:
            target = variant.split()
            if norms[i : i + len(target)] == target:
                start, end = words[i][0].start(), words[i + len(target) - 1][0].end()
                # Take the year's brackets along: "(1980)" after the title, or the ")" closing a matched year.
                pattern = r"\s*\)" if re.fullmatch(r"\d{4}", target[-1]) else r"\s*\(\s*\d{4}\s*\)"
                year = re.match(pattern, text[end:])
                spans.append((start, end + (year.end() if year else 0)))
                i += len(target)
                break
        else:
            i += 1
    for start, end in reversed(spans):
        text = text[:start] + placeholder + text[end:]
    return text


def _allowed_count(variant: str, turn_texts: Sequence[str], labels: Sequence[str], static: Sequence[str]) -> int:
    """Occurrences of ``variant`` that the conversation turns and the fixed templates can account for
    (all arguments normalised)."""
    return sum(_count(variant, text) for group in (turn_texts, labels, static) for text in group)


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
            found = sum(_count(variant, text) for text in normalized)
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
    if year and _count(f"{normalize_text(base)} {year}", norm):
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
