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
    # The same tokenisation as crsdata (lower case, NFKC, ’ as ', no variation selectors) with Python's re.
    token = re.compile(TOKEN_PATTERN)
    selectors = re.compile("[\ufe00-\ufe0f]")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        words = token.findall(selectors.sub("", unicodedata.normalize("NFKC", text.lower()).lower().replace("’", "'")))
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
    """Result, wall seconds and CPU seconds (all threads of this process). The machine may be shared: CPU time
    is what the work costs, wall time what a user waits."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def _row(job: str, short: str, ours: list[float], loop: list[float], value: str) -> dict[str, object]:
    return {
        "job": job,
        "short": short,
        "ours_s": ours[0],
        "ours_cpu": ours[1],
        "loop_s": loop[0],
        "loop_cpu": loop[1],
        "value": value,
    }


def meets_target(row: dict[str, object]) -> bool:
    return row["ours_s"] <= TARGET_SECONDS and row["loop_s"] / row["ours_s"] >= TARGET_SPEEDUP


def _ranking_row(job: str, short: str, ours_input: tuple, loop_input: tuple) -> dict[str, object]:
    """Times crsdata and the loop on (predictions, references) each, and checks they agree on every metric."""
    result, *ours = timed(ranking_metrics, *ours_input, KS)
    expected, *loop = timed(ranking_loop, *loop_input, KS)
    for key, value in expected.items():
        assert math.isclose(result[key], value, abs_tol=1e-9), f"{key}: {result[key]} vs loop {value}"
    return _row(job, short, ours, loop, f"ndcg@10 = {result['ndcg@10']:.4f}")


def run(n_utterances: int, n_lists: int) -> list[dict[str, object]]:
    rows = []
    texts = make_utterances(n_utterances)
    stats, *ours = timed(ngram_stats, texts, (4,))
    (distinct, total), *loop = timed(dist_loop, texts)
    assert (stats.distinct[4], stats.total[4]) == (distinct, total), "Dist-4 differs from the loop"
    job = f"Dist-4, {n_utterances:,} utterances ({stats.total[4]:,} 4-grams)"
    rows.append(_row(job, "Dist-4", ours, loop, f"dist_4 = {stats.ratio(4):.4f}"))
    del texts

    predictions, references = make_lists(n_lists)
    cuts = ",".join(map(str, KS))
    # A model's top-k output: a 2-d array of integer item ids (the vectorised fast path). The loop gets the same
    # ids as Python lists, its fastest input.
    matrix = np.array(predictions, dtype=np.int64)
    int_refs = [[int(x) for x in r] for r in references]
    int_lists = matrix.tolist()
    job = f"Recall/NDCG/MRR @{cuts}, {n_lists:,} lists of 50 int ids (2-d array)"
    rows.append(_ranking_row(job, "ranking on an integer array", (matrix, int_refs), (int_lists, int_refs)))

    # The same lists as Python lists of string ids: every item is a Python object to hash once, as the loop does.
    # Each side gets its own fresh copy: a str caches its hash, so whichever ran second would hash for free.
    fresh_predictions, fresh_references = make_lists(n_lists)
    job = f"Recall/NDCG/MRR @{cuts}, {n_lists:,} lists of 50 string ids (Python lists)"
    rows.append(
        _ranking_row(
            job, "ranking on lists of strings", (predictions, references), (fresh_predictions, fresh_references)
        )
    )
    return rows


def markdown(rows: list[dict[str, object]], command: str, load: str) -> str:
    lines = [
        "## Metrics",
        "",
        f"`{command}` on {platform.machine()} with {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"load average (1, 5, 15 min) {load} (the cores are shared with other jobs, so wall times are inflated "
        "and CPU times, summed over this process's threads, are given too). Targets: at most "
        f"{TARGET_SECONDS:.0f} s and at least {TARGET_SPEEDUP:.0f}x a straightforward Python loop; both sides give "
        "the same numbers (the script asserts it).",
        "",
        "| job | crsdata.metrics wall (CPU) | Python loop wall (CPU) | speed-up wall (CPU) | result |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['job']} | {row['ours_s']:.2f} s ({row['ours_cpu']:.2f} s) | {row['loop_s']:.2f} s "
            f"({row['loop_cpu']:.2f} s) | {row['loop_s'] / row['ours_s']:.1f}x "
            f"({row['loop_cpu'] / row['ours_cpu']:.1f}x) | {row['value']} |"
        )
    verdicts = [f"{row['short']} {'meets' if meets_target(row) else 'misses'} them" for row in rows]
    lines += [
        "",
        "Against the targets: " + "; ".join(verdicts) + ".",
        "",
        "Inputs: utterances are one to three random sentences of the RecLLMSim conversations; lists draw ReDial "
        "catalog ids with Zipf-like popularity, 1 to 3 targets each (fixed seeds). On lists of Python strings "
        "crsdata looks each target up in its own list (C-level equality scans) where the loop tests every listed "
        "item against the targets; model outputs as an integer array skip Python objects altogether.",
    ]
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


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=1_000_000)
    parser.add_argument("--lists", type=int, default=100_000)
    parser.add_argument("--write-docs", action="store_true", help="update the Metrics section of docs/benchmarks.md")
    args = parser.parse_args()
    before = _load()
    rows = run(args.utterances, args.lists)
    load = f"{before} before the run, {_load()} after"
    failed = False
    for row in rows:
        ratio = row["loop_s"] / row["ours_s"]
        ok = meets_target(row)
        failed |= not ok
        print(
            f"{row['job']}: {row['ours_s']:.2f} s (CPU {row['ours_cpu']:.2f}) vs loop {row['loop_s']:.2f} s "
            f"(CPU {row['loop_cpu']:.2f}) = {ratio:.1f}x wall, {row['loop_cpu'] / row['ours_cpu']:.1f}x CPU "
            f"({row['value']}) {'OK' if ok else 'MISSES TARGET'}"
        )
    print(f"load average {load}")
    if args.write_docs:
        command = "python benchmarks/metrics.py" + "".join(
            f" --{name} {value}"
            for name, value, default in (("utterances", args.utterances, 1_000_000), ("lists", args.lists, 100_000))
            if value != default
        )
        write_section(markdown(rows, command + " --write-docs", load))
        print(f"wrote the Metrics section of {DOCS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
