"""Corpus statistics, computed with polars from the parquet files of a Hub-layout folder.

The exporter and ``crsdata info`` both call :func:`dialogue_stats` on the written shards, so the card and the
command line can never disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

WORD = r"\S+"


def read_dialogues(folder: str | Path, config: str = "dialogues") -> pl.DataFrame:
    files = sorted((Path(folder) / config).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"{folder}: no parquet shards under {config}/ (is this a crsdata dataset folder?)")
    return pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")


def _distribution(series: pl.Series) -> dict[str, int]:
    counts = series.value_counts(sort=True)
    name = series.name
    return {str(row[name]): int(row["count"]) for row in counts.iter_rows(named=True)}


def dialogue_stats(dialogues: pl.DataFrame) -> dict[str, Any]:
    """Counts, means, link rate and label distributions of a dialogue table (schema columns)."""
    if dialogues.height == 0:
        return {"dialogues": 0, "turns": 0, "splits": {}}
    turns = dialogues.select("split", "dialogue_id", "turns").explode("turns").drop_nulls("turns").unnest("turns")
    turns = turns.with_columns(pl.col("text").str.count_matches(WORD).alias("words"))
    mentions = turns.select(pl.col("items")).explode("items").drop_nulls("items").unnest("items")
    intents = turns.select(pl.col("intents")).explode("intents").drop_nulls("intents")["intents"]
    turn_counts = dialogues["turns"].list.len()
    splits = {
        row["split"]: int(row["len"]) for row in dialogues.group_by("split").len().sort("split").iter_rows(named=True)
    }
    linked = int((mentions["item_id"] != "").sum()) if mentions.height else 0
    return {
        "dialogues": dialogues.height,
        "splits": splits,
        "turns": turns.height,
        "mean_turns_per_dialogue": float(turn_counts.mean()),
        "max_turns_per_dialogue": int(turn_counts.max()),
        "mean_words_per_turn": float(turns["words"].mean()) if turns.height else 0.0,
        "mean_words_per_dialogue": float(turns["words"].sum() / dialogues.height),
        "roles": _distribution(turns["role"]) if turns.height else {},
        "item_mentions": mentions.height,
        "linked_mentions": linked,
        "link_rate": linked / mentions.height if mentions.height else None,
        "actions": _distribution(turns["action"]) if turns.height else {},
        "intents": _distribution(intents) if intents.len() else {},
        "end_reasons": _distribution(dialogues["outcome"].struct.field("end_reason")),
        "languages": _distribution(dialogues["language"]),
        "tasks": _distribution(dialogues["task"]),
        "turns_per_dialogue": turn_counts.to_list(),
    }


def format_stats(stats: dict[str, Any]) -> str:
    """A plain-text report for the terminal."""
    lines = [
        f"dialogues            {stats['dialogues']:>10,}",
        f"turns                {stats['turns']:>10,}",
    ]
    if not stats["dialogues"]:
        return "\n".join(lines)
    link = "n/a" if stats["link_rate"] is None else f"{stats['link_rate']:.1%}"
    lines += [
        f"mean turns/dialogue  {stats['mean_turns_per_dialogue']:>10.2f}",
        f"mean words/turn      {stats['mean_words_per_turn']:>10.2f}",
        f"item mentions        {stats['item_mentions']:>10,}",
        f"linked to catalog    {stats['linked_mentions']:>10,}  ({link})",
        "splits               " + ", ".join(f"{k}={v:,}" for k, v in stats["splits"].items()),
    ]
    for key in ("actions", "intents", "end_reasons", "languages", "tasks"):
        if stats[key]:
            shown = list(stats[key].items())[:12]
            more = "" if len(stats[key]) <= 12 else f", ... ({len(stats[key]) - 12} more)"
            lines.append(f"{key:<21}" + ", ".join(f"{k}={v:,}" for k, v in shown) + more)
    return "\n".join(lines)
