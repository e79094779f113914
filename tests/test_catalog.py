"""The item catalog: loading and merging catalog files, title normalisation, year-aware exact and fuzzy linking."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from crsdata.catalog import Catalog, display_title, normalize_title, split_year
from crsdata.errors import BadInputError
from crsdata.schema import ITEM_FEATURES

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "redial").is_dir(), reason=f"shared data not found at {DATA}")

ID2INFO = {
    "100": {
        "name": "The Thing (1951)",
        "genre": ["horror"],
        "plot": "Arctic.",
        "director": ["Christian Nyby"],
        "writer": [],
        "star": ["Kenneth Tobey"],
        "imdb_id": "tt0044121",
    },
    "200": {
        "name": "The Thing  (1982)",
        "genre": ["horror", "sci-fi"],
        "plot": "Antarctica.",
        "director": ["John Carpenter"],
        "writer": ["Bill Lancaster"],
        "star": ["Kurt Russell"],
        "imdb_id": "tt0084787",
    },
    "300": {
        "name": "The Shining (1980)",
        "genre": ["horror"],
        "plot": "A hotel.",
        "director": ["Stanley Kubrick"],
        "writer": [],
        "star": ["Jack Nicholson"],
        "imdb_id": "tt0081505",
    },
    "400": {
        "name": "Toy Story 3 (2010)",
        "genre": ["animation"],
        "plot": "",
        "director": [],
        "writer": [],
        "star": [],
        "imdb_id": "",
    },
}
MOVIES_WITH_MENTIONS = "movieId,movieName,nbMentions\n100,The Thing (1951),3\n200,The Thing  (1982),40\n"
MOVIELENS = (
    "movieId,title,genres\n"
    '1,"Shining, The (1980)",Horror\n'  # same film as ReDial 300 (title and year)
    "2,The Thing (2011),Horror|Sci-Fi\n"  # a third "The Thing": another film, another year
    '3,"Carpenter\'s Thing, A (1982)",Horror\n'  # other title, same imdb id as ReDial 200 (via links.csv)
    '4,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Fantasy\n'
)
LINKS = "movieId,imdbId,tmdbId\n1,0081505,694\n2,0905372,60935\n3,0084787,1091\n4,0112682,902\n"


@pytest.fixture()
def catalog_files(tmp_path: Path) -> list[Path]:
    files = {
        "redial__id2info.json": json.dumps(ID2INFO),
        "movies_with_mentions.csv": MOVIES_WITH_MENTIONS,
        "movies.csv": MOVIELENS,
        "links.csv": LINKS,
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    # Order on purpose MovieLens first: ReDial ids must still win.
    return [
        tmp_path / "movies.csv",
        tmp_path / "links.csv",
        tmp_path / "redial__id2info.json",
        tmp_path / "movies_with_mentions.csv",
    ]


def test_title_normalisation() -> None:
    assert split_year("The Shining  (1980)") == ("The Shining", 1980)
    assert split_year("Back to the Future") == ("Back to the Future", None)
    assert split_year("The Office (2005–2013)") == ("The Office", 2005)
    assert display_title("Shining, The") == "The Shining"
    assert display_title("Auberge espagnole, L'") == "L'Auberge espagnole"
    key = normalize_title("The Shining")
    assert key == "shining"
    assert normalize_title("Shining, The") == normalize_title("the  SHINING!") == key
    assert normalize_title("We're the Millers") == "were the millers"
    assert normalize_title("Frozen II") == normalize_title("Frozen 2") == "frozen 2"
    assert normalize_title("Amélie") == "amelie"
    assert normalize_title("Die Hard") == "die hard"  # German articles are not dropped from the front


def test_merge_sources_and_ids(catalog_files: list[Path]) -> None:
    catalog = Catalog.from_paths(catalog_files)
    # 4 ReDial films + "The Thing (2011)" + the City of Lost Children; ml:1 and ml:3 merged into ReDial rows.
    assert len(catalog) == 6
    shining = catalog.get("300")
    assert shining["title"] == "The Shining" and shining["year"] == 1980
    assert shining["sources"] == ["redial_id2info", "movielens"]
    assert catalog.get("ml:1") == shining  # merged by normalised title + year, ReDial id kept
    assert catalog.canonical_id("ml:3") == "200"  # merged by IMDb id although the titles differ
    assert catalog.get("200")["sources"] == ["redial_id2info", "redial_movies", "movielens"]
    assert catalog.get("ml:2")["item_id"] == "ml:2"  # a film only MovieLens has keeps a prefixed id
    assert catalog.get("ml:2")["imdb_id"] == "tt0905372"
    assert catalog.get("200")["people"][0] == {"name": "John Carpenter", "role": "director"}
    assert catalog.get("nope") is None
    for row in catalog.rows():
        assert set(row) == set(ITEM_FEATURES)
    assert [r["item_id"] for r in catalog.rows(["ml:1", "300", "missing", "100"])] == ["300", "100"]


def test_year_disambiguates_same_named_films(catalog_files: list[Path]) -> None:
    catalog = Catalog.from_paths(catalog_files)
    assert catalog.link("The Thing (1951)") == "100"
    assert catalog.link("The Thing (1982)") == "200"
    assert catalog.link("Thing, The (2011)") == "ml:2"
    assert catalog.link("The Thing", year=1982) == "200"
    assert catalog.link("The Thing (1983)") == "200"  # within the one-year window
    assert catalog.link("The Thing (1995)") is None  # a year far from every "The Thing"
    # Without a year, the film ReDial users mentioned most.
    assert catalog.link("the thing") == "200"


def test_fuzzy_match_and_garbage(catalog_files: list[Path]) -> None:
    catalog = Catalog.from_paths(catalog_files)
    assert catalog.link("The Shinning (1980)") == "300"  # misspelt
    assert catalog.link("Shinning") == "300"  # misspelt, no year
    assert catalog.link("Cite des enfants perdus, La (1995)") == "ml:4"  # MovieLens alias title
    assert catalog.link("Toy Story 4 (2010)") is None  # one digit from "Toy Story 3": another film
    assert catalog.link("The Shining (1950)") is None  # right title, year far off
    assert catalog.link("xqzv wplkj grrmf") is None
    assert catalog.link("") is None
    assert catalog.link("(1980)") is None


def test_add_merges_or_creates(catalog_files: list[Path]) -> None:
    catalog = Catalog.from_paths(catalog_files)
    before = len(catalog)
    # A ReDial id unknown to the catalogs, for a film MovieLens lists: merged, and the ReDial id becomes the id.
    assert catalog.add("999", "Thing, The (2011)", source="redial_mentions") == "999"
    assert len(catalog) == before and catalog.get("ml:2")["item_id"] == "999"
    assert catalog.link("The Thing (2011)") == "999"
    # Another ReDial id for a film that already has one stays a separate row (ReDial lists some films twice).
    assert catalog.add("998", "The Shining (1980)", source="redial_mentions") == "998"
    assert len(catalog) == before + 1


def test_unknown_formats_are_named(tmp_path: Path) -> None:
    odd = tmp_path / "ratings.csv"
    odd.write_text("userId,movieId,rating\n1,1,4.0\n", encoding="utf-8")
    with pytest.raises(BadInputError) as err:
        Catalog.from_paths([odd])
    assert str(odd) in str(err.value) and "unknown catalog format" in str(err.value)
    renamed = tmp_path / "my_movies.csv"
    renamed.write_text("movieId,title,genres\n7,Heat (1995),Crime\n", encoding="utf-8")
    assert Catalog.from_paths([renamed]).link("Heat (1995)") == "ml:7"  # recognised by its header
    bad_row = tmp_path / "movies.csv"
    bad_row.write_text("movieId,title,genres\nx7,Heat (1995),Crime\n", encoding="utf-8")
    with pytest.raises(BadInputError) as err:
        Catalog.from_paths([bad_row])
    assert "line 2" in str(err.value) and "'movieId'" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="no catalog file"):
        Catalog.from_paths([empty])


@needs_data
def test_real_catalogs_merge_and_link_fast() -> None:
    paths = Catalog.default_paths(DATA)
    assert len(paths) == 5
    started = time.perf_counter()
    catalog = Catalog.from_paths(paths)
    loaded = time.perf_counter() - started
    # ReDial's Toy Story and MovieLens movie 1 are one film (same IMDb id through links.csv).
    toy_story = catalog.get("ml:1")
    assert toy_story["item_id"] == "80067" and toy_story["imdb_id"] == "tt0114709"
    assert {"redial_id2info", "movielens", "movielens_keywords"} <= set(toy_story["sources"])
    assert catalog.link("The Shining  (1980)") == "202190"
    with open(DATA / "movielens-latest-small" / "movies.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))[:3000]
    titles = [row["title"] for row in rows]
    started = time.perf_counter()
    linked = [catalog.link(title) for title in titles]
    elapsed = time.perf_counter() - started
    own = sum(item == catalog.canonical_id("ml:" + row["movieId"]) for item, row in zip(linked, rows, strict=True))
    print(
        f"catalog: {len(catalog)} items loaded in {loaded:.2f}s; {len(titles)} titles linked in {elapsed:.3f}s, "
        f"{own} to their own row"
    )
    assert None not in linked  # every MovieLens title ("Seven (a.k.a. Se7en) (1995)" included) links
    # The others link to a same-named film of the same year that ReDial lists twice (the most mentioned id wins)
    # or whose IMDb ids disagree between catalogs (kept apart: the two "Emma (1996)" are different films).
    assert own >= 0.95 * len(titles)
    # Generous bound for a shared 2-core machine; exact matches take microseconds each.
    assert elapsed < 2.0
    started = time.perf_counter()
    misspelt = [catalog.link(title[:-7] + "x") for title in titles[:300]]  # year cut, one letter added: fuzzy
    fuzzy = time.perf_counter() - started
    print(f"catalog: 300 year-less fuzzy links in {fuzzy:.3f}s, {sum(m is not None for m in misspelt)} matched")
    assert fuzzy < 3.0


@needs_data
def test_load_catalog_from_files_and_built_folders(tmp_path: Path) -> None:
    """One loader for catalog files and built folders (their `items` config), as simulate and PEARL use it."""
    from crsdata.build import BuildResult
    from crsdata.catalog import is_built_folder, load_catalog, read_items
    from crsdata.export import export_folder
    from crsdata.schema import item_ref, new_dialogue, new_turn

    info = DATA / "redial" / "redial__id2info.json"
    files_only = load_catalog([info])
    shining = files_only.get(files_only.link("The Shining (1980)"))
    # A built folder whose items are a ReDial row and a film no catalog file has.
    own = {**shining, "sources": ["redial_id2info"]}
    new = {**own, "item_id": "x:1", "title": "A Film Nobody Made", "year": 2031, "imdb_id": "", "sources": ["mine"]}
    turns = [new_turn(0, "recommender", "The Shining", items=[item_ref(own["item_id"], "The Shining")])]
    built = tmp_path / "built"
    result = BuildResult("redial", {"test": [new_dialogue("d", "redial", "test", turns)]}, items=[own, new])
    export_folder(result, built)
    assert is_built_folder(built) and not is_built_folder(info.parent)
    assert [row["item_id"] for row in read_items(built)] == [own["item_id"], "x:1"]
    assert read_items(tmp_path) is None

    merged = load_catalog([info, built])
    assert len(merged) == len(files_only) + 1  # the ReDial row merged into its own id, the new film added
    assert merged.link("A Film Nobody Made (2031)") == "x:1"
    assert merged.get(own["item_id"])["sources"] == ["redial_id2info"]
    by_default = load_catalog([], default_folder=built)  # a simulation's source folder, when no --catalog
    assert len(by_default) == 2 and by_default.link("The Shining") == own["item_id"]
    assert load_catalog([]) is None and load_catalog([], default_folder=tmp_path / "nothing") is None
