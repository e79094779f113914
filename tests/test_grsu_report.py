"""crs-eval's figures: bootstrap intervals over conversations, the card's table and the evaluated folder's card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crsdata.grsu.report import (
    METRIC_KEYS,
    PAPER_FIGURES,
    SOURCE_SECTION_END,
    SOURCE_SECTION_START,
    bootstrap,
    metrics_table,
    update_source_card,
)


def test_bootstrap_resamples_groups_not_rows() -> None:
    # Conversation "a" has three hits, "b" one miss: resampling conversations gives means 0 (b, b), 0.75 (a, b in
    # either order: 3 hits of 4 rows) or 1 (a, a) only, never the row-level values in between such as 0.5.
    column = np.array([1.0, 1.0, 1.0, 0.0])
    groups = ["a", "a", "a", "b"]
    low, high = bootstrap({"hit": column}, groups, samples=2000, seed=1)["hit"]
    assert (low, high) == (0.0, 1.0)
    constant = bootstrap({"x": np.full(4, 0.25)}, groups, samples=100)["x"]
    assert constant == pytest.approx((0.25, 0.25))
    assert bootstrap({"x": column}, groups, samples=0) == {}


def test_bootstrap_interval_covers_the_mean_and_narrows_with_data() -> None:
    rng = np.random.default_rng(0)
    small = rng.binomial(1, 0.2, 100).astype(float)
    large = rng.binomial(1, 0.2, 10_000).astype(float)
    narrow = bootstrap({"r": large}, [str(i) for i in range(10_000)], samples=500)["r"]
    wide = bootstrap({"r": small}, [str(i) for i in range(100)], samples=500)["r"]
    assert narrow[0] <= large.mean() <= narrow[1] and wide[0] <= small.mean() <= wide[1]
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 3


def test_table_puts_the_paper_beside_ours() -> None:
    zero = {key: 0.1 for key in METRIC_KEYS} | {"intervals": {"recall@10": (0.05, 0.15)}}
    grsu = {key: 0.2 for key in METRIC_KEYS} | {"intervals": {}}
    difference = {key: {"mean": 0.1, "interval": (0.02, 0.18)} for key in METRIC_KEYS}
    table = metrics_table({"zero_shot": zero, "grsu": grsu, "difference": difference, "dataset": "INSPIRED"})
    row = next(line for line in table.splitlines() if line.startswith("| recall@10 |"))
    paper = PAPER_FIGURES["INSPIRED"]
    assert row == (
        f"| recall@10 | 0.100 | [0.050, 0.150] | 0.200 |  | +0.100 | [0.020, 0.180] | "
        f"{paper['zero-shot']['recall@10']:.3f} | {paper['grsu']['recall@10']:.3f} |"
    )
    assert paper["grsu"]["recall@10"] == 0.352 and PAPER_FIGURES["ReDial"]["zero-shot"]["recall@10"] == 0.173


def test_source_card_section_is_replaced_not_repeated(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("---\nlicense: mit\n---\n# Data\n\n## Evaluation\n\nkept\n")
    update_source_card(readme, f"{SOURCE_SECTION_START}\nfirst\n{SOURCE_SECTION_END}")
    update_source_card(readme, f"{SOURCE_SECTION_START}\nsecond\n{SOURCE_SECTION_END}")
    text = readme.read_text()
    assert text.count(SOURCE_SECTION_START) == 1 and "second" in text and "first" not in text
    assert text.startswith("---\nlicense: mit\n---\n# Data\n\n## Evaluation\n\nkept\n")
