"""Figures and cards of a crs-eval run: metric means with bootstrap intervals, the paper's figures beside them.

Intervals are percentile bootstrap intervals that resample *conversations* (:attr:`EvalTurn.group`), not turns:
the turns of one conversation share their context and are not independent. The difference between the
interactive and the zero-shot run is paired: both are computed on the same resamples.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

METRIC_KEYS = ("recall@10", "recall@50", "ndcg@10", "ndcg@50", "mrr@10", "mrr@50")
# GRSU (Table 3): Phi-4 as a zero-shot CRS, and Phi-4 with GRSU interaction (B = N = 4, D = 5, lists of 10).
PAPER_FIGURES: dict[str, dict[str, dict[str, float]]] = {
    "ReDial": {
        "zero-shot": dict(zip(METRIC_KEYS, (0.173, 0.313, 0.095, 0.126, 0.071, 0.077), strict=True)),
        "grsu": dict(zip(METRIC_KEYS, (0.250, 0.488, 0.135, 0.187, 0.100, 0.111), strict=True)),
    },
    "INSPIRED": {
        "zero-shot": dict(zip(METRIC_KEYS, (0.145, 0.277, 0.077, 0.106, 0.056, 0.062), strict=True)),
        "grsu": dict(zip(METRIC_KEYS, (0.352, 0.559, 0.212, 0.258, 0.170, 0.180), strict=True)),
    },
}
PAPER_NOTE = (
    "Paper: GRSU (Table 3), Phi-4 (14B) as the CRS, zero-shot and with a Llama-3.1-8B simulated user fine-tuned on "
    "ReDial+INSPIRED; B = N = 4, D = 5; untuned scorer on INSPIRED: Recall@10 0.156 (Table 4)."
)
SOURCE_SECTION_START = "<!-- crsdata crs-eval: start -->"
SOURCE_SECTION_END = "<!-- crsdata crs-eval: end -->"


def dataset_name(source: str) -> str:
    """``ReDial`` or ``INSPIRED`` for the paper's figures, from the folder's source name; "" otherwise."""
    if source.startswith("redial"):
        return "ReDial"
    if source.startswith("inspired"):
        return "INSPIRED"
    return ""


def bootstrap(
    columns: Mapping[str, np.ndarray], groups: Sequence[str], samples: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """95% percentile intervals of each column's mean, resampling ``groups`` (one label per row) with replacement."""
    if samples <= 0 or not columns:
        return {}
    labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
    rng = np.random.default_rng(seed)
    # One draw of group counts per resample: row weights are the count of the row's group.
    counts = rng.multinomial(len(labels), np.full(len(labels), 1.0 / len(labels)), size=samples)
    weights = counts[:, inverse].astype(np.float64)
    totals = weights.sum(axis=1)
    out = {}
    for name, column in columns.items():
        means = weights @ np.asarray(column, dtype=np.float64) / totals
        low, high = np.percentile(means, [2.5, 97.5])
        out[name] = (float(low), float(high))
    return out


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _interval(pair: Sequence[float] | None) -> str:
    return "" if not pair else f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def metrics_table(results: Mapping[str, Any]) -> str:
    """Markdown table: zero-shot and interactive values with intervals, the difference, the paper's figures."""
    zero = results.get("zero_shot") or {}
    interactive = results.get("grsu") or {}
    paper = PAPER_FIGURES.get(results.get("dataset", ""), {})
    header = ["metric", "zero-shot", "95% CI"]
    if interactive:
        header += ["GRSU", "95% CI", "difference", "95% CI"]
    if paper:
        header += ["paper zero-shot", "paper GRSU"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key in METRIC_KEYS:
        row = [key, _fmt(zero.get(key)), _interval((zero.get("intervals") or {}).get(key))]
        if interactive:
            difference = (results.get("difference") or {}).get(key) or {}
            row += [
                _fmt(interactive.get(key)),
                _interval((interactive.get("intervals") or {}).get(key)),
                f"{difference['mean']:+.3f}" if difference else "",
                _interval(difference.get("interval")),
            ]
        if paper:
            row += [_fmt(paper["zero-shot"][key]), _fmt(paper["grsu"][key])]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def describe(details: Mapping[str, Any]) -> str:
    """``{"name": "popularity", "temperature": 1.0}`` -> ``popularity (temperature 1.0)``; nested parts in turn."""
    parts = []
    for key, value in details.items():
        if key == "name":
            continue
        parts.append(f"{key} {describe(value) if isinstance(value, Mapping) else value}")
    name = str(details.get("name", ""))
    return f"{name} ({'; '.join(parts)})" if parts and name else name or "; ".join(parts)


def cost_line(results: Mapping[str, Any]) -> str:
    n = max(int(results.get("n_turns") or 0), 1)
    parts = [f"{results['crs_calls']:,} CRS calls ({results['crs_calls'] / n:.1f} a turn)"]
    if results.get("protocol") == "grsu":
        parts.append(f"{results['scoring_passes']:,} scoring passes ({results['scoring_passes'] / n:.1f} a turn)")
        parts.append(f"{results.get('critiques', 0):,} critiques")
    return ", ".join(parts) + f"; {results.get('wall_seconds', 0):.0f} s wall time"


def render_card(results: Mapping[str, Any], example: str = "") -> str:
    """The run's README.md."""
    data = results["data"]
    lines = [
        f"# crs-eval: {results['crs']} CRS, {results['protocol']} protocol, {data['folder']} ({results['split']})",
        "",
        "Written by `crsdata crs-eval` (GRSU's interactive evaluation of a conversational recommender). Command:",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        f"- Turns: {results['n_turns']:,} evaluated, a seeded sample of {data['eligible']:,} eligible "
        f"{data['kind']} in {data['records']:,} records; left out before sampling: "
        + (", ".join(f"{k} {v:,}" for k, v in data["skipped"].items()) or "none")
        + ".",
        f"- Catalog: {data['catalog_items']:,} items (the candidates). Mentioned items are removed from every ranking "
        "and from the ground truth (GRSU/iEvaLM).",
        f"- CRS: {describe(results['crs_details'])}.",
    ]
    if results["protocol"] == "grsu":
        search = results["search"]
        lines += [
            f"- Simulated user: scorer {describe(results['user']['scorer'])}, critic "
            f"{describe(results['user']['critic'])}.",
            f"- Search: {search['method']}, B = {search['beam_width']}, N = {search['expand_width']}, "
            f"D = {search['depth']}: {search['lists_per_turn']} lists of {search['list_size']} a turn; final "
            "ranking: every scored item by its score.",
        ]
    lines += [
        f"- Cost: {cost_line(results)}.",
        "",
        metrics_table(results),
        "",
        "Intervals: 95% percentile bootstrap over conversations "
        f"({results.get('bootstrap_samples', 0):,} resamples); the difference is paired (GRSU minus zero-shot).",
    ]
    if dataset_name(results.get("source", "")):
        lines += ["", PAPER_NOTE]
    if example:
        lines += ["", "## Example", "", example]
    return "\n".join(lines) + "\n"


def source_section(results: Mapping[str, Any]) -> str:
    """The section written into the evaluated folder's card with ``--update-card``."""
    run = f"{results['protocol']} ({results['split']}, {results['n_turns']} turns)"
    title = f"### crs-eval: {results['crs']} CRS, {run}"
    return "\n".join(
        [
            SOURCE_SECTION_START,
            "## Interactive evaluation (GRSU)",
            "",
            title,
            "",
            "```bash",
            results["command"],
            "```",
            "",
            metrics_table(results),
            "",
            f"Cost: {cost_line(results)}.",
            SOURCE_SECTION_END,
        ]
    )


def update_source_card(readme: Path, section: str) -> None:
    """Replaces the text between the crs-eval markers of ``readme`` (or appends it): other sections stay as they
    are, whatever their headings."""
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    pattern = re.compile(re.escape(SOURCE_SECTION_START) + r".*?" + re.escape(SOURCE_SECTION_END), re.DOTALL)
    if pattern.search(text):
        new = pattern.sub(lambda _: section, text, count=1)
    else:
        new = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section + "\n"
    readme.write_text(new, encoding="utf-8")
