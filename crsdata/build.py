"""The contract between a source builder and the exporter.

A builder (one module per source in the top-level ``builders/`` package, registered in its table) reads the
source files and returns a :class:`BuildResult`: dialogues per split in the shared schema, the catalog items
they refer to, and the bookkeeping that the card reports (records read, skipped, link rate, input hashes).
The exporter turns any ``BuildResult`` into a Hub-layout folder, so simulated corpora use the same path.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from crsdata.errors import BadInputError, SkipLog

# Words of a file name -> split (Hugging Face's names).
SPLIT_WORDS: dict[str, str] = {
    "train": "train",
    "training": "train",
    "valid": "validation",
    "validation": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}
# How many examples of dropped duplicates a build note names.
MAX_DUPLICATE_EXAMPLES = 5


@dataclass
class LinkStats:
    """How many item mentions were linked to a catalog id."""

    mentions: int = 0
    linked: int = 0

    def add(self, linked: bool) -> None:
        self.mentions += 1
        self.linked += int(linked)

    @property
    def rate(self) -> float | None:
        return self.linked / self.mentions if self.mentions else None

    def as_dict(self) -> dict[str, Any]:
        return {"mentions": self.mentions, "linked": self.linked, "rate": self.rate}


@dataclass
class InputFile:
    path: str  # relative to the --input path the user gave
    sha256: str
    records: int  # records read from this file, bad ones included


@dataclass
class BuildResult:
    source: str
    splits: dict[str, list[dict[str, Any]]]
    items: list[dict[str, Any]] = field(default_factory=list)
    skipped: SkipLog = field(default_factory=SkipLog)
    inputs: list[InputFile] = field(default_factory=list)
    link_stats: LinkStats = field(default_factory=LinkStats)
    # Records read but deliberately not emitted for a reason other than bad input (for example the same
    # dialogue id in two input files): reason -> count. Reported in the card like skips.
    dropped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Filled by the builder from its class attributes, read by the card template.
    info: dict[str, str] = field(default_factory=dict)

    @property
    def records_read(self) -> int:
        return sum(f.records for f in self.inputs)

    @property
    def records_kept(self) -> int:
        return sum(len(rows) for rows in self.splits.values())

    def accounting(self) -> dict[str, Any]:
        """Read = kept + skipped + dropped, stated so the card can show it adds up."""
        dropped = sum(self.dropped.values())
        return {
            "read": self.records_read,
            "kept": self.records_kept,
            "skipped": self.skipped.total,
            "dropped": dropped,
            "balanced": self.records_read == self.records_kept + self.skipped.total + dropped,
        }


class Builder:
    """Base class of the source builders: metadata for the card and one :meth:`build` method."""

    name: ClassVar[str]
    pretty_name: ClassVar[str] = ""
    description: ClassVar[str]
    license: ClassVar[str]
    # The Hub's licence identifier for the card's YAML (cc-by-4.0, apache-2.0, mit, other).
    license_id: ClassVar[str] = "other"
    citation: ClassVar[str]
    homepage: ClassVar[str]
    # What ``--input`` should point at, shown in ``crsdata build --help``.
    input_help: ClassVar[str]

    def build(self, inputs: list[Path], *, catalogs: list[Path], skip: SkipLog) -> BuildResult:
        raise NotImplementedError

    def info(self) -> dict[str, str]:
        return {
            "name": self.name,
            "pretty_name": self.pretty_name or f"{self.name} (crsdata)",
            "license_id": self.license_id,
            "description": self.description,
            "license": self.license,
            "citation": self.citation,
            "homepage": self.homepage,
        }


# ---------------------------------------------------------------------------------------------------------
# Helpers shared by the builders: which split a file belongs to, which files an --input names.


def resolve_split(name: str) -> str:
    """A split name or alias (``dev``, ``valid``) -> train, validation or test.

    Anything else raises :class:`BadInputError` (a ``ValueError``), which the CLI prints as one line.
    """
    split = SPLIT_WORDS.get(name.strip().lower())
    if split is None:
        expected = ", ".join(sorted(SPLIT_WORDS))
        raise BadInputError("--split", repr(name), "", f"unknown split, expected one of {expected}", "bad-option")
    return split


def split_from_name(path: Path, override: str | None = None) -> str:
    """The split of an input file: ``override`` when given, else the one split word in the file name."""
    if override:
        return resolve_split(override)
    words = {SPLIT_WORDS[w] for w in re.split(r"[^a-z]+", path.stem.lower()) if w in SPLIT_WORDS}
    if len(words) != 1:
        found = f"it names {', '.join(sorted(words))}" if words else "it names none"
        raise BadInputError(
            path,
            "file name",
            "",
            f"cannot tell the split from the file name ({found}; expected one of train, valid/dev, test); "
            "rename the file or pass --split",
            "no-split",
        )
    return words.pop()


def input_files(inputs: list[Path], pattern: str) -> Iterator[tuple[Path, str]]:
    """``(file, path relative to its --input)`` for files and for the ``pattern`` files directly in folders."""
    for given in inputs:
        given = Path(given)
        if given.is_dir():
            found = sorted(p for p in given.glob(pattern) if p.is_file())
            if not found:
                raise BadInputError(given, "folder", "", f"no {pattern} file in this folder", "missing-file")
            for path in found:
                yield path, path.relative_to(given).as_posix()
        elif given.is_file():
            yield given, given.name
        else:
            raise BadInputError(given, "path", "", "no such file or folder", "missing-file")
