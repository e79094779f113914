"""``crsdata.json``: what a folder crsdata writes is (dataset, model or Space) and which version it holds.

Below :mod:`crsdata.publish` (which reads it to publish a folder) and the code that writes folders (training, the
metric export), so that writing a folder never imports publishing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METADATA_FILE = "crsdata.json"

VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+([-.+][0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class Kind:
    """How one kind of folder is published."""

    repo_type: str
    version_key: str
    # Remote files a new upload replaces: matching files that the new folder does not hold are deleted
    # (``.gitattributes`` never is). Patterns use the Hub's matching: fnmatch, where ``*`` also crosses ``/``.
    delete_patterns: tuple[str, ...]
    create_repo_options: tuple[tuple[str, str], ...] = ()


KINDS: dict[str, Kind] = {
    # The data (every parquet shard of every config), the card, its plots and the build metadata. Other files
    # someone added to the repository (a LICENSE, say) stay.
    "dataset": Kind("dataset", "dataset_version", ("*.parquet", "*.png", "README.md", METADATA_FILE)),
    # Everything: from_pretrained reads whatever is there (a stale shard index, tokenizer or adapter file would
    # mix two versions), and a Space runs whatever is there.
    "model": Kind("model", "version", ("*",)),
    "space": Kind("space", "version", ("*",), create_repo_options=(("space_sdk", "gradio"),)),
}


class PublishError(RuntimeError):
    pass


def read_folder_metadata(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        raise PublishError(f"{folder}: no {METADATA_FILE}; not a folder written by crsdata")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PublishError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(metadata, dict):
        raise PublishError(f"{path}: must hold a JSON object")
    return metadata


def write_folder_metadata(folder: str | Path, kind: str, version: str, **fields: Any) -> Path:
    """Writes ``crsdata.json`` for a model or Space folder: ``{"kind", "version", "crsdata_version", **fields}``.

    Training and export code calls this next to writing the card, so that ``crsdata publish`` knows what the
    folder is and which tag it may get.
    """
    from crsdata import __version__
    from crsdata.export import write_atomic

    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of {sorted(KINDS)}")
    if not VERSION_PATTERN.match(version):
        raise ValueError(f"version {version!r} is not of the form X.Y.Z")
    metadata = {"kind": kind, KINDS[kind].version_key: version, "crsdata_version": __version__, **fields}
    path = Path(folder) / METADATA_FILE
    write_atomic(path, json.dumps(metadata, indent=2, ensure_ascii=False) + "\n")
    return path
