"""Speed of the metric functions against a straightforward Python loop computing the same numbers.

- Dist-4 over 1M utterances (``crsdata.metrics.ngram_stats``: polars regex + numpy) vs a loop that tokenises each
  utterance with ``re`` and adds its 4-grams to a set.
- Recall/NDCG/MRR at k = 1, 5, 10, 20, 50 over 100k ranked lists of 50 string ids (``ranking_metrics``) vs a loop
  over lists and ks.

Targets: at most 10 s each and at least 5x the loop. Both sides must give the same numbers (checked here).
Inputs are built from real text and ids: utterances are one to three random sentences from the RecLLMSim
conversations (both roles), ranked lists draw ReDial catalog ids with a Zipf-like popularity; seeds are fixed.

    python benchmarks/metrics.py [--utterances 1000000] [--lists 100000] [--write-docs]

``--write-docs`` writes the figures into the "## Metrics" section of docs/benchmarks.md (other sections untouched).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import random
import re
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np

from crsdata.metrics import ngram_stats, ranking_metrics
from crsdata.metrics.diversity import TOKEN_PATTERN

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CRSDATA_SHARED_DATA", ROOT.parent / "shared" / "data"))
DOCS = ROOT / "docs" / "benchmarks.md"
KS = (1, 5, 10, 20, 50)
TARGET_SECONDS = 10.0
TARGET_SPEEDUP = 5.0


def make_utterances(n: int, seed: int = 0) -> list[str]:
    texts = []
    for path in sorted(glob.glob(str(DATA / "recllmsim" / "LLM_agent_user" / "*" / "*.json"))):
        with open(path, encoding="utf-8") as handle:
            texts += [h["content"] for h in json.load(handle)["history"] if h.get("content")]
    sentences = [s for t in texts for s in re.split(r"(?<=[.!?])\s+", t) if s.strip()]
    if not sentences:
        raise SystemExit(f"no RecLLMSim text under {DATA}")
    rng = random.Random(seed)
    return [" ".join(rng.choices(sentences, k=rng.randint(1, 3))) for _ in range(n)]


def make_lists(n: int, length: int = 50, seed: int = 0) -> tuple[list[list[str]], list[list[str]]]:
    with open(DATA / "redial" / "redial__id2info.json", encoding="utf-8") as handle:
        ids = sorted(json.load(handle), key=int)
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, len(ids) + 1)  # Zipf-like: a few items are in most lists, as popularity is
    weights /= weights.sum()
    pool = np.array(ids)
    predictions, references = [], []
    for _ in range(n):
        ranked = rng.choice(pool, size=length, replace=False, p=weights)
        predictions.append(ranked.tolist())
        references.append(rng.choice(pool, size=int(rng.integers(1, 4)), replace=False, p=weights).tolist())
    return predictions, references


def dist_loop(texts: list[str], n: int = 4) -> tuple[int, int]:
    # The same tokenisation as crsdata (NFKC, lower case, ’ as ', no variation selectors) with Python's re.
    token = re.compile(TOKEN_PATTERN)
    selectors = re.compile("[\ufe00-\ufe0f]")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        words = token.findall(selectors.sub("", unicodedata.normalize("NFKC", text).lower().replace("’", "'")))
        for i in range(len(words) - n + 1):
            seen.add(tuple(words[i : i + n]))
        total += max(len(words) - n + 1, 0)
    return len(seen), total


def ranking_loop(predictions: list[list[str]], references: list[list[str]], ks: tuple[int, ...]) -> dict[str, float]:
    sums = {f"{m}@{k}": 0.0 for m in ("recall", "ndcg", "mrr") for k in ks}
    for ranked, gold in zip(predictions, references, strict=True):
        gold = set(gold)
        for k in ks:
            hits = [item in gold for item in ranked[:k]]
            sums[f"recall@{k}"] += sum(hits) / len(gold)
            dcg = sum(1 / math.log2(i + 2) for i, hit in enumerate(hits) if hit)
            ideal = sum(1 / math.log2(i + 2) for i in range(min(len(gold), k)))
            sums[f"ndcg@{k}"] += dcg / ideal
            sums[f"mrr@{k}"] += next((1 / (i + 1) for i, hit in enumerate(hits) if hit), 0.0)
    return {key: value / len(predictions) for key, value in sums.items()}


def timed(fn, *args, **kwargs):  # noqa: ANN001, ANN201 - a tiny local helper
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def run(n_utterances: int, n_lists: int) -> list[dict[str, object]]:
    rows = []
    texts = make_utterances(n_utterances)
    stats, fast = timed(ngram_stats, texts, (4,))
    (distinct, total), slow = timed(dist_loop, texts)
    assert (stats.distinct[4], stats.total[4]) == (distinct, total), "Dist-4 differs from the loop"
    rows.append(
        {
            "job": f"Dist-4, {n_utterances:,} utterances ({stats.total[4]:,} 4-grams)",
            "ours_s": fast,
            "loop_s": slow,
            "value": f"dist_4 = {stats.ratio(4):.4f}",
        }
    )
    del texts

    predictions, references = make_lists(n_lists)
    ours, fast = timed(ranking_metrics, predictions, references, KS)
    loop, slow = timed(ranking_loop, predictions, references, KS)
    for key, value in loop.items():
        assert math.isclose(ours[key], value, abs_tol=1e-9), f"{key}: {ours[key]} vs loop {value}"
    rows.append(
        {
            "job": f"Recall/NDCG/MRR @{','.join(map(str, KS))}, {n_lists:,} lists of 50",
            "ours_s": fast,
            "loop_s": slow,
            "value": f"ndcg@10 = {ours['ndcg@10']:.4f}",
        }
    )
    return rows


def markdown(rows: list[dict[str, object]], command: str) -> str:
    lines = [
        "## Metrics",
        "",
        f"`{command}` on {platform.machine()} with {os.cpu_count()} CPU cores (shared with other jobs while it ran), "
        f"Python {platform.python_version()}. Targets: at most {TARGET_SECONDS:.0f} s and at least "
        f"{TARGET_SPEEDUP:.0f}x a straightforward Python loop; both give the same numbers (the script checks).",
        "",
        "| job | crsdata.metrics | Python loop | speed-up | result |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        ratio = row["loop_s"] / row["ours_s"]
        lines.append(
            f"| {row['job']} | {row['ours_s']:.2f} s | {row['loop_s']:.2f} s | {ratio:.1f}x | {row['value']} |"
        )
    return "\n".join(lines) + "\n"


def write_section(section: str, path: Path = DOCS) -> None:
    """Replaces the "## Metrics" section of the shared benchmarks page (or appends it); other sections stay."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == "## Metrics"), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=1_000_000)
    parser.add_argument("--lists", type=int, default=100_000)
    parser.add_argument("--write-docs", action="store_true", help="update the Metrics section of docs/benchmarks.md")
    args = parser.parse_args()
    rows = run(args.utterances, args.lists)
    failed = False
    for row in rows:
        ratio = row["loop_s"] / row["ours_s"]
        ok = row["ours_s"] <= TARGET_SECONDS and ratio >= TARGET_SPEEDUP
        failed |= not ok
        print(
            f"{row['job']}: {row['ours_s']:.2f} s vs loop {row['loop_s']:.2f} s = {ratio:.1f}x "
            f"({row['value']}) {'OK' if ok else 'MISSES TARGET'}"
        )
    if args.write_docs:
        command = "python benchmarks/metrics.py" + "".join(
            f" --{name} {value}"
            for name, value, default in (("utterances", args.utterances, 1_000_000), ("lists", args.lists, 100_000))
            if value != default
        )
        write_section(markdown(rows, command))
        print(f"wrote the Metrics section of {DOCS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
