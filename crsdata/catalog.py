"""The movie catalog: items from several catalogs merged into one table, and title linking.

Rows follow :data:`crsdata.schema.ITEM_FEATURES`. Sources, recognised by file name first and by header or
JSON shape otherwise (a file that is neither raises :class:`~crsdata.errors.BadInputError`):

==========================  ==============================  ==============================================
kind (``sources`` value)    file                            what it adds
==========================  ==============================  ==============================================
``redial_id2info``          ``*id2info.json``               ReDial id -> name "Title (Year)", genre, plot,
                                                            director, writer, star, imdb_id
``redial_movies``           ``movies_with_mentions.csv``    ReDial id, name, number of mentions (used to
                                                            break ties between same-named films)
``movielens_keywords``      ``movies_w_keywords.csv``       MovieLens id, title, genres "A|B", keywords
``movielens``               ``movies.csv``                  MovieLens id, title, genres
(imdb ids only)             ``links.csv``                   MovieLens id -> IMDb id for the MovieLens rows
==========================  ==============================  ==============================================

Ids: a ReDial movie id is kept as it is (``"202190"``); an item first seen elsewhere gets its source id with
a prefix, MovieLens ``ml:<movieId>`` (the MovieLens releases share one id space, so ``ml:1`` is the same film
in ml-latest-small and in the ml-25m sample). A film found in two catalogs (same IMDb id, or the same
normalised title and the same year) becomes one row whose ``sources`` lists both; its id is the ReDial id
when it has one. Every source id stays resolvable through :meth:`Catalog.get` (``get("ml:1")`` returns the
merged row). Two ids of the *same* catalog are never merged: ReDial itself lists some films twice and both
ids occur in dialogues. Rows whose IMDb ids disagree are not merged either, even with the same title and year
(the two "Emma (1996)" are different films; ReDial's scraped IMDb ids are sometimes wrong, which then leaves a
film in two rows rather than two films in one). When sources disagree on a film's year, the row shows the
first and linking accepts any of them.

Linking (:meth:`Catalog.link`): the title is normalised (:func:`normalize_title`) and its year parsed; an exact
match of the normalised title wins, the year choosing among same-named films; otherwise rapidfuzz picks the
closest normalised title among films within :data:`YEAR_WINDOW` years of the given year (all films when no
year is given), accepted only at or above :data:`FUZZY_CUTOFF` and when the numbers in both titles agree. A
MovieLens-style query with other names in brackets ("Seven (a.k.a. Se7en) (1995)") is tried name by name.
Without a year, same-named films are ranked by their ReDial mentions. Indices are built once; results are
cached.

What a built folder's ``items`` config holds is the builder's choice; the ReDial and INSPIRED builders write
the rows of the items their dialogues refer to, with the metadata merged from every catalog given.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rapidfuzz import fuzz, process

from crsdata.errors import BadInputError
from crsdata.readers import read_json, read_text
from crsdata.titles import display_title, normalize_title, split_aliases, split_year

# Fuzzy matches must score at least this (rapidfuzz ``fuzz.ratio`` on normalised titles, 0-100). Checked on the
# INSPIRED mentions: at 90 the fuzzy step adds only right answers ("Super Bad (2007)" -> Superbad, "Lake Boat"
# -> Lakeboat); at 85 it also links "Double Tap (1997)" to Double Team and "Hustlers (2019)" to The Hustle.
# Sequels one digit apart ("toy story 3" / "toy story 4" score 91) are kept apart by the number check in link().
FUZZY_CUTOFF = 90.0
# A given year matches films released up to this many years before or after it (release dates differ by
# country and festival, so sources disagree by one year).
YEAR_WINDOW = 1
# Titles shorter than this (normalised) are only matched exactly: one edit in "up" or "it" is another film.
MIN_FUZZY_LENGTH = 5

_NUMBER = re.compile(r"\d+")

# File name -> kind; the header or JSON shape decides for other names (see _sniff).
_KIND_BY_NAME = {
    "movies_with_mentions.csv": "redial_movies",
    "movies_w_keywords.csv": "movielens_keywords",
    "movies.csv": "movielens",
    "links.csv": "movielens_links",
}
_KIND_BY_HEADER = {
    ("movieid", "moviename", "nbmentions"): "redial_movies",
    ("movieid", "title", "genres", "keywords"): "movielens_keywords",
    ("movieid", "title", "genres"): "movielens",
    ("movieid", "imdbid", "tmdbid"): "movielens_links",
}
# ReDial first so that the richest record gives the display title and ReDial ids win; links before movies.
_LOAD_ORDER = ["redial_id2info", "redial_movies", "movielens_links", "movielens", "movielens_keywords"]
_DEFAULT_FILES = [
    "redial/redial__id2info.json",
    "redial/official/movies_with_mentions.csv",
    "movielens-sample/movies_w_keywords.csv",
    "movielens-latest-small/movies.csv",
    "movielens-latest-small/links.csv",
]


@dataclass
class _Entry:
    """One film as one catalog file describes it, before merging."""

    source_id: str  # "202190" (ReDial) or "ml:1"
    source: str  # kind, goes into ``sources``
    title: str
    year: int | None = None
    aliases: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    plot: str = ""
    people: list[dict[str, str]] = field(default_factory=list)
    imdb_id: str = ""
    keywords: list[str] = field(default_factory=list)
    mentions: int = 0


def _namespace(source_id: str) -> str:
    # Plain ids are ReDial's; everything else carries its catalog prefix.
    return source_id.split(":", 1)[0] if ":" in source_id else "redial"


def _imdb(value: str) -> str:
    value = value.strip()
    if not value:
        return ""
    return value if value.startswith("tt") else f"tt{int(value):07d}"


class Catalog:
    """Merged item table with title linking. Build with :meth:`from_paths`; add rows with :meth:`add`."""

    def __init__(self) -> None:
        self._rows: list[dict[str, Any]] = []
        self._namespaces: list[set[str]] = []
        self._popularity: list[int] = []
        self._keys: list[set[str]] = []  # normalised forms of every title and alias seen for a row
        # Every year a source gave a row: catalogs disagree (ReDial dates "Home for the Holidays" 1972, MovieLens
        # and IMDb 1995); the row shows the first, linking accepts any.
        self._years: list[set[int]] = []
        self._by_source_id: dict[str, int] = {}
        self._by_imdb: dict[str, int] = {}
        self._by_key_year: dict[tuple[str, int], list[int]] = {}
        self._by_key: dict[str, list[int]] = {}
        # Built lazily for fuzzy matching and dropped by every merge, so adding after linking stays correct.
        self._fuzzy_all: list[str] | None = None
        self._fuzzy_by_year: dict[int, list[str]] = {}
        self._keys_by_year: dict[int | None, list[str]] = {}
        self._fuzzy_by_length: dict[tuple[int, int], list[str]] = {}
        self._cache: dict[tuple[str, int | None], int | None] = {}

    # ---------------------------------------------------------------------------------------------- loading

    @classmethod
    def from_paths(cls, paths: Iterable[str | Path]) -> Catalog:
        """Loads and merges catalog files (a folder stands for the known catalog files inside it).

        The order of ``paths`` does not matter: ReDial catalogs are merged first so that their ids and titles
        win, and ``links.csv`` is read before the MovieLens movie lists it annotates.
        """
        files: list[tuple[str, Path]] = []
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                found = [p for p in sorted(path.iterdir()) if p.is_file() and _known_name(p)]
                if not found:
                    raise BadInputError(path, "folder", "", "no catalog file in this folder", "unknown-format")
                files.extend((_detect_kind(p), p) for p in found)
            else:
                files.append((_detect_kind(path), path))
        files.sort(key=lambda kind_path: _LOAD_ORDER.index(kind_path[0]))
        imdb_by_ml: dict[str, str] = {}
        catalog = cls()
        for kind, path in files:
            if kind == "movielens_links":
                imdb_by_ml.update(_read_links(path))
                continue
            for entry in _LOADERS[kind](path):
                if not entry.imdb_id and entry.source_id in imdb_by_ml:
                    entry.imdb_id = imdb_by_ml[entry.source_id]
                catalog._merge(entry)
        # links.csv given without movies.csv still fills imdb ids of MovieLens rows from the keyword sample.
        for ml_id, imdb_id in imdb_by_ml.items():
            index = catalog._by_source_id.get(ml_id)
            if index is not None and not catalog._rows[index]["imdb_id"]:
                catalog._rows[index]["imdb_id"] = imdb_id
                catalog._by_imdb.setdefault(imdb_id, index)
        return catalog

    @staticmethod
    def default_paths(data_root: str | Path) -> list[Path]:
        """The catalog files of the shared data folder that exist under ``data_root``."""
        root = Path(data_root)
        return [root / name for name in _DEFAULT_FILES if (root / name).is_file()]

    def add(
        self,
        item_id: str,
        title: str,
        *,
        source: str,
        year: int | None = None,
        genres: Iterable[str] = (),
        plot: str = "",
        people: Iterable[dict[str, str]] = (),
        imdb_id: str = "",
        keywords: Iterable[str] = (),
    ) -> str:
        """Adds one film (merged like a catalog row) and returns the id of the row it ended in.

        ``item_id`` is a ReDial id or a prefixed id (``ml:1``). A ``title`` with a "(Year)" suffix gives the
        year when ``year`` is None.
        """
        name, parsed = split_year(title)
        entry = _Entry(
            source_id=str(item_id),
            source=source,
            title=name,
            year=year if year is not None else parsed,
            genres=list(genres),
            plot=plot,
            people=list(people),
            imdb_id=_imdb(imdb_id),
            keywords=list(keywords),
        )
        return self._rows[self._merge(entry)]["item_id"]

    def add_rows(self, rows: Iterable[dict[str, Any]]) -> Catalog:
        """Adds the rows of a built folder's ``items`` configuration (schema ``ITEM_FEATURES``); returns self."""
        for row in rows:
            self.add(
                row["item_id"],
                row["title"],
                source=(row.get("sources") or ["built"])[0],
                year=row.get("year"),
                genres=row.get("genres") or (),
                plot=row.get("plot") or "",
                people=row.get("people") or (),
                imdb_id=row.get("imdb_id") or "",
                keywords=row.get("keywords") or (),
            )
        return self

    def _merge(self, entry: _Entry) -> int:
        namespace = _namespace(entry.source_id)
        index = self._by_source_id.get(entry.source_id)
        key = normalize_title(entry.title)
        if index is None and entry.imdb_id:
            candidate = self._by_imdb.get(entry.imdb_id)
            if candidate is not None and self._free(candidate, namespace, entry.imdb_id):
                index = candidate
        if index is None and entry.year is not None and key:
            for candidate in self._by_key_year.get((key, entry.year), ()):
                if self._free(candidate, namespace, entry.imdb_id):
                    index = candidate
                    break
        if index is None:
            index = len(self._rows)
            self._rows.append(
                {
                    "item_id": entry.source_id,
                    "title": display_title(entry.title),
                    "year": entry.year,
                    "genres": [],
                    "plot": "",
                    "people": [],
                    "imdb_id": "",
                    "keywords": [],
                    "sources": [],
                }
            )
            self._namespaces.append(set())
            self._popularity.append(0)
            self._keys.append(set())
            self._years.append(set())
        row = self._rows[index]
        if namespace == "redial" and "redial" not in self._namespaces[index]:
            row["item_id"] = entry.source_id  # ReDial ids are kept as they are, whatever was loaded first
        self._namespaces[index].add(namespace)
        self._by_source_id.setdefault(entry.source_id, index)
        if not row["title"]:
            row["title"] = display_title(entry.title)
        if row["year"] is None:
            row["year"] = entry.year
        if not row["plot"]:
            row["plot"] = entry.plot.strip()
        if not row["imdb_id"] and entry.imdb_id:
            row["imdb_id"] = entry.imdb_id
        if entry.genres:
            _extend_unique(row["genres"], [g.strip().lower() for g in entry.genres])
        if entry.keywords:
            _extend_unique(row["keywords"], [k.strip() for k in entry.keywords])
        if entry.source not in row["sources"]:
            row["sources"].append(entry.source)
        for person in entry.people:
            person = {"name": person["name"].strip(), "role": person["role"]}
            if person["name"] and person not in row["people"]:
                row["people"].append(person)
        self._popularity[index] += entry.mentions
        if row["imdb_id"]:
            self._by_imdb.setdefault(row["imdb_id"], index)
        keys, years = self._keys[index], self._years[index]
        new_keys = {key} if key and key not in keys else set()
        new_keys.update(k for k in map(normalize_title, entry.aliases) if k and k not in keys)
        for new_key in new_keys:
            self._by_key.setdefault(new_key, []).append(index)
        # Index (key, year) for the new keys with every known year, and for every key with a newly learnt year.
        pairs = {(k, y) for k in new_keys for y in years}
        keys |= new_keys
        if entry.year is not None and entry.year not in years:
            years.add(entry.year)
            pairs.update((k, entry.year) for k in keys)
        for pair in pairs:
            self._by_key_year.setdefault(pair, []).append(index)
        self._fuzzy_all = None
        self._fuzzy_by_year.clear()
        self._fuzzy_by_length.clear()
        self._cache.clear()
        return index

    def _free(self, candidate: int, namespace: str, imdb_id: str) -> bool:
        """Whether a film from catalog ``namespace`` may merge into row ``candidate``."""
        # A row that already has an id of this catalog is another film of that catalog.
        if namespace in self._namespaces[candidate]:
            return False
        other = self._rows[candidate]["imdb_id"]
        return not (imdb_id and other and other != imdb_id)

    # ---------------------------------------------------------------------------------------------- lookup

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and item_id in self._by_source_id

    def get(self, item_id: str) -> dict[str, Any] | None:
        """The row of a catalog id or of any source id merged into it (``ml:1``); None when unknown."""
        index = self._by_source_id.get(str(item_id))
        return _copy_row(self._rows[index]) if index is not None else None

    def canonical_id(self, item_id: str) -> str | None:
        """The row id that ``item_id`` (a row id or a merged source id) belongs to."""
        index = self._by_source_id.get(str(item_id))
        return self._rows[index]["item_id"] if index is not None else None

    def rows(self, item_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """All rows in load order, or the rows of ``item_ids`` (each once, unknown ids left out) in that order."""
        if item_ids is None:
            return [_copy_row(row) for row in self._rows]
        seen: set[int] = set()
        out = []
        for item_id in item_ids:
            index = self._by_source_id.get(str(item_id))
            if index is not None and index not in seen:
                seen.add(index)
                out.append(_copy_row(self._rows[index]))
        return out

    def title_with_year(self, item_id: str) -> str:
        """``"The Shining (1980)"`` for an id, the title alone when the year is unknown, "" when the id is."""
        row = self.get(item_id)
        if row is None:
            return ""
        return f"{row['title']} ({row['year']})" if row["year"] is not None else row["title"]

    def link(self, title: str, year: int | None = None) -> str | None:
        """Catalog id of the film called ``title`` ("Title (Year)" or a bare title), or None.

        ``year`` overrides a year parsed from the title. With a year, only films within :data:`YEAR_WINDOW`
        years (or of unknown year) can match; without one, same-named films are ranked by the number of ReDial
        mentions, then by load order.
        """
        name, parsed = split_year(title)
        year = year if year is not None else parsed
        key = normalize_title(name)
        if not key:
            return None
        cache_key = (key, year)
        if cache_key not in self._cache:
            index = self._link_key(key, year)
            if index is None and name.endswith(")"):
                # A MovieLens-style title with its other names in brackets: "Seven (a.k.a. Se7en)".
                main, aliases = split_aliases(name)
                for other in (main, *aliases):
                    index = self._link_key(normalize_title(other), year) if normalize_title(other) else None
                    if index is not None:
                        break
            self._cache[cache_key] = index
        index = self._cache[cache_key]
        return self._rows[index]["item_id"] if index is not None else None

    def _link_key(self, key: str, year: int | None) -> int | None:
        by_key = self._by_key
        exact = by_key.get(key, [])
        if exact:
            best = self._pick(exact, year)
            if best is not None:
                return best
        if len(key) < MIN_FUZZY_LENGTH:
            return None
        choices = self._fuzzy_choices(year, len(key))
        found = process.extractOne(key, choices, scorer=fuzz.ratio, score_cutoff=FUZZY_CUTOFF)
        if found is None:
            return None
        choice = found[0]
        # Edit distance cannot tell "Toy Story 3" from "Toy Story 4": numbers (sequels, years) must agree.
        if _NUMBER.findall(choice) != _NUMBER.findall(key):
            return None
        # The same key may belong to several films: choose among them as for an exact match.
        return self._pick(by_key[choice], year)

    def _pick(self, candidates: list[int], year: int | None) -> int | None:
        if year is None:
            # Most mentioned in ReDial first (the film people mean), then the first loaded.
            return min(candidates, key=lambda i: (-self._popularity[i], i))
        distance = {i: min(abs(y - year) for y in self._years[i]) for i in candidates if self._years[i]}
        near = [i for i, d in distance.items() if d <= YEAR_WINDOW]
        if near:
            return min(near, key=lambda i: (distance[i], -self._popularity[i], i))
        undated = [i for i in candidates if not self._years[i]]
        return undated[0] if undated else None

    def _fuzzy_choices(self, year: int | None, length: int) -> list[str]:
        """Keys a fuzzy match may return: all, or those of films within the year window or of unknown year."""
        if self._fuzzy_all is None:
            # One pass over the index, then each window is a few year buckets glued together (cached per year).
            self._fuzzy_all = [k for k in self._by_key if len(k) >= MIN_FUZZY_LENGTH]
            self._keys_by_year = {}
            for key in self._fuzzy_all:
                for known in {y for i in self._by_key[key] for y in (self._years[i] or {None})}:
                    self._keys_by_year.setdefault(known, []).append(key)
        if year is None:
            # fuzz.ratio = 2 * matches / (len(a) + len(b)), so keys much shorter or longer than the query can
            # never reach the cutoff: skipping them makes year-less matching several times faster.
            share = FUZZY_CUTOFF / 100
            low, high = math.floor(length * share / (2 - share)), math.ceil(length * (2 - share) / share)
            if (low, high) not in self._fuzzy_by_length:
                self._fuzzy_by_length[(low, high)] = [k for k in self._fuzzy_all if low <= len(k) <= high]
            return self._fuzzy_by_length[(low, high)]
        if year not in self._fuzzy_by_year:
            window = [self._keys_by_year.get(y, []) for y in range(year - YEAR_WINDOW, year + YEAR_WINDOW + 1)]
            merged = self._keys_by_year.get(None, []) + [key for bucket in window for key in bucket]
            self._fuzzy_by_year[year] = list(dict.fromkeys(merged))
        return self._fuzzy_by_year[year]


def is_built_folder(path: str | Path) -> bool:
    """Whether ``path`` is a dataset folder written by ``crsdata build`` or ``crsdata simulate`` with an ``items``
    configuration (``items/*.parquet``), as opposed to a folder of catalog files."""
    path = Path(path)
    return path.is_dir() and any(path.glob("items/*.parquet"))


def read_items(folder: str | Path) -> list[dict[str, Any]] | None:
    """The rows of a built folder's ``items`` configuration, every split, as written; None when it has none."""
    if not is_built_folder(folder):
        return None
    from datasets import load_dataset

    return [row for split in load_dataset(str(folder), "items").values() for row in split.to_list()]


def load_catalog(paths: Iterable[str | Path], default_folder: str | Path | None = None) -> Catalog | None:
    """One :class:`Catalog` from catalog files (:meth:`Catalog.from_paths`) and built folders (their ``items``).

    With no ``paths``, ``default_folder``'s items when it is a built folder (a simulation's source dataset).
    None when there is nothing to load. The files are merged first, then each folder's rows in order, so a
    built folder's rows merge into the catalog rows of the same film.
    """
    candidates = [Path(p) for p in paths]
    if not candidates and default_folder is not None and is_built_folder(default_folder):
        candidates = [Path(default_folder)]
    if not candidates:
        return None
    folders = [p for p in candidates if is_built_folder(p)]
    files = [p for p in candidates if p not in folders]
    catalog = Catalog.from_paths(files) if files else Catalog()
    for folder in folders:
        catalog.add_rows(read_items(folder) or [])
    return catalog


def _extend_unique(target: list[str], values: list[str]) -> None:
    if not target:
        target.extend(dict.fromkeys(v for v in values if v))
        return
    for value in values:
        if value and value not in target:
            target.append(value)


def _copy_row(row: dict[str, Any]) -> dict[str, Any]:
    copy = dict(row)
    for name in ("genres", "keywords", "sources"):
        copy[name] = list(row[name])
    copy["people"] = [dict(p) for p in row["people"]]
    return copy


# ---------------------------------------------------------------------------------------------- file loaders


def _known_name(path: Path) -> bool:
    return path.name in _KIND_BY_NAME or path.name.endswith("id2info.json")


def _detect_kind(path: Path) -> str:
    if not path.is_file():
        raise BadInputError(path, "file", "", "catalog file not found", "missing-file")
    if path.name.endswith("id2info.json"):
        return "redial_id2info"
    if path.name in _KIND_BY_NAME:
        return _KIND_BY_NAME[path.name]
    return _sniff(path)


def _sniff(path: Path) -> str:
    """Kind of a renamed catalog file from its CSV header or JSON shape."""
    known = "a ReDial id2info.json (id -> {name, genre, ...}), or a CSV with header " + "; ".join(
        ",".join(h) for h in _KIND_BY_HEADER
    )
    if path.suffix.lower() == ".json":
        data = read_json(path)
        if isinstance(data, dict) and all(isinstance(v, dict) and "name" in v for v in list(data.values())[:5]):
            return "redial_id2info"
    else:
        with open(path, encoding="utf-8", errors="replace") as handle:
            first = handle.readline()
        header = tuple(h.strip().lower() for h in first.strip().lstrip("\ufeff").split(","))
        if header in _KIND_BY_HEADER:
            return _KIND_BY_HEADER[header]
    raise BadInputError(path, "file", "", f"unknown catalog format: expected {known}", "unknown-format")


def _csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(read_text(path).lstrip("\ufeff")))
    missing = [name for name in required if name not in (reader.fieldnames or [])]
    if missing:
        raise BadInputError(path, "line 1", missing[0], "missing column in the header", "missing-field")
    for row in reader:
        yield reader.line_num, row


def _int_id(path: Path, line: int, row: dict[str, str], name: str) -> str:
    value = (row.get(name) or "").strip()
    if not value.isdigit():
        raise BadInputError(path, f"line {line}", name, f"expected an integer id, got {value!r}", "wrong-type")
    return value


def _read_redial_id2info(path: Path) -> Iterator[_Entry]:
    data = read_json(path)
    if not isinstance(data, dict):
        raise BadInputError(path, "file", "", f"expected an object keyed by movie id, got {type(data).__name__}")
    for movie_id, info in data.items():
        record = f"movie {movie_id}"
        if not str(movie_id).isdigit():
            raise BadInputError(path, record, "", "ReDial movie ids are integers", "wrong-type")
        if not isinstance(info, dict) or not isinstance(info.get("name"), str):
            raise BadInputError(path, record, "name", "expected an object with a string 'name'", "wrong-type")
        title, year = split_year(info["name"])
        people = [
            {"name": name, "role": role}
            for field_name, role in (("director", "director"), ("writer", "writer"), ("star", "star"))
            for name in _str_list(info.get(field_name), path, record, field_name)
        ]
        yield _Entry(
            source_id=str(movie_id),
            source="redial_id2info",
            title=title,
            year=year,
            genres=_str_list(info.get("genre"), path, record, "genre"),
            plot=info.get("plot") or "",
            people=people,
            imdb_id=_imdb(info.get("imdb_id") or ""),
        )


def _str_list(value: Any, path: Path, record: str, name: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise BadInputError(path, record, name, f"expected a list of strings, got {type(value).__name__}", "wrong-type")


def _read_redial_movies(path: Path) -> Iterator[_Entry]:
    for line, row in _csv_rows(path, ("movieId", "movieName")):
        title, year = split_year(row["movieName"] or "")
        mentions = (row.get("nbMentions") or "0").strip()
        yield _Entry(
            source_id=_int_id(path, line, row, "movieId"),
            source="redial_movies",
            title=title,
            year=year,
            mentions=int(mentions) if mentions.isdigit() else 0,
        )


def _movielens_entry(path: Path, line: int, row: dict[str, str], source: str) -> _Entry:
    title, year = split_year(row["title"] or "")
    title, aliases = split_aliases(title)
    genres = [g for g in (row.get("genres") or "").split("|") if g and g != "(no genres listed)"]
    keywords = [k for k in (row.get("keywords") or "").split("|") if k]
    return _Entry(
        source_id="ml:" + _int_id(path, line, row, "movieId"),
        source=source,
        title=title,
        year=year,
        aliases=aliases,
        genres=genres,
        keywords=keywords,
    )


def _read_movielens(path: Path) -> Iterator[_Entry]:
    for line, row in _csv_rows(path, ("movieId", "title", "genres")):
        yield _movielens_entry(path, line, row, "movielens")


def _read_movielens_keywords(path: Path) -> Iterator[_Entry]:
    for line, row in _csv_rows(path, ("movieId", "title", "genres", "keywords")):
        yield _movielens_entry(path, line, row, "movielens_keywords")


def _read_links(path: Path) -> dict[str, str]:
    links = {}
    for line, row in _csv_rows(path, ("movieId", "imdbId")):
        imdb = (row["imdbId"] or "").strip()
        if imdb and not imdb.isdigit():
            raise BadInputError(path, f"line {line}", "imdbId", f"expected digits, got {imdb!r}", "wrong-type")
        if imdb:
            links["ml:" + _int_id(path, line, row, "movieId")] = _imdb(imdb)
    return links


_LOADERS = {
    "redial_id2info": _read_redial_id2info,
    "redial_movies": _read_redial_movies,
    "movielens": _read_movielens,
    "movielens_keywords": _read_movielens_keywords,
}
