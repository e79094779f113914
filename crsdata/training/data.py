"""Training data comes from built crsdata folders through the one schema, never from raw release files.

:func:`load_data_folders` checks each ``--data`` folder (written by ``crsdata build`` or ``crsdata simulate``),
and a :class:`DataFolder` hands out the records of one split. The folder's version and a content fingerprint
(SHA-256 over its parquet shards) identify exactly what a model was trained on; the model card lists both.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.errors import BadInputError


@dataclass
class DataFolder:
    path: Path
    source: str  # the builder or simulation that wrote it ("redial", "interplay-sim", ...)
    version: str
    pretty_name: str
    license_id: str
    splits: dict[str, int]  # split -> dialogues
    fingerprint: str  # sha256 over the dialogue and item shards
    _loaded: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def simulated(self) -> bool:
        return self.source.endswith("-sim")

    def has_split(self, split: str) -> bool:
        return split in self.splits

    def records(self, split: str) -> list[dict[str, Any]]:
        """Every dialogue of ``split`` as a schema record; a missing split is bad input naming the folder."""
        if split not in self.splits:
            raise BadInputError(
                self.path,
                "",
                "split",
                f"no split {split!r} in this data folder (it has {', '.join(self.splits) or 'none'})",
                "missing-split",
            )
        if split not in self._loaded:
            import datasets

            self._loaded[split] = datasets.load_dataset(str(self.path), "dialogues", split=split).to_list()
        return self._loaded[split]

    def items(self) -> list[dict[str, Any]]:
        """The folder's ``items`` configuration (its catalog); empty when it has none."""
        if not any(self.path.glob("items/*.parquet")):
            return []
        import datasets

        return datasets.load_dataset(str(self.path), "items", split="train").to_list()

    def reference(self) -> dict[str, Any]:
        """What a model card says about this folder."""
        return {
            "name": self.source,
            "pretty_name": self.pretty_name,
            "folder": self.path.name,
            "version": self.version,
            "revision": f"v{self.version}",
            "sha256": self.fingerprint,
            "splits": dict(self.splits),
            "license": self.license_id,
            "simulated": self.simulated,
        }


def _fingerprint(folder: Path) -> str:
    from crsdata.fileio import sha256_file

    digest = hashlib.sha256()
    for path in sorted([*folder.glob("dialogues/*.parquet"), *folder.glob("items/*.parquet")]):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def load_data_folder(path: str | Path) -> DataFolder:
    from crsdata.export import read_metadata

    folder = Path(path)
    if not folder.is_dir():
        raise BadInputError(folder, "", "", "no such data folder (build one with `crsdata build`)", "not-found")
    try:
        metadata = read_metadata(folder)
    except (FileNotFoundError, ValueError):
        metadata = None
    if metadata is None or "dataset_version" not in metadata or not any(folder.glob("dialogues/*.parquet")):
        raise BadInputError(
            folder,
            "",
            "",
            "not a dataset folder written by crsdata (expected crsdata.json and dialogues/*.parquet from "
            "`crsdata build` or `crsdata simulate`)",
            "not-a-dataset",
        )
    builder = metadata.get("builder") or {}
    splits = (metadata.get("stats") or {}).get("splits") or {}
    return DataFolder(
        path=folder,
        source=str(metadata.get("source", "")),
        version=str(metadata["dataset_version"]),
        pretty_name=str(builder.get("pretty_name", metadata.get("source", ""))),
        license_id=str(builder.get("license_id", "")),
        splits={str(k): int(v) for k, v in splits.items()},
        fingerprint=_fingerprint(folder),
    )


def load_data_folders(paths: list[str] | list[Path], *, require_split: str | None = None) -> list[DataFolder]:
    """The ``--data`` folders, checked; with ``require_split`` every folder must have that split."""
    if not paths:
        raise BadInputError("", "", "--data", "give at least one built dataset folder", "bad-option")
    folders = [load_data_folder(p) for p in paths]
    if require_split is not None:
        for folder in folders:
            if not folder.has_split(require_split):
                folder.records(require_split)  # raises the missing-split error naming the folder
    return folders
