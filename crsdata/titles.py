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
from collections.abc import Mapping
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
