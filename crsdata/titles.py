"""Film titles: how they are split, shown, and compared. The one place crsdata normalises a title.

- :func:`split_year`, :func:`display_title`, :func:`split_title`: ``"Shining, The  (1980)"`` -> ``"The
  Shining"`` and ``1980``.
- :func:`fold_text`: the text two strings are compared by: its words, accents stripped, case folded,
  ``&`` read as ``and``, apostrophes dropped (``Schindler's`` = ``Schindlers``), every other run of
  punctuation one space. The leak guard searches titles in folded text; the catalog builds its keys on it.
- :func:`normalize_title`: the catalog's matching key (folded, articles and Roman numerals evened out).
- :func:`title_key`, :func:`item_key`: what two item references are compared by (metrics, personas).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

# Articles that catalogs move to the end ("Shining, The"); moved back before anything else.
_TRAILING_ARTICLES = "the|a|an|la|le|les|l'|il|lo|el|los|las|der|die|das|den|det|het|een|ein|eine|un|une|una"
_TRAILING_ARTICLE = re.compile(rf"^(.*?),\s*({_TRAILING_ARTICLES})\s*$", re.IGNORECASE)
# Only English leading articles are dropped for matching: "Die Hard" must not become "hard".
_LEADING_ARTICLE = re.compile(r"^(?:the|a|an) ")
# "(1980)", "(2005–2013)", "(2012 film)".
_YEAR = re.compile(r"\s*\(\s*(\d{4})\s*(?:[-–]\s*(?:\d{4})?\s*|film\s*)?\)\s*$")
_ROMAN = {"ii": "2", "iii": "3", "iv": "4", "v": "5", "vi": "6", "vii": "7", "viii": "8", "ix": "9"}
_ROMAN_WORD = re.compile(r"\b(" + "|".join(_ROMAN) + r")\b")
_AKA = re.compile(r"^(?:a\.k\.a\.|aka)\s*", re.IGNORECASE)
_APOSTROPHES = re.compile(r"['\u2019`\u00b4]")
_NON_WORD = re.compile(r"[^\w\s]|_")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def collapse_whitespace(text: str) -> str:
    """Collapses runs of white space ("The Shining  (1980)" -> "The Shining (1980)")."""
    return " ".join(text.split())


def split_year(raw: str) -> tuple[str, int | None]:
    """``"The Shining  (1980)"`` -> ``("The Shining", 1980)``; no year -> ``(title, None)``."""
    text = collapse_whitespace(raw)
    match = _YEAR.search(text) if text.endswith(")") else None
    if not match:
        return text, None
    return text[: match.start()].strip(), int(match.group(1))


def display_title(title: str) -> str:
    """Puts a trailing article back in front: ``"Shining, The"`` -> ``"The Shining"``."""
    text = collapse_whitespace(title)
    match = _TRAILING_ARTICLE.match(text) if "," in text else None
    if match:
        article = match.group(2)
        text = f"{article}{'' if article.endswith(chr(39)) else ' '}{match.group(1)}"
    return text


def split_title(title: str) -> tuple[str, int | None]:
    """``"Shining, The (1980)"`` -> ``("The Shining", 1980)``: the title as shown, and its year or ``None``."""
    name, year = split_year(title)
    return display_title(name), year


def split_aliases(title: str) -> tuple[str, list[str]]:
    """MovieLens appends other names in brackets: ``"Seven (a.k.a. Se7en)"`` -> ``("Seven", ["Se7en"])``."""
    aliases = []
    while title.endswith(")") and " (" in title:
        cut = title.rindex(" (")
        alias = _AKA.sub("", title[cut + 2 : -1]).strip()
        title = title[:cut].strip()
        if alias:
            aliases.append(alias)
    return title, aliases


@functools.lru_cache(maxsize=1 << 14)
def _decompose(run: str) -> str:
    run = unicodedata.normalize("NFKD", run)
    return "".join(ch for ch in run if not unicodedata.combining(ch))


def _strip_accents(match: re.Match[str]) -> str:
    # Only the non-ASCII runs are decomposed (cached: the same accented words recur); ASCII text is left as is.
    return _decompose(match.group())


def fold_text(text: str) -> str:
    """``text`` folded for comparison, its words joined by single spaces (see the module doc).

    ``"Schindler's List  (1993)!"`` -> ``"schindlers list 1993"``; ``"SPIDER-MAN: Into the Spider-Verse"`` ->
    ``"spider man into the spider verse"``; ``"Amélie & Co."`` -> ``"amelie and co"``.
    """
    # Apostrophes go first: NFKD would turn the acute accent "´" into a space and a combining mark.
    text = _APOSTROPHES.sub("", text)
    if not text.isascii():
        text = _NON_ASCII.sub(_strip_accents, text)
    text = text.casefold().replace("&", " and ")
    return " ".join(_NON_WORD.sub(" ", text).split())


@functools.lru_cache(maxsize=1 << 16)
def normalize_title(title: str) -> str:
    """Matching key of a title (year already removed): case, accents, punctuation and articles do not count.

    ``"The Shining"``, ``"Shining, The"`` and ``"the  shining!"`` all give ``"shining"``; ``"We're the
    Millers"`` gives ``"were the millers"``; ``"Frozen II"`` and ``"Frozen 2"`` both give ``"frozen 2"``.
    """
    text = _ROMAN_WORD.sub(lambda m: _ROMAN[m.group(1)], fold_text(display_title(title)))
    return _LEADING_ARTICLE.sub("", text)


def title_key(title: str) -> str:
    """What two surface titles of one film share: :func:`normalize_title` of the title without its year.

    ``"The Shining (1980)"``, ``"Shining, The"`` and ``"the shining"`` give one key. The year is left out:
    generated text names a film with and without it, and a same-named remake in the same dialogue is rarer.
    """
    return normalize_title(split_year(title)[0])


def item_key(ref: Mapping[str, Any] | str) -> str:
    """The key two item references are compared by.

    The catalog id when there is one; otherwise ``"title:"`` and the :func:`title_key` of the surface title, a
    prefix that can never equal an id. A plain string is taken as an id already. Unlinked mentions
    (``item_id == ""``) thus still match the same unlinked title elsewhere in the dialogue, which is what a
    reader of the dialogue would do. A reference with neither gives ``""``.
    """
    if isinstance(ref, str):
        return ref
    item_id = ref.get("item_id") or ""
    if item_id:
        return str(item_id)
    title = ref.get("title") or ""
    return "title:" + title_key(title) if title else ""


# ---------------------------------------------------------------------------------------------------------
# Finding and removing titles in free text: shared by the target-leak guard and detector
# (crsdata.simulate.leak), persona building and catalog grounding, so it sits below all of them.

MIN_BARE_CHARS = 4

_TAG = re.compile(r"</?\s*[A-Za-z_][\w\-]*\s*/?>")
# One word of the original text for scrubbing: letters or digits, possibly joined by apostrophes; "&" is a word
# of its own. Each folds (fold_text) to the words normalize_text gives for it.
_WORD = re.compile(r"[^\W_]+(?:['\u2019`\u00b4][^\W_]+)*|&")
_fold_word = functools.lru_cache(maxsize=1 << 16)(fold_text)
_ARTICLES = {"the", "a", "an"}


def normalize_text(text: str) -> str:
    """Lower-cased words of ``text`` joined by single spaces (tags, accents, punctuation removed)."""
    return fold_text(_TAG.sub(" ", text))


def title_variants(title: str, year: int | None = None, *, bare_article_drop: bool = True) -> list[str]:
    """Normalised forms to search for ``title`` (see :mod:`crsdata.simulate.leak`); longest first, no duplicates.

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


def count_variant(variant: str, normalized: str) -> int:
    """Whole-word occurrences of ``variant`` in ``normalized`` (both normalised), adjacent ones included."""
    return len(_word_pattern(variant).findall(normalized)) if variant in normalized else 0


def contains_title(text: str, title: str, year: int | None = None) -> bool:
    """Exact whole-word containment of any variant of ``title`` in ``text`` (after normalisation)."""
    norm = normalize_text(text)
    return any(count_variant(v, norm) for v in title_variants(title, year))


def scrub_titles(text: str, titles: Iterable[str], placeholder: str = "that movie") -> str:
    """``text`` with every whole-word occurrence of a variant of ``titles`` replaced by ``placeholder``.

    Works on the original text (keeping its casing and punctuation) but matches exactly what
    :func:`normalize_text` would, so text that went through here passes the target-leak guard
    (:func:`crsdata.simulate.leak.assert_no_target_leak`).
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
