"""User personas for the Interplay simulators, built from a dataset record and the catalog.

A persona has the three parts of Interplay (section 3.3):

- **general preferences**: the record's ``user_profile.general_preferences`` when it has one (PEARL); otherwise a
  summary derived from the items the user liked or talked about: their most frequent catalog genres, people who
  recur among them, and genres only met in disliked items.
- **watched items** (up to three, each with the user's review or opinion): the candidates are the record's
  ``user_profile.watched_items`` when present (PEARL sampled three and Interplay reuses them; the ReDial
  builder lists every movie the seeker reported as seen). Otherwise they are the items the user reported as
  seen in ``item_feedback`` (reporter ``user``, ``seen`` True) and the items the user mentioned in their own
  turns (INSPIRED) unless they reported not having seen them. The review is the record's review when it has a
  few words (PEARL), else an opinion from the questionnaire's ``liked``; the user's own utterances about the
  item are quoted after it. When there are more than three, liked items the user talked about come first, then
  liked items, then the rest; within a tier the choice is a seeded shuffle, so a persona is reproducible from
  (dialogue id, seed). The chosen items keep the record's order. With ``quote_utterances=False`` the user's own
  words are left out: a model trained on personas that quote the very dialogue it learns to write learns to copy
  them (the ``finetuned`` prompt style builds its personas this way, in training and in simulation).
- **target attributes**: the record's ``user_profile.target_attributes`` when present (PEARL). Otherwise a
  description of the dialogue's one target (its first linked target item, the one replay judges against:
  :func:`crsdata.simulate.replay.replay_target`) and of that film alone: genres, decade, director, stars,
  keywords and plot. A target the catalog does not know is not replaced by another.

No persona text may name a target: watched candidates whose title contains a target title are dropped, and
every text is passed through :func:`crsdata.titles.scrub_titles` with every known form of the target
titles (record titles and catalog titles with their year). A record with no target items, with no describable
target, or with neither history nor general preferences raises :class:`~crsdata.errors.BadInputError` naming
the record and the field, so the run engine can skip and count it.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from crsdata.errors import BadInputError
from crsdata.seeds import derive_seed
from crsdata.titles import contains_title, item_key, scrub_titles

MAX_REVIEW_CHARS = 300


class CatalogLike(Protocol):
    """What persona building needs from ``crsdata.catalog.Catalog``."""

    def link(self, title: str) -> str | None: ...

    def get(self, item_id: str) -> Mapping[str, Any] | None: ...


@dataclass
class WatchedItem:
    item_id: str
    title: str
    review: str


@dataclass
class Persona:
    general_preferences: str
    watched: list[WatchedItem] = field(default_factory=list)
    target_attributes: str = ""

    def to_profile(self) -> dict[str, Any]:
        """The persona as the schema's ``user_profile`` (``profile_text`` empty)."""
        return {
            "general_preferences": self.general_preferences,
            "watched_items": [asdict(w) for w in self.watched],
            "target_attributes": self.target_attributes,
            "profile_text": "",
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Persona:
        return cls(data["general_preferences"], [WatchedItem(**w) for w in data["watched"]], data["target_attributes"])


def catalog_row(catalog: CatalogLike | None, item_id: str) -> Mapping[str, Any] | None:
    """The catalog row of ``item_id``, or None when there is no catalog, no id or no such item."""
    if catalog is None or not item_id:
        return None
    try:
        return catalog.get(item_id)
    except KeyError:
        return None


def display_title(row: Mapping[str, Any] | None, fallback: str) -> str:
    """``Title (Year)`` from a catalog row, else the surface title."""
    if row and row.get("title"):
        return f"{row['title']} ({row['year']})" if row.get("year") else str(row["title"])
    return fallback


def all_target_titles(record: Mapping[str, Any], catalog: CatalogLike | None) -> list[str]:
    """Every known form of the record's target titles: as the record wrote them and as the catalog has them."""
    titles = []
    for item in record.get("target_items", []):
        titles.append(item.get("title", ""))
        row = catalog_row(catalog, item.get("item_id", ""))
        if row and row.get("title"):
            titles += [str(row["title"]), display_title(row, "")]
    return [t for t in dict.fromkeys(titles) if t]


def _bad(record: Mapping[str, Any], field_name: str, message: str, reason: str) -> BadInputError:
    prov = record.get("provenance") or {}
    path = prov.get("source_file") or record.get("source") or "<record>"
    return BadInputError(path, f"dialogue {record.get('dialogue_id', '?')}", field_name, message, reason)


def _clip(text: str, limit: int = MAX_REVIEW_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rsplit(" ", 1)[0] + "..."


@dataclass
class _Candidate:
    item_id: str
    title: str
    liked: bool | None = None
    seen: bool | None = None
    utterances: list[str] = field(default_factory=list)
    review: str = ""  # the record's own review (user_profile.watched_items)


def _history_candidates(record: Mapping[str, Any], targets: set[str]) -> dict[str, _Candidate]:
    """Items the user has seen or talked about, keyed by id (or normalised title), targets excluded."""
    found: dict[str, _Candidate] = {}
    for row in record.get("item_feedback", []):
        if row.get("reporter") != "user":
            continue
        key = item_key(row)
        if key in targets:
            continue
        cand = found.setdefault(key, _Candidate(row.get("item_id", ""), row.get("title", "")))
        cand.seen, cand.liked = row.get("seen"), row.get("liked")
    for turn in record.get("turns", []):
        if turn.get("role") != "user":
            continue
        for item in turn.get("items", []):
            key = item_key(item)
            if key in targets:
                continue
            cand = found.setdefault(key, _Candidate(item.get("item_id", ""), item.get("title", "")))
            if turn.get("text") and turn["text"] not in cand.utterances:
                cand.utterances.append(turn["text"])
    # An item counts as watched when the user said so, or talked about it without denying having seen it.
    return {k: c for k, c in found.items() if c.seen is True or (c.seen is None and c.utterances)}


def _opinion(cand: _Candidate, quote_utterances: bool = True) -> str:
    """The record's review when it says something (PEARL); else one from the questionnaire answer (ReDial's
    profile has only "liked"). The user's own words about the item follow, quoted, with ``quote_utterances``."""
    if len(cand.review.split()) >= 4:
        opinion = cand.review.strip()
    elif cand.liked is True:
        opinion = "I liked it."
    elif cand.liked is False:
        opinion = "I did not like it."
    else:
        opinion = "I have seen it."
    if quote_utterances and cand.utterances:
        opinion += " I said: " + " / ".join(f'"{u}"' for u in cand.utterances[:2])
    return opinion


def _pick_watched(cands: list[_Candidate], n: int | None, rng: random.Random) -> list[_Candidate]:
    """Up to ``n`` candidates (all with None), the most telling first (see the module doc), returned in their
    original order."""
    tiers: list[list[_Candidate]] = [[], [], []]
    for cand in cands:
        tiers[0 if cand.liked is not False and cand.utterances else 1 if cand.liked is True else 2].append(cand)
    chosen = []
    for tier in tiers:
        rng.shuffle(tier)
        chosen += tier
    order = {id(c): i for i, c in enumerate(cands)}
    return sorted(chosen[:n], key=lambda c: order[id(c)])


def _people(row: Mapping[str, Any], roles: tuple[str, ...]) -> list[str]:
    return [str(p["name"]) for p in row.get("people", []) or [] if str(p.get("role", "")).lower().startswith(roles)]


def _join(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def _derive_preferences(
    liked_rows: list[Mapping[str, Any]], disliked_rows: list[Mapping[str, Any]], liked_titles: list[str]
) -> str:
    """A short first-person summary of tastes from catalog rows of liked and disliked items."""
    genres = Counter(g.lower() for row in liked_rows for g in row.get("genres", []) or [])
    people = Counter(p for row in liked_rows for p in _people(row, ("direct", "star", "actor", "actress", "cast")))
    sentences = []
    if genres:
        sentences.append(f"I enjoy {_join([g for g, _ in genres.most_common(3)])} movies.")
    # One shared person across liked movies says more about taste than any single credit.
    recurring = [p for p, count in people.most_common(2) if count >= 2]
    if recurring:
        sentences.append(f"I like films with {_join(recurring)}.")
    disliked = Counter(
        g.lower() for row in disliked_rows for g in row.get("genres", []) or [] if g.lower() not in genres
    )
    if disliked:
        sentences.append(f"I am not into {_join([g for g, _ in disliked.most_common(2)])} movies.")
    if not sentences and liked_titles:
        sentences.append(f"I enjoy movies like {_join(liked_titles[:3])}.")
    return " ".join(sentences)


def describe_target(row: Mapping[str, Any]) -> str:
    """What the user looks for, from a catalog row, without the title (the caller scrubs the plot)."""
    genres = [str(g).lower() for g in row.get("genres", []) or []]
    head = f"A {', '.join(genres[:3])} movie" if genres else "A movie"
    year = row.get("year")
    if year:
        head += f" from the {int(year) // 10 * 10}s"
    parts = [head]
    directors = _people(row, ("direct",))[:1]
    stars = _people(row, ("star", "actor", "actress", "cast"))[:2]
    if directors:
        parts.append(f"directed by {directors[0]}")
    if stars:
        parts.append(f"starring {_join(stars)}")
    text = ", ".join(parts) + "."
    keywords = [str(k) for k in row.get("keywords", []) or []][:5]
    if keywords:
        text += f" Themes: {', '.join(keywords)}."
    if row.get("plot"):
        text += f" Story: {_clip(str(row['plot']), 400)}"
    return text


def build_persona(
    record: Mapping[str, Any],
    catalog: CatalogLike | None = None,
    *,
    n_watched: int | None = 3,
    seed: int = 0,
    quote_utterances: bool = True,
) -> Persona:
    """The persona of ``record``'s user (see the module doc); raises BadInputError when it cannot be built.
    ``n_watched``: Interplay's three watched items by default; None keeps every candidate (every film the user
    reported or talked about, replay's ``--persona-history reported``)."""
    target_items = record.get("target_items") or []
    if not target_items:
        raise _bad(record, "target_items", "no target items: a persona needs target attributes", "no-target")
    titles = all_target_titles(record, catalog)
    targets = {item_key(t) for t in target_items}

    def scrub(text: str) -> str:
        return scrub_titles(text, titles)

    def names_target(title: str) -> bool:
        return any(contains_title(title, t) for t in titles)

    profile = record.get("user_profile") or {}

    attributes = scrub(profile.get("target_attributes") or "")
    if not attributes.strip():
        # One target per dialogue: describe that film, never a second target in its place.
        target = next((t for t in target_items if t.get("item_id")), target_items[0])
        described = catalog_row(catalog, target.get("item_id", ""))
        if not described:
            raise _bad(
                record,
                "target_items",
                "no user_profile.target_attributes and no catalog entry for the target item "
                f"({target.get('item_id') or target.get('title', '?')}); pass a catalog",
                "no-target-attributes",
            )
        attributes = scrub(describe_target(described))

    cands = {k: c for k, c in _history_candidates(record, targets).items() if not names_target(c.title)}
    pool: list[_Candidate] = []
    for item in profile.get("watched_items") or []:
        key = item_key(item)
        if key in targets or names_target(item.get("title", "")):
            continue
        cand = cands.get(key) or _Candidate(item.get("item_id", ""), item.get("title", ""))
        cand.review = item.get("review", "") or ""
        if all(cand is not other for other in pool):
            pool.append(cand)
    if not pool:
        pool = list(cands.values())
    watched: list[WatchedItem] = []
    rng = random.Random(derive_seed("persona-watched", record.get("dialogue_id", ""), seed))
    for cand in _pick_watched(pool, n_watched, rng):
        title = display_title(catalog_row(catalog, cand.item_id), cand.title)
        if not names_target(title):
            watched.append(WatchedItem(cand.item_id, title, _clip(scrub(_opinion(cand, quote_utterances)))))

    general = scrub(profile.get("general_preferences") or "")
    if not general.strip():
        liked = [c for c in cands.values() if c.liked is not False]
        disliked = [c for c in cands.values() if c.liked is False]
        liked_rows = [r for r in (catalog_row(catalog, c.item_id) for c in liked) if r]
        disliked_rows = [r for r in (catalog_row(catalog, c.item_id) for c in disliked) if r]
        general = scrub(_derive_preferences(liked_rows, disliked_rows, [c.title for c in liked]))

    if not watched and not general.strip():
        raise _bad(
            record,
            "user_profile.watched_items",
            "no usable history: no watched items, no items the user reported or mentioned, no general preferences",
            "no-history",
        )
    return Persona(general, watched, attributes)
