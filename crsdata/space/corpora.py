"""The corpora a Space offers: built or simulated folders and Hub datasets, read the way every consumer reads
them (``load_dataset(location, config)``), for personas (tabs 1 and 3) and browsing (tab 4)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.catalog import Catalog
from crsdata.errors import BadInputError
from crsdata.simulate.persona import build_persona
from crsdata.space.config import HUB_ID, SpaceError

PERSONA_CHOICES = 300  # personas offered per corpus in the dropdown (a random one can come from all)


@dataclass
class Corpus:
    """The dialogues of a built folder or Hub dataset (every split), its catalog and its statistics."""

    name: str  # as shown on the page: a folder's name or the Hub id
    records: list[dict[str, Any]]
    catalog: Catalog
    stats: dict[str, Any]
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {r["dialogue_id"]: r for r in self.records}


def load_corpus(name: str, location: str, revision: str | None) -> Corpus:
    """Reads ``location`` (a folder or a Hub id) the way every consumer does: ``load_dataset(location, config)``."""
    import datasets
    import polars as pl

    from crsdata.stats import dialogue_stats

    dialogues = datasets.load_dataset(location, "dialogues", revision=revision)
    records = [row for split in dialogues.values() for row in split.to_list()]
    table = pl.concat([pl.from_arrow(split.data.table) for split in dialogues.values()], how="vertical_relaxed")
    catalog = Catalog()
    try:
        items = datasets.load_dataset(location, "items", split="train", revision=revision)
    except (ValueError, FileNotFoundError):  # a corpus without an items configuration links nothing
        items = []
    catalog.add_rows(items)
    return Corpus(name, records, catalog, dialogue_stats(table))


def is_built_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / "README.md").is_file() and any(path.glob("dialogues/*.parquet"))


def default_data_folders(root: str | Path = "out") -> list[str]:
    """The built or simulated folders under ``root`` (what ``scripts/quickstart.sh`` writes), sorted."""
    root = Path(root)
    return sorted(str(p) for p in root.iterdir() if p.is_dir() and is_built_folder(p)) if root.is_dir() else []


def filter_dialogues(
    corpus: Corpus, split: str = "", end_reason: str = "", action: str = "", text: str = ""
) -> list[dict[str, Any]]:
    """Dialogues of ``corpus`` matching every filter given (empty = any); ``text`` is a case-insensitive
    substring of any turn."""
    needle = text.strip().lower()
    out = []
    for record in corpus.records:
        if split and record["split"] != split:
            continue
        if end_reason and record["outcome"]["end_reason"] != end_reason:
            continue
        if action and not any(t["action"] == action for t in record["turns"]):
            continue
        if needle and not any(needle in t["text"].lower() for t in record["turns"]):
            continue
        out.append(record)
    return out


def usable_persona(record: dict[str, Any], catalog: Catalog) -> bool:
    """Whether a record makes a persona whose labels name no target."""
    try:
        build_persona(record, catalog)
    except BadInputError:
        return False
    return True


class Corpora:
    """The configured folders (by the name the page shows), the save folder once it exists, and Hub ids, each
    loaded once per revision. ``lock`` is the Space's loading lock."""

    def __init__(self, data: list[str], save_dir: Path, public: Callable[[str], str], lock: threading.Lock) -> None:
        self.save_dir = save_dir
        self._public = public
        self._lock = lock
        self._loaded: dict[tuple[str, str], Corpus] = {}
        self._merged: Catalog | None = None
        # Local folders by the name the page shows; Hub ids stand for themselves.
        self.folders: dict[str, str] = {}
        self._hub_ids: list[str] = []
        for spec in data:
            if Path(spec).is_dir():
                self.folders.setdefault(Path(spec).resolve().name, spec)
            elif HUB_ID.match(spec):
                self._hub_ids.append(spec)
            else:
                raise BadInputError(spec, "", "--data", "neither a folder nor a Hub dataset id (org/name)", "not-found")

    def names(self) -> list[str]:
        """Configured folders, the save folder once it exists, and configured Hub ids."""
        names = list(self.folders)
        if is_built_folder(self.save_dir) and self.save_dir.resolve().name not in names:
            names.append(self.save_dir.resolve().name)
        return names + [h for h in self._hub_ids if h not in names]

    def get(self, name: str, revision: str = "") -> Corpus:
        """A corpus by the name the page shows, or any Hub dataset id (optionally at a revision)."""
        name, revision = name.strip(), revision.strip()
        if not name:
            raise SpaceError("Choose a dataset first.")
        if name in self.folders:
            location, revision = self.folders[name], ""
        elif name == self.save_dir.resolve().name and is_built_folder(self.save_dir):
            location, revision = str(self.save_dir), ""
        elif HUB_ID.match(name):
            location = name
        else:
            raise SpaceError(
                f"Unknown dataset {name!r}: choose one of the list or give a Hub dataset id such as org/name."
            )
        key = (name, revision)
        with self._lock:
            if key not in self._loaded:
                try:
                    self._loaded[key] = load_corpus(name, location, revision or None)
                except Exception as exc:  # datasets raises many types; each means "cannot open this"
                    at = f" at revision {revision}" if revision else ""
                    raise SpaceError(self._public(f"Cannot open {name}{at}: {type(exc).__name__}: {exc}")) from None
            return self._loaded[key]

    def forget_saved(self) -> None:
        """Drops the loaded save folder, so that the next read sees what was just saved."""
        self._loaded.pop((self.save_dir.resolve().name, ""), None)

    def merged_catalog(self) -> Catalog:
        """Every configured folder's items, for linking titles outside a corpus (tab 2, written personas)."""
        if self._merged is None:
            merged = Catalog()
            for name in self.folders:
                merged.add_rows(self.get(name).catalog.rows())
            self._merged = merged
        return self._merged

    @staticmethod
    def persona_choices(corpus: Corpus, limit: int = PERSONA_CHOICES) -> list[str]:
        """Dialogue ids of records with a usable persona (their labels name no target)."""
        out = []
        for record in corpus.records:
            if record.get("target_items") and usable_persona(record, corpus.catalog):
                out.append(record["dialogue_id"])
                if len(out) >= limit:
                    break
        return out

    @staticmethod
    def random_persona(corpus: Corpus, rng: random.Random | None = None) -> str:
        rng = rng or random.Random()
        candidates = [r for r in corpus.records if r.get("target_items")]
        rng.shuffle(candidates)
        for record in candidates[:200]:
            if usable_persona(record, corpus.catalog):
                return record["dialogue_id"]
        raise SpaceError(f"{corpus.name} has no record with a usable persona (target items and some history).")
