"""Catalog grounding of the Interplay simulators (``--grounding catalog``): what each role is told about films.

A 135M model can neither memorise a catalog nor recognise a film from its title; the catalog can tell it both.

**The user** wants a film described by *preference cues* (:func:`target_cues`), the qualities a viewer would
name, after Interplay's "preference cues extracted from a target movie's review": a broad kind of film in words
("something scary"), an era ("from the 90s"), themes from the MovieLens keywords and tags, and the seeker's own
words with every title taken out. Cues never name people, title words or plot specifics, and none is equal to a
field of the facts shown for a proposed film (:func:`film_facts`): cues that repeat shown fields (the exact genre
list and decade) turn accepting into a lookup, since a dialogue offers only a few proposals (a rule matching them
replayed ReDial at SR 0.961; see the notes, "Checked 2026-12-05"). After a recommender turn that names catalog
films, the user's prompt holds each named film's facts (:func:`film_facts`; these may name people), and only then.

**The recommender** gets, before each of its turns, the ``K`` catalog films most similar to what the user has said
(:class:`CatalogRetriever`: all-MiniLM-L6-v2 from the wheel over :func:`crsdata.metrics.match.item_text`, query =
the user's turns so far, item vectors cached on disk), in compact form (:func:`compact_line`), and names films
from that list. In a simulation the list is pure retrieval: nothing inserts a target. For training,
:func:`training_candidates` gives each real recommender turn a list with the films it named plus retrieved hard
negatives, shuffled; turns that named nothing get a retrieved list too.
"""

from __future__ import annotations

import csv
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crsdata.errors import BadInputError
from crsdata.seeds import derive_seed
from crsdata.simulate.leak import normalize_text, scrub_titles
from crsdata.simulate.prompts import SEEN_NOTE
from crsdata.titles import fold_text

GROUNDING = ("none", "catalog")
DEFAULT_K = 5
MAX_PLOT_CHARS = 160
MAX_OWN_WORDS = 160

# A broad kind of film, in a viewer's words, for each catalog genre (ReDial's and MovieLens' spellings, folded).
# The phrases are never a genre name themselves, so no cue equals a genre field of the facts.
_BROAD = {
    "comedy": "something funny",
    "horror": "something scary",
    "thriller": "lots of suspense",
    "action": "plenty of action",
    "romance": "a love story",
    "drama": "a serious, moving story",
    "sci fi": "futuristic ideas",
    "science fiction": "futuristic ideas",
    "animation": "animated",
    "family": "good for the whole family",
    "children": "good for the whole family",
    "fantasy": "magic and make-believe",
    "adventure": "a big adventure",
    "crime": "criminals and the law",
    "mystery": "a puzzle to work out",
    "war": "set in wartime",
    "western": "the old west",
    "musical": "songs and dancing",
    "music": "songs and dancing",
    "documentary": "real events",
    "biography": "a true life story",
    "history": "a true story from the past",
    "sport": "sports",
}
# Tags about a film's standing, not its qualities ("imdb top 250", "oscar (best picture)", "netflix queue").
_META_TAG = re.compile(r"imdb|oscar|netflix|criterion|afi|queue|owned|dvd|seen|watch|\d|:", re.IGNORECASE)
_STOPWORDS = frozenset("a an and the of in on to for with at by from is it its this that my me i".split())


def _words(text: str) -> set[str]:
    return set(fold_text(text).split())


def _people(row: Mapping[str, Any], roles: tuple[str, ...] = ()) -> list[str]:
    names = []
    for person in row.get("people") or []:
        name, role = (person.get("name"), str(person.get("role", ""))) if isinstance(person, Mapping) else (person, "")
        if name and (not roles or role.lower().startswith(roles)) and name not in names:
            names.append(str(name))
    return names


def display(row: Mapping[str, Any]) -> str:
    """``Title (Year)``, the form films are named in prompts."""
    return f"{row['title']} ({row['year']})" if row.get("year") else str(row.get("title", ""))


def compact_line(row: Mapping[str, Any]) -> str:
    """One candidate for the recommender: title, year, genres, one or two names (director first)."""
    names = list(dict.fromkeys(_people(row, ("direct",))[:1] + _people(row, ("star", "actor", "actress", "cast"))))[:2]
    parts = [", ".join(str(g).lower() for g in row.get("genres") or [])] + [", ".join(names)]
    return f"{display(row)}: " + "; ".join(p for p in parts if p)


def film_facts(row: Mapping[str, Any]) -> str:
    """What the user learns about a film the recommender named: title, year, genres, director, stars, plot."""
    return f"{display(row)}: " + "; ".join(film_fact_parts(row))


def seen_facts(row: Mapping[str, Any]) -> str:
    """:func:`film_facts` of a film the persona has watched, with ``SEEN_NOTE``: the user's own memory, put where
    the decision is taken. A 135M user did not learn to look a proposal up in a watched list ~600 tokens above it
    (docs/simulators.md, round 5), and the films a seeker had seen are most of what it declines."""
    return film_facts(row) + SEEN_NOTE


def catalog_ids(catalog: Any, item_ids: Iterable[str]) -> set[str]:
    """``item_ids`` as written and as the catalog's row ids (a ReDial id and its catalog row id are one film)."""
    ids = set()
    for item_id in item_ids:
        if item_id:
            ids.add(item_id)
            canonical = catalog.canonical_id(item_id) if catalog is not None else None
            ids.add(canonical or item_id)
    return ids


def film_fact_parts(row: Mapping[str, Any]) -> list[str]:
    """The facts of :func:`film_facts` after the title, one string each (the Space shows them beside a linked
    title, so the page and the simulated user read the same facts)."""
    parts = []
    if row.get("genres"):
        parts.append(", ".join(str(g).lower() for g in row["genres"]))
    directors, stars = _people(row, ("direct",))[:1], _people(row, ("star", "actor", "actress", "cast"))[:2]
    if directors:
        parts.append("directed by " + directors[0])
    if stars:
        parts.append("starring " + " and ".join(stars))
    plot = " ".join(str(row.get("plot") or "").split())
    if plot:
        parts.append(plot if len(plot) <= MAX_PLOT_CHARS else plot[: MAX_PLOT_CHARS - 3].rsplit(" ", 1)[0] + "...")
    return parts


def fact_fields(row: Mapping[str, Any]) -> list[str]:
    """Every field value :func:`film_facts` shows, one string each (the genre list whole and genre by genre)."""
    genres = [str(g) for g in row.get("genres") or []]
    fields = [str(row.get("title") or ""), display(row), str(row.get("year") or ""), ", ".join(genres), *genres]
    if row.get("year"):
        fields += [f"{int(row['year']) // 10 * 10}s", f"{int(row['year']) % 100 // 10 * 10:02d}s"]
    fields += _people(row) + [str(row.get("plot") or "")]
    return [f for f in fields if f.strip()]


# ---------------------------------------------------------------------------------------------------------
# The user's cues.


def _era(year: Any) -> str:
    if not year:
        return ""
    year = int(year)
    if year >= 2010:
        return "a recent film"
    if year >= 1980:
        return f"from the {year % 100 // 10 * 10:02d}s era"
    return "an older classic"


def _is_name(tag: str) -> bool:
    """A tag that reads like a person's name ("Tom Hanks", "Nolan")."""
    words = tag.split()
    return bool(words) and all(w[:1].isupper() for w in words) and len(words) <= 3 and tag != tag.upper()


def theme_terms(row: Mapping[str, Any], tags: Sequence[str] = (), limit: int = 4) -> list[str]:
    """Keywords and tags that describe the film without naming it: no person, no word of its title, no genre,
    nothing the shown plot or facts spell out, no near-duplicates; at most ``limit``, keywords first."""
    title_words = _words(str(row.get("title") or "")) - _STOPWORDS
    people_words = {w for name in _people(row) for w in _words(name)}
    shown = {fold_text(f) for f in fact_fields(row)}
    plot = fold_text(str(row.get("plot") or ""))
    terms: list[str] = []
    for term in [*(row.get("keywords") or []), *tags]:
        term = " ".join(str(term).split())
        folded = fold_text(term)
        words = set(folded.split())
        if (
            not folded
            or len(folded) > 40
            or _is_name(term)
            or _META_TAG.search(term)
            or words & title_words
            or words & people_words
            or folded in shown
            or folded in _BROAD
            or (len(folded) > 3 and f" {folded} " in f" {plot} ")
            or any(folded in fold_text(t) or fold_text(t) in folded for t in terms)
        ):
            continue
        terms.append(term.lower())
        if len(terms) == limit:
            break
    return terms


def own_words(record: Mapping[str, Any], titles: Iterable[str], row: Mapping[str, Any] | None = None) -> str:
    """What the seeker said before any film was proposed, titles (every film named in the dialogue and
    ``titles``) and the target's people taken out; "" when they said nothing there."""
    said = []
    for turn in record.get("turns") or []:
        if turn.get("role") == "recommender" and turn.get("items"):
            break
        if turn.get("role") == "user" and turn.get("text", "").strip():
            said.append(" ".join(turn["text"].split()))
    if not said:
        return ""
    named = [i.get("title", "") for t in record.get("turns") or [] for i in t.get("items") or []]
    text = scrub_titles(" ".join(said), [*named, *titles], placeholder="a film")
    for name in _people(row or {}):
        text = re.sub(re.escape(name), "someone", text, flags=re.IGNORECASE)
    # Words of the target's title go too ("a star wars movie" names the film as well as its title would).
    title_words = _words(str((row or {}).get("title") or "")) - _STOPWORDS
    kept = [w for w in text.split() if not (set(fold_text(w).split()) & title_words)]
    text = re.sub(r"@\d+", "a film", " ".join(kept))  # ReDial's movie-mention markers
    text = " ".join(without_title_clauses(text))
    return text if len(text) <= MAX_OWN_WORDS else text[: MAX_OWN_WORDS - 3].rsplit(" ", 1)[0] + "..."


# A clause ends at a sentence or comma mark, or before a joining word.
_CLAUSE_BREAK = re.compile(r"(?<=[.!?,;])\s+|\s+(?=(?:and|but|or|so|because)\b)", re.IGNORECASE)


def without_title_clauses(text: str, placeholder: str = "a film") -> list[str]:
    """The clauses of ``text`` that do not hold ``placeholder``, in order. A removed title leaves "i like a film
    and i watched a film", which says nothing, and a 135M user copied it with the placeholders dropped ("i like
    and i watched and"); the clauses around it still say what the seeker wants."""
    kept: list[str] = []
    for clause in (c.strip() for c in _CLAUSE_BREAK.split(text) if c.strip()):
        if not re.search(rf"\b{re.escape(placeholder)}\b", clause, re.IGNORECASE):
            # A first clause may start with the word that joined it to a dropped one: that word goes.
            kept.append(clause if kept else re.sub(r"^(?:and|but|or|so|because)\s+", "", clause, flags=re.I))
        elif kept and kept[-1].endswith(",") and clause[-1] in ".!?":
            kept[-1] = kept[-1][:-1] + clause[-1]  # the dropped clause ended the sentence: so does the kept one
    if kept and kept[-1].endswith(","):
        kept[-1] = kept[-1][:-1]
    return [c for c in kept if c]


def target_cues(
    row: Mapping[str, Any], tags: Sequence[str] = (), seeker_words: str = "", titles: Iterable[str] = ()
) -> str:
    """The user's target attributes under catalog grounding (see the module doc). ``titles`` are scrubbed from
    the result as a last guard (the caller passes every form of the target titles)."""
    kinds = list(dict.fromkeys(_BROAD[g] for g in (fold_text(str(g)) for g in row.get("genres") or []) if g in _BROAD))
    # A kind that shares a word with the title ("plenty of action" for Last Action Hero) would hint at the title.
    title_words = _words(str(row.get("title") or "")) - _STOPWORDS
    kinds = [kind for kind in kinds if not _words(kind) & title_words]
    wants = ", ".join([*kinds[:2], _era(row.get("year"))][:3]).strip(", ")
    sentences = [f"Looking for: {wants}." if wants else "Looking for a film."]
    terms = theme_terms(row, tags)
    if terms:
        sentences.append(f"Themes: {', '.join(terms)}.")
    if seeker_words:
        sentences.append(f'In my words: "{seeker_words}"')
    return scrub_titles(" ".join(sentences), list(titles), placeholder="a film")


# The user's first request under --disclose-cues: what its cues' "Looking for:" sentence asks for, in its own voice.
CUE_REQUEST = "I'm looking for {wants}."
_WANTS = re.compile(r"^Looking for: (?P<wants>[^.]+)\.")


def cue_request(cues: str) -> str:
    """The sentence in which the user asks for what its cues want (:data:`CUE_REQUEST`), "" when ``cues`` are not
    :func:`target_cues`' (PEARL's review attributes, an ungrounded persona's) or want nothing in particular. The
    recommender retrieves with the user's words: a 135M user left alone opens with "something good to watch",
    which finds films its cues do not want (docs/simulators.md, round 11)."""
    found = _WANTS.match(cues.strip())
    return CUE_REQUEST.format(wants=found["wants"].strip()) if found else ""


def cue_phrases(cues: str) -> list[str]:
    """The separate phrases of a cue text (split at commas, full stops and colons), normalised: what the
    no-shared-field rule compares with the facts' fields."""
    return [p.strip() for p in re.split(r"[,.:;\"]", normalize_text(cues.replace('"', "."))) if p.strip()]


def read_tags(path: str | Path, catalog: Any) -> dict[str, list[str]]:
    """MovieLens ``tags.csv`` (userId, movieId, tag, timestamp) as catalog item id -> tags, most used first.
    Films the catalog does not know are left out; a row without a tag or movieId raises BadInputError."""
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    with open(path, encoding="utf-8", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            if not row.get("movieId") or row.get("tag") is None:
                raise BadInputError(path, f"line {line}", "movieId/tag", "missing value", "bad-tags")
            item_id = catalog.canonical_id(f"ml:{row['movieId'].strip()}") if catalog is not None else None
            tag = " ".join(row["tag"].split())
            if item_id and tag:
                bucket = counts[item_id]
                bucket[tag] = bucket.get(tag, 0) + 1
    return {i: [t for t, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))] for i, c in counts.items()}


# ---------------------------------------------------------------------------------------------------------
# The recommender's candidates.


def user_query(turns: Sequence[Mapping[str, Any]], limit: int = 700) -> str:
    """The retrieval query: the user's turns so far, the most recent ``limit`` characters."""
    text = " ".join(" ".join(t.get("text", "").split()) for t in turns if t.get("role") == "user")
    return text[-limit:]


class CatalogRetriever:
    """The catalog films closest to a query: MiniLM cosine over item texts (vectors cached on disk by
    :class:`crsdata.metrics.match.ItemEmbeddings`). Films with no genres, plot or keywords are left out: their
    text is the title alone."""

    def __init__(self, rows: Iterable[Mapping[str, Any]], embeddings: Any = None) -> None:
        from crsdata.metrics.match import ItemEmbeddings

        self.rows = {str(r["item_id"]): dict(r) for r in rows if r.get("genres") or r.get("plot") or r.get("keywords")}
        if not self.rows:
            raise BadInputError("", "", "--catalog", "no catalog film has genres, plot or keywords to retrieve by")
        self.embeddings = embeddings if embeddings is not None else ItemEmbeddings(list(self.rows.values()))
        self.ids = sorted(self.rows)
        self._matrix: np.ndarray | None = None
        self._queries: dict[str, np.ndarray] = {}  # query -> unit vector, filled by encode_queries

    @property
    def matrix(self) -> np.ndarray:
        if self._matrix is None:
            self._matrix = self.embeddings.vectors(self.ids)
        return self._matrix

    def encode_queries(self, queries: Iterable[str]) -> int:
        """Encodes the queries not encoded yet in the embedder's batches and keeps their vectors, so that
        :meth:`search` finds them instead of running one forward pass per query: a training split's thousands of
        recommender turns (:func:`training_queries`) took minutes one by one. Returns how many were encoded."""
        missing = list(dict.fromkeys(q for q in queries if q.strip() and q not in self._queries))
        if missing:
            self._queries.update(zip(missing, self._unit_vectors(missing), strict=True))
        return len(missing)

    def _unit_vectors(self, queries: list[str]) -> list[np.ndarray]:
        vectors = np.asarray(self.embeddings.embedder.encode(queries), dtype=np.float32)
        if vectors.shape[0] != len(queries):
            raise ValueError(f"the embedder returned {vectors.shape[0]} vectors for {len(queries)} queries")
        return [vector / (np.linalg.norm(vector) or 1.0) for vector in vectors]

    def _query_vector(self, query: str) -> np.ndarray:
        vector = self._queries.get(query)
        if vector is None:  # not encoded ahead (a simulation's turn): this query alone, and not kept
            vector = self._unit_vectors([query])[0]
        return vector

    def search(self, query: str, k: int = DEFAULT_K, exclude: Iterable[str] = ()) -> list[str]:
        """The ``k`` most similar item ids, best first (ties by id), leaving out ``exclude``; [] for no query."""
        if not query.strip() or k <= 0:
            return []
        scores = self.matrix @ self._query_vector(query)
        skip = set(exclude)
        # ``ids`` are sorted, so a stable sort of the negated scores breaks ties by id.
        order = np.argsort(-scores, kind="stable")
        found: list[str] = []
        for i in order:
            if self.ids[i] not in skip:
                found.append(self.ids[i])
                if len(found) == k:
                    break
        return found


def named_ids(turns: Sequence[Mapping[str, Any]]) -> list[str]:
    """Linked item ids named in ``turns``, in order, once each."""
    return list(dict.fromkeys(i["item_id"] for t in turns for i in t.get("items") or [] if i.get("item_id")))


def inference_candidates(retriever: CatalogRetriever, turns: Sequence[Mapping[str, Any]], k: int) -> list[str]:
    """The list before a simulated recommender turn: pure retrieval on the user's words, films already named in
    the conversation left out. Nothing else goes in: a target is there only if retrieval found it."""
    return retriever.search(user_query(turns), k, exclude=named_ids(turns))


def training_query(
    retriever: CatalogRetriever, turns: Sequence[Mapping[str, Any]], index: int, k: int = DEFAULT_K
) -> str:
    """The retrieval query of real recommender turn ``turns[index]`` (see :func:`training_candidates`)."""
    named = [i for i in named_ids([turns[index]]) if i in retriever.rows][:k]
    return user_query(turns[:index]) or " ".join(retriever.embeddings.texts.get(i, "") for i in named)


def training_queries(
    retriever: CatalogRetriever, dialogues: Iterable[Sequence[Mapping[str, Any]]], k: int = DEFAULT_K
) -> list[str]:
    """The query of every recommender turn of ``dialogues`` (lists of turns), in order: what
    :meth:`CatalogRetriever.encode_queries` encodes in batches before a training split's candidate lists."""
    return [
        training_query(retriever, turns, i, k)
        for turns in dialogues
        for i, turn in enumerate(turns)
        if turn.get("role") == "recommender"
    ]


def training_candidates(
    retriever: CatalogRetriever,
    turns: Sequence[Mapping[str, Any]],
    index: int,
    k: int = DEFAULT_K,
    seed: int = 0,
) -> list[str]:
    """The list before real recommender turn ``turns[index]``: the catalog films it named (up to ``k``) plus
    retrieved hard negatives up to ``k`` films, in a seeded shuffle so the named films' places teach nothing.
    A turn that named nothing gets the retrieved list, as at inference. Negatives leave out films named earlier
    in the dialogue; the query is the user's turns before it, or the named films' own texts when the user has not
    spoken yet."""
    before, turn = turns[:index], turns[index]
    named = [i for i in named_ids([turn]) if i in retriever.rows][:k]
    query = training_query(retriever, turns, index, k)
    negatives = retriever.search(query, k, exclude=[*named, *named_ids(before)])
    chosen = (named + negatives)[:k] if named else negatives
    random.Random(derive_seed("grounding-candidates", seed, index)).shuffle(chosen)
    return chosen


# ---------------------------------------------------------------------------------------------------------
# Views of one dialogue, shared by the simulation and the training data.


def _row(catalog: Any, item_id: str) -> Mapping[str, Any] | None:
    if catalog is None or not item_id:
        return None
    row = catalog.get(item_id)
    return row if row and (row.get("genres") or row.get("plot") or row.get("keywords") or row.get("people")) else None


def target_ids(record: Mapping[str, Any], catalog: Any) -> set[str]:
    """The record's target ids, as written and as the catalog's row ids."""
    return catalog_ids(catalog, (item.get("item_id", "") for item in record.get("target_items") or []))


def film_line(
    catalog: Any, item_id: str, render: Any, targets: set[str], titles: Sequence[str], allowed: list[str]
) -> str | None:
    """``render(row)`` of a catalog film, None when the catalog does not describe it. A target's line may name the
    target (the recommender named it, or retrieval found it) and is added to ``allowed``, the leak guard's
    exceptions; any other film's line has the target titles scrubbed (a sequel's plot may name its original)."""
    row = _row(catalog, item_id)
    if row is None:
        return None
    line = render(row)
    if item_id in targets or str(row["item_id"]) in targets:
        allowed.append(line)
        return line
    return scrub_titles(line, list(titles), placeholder="another film")


def user_facts(
    turns: Sequence[Mapping[str, Any]],
    catalog: Any,
    targets: set[str],
    titles: Sequence[str],
    allowed: list[str],
    seen: Iterable[str] = (),
) -> dict[int, list[str]]:
    """Turn index -> the facts of the catalog films that recommender turn named; nothing for other turns. A film
    in ``seen`` (the persona's watched item ids) has :data:`SEEN_NOTE` after its facts."""
    seen_ids = catalog_ids(catalog, seen)
    facts: dict[int, list[str]] = {}
    for i, turn in enumerate(turns):
        if turn.get("role") != "recommender":
            continue
        ids = list(dict.fromkeys(item.get("item_id", "") for item in turn.get("items") or []))
        lines = [
            film_line(
                catalog,
                item_id,
                seen_facts if catalog_ids(catalog, [item_id]) & seen_ids else film_facts,
                targets,
                titles,
                allowed,
            )
            for item_id in ids
        ]
        if any(lines):
            facts[i] = [line for line in lines if line]
    return facts


def candidate_lines(
    lists: Mapping[int, Sequence[str]], catalog: Any, targets: set[str], titles: Sequence[str], allowed: list[str]
) -> dict[int, list[str]]:
    """Turn index -> the compact lines of that turn's candidate ids (films the catalog cannot describe left out)."""
    shown = {}
    for index, ids in lists.items():
        lines = [film_line(catalog, item_id, compact_line, targets, titles, allowed) for item_id in ids]
        if any(lines):
            shown[index] = [line for line in lines if line]
    return shown


def record_cues(
    record: Mapping[str, Any], catalog: Any, tags: Mapping[str, Sequence[str]], titles: Sequence[str]
) -> str | None:
    """The cues of the first target the catalog describes (:func:`target_cues`); None when the record has its
    own ``user_profile.target_attributes`` (PEARL's come from reviews already) or no target is described."""
    if ((record.get("user_profile") or {}).get("target_attributes") or "").strip():
        return None
    for item in record.get("target_items") or []:
        row = _row(catalog, item.get("item_id", ""))
        if row is not None and (row.get("genres") or row.get("keywords")):
            words = own_words(record, titles, row)
            return target_cues(row, tags.get(str(row["item_id"]), []), words, titles)
    return None
