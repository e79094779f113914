"""Reference figures on the real corpora, for the README: ``python -m crsdata.metrics.report``.

1. Dist-4 of the RecLLMSim simulated users' turns (``recllmsim/LLM_agent_user/*/*.json``, ``history`` entries with
   role ``user``), in both conventions.
2. A popularity baseline on iEvaLM's ReDial test turns (``redial/redial_eval__test_data_processed.jsonl``: 3,341
   recommender turns with ``context``, ``entity`` and the recommended titles ``rec``): Recall/NDCG/MRR@k, with the
   items already mentioned (``entity``) removed as GRSU/iEvaLM evaluate and without removal, and the Match Score
   of the top-1 recommendation against the ``rec`` titles (MiniLM over the ReDial catalog text).

Popularity comes from the training side, never from the test turns: by default how many of iEvaLM's *validation*
turns (``redial_eval__valid_data_processed.jsonl``, 2,716 turns) recommend each title; ``--popularity mentions``
uses the ReDial release's ``nbMentions`` (``official/movies_with_mentions.csv``), which count mentions in the whole
corpus, test dialogues included, so they leak a little test information: shown for comparison only.
Items are identified by their "Title (Year)" string, as these files write them.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from crsdata.metrics.baselines import popularity_counts, popularity_predictions
from crsdata.metrics.common import MetricError
from crsdata.metrics.diversity import ngram_stats
from crsdata.metrics.match import ItemEmbeddings, match_score
from crsdata.metrics.ranking import ranking_metrics
from crsdata.titles import collapse_whitespace

# The shared data folder sits next to the project checkout (see the data README), so from the checkout it is
# ../shared/data; --data (or CRSDATA_SHARED_DATA) names another. Never found through this file's location, which
# is inside site-packages once crsdata is installed.
DEFAULT_DATA = Path("..") / "shared" / "data"
# What the report reads under --data, relative to it.
REQUIRED = (
    "recllmsim/LLM_agent_user",
    "redial/redial_eval__test_data_processed.jsonl",
    "redial/redial_eval__valid_data_processed.jsonl",
    "redial/redial__id2info.json",
)


def recllmsim_user_turns(root: Path) -> list[str]:
    texts = []
    for path in sorted(glob.glob(str(root / "recllmsim" / "LLM_agent_user" / "*" / "*.json"))):
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        texts += [h["content"] for h in record.get("history", []) if h.get("role") == "user" and h.get("content")]
    if not texts:
        raise MetricError(f"no RecLLMSim user turns under {root / 'recllmsim' / 'LLM_agent_user'}")
    return texts


def _jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _mention_counts(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    with open(path, encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            # The release writes "Cosmos  (2015)" with two spaces where iEvaLM writes one.
            counts[collapse_whitespace(row["movieName"])] += int(row["nbMentions"])
    return counts


def redial_popularity(root: Path, popularity: str, ks: list[int], with_match: bool = True) -> dict[str, Any]:
    redial = root / "redial"
    test = _jsonl(redial / "redial_eval__test_data_processed.jsonl")
    if popularity == "valid":
        counts = popularity_counts(row["rec"] for row in _jsonl(redial / "redial_eval__valid_data_processed.jsonl"))
    elif popularity == "mentions":
        counts = _mention_counts(redial / "official" / "movies_with_mentions.csv")
    else:
        raise MetricError(f"popularity must be 'valid' or 'mentions', got {popularity!r}")
    targets = [row["rec"] for row in test]
    mentioned = [row["entity"] for row in test]
    k_max = max(ks)
    out: dict[str, Any] = {"turns": len(test), "popularity": popularity, "popular_items": len(counts)}
    ranked = popularity_predictions(counts, len(test), k_max, mentioned)
    out["mentioned_removed"] = ranking_metrics(ranked, targets, ks, mentioned=mentioned)
    out["mentioned_kept"] = ranking_metrics(popularity_predictions(counts, len(test), k_max), targets, ks)
    if with_match:
        out["match_score@1"] = redial_match_score(redial, ranked, targets, mentioned)
    return out


def redial_match_score(
    redial: Path, ranked: list[list[str]], targets: list[list[str]], mentioned: list[list[str]]
) -> dict[str, Any]:
    from crsdata.catalog import Catalog

    info_path = redial / "redial__id2info.json"
    with open(info_path, encoding="utf-8") as handle:
        info = json.load(handle)
    # ReDial names a few films twice ("Tinker Bell"); the lowest id stands for the title, consistently.
    title_to_id: dict[str, str] = {}
    for item_id in sorted(info, key=int):
        title_to_id.setdefault(info[item_id]["name"], item_id)
    embeddings = ItemEmbeddings(Catalog.from_paths([info_path]).rows())
    recommended, truth = [], []
    for top, wanted, seen in zip(ranked, targets, mentioned, strict=True):
        gold = [title_to_id[t] for t in wanted if t not in set(seen) and t in title_to_id]
        if gold:  # the same turns the ranking scored with mentioned items removed
            recommended.append([title_to_id[t] for t in top[:1] if t in title_to_id])
            truth.append(gold)
    return match_score(recommended, truth, embeddings, on_missing="skip")


def missing_inputs(data: Path, popularity: str = "valid") -> list[str]:
    """The files and folders under ``data`` the report needs but cannot find."""
    needed = list(REQUIRED) + (["redial/official/movies_with_mentions.csv"] if popularity == "mentions" else [])
    return [name for name in needed if not (data / name).exists()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crsdata.metrics.report", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(os.environ.get("CRSDATA_SHARED_DATA", DEFAULT_DATA)),
        help="the shared data folder (default: $CRSDATA_SHARED_DATA, else ../shared/data from the current folder)",
    )
    parser.add_argument("--popularity", choices=("valid", "mentions"), default="valid")
    parser.add_argument("--k", default="1,10,50", help="cut-offs, comma-separated")
    parser.add_argument("--no-match", action="store_true", help="skip the Match Score (no model load)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    ks = [int(k) for k in args.k.split(",")]
    missing = missing_inputs(args.data, args.popularity)
    if missing:
        what = "is not a folder" if not args.data.is_dir() else "lacks " + ", ".join(missing)
        parser.error(
            f"--data {args.data} ({args.data.resolve()}) {what}: pass the shared data folder (the one with redial/ "
            "and recllmsim/), or run from the project checkout next to it"
        )

    texts = recllmsim_user_turns(args.data)
    stats = ngram_stats(texts, (4,))
    dist = {
        "utterances": stats.n_utterances,
        "tokens": stats.n_tokens,
        "4grams": stats.total[4],
        "distinct_4grams": stats.distinct[4],
        "dist_4": stats.ratio(4),
        "dist_4_per_utterance": stats.per_utterance(4),
    }
    print("RecLLMSim LLM_agent_user, user turns")
    print(f"  utterances {dist['utterances']:,}, 4-grams {dist['4grams']:,}, distinct {dist['distinct_4grams']:,}")
    print(f"  Dist-4 (distinct / all 4-grams)      {dist['dist_4']:.4f}")
    print(f"  Dist-4 per utterance (CRSLab style)  {dist['dist_4_per_utterance']:.4f}")

    redial = redial_popularity(args.data, args.popularity, ks, with_match=not args.no_match)
    print(
        f"\nReDial test turns (iEvaLM, {redial['turns']:,}), popularity baseline from "
        f"{'validation-turn rec counts' if args.popularity == 'valid' else 'release nbMentions (includes test)'}"
    )
    for label in ("mentioned_removed", "mentioned_kept"):
        result = redial[label]
        print(f"  {label.replace('_', ' ')} (n={result['n_evaluated']:,})")
        for name in ("recall", "ndcg", "mrr"):
            print("    " + "  ".join(f"{name}@{k} {result[f'{name}@{k}']:.4f}" for k in ks))
    if "match_score@1" in redial:
        m = redial["match_score@1"]
        print(f"  Match Score of the top-1 item (MiniLM, catalog text): {m['match_score']:.4f} (n={m['n_scored']:,})")
    if args.json:
        args.json.write_text(json.dumps({"recllmsim_dist": dist, "redial_popularity": redial}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
