"""Titles: the one normalisation that the catalog, the leak guard, the PEARL builder and the metrics share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crsdata.catalog import Catalog
from crsdata.simulate.leak import contains_title, normalize_text, scrub_titles
from crsdata.titles import fold_text, item_key, normalize_title, split_title, split_year, title_key

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not (DATA / "redial").is_dir(), reason=f"shared data not found at {DATA}")


def test_fold_text() -> None:
    assert fold_text("Schindler's List  (1993)!") == "schindlers list 1993"
    assert fold_text("Amélie & Co.") == "amelie and co"
    assert fold_text("SPIDER-MAN: Into the Spider-Verse") == "spider man into the spider verse"
    assert fold_text("Straße") == "strasse"  # case folding, not lower-casing
    assert fold_text("") == ""


def test_every_apostrophe_joins_and_decomposed_accents_fold() -> None:
    # The acute accent used as an apostrophe joins like the others (NFKD would have made it a space).
    assert fold_text("I didn´t see it") == fold_text("I didn't see it") == fold_text("I didn’t see it")
    assert fold_text("Ame\u0301lie") == fold_text("Amélie") == "amelie"  # "e" + combining acute
    assert normalize_title("Ame\u0301lie") == normalize_title("Amélie")


def test_split_title_and_year() -> None:
    assert split_title("Shining, The (1980)") == ("The Shining", 1980)
    assert split_title("Vie en rose, La (2007)") == ("La Vie en rose", 2007)  # the catalog's article list
    assert split_year("The Office (2005–2013)") == ("The Office", 2005)
    assert split_year("Heat") == ("Heat", None)


def test_item_key_ignores_year_case_articles_and_punctuation() -> None:
    """Unlinked mentions of one film compare equal however the dialogue writes them; ids win over titles.

    The metrics used to keep the year and the punctuation ("heat (1995)" against "heat"), so a generated
    dialogue that named a film once with its year and once without had two items; the persona key and the
    replay runner already compared titles without the year. One key now serves all of them.
    """
    same = ["The Shining (1980)", "Shining, The", "the  SHINING!", "The Shining"]
    assert {title_key(t) for t in same} == {"shining"}
    assert {item_key({"item_id": "", "title": t}) for t in same} == {"title:shining"}
    assert item_key({"item_id": "202190", "title": "anything"}) == "202190"
    assert item_key("202190") == "202190"  # a plain string is an id
    assert item_key({"item_id": "", "title": ""}) == ""
    assert title_key("Spider-Man (2002)") == title_key("spider man")
    assert title_key("Toy Story 3") != title_key("Toy Story 4")


def test_leak_guard_and_scrubbing_agree_on_folded_words() -> None:
    # What the scrubber removes is exactly what the guard would find, also for words that fold to two ("1½").
    title = "The Lion King 1½ (2004)"
    text = "Maybe The Lion King 1½ (2004)? Or not."
    assert contains_title(text, title)
    scrubbed = scrub_titles(text, [title])
    assert scrubbed == "Maybe that movie? Or not." and not contains_title(scrubbed, title)
    assert normalize_text("<movie_title>Heat</movie_title>") == "heat"


@needs_data
def test_catalog_keys_of_the_real_titles() -> None:
    """Over ReDial's 6,583 titles every film with a name has a key and links back to a row of its title."""
    info = json.loads((DATA / "redial" / "redial__id2info.json").read_text(encoding="utf-8"))
    catalog = Catalog.from_paths([DATA / "redial" / "redial__id2info.json"])
    named = {movie_id: v["name"] for movie_id, v in info.items() if split_year(v["name"])[0]}
    assert len(info) - len(named) == 2  # two entries are a bare year, "(2015)" and "(2007)"
    assert all(normalize_title(split_year(name)[0]) for name in named.values())
    # ReDial lists some films twice, and a title without its year links to the most mentioned film of that name:
    # either way the row found has the same key.
    assert all(title_key(info[catalog.link(name)]["name"]) == title_key(name) for name in named.values())
    assert catalog.link("Naked Gun 33⅓: The Final Insult (1994)") is not None
