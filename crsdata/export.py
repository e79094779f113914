"""Writes a :class:`~crsdata.build.BuildResult` as a Hub-layout dataset folder.

The folder is exactly what ``push_to_hub`` would put in a repository, so ``load_dataset(folder, config)``
tests what users will get from the Hub:

    README.md                                  card; YAML ``configs`` + ``dataset_info`` from one source
    dialogues/<split>-00000-of-0000N.parquet   one config per table, shards named as push_to_hub names them
    items/train-00000-of-00001.parquet         the item catalog, when the build has one
    turns_per_dialogue.png                     the plot the card shows
    crsdata.json                               build metadata: version, inputs, accounting, statistics

Every file is written to a temporary name and renamed, so a killed export never leaves a half file that
looks complete.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from datasets import Dataset, Features, SplitDict, SplitInfo
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData

from crsdata.build import BuildResult
from crsdata.fileio import write_atomic, write_atomic_with, write_json_atomic
from crsdata.schema import DIALOGUE_FEATURES, ITEM_FEATURES, field_docs
from crsdata.stats import dialogue_stats, read_dialogues

SPLIT_ORDER = ("train", "validation", "test")
DEFAULT_SHARD_ROWS = 20_000
METADATA_FILE = "crsdata.json"
PLOT_FILE = "turns_per_dialogue.png"


def ordered_splits(names: list[str] | set[str] | dict[str, Any]) -> list[str]:
    known = [s for s in SPLIT_ORDER if s in names]
    return known + sorted(s for s in names if s not in SPLIT_ORDER)


def _write_config(
    out: Path, config: str, splits: dict[str, list[dict[str, Any]]], features: Features, shard_rows: int
) -> dict[str, SplitInfo]:
    """Writes one config's shards (replacing any old ones) and returns the split infos."""
    folder = out / config
    if folder.exists():
        for old in folder.glob("*.parquet"):
            old.unlink()
    infos: dict[str, SplitInfo] = {}
    for split in ordered_splits(splits):
        rows = splits[split]
        table = Dataset.from_list(rows, features=features).data.table
        num_shards = max(1, math.ceil(len(rows) / shard_rows))
        for index in range(num_shards):
            shard = table.slice(index * shard_rows, shard_rows)
            path = folder / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"
            write_atomic_with(path, lambda tmp, shard=shard: pq.write_table(shard, tmp))
        infos[split] = SplitInfo(name=split, num_bytes=table.nbytes, num_examples=len(rows))
    return infos


def card_metadata(
    result: BuildResult, config_splits: dict[str, dict[str, SplitInfo]], version: str, pretty_name: str
) -> DatasetCardData:
    """The README's YAML: ``configs`` and ``dataset_info`` both derived from the same split infos, which is
    what keeps ``load_dataset`` from raising ``UnexpectedSplitsError``."""
    features = {"dialogues": DIALOGUE_FEATURES, "items": ITEM_FEATURES}
    n = sum(info.num_examples for info in config_splits["dialogues"].values())
    size = "n<1K" if n < 1_000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "100K<n<1M"
    card = DatasetCardData(
        pretty_name=pretty_name,
        license=result.info.get("license_id", "other"),
        language=sorted({row["language"] for rows in result.splits.values() for row in rows}) or ["en"],
        task_categories=["text-generation"],
        tags=["conversational-recommendation", "crs", "dialogue", "crsdata", result.source],
        size_categories=[size],
    )
    infos, configs = {}, {}
    for config, splits in config_splits.items():
        infos[config] = DatasetInfo(
            features=features[config],
            splits=SplitDict({name: info for name, info in splits.items()}),
            dataset_size=sum(info.num_bytes for info in splits.values()),
            version=version,
        )
        configs[config] = {"data_files": [{"split": s, "path": f"{config}/{s}-*"} for s in splits]}
    configs["dialogues"]["default"] = True
    DatasetInfosDict(infos).to_dataset_card_data(card)
    MetadataConfigs(configs).to_dataset_card_data(card)
    return card


def plot_turn_counts(turn_counts: list[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    top = max(turn_counts, default=1)
    ax.hist(turn_counts, bins=range(0, top + 2), color="#3b6ea8", edgecolor="white")
    ax.set_xlabel("turns per dialogue")
    ax.set_ylabel("dialogues")
    ax.set_title(title)
    fig.tight_layout()
    try:
        write_atomic_with(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def render_card(card_data: DatasetCardData, context: dict[str, Any], template: str = "dataset") -> str:
    import jinja2

    from crsdata.cards import template_path

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    body = env.from_string(template_path(template).read_text(encoding="utf-8")).render(**context)
    return f"---\n{card_data.to_yaml()}\n---\n\n{body}"


def export_folder(
    result: BuildResult,
    out: str | Path,
    *,
    version: str = "0.1.0",
    pretty_name: str | None = None,
    card_sections: dict[str, str] | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    repo_hint: str | None = None,
) -> Path:
    """Writes ``result`` to ``out`` as a Hub-layout folder and returns the folder.

    ``card_sections`` adds markdown sections to the card (title -> body), for example a simulation's
    outcome counts; ``repo_hint`` is the repo id shown in the card's loading example.
    """
    from crsdata import __version__

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not any(result.splits.values()):
        raise ValueError(f"{out}: nothing to export, the build produced no dialogues")
    config_splits = {"dialogues": _write_config(out, "dialogues", result.splits, DIALOGUE_FEATURES, shard_rows)}
    if result.items:
        config_splits["items"] = _write_config(out, "items", {"train": result.items}, ITEM_FEATURES, shard_rows)

    stats = dialogue_stats(read_dialogues(out))
    pretty = pretty_name or result.info.get("pretty_name") or f"{result.source} (crsdata)"
    plot_turn_counts(stats["turns_per_dialogue"], out / PLOT_FILE, pretty)

    metadata = {
        "dataset_version": version,
        "crsdata_version": __version__,
        "source": result.source,
        "builder": result.info,
        "inputs": [vars(f) for f in result.inputs],
        "accounting": result.accounting(),
        "skipped": result.skipped.as_dict(),
        "dropped": dict(result.dropped),
        "link_stats": result.link_stats.as_dict(),
        "notes": list(result.notes),
        "stats": {k: v for k, v in stats.items() if k != "turns_per_dialogue"},
    }
    write_json_atomic(out / METADATA_FILE, metadata)

    card_data = card_metadata(result, config_splits, version, pretty)
    context = {
        "pretty_name": pretty,
        "description": result.info.get("description", ""),
        "crsdata_version": __version__,
        "builder": result.info.get("name", result.source),
        "version": version,
        "repo_hint": repo_hint or f"ORG/{result.source}-crsdata",
        "has_items": bool(result.items),
        "n_items": len(result.items),
        "homepage": result.info.get("homepage", ""),
        "license": result.info.get("license", "see source"),
        "citation": result.info.get("citation", "").strip(),
        "notes": list(result.notes),
        "stats": stats,
        "plot_file": PLOT_FILE,
        "accounting": metadata["accounting"],
        "skipped": metadata["skipped"],
        "dropped": metadata["dropped"],
        "sections": card_sections or {},
        "fields": field_docs("dialogue"),
        "item_fields": field_docs("item"),
        "inputs": result.inputs,
    }
    write_atomic(out / "README.md", render_card(card_data, context))
    return out


def read_metadata(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / METADATA_FILE
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {METADATA_FILE}; not a folder written by crsdata")
    return json.loads(path.read_text(encoding="utf-8"))
