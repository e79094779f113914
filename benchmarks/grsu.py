"""GRSU benchmarks: P("Yes") scoring against per-pair generation, and the wall time of the default crs-eval sample.

    python benchmarks/grsu.py scoring --source out/redial-eval            # 1,000 pairs, embedded SmolLM2
    python benchmarks/grsu.py run --source out/redial-eval --crs popularity --popularity-source out/redial-train

``scoring`` takes ``--pairs`` (context, item) pairs from ``--split`` of a built ``redial-eval`` folder:
``--items-per-turn`` items per sampled turn, its first ground-truth item and random catalog items, and scores
them with the same model (``--model``, default the embedded SmolLM2-135M-Instruct) in two ways:

(a) batched   :class:`crsdata.grsu.user.GenerativeScorer`: P("Yes") read from the next-token distribution, no
              generation; each turn's conversation prefix runs once and the items' suffixes run in batches on
              its repeated key/value cache (:func:`crsdata.grsu.user.shared_prefix_probabilities`);
(b) generate  the same prompts, one ``generate`` call per pair, greedy (temperature 0), at most
              ``--max-new-tokens`` tokens, on a backend that keeps no prefix states (``prefix_cache_mb=0``):
              GRSU's way of asking, each pair's whole prompt run; the answer is the first word of the reply
              (Yes, No, or neither).

Each runs on a fresh backend (no states kept from the other). Reported: seconds per pair for each, the ratio
(b)/(a) on the same pairs (``speedup``, target >= 10; with ``--generate-pairs M`` (a) is timed again on those M
pairs), and how often the two decide alike: ``agreement`` is P(Yes) >= 0.5 against
the reply's Yes/No over the pairs where the reply says one of them (``decided``); ``agreement_all`` counts a
reply that says neither as a disagreement. ``--generate-pairs`` times (b) on the first M pairs only (the
per-pair time is what is compared). ``--json OUT`` writes these figures.
The AUC of P(Yes) for ground-truth items against the random ones says how much the
zero-shot scorer knows. The load average is printed before and after: other jobs on a shared machine change
every figure.

``run`` times ``crsdata crs-eval`` with its default settings (its default ``--n``, beam search B = N = 4, D = 5,
the embedding user) for the given CRS, in a fresh temporary folder, and prints the wall time and the results.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_pairs(source: Path, split: str, pairs: int, per_turn: int, seed: int):
    from crsdata.grsu.data import load_eval_set

    eval_set = load_eval_set(source, split, n=max(1, pairs // per_turn), seed=seed)
    rng = random.Random(seed)
    ids = eval_set.items.ids()
    out, relevant = [], []
    for turn in eval_set.turns:
        chosen = [turn.targets[0]]
        while len(chosen) < per_turn:
            item = rng.choice(ids)
            if item not in chosen and item not in turn.targets and item not in turn.mentioned:
                chosen.append(item)
        out += [(turn, item) for item in chosen]
        relevant += [True] + [False] * (per_turn - 1)
    return eval_set.items, out[:pairs], relevant[:pairs]


def auc(scores: list[float], positive: list[bool]) -> float:
    """Probability that a ground-truth item outscores a random one (ties count half)."""
    pos = np.array([s for s, p in zip(scores, positive, strict=True) if p])
    neg = np.array([s for s, p in zip(scores, positive, strict=True) if not p])
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def answer(text: str) -> str:
    words = text.strip().split()
    first = words[0].strip(".,!:;\"'").lower() if words else ""
    return first if first in ("yes", "no") else "other"


def prompt_lengths(backend, scorer, pairs) -> dict[str, float]:
    """Mean tokens of a turn's shared prefix (P) and of an item's own suffix (S), and what prefix sharing can gain
    at most on these pairs: with m items a turn, m(P + S) / (P + mS) forward tokens fewer, which tends to
    (P + S) / S however many items a turn has."""
    from crsdata.grsu.user import common_prefix_length

    rows: dict[str, list[list[int]]] = {}
    for (turn, _), request in zip(pairs, scorer.requests(pairs), strict=True):
        rows.setdefault(turn.key, []).append(backend.encode(request))
    prefixes = {key: common_prefix_length(r) for key, r in rows.items()}
    suffixes = [len(row) - prefixes[key] for key, r in rows.items() for row in r]
    p, s = float(np.mean(list(prefixes.values()))), float(np.mean(suffixes))
    m = len(pairs) / len(rows)
    return {
        "prefix_tokens": round(p, 1),
        "suffix_tokens": round(s, 1),
        "items_per_turn": round(m, 1),
        "speedup_bound": round(m * (p + s) / (p + m * s), 2),
        "speedup_bound_any_items": round((p + s) / s, 2),
    }


def scoring(args: argparse.Namespace) -> None:
    from crsdata.backends import ChatRequest, SamplingParams, make_backend
    from crsdata.grsu.user import GenerativeScorer

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    items, pairs, relevant = make_pairs(args.source, args.split, args.pairs, args.items_per_turn, args.seed)
    print(f"{len(pairs)} pairs from {len(pairs) // args.items_per_turn} turns; model {args.model}")
    load_before = load_average()
    print(f"load average before: {load_before}")

    backend = make_backend("local", args.model, max_batch_size=args.batch_size)
    scorer = GenerativeScorer(backend, items, share_context=not args.no_shared_context)
    lengths = prompt_lengths(backend, scorer, pairs)
    print(
        f"prompts: shared prefix {lengths['prefix_tokens']} tokens a turn, own suffix {lengths['suffix_tokens']} an "
        f"item; prefix sharing can gain at most {lengths['speedup_bound']}x in forward tokens here "
        f"({lengths['speedup_bound_any_items']}x with any number of items a turn)"
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    p_yes = scorer.score(pairs)
    batched, batched_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    backend.close()
    print(f"(a) batched P(Yes): {batched:.1f} s wall ({batched_cpu:.1f} s CPU), {batched / len(pairs):.3f} s/pair")
    subset = pairs[: args.generate_pairs or len(pairs)]
    same_wall, same_cpu = batched, batched_cpu
    if len(subset) < len(pairs):
        # The speed-up compares the same pairs: prompt lengths differ from turn to turn, and so does the time a pair.
        backend = make_backend("local", args.model, max_batch_size=args.batch_size)
        scorer = GenerativeScorer(backend, items, share_context=not args.no_shared_context)
        started, cpu_started = time.perf_counter(), time.process_time()
        scorer.score(subset)
        same_wall, same_cpu = time.perf_counter() - started, time.process_time() - cpu_started
        backend.close()
        print(f"(a) on (b)'s {len(subset)} pairs: {same_wall:.1f} s wall ({same_cpu:.1f} s CPU)")

    backend = make_backend("local", args.model, max_batch_size=args.batch_size, prefix_cache_mb=0)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
    requests = scorer.requests(subset)
    started, cpu_started = time.perf_counter(), time.process_time()
    replies = [backend.generate([ChatRequest(messages=r.messages)], params)[0] for r in requests]
    generated, generated_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    backend.close()
    per_pair = generated / len(subset)
    print(
        f"(b) generate per pair: {generated:.1f} s wall ({generated_cpu:.1f} s CPU) for {len(subset)} pairs, "
        f"{per_pair:.3f} s/pair"
    )
    ratio_wall, ratio_cpu = generated / same_wall, generated_cpu / same_cpu
    print(f"ratio (b)/(a) on the same {len(subset)} pairs: {ratio_wall:.1f}x wall, {ratio_cpu:.1f}x CPU (target >= 10)")

    answers = [answer(g.text) for g in replies]
    decided = [(a, p) for a, p in zip(answers, p_yes, strict=False) if a != "other"]
    agree = sum((a == "yes") == (p >= 0.5) for a, p in decided)
    print(
        f"decisions: replies say yes {answers.count('yes')}, no {answers.count('no')}, other {answers.count('other')}; "
        f"batched P(Yes) >= 0.5 on {sum(p >= 0.5 for p in p_yes[: len(subset)])}; "
        f"agreement {agree}/{len(decided)}"
    )
    print(
        f"P(Yes): mean {np.mean(p_yes):.3f}, min {min(p_yes):.3f}, max {max(p_yes):.3f}; "
        f"AUC ground truth vs random {auc(p_yes, relevant):.3f}"
    )
    print(f"example reply: {replies[0].text!r}")
    print(f"load average after: {load_average()}")
    if args.json:
        figures = {
            "speedup": round(ratio_wall, 2),
            "speedup_cpu": round(ratio_cpu, 2),
            "agreement": round(agree / len(decided), 4) if decided else None,
            "agreement_all": round(agree / len(subset), 4),
            "decided": len(decided),
            "pairs": len(pairs),
            "generate_pairs": len(subset),
            "batched_seconds_per_pair": round(same_wall / len(subset), 4),
            "generate_seconds_per_pair": round(per_pair, 4),
            "batched_cpu_seconds": round(same_cpu, 1),
            "generate_cpu_seconds": round(generated_cpu, 1),
            "auc": round(auc(p_yes, relevant), 4),
            **lengths,
            "model": args.model,
            "load_average_before": load_before,
            "load_average_after": load_average(),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


def run(args: argparse.Namespace) -> None:
    from crsdata.grsu.evaluation import CrsEvalConfig, run_crs_eval

    print(f"load average before: {load_average()}")
    with tempfile.TemporaryDirectory() as folder:
        config = CrsEvalConfig(
            source=args.source,
            out=Path(folder) / "run",
            crs=args.crs,
            protocol="grsu",
            split=args.split,
            popularity_source=args.popularity_source,
            progress=False,
        )
        started = time.perf_counter()
        results = run_crs_eval(config)
        wall = time.perf_counter() - started
    print(
        f"{config.crs} CRS, default sample: {results['n_turns']} turns, {wall:.0f} s wall "
        f"({results['crs_calls']} CRS calls, {results['scoring_passes']} scoring passes)"
    )
    print(f"recall@10 zero-shot {results['zero_shot']['recall@10']:.3f}, grsu {results['recall@10']:.3f}")
    print(f"command: {results['command']}")
    print(f"load average after: {load_average()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    score = sub.add_parser("scoring", help="batched P(Yes) against per-pair generation")
    score.add_argument("--source", type=Path, required=True, help="built redial-eval folder")
    score.add_argument("--split", default="validation")
    score.add_argument("--pairs", type=int, default=1000)
    score.add_argument("--items-per-turn", type=int, default=10)
    score.add_argument("--generate-pairs", type=int, default=0, help="pairs timed in (b); 0: all")
    score.add_argument("--model", default="embedded")
    score.add_argument("--batch-size", type=int, default=16)
    score.add_argument("--max-new-tokens", type=int, default=8)
    score.add_argument("--no-shared-context", action="store_true", help="(a) with no shared prefix: each prompt whole")
    score.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")
    score.add_argument("--seed", type=int, default=0)
    score.add_argument("--json", type=Path, help="write speedup, agreement and the timings to this file")
    score.set_defaults(func=scoring)
    timed = sub.add_parser("run", help="wall time of the default crs-eval sample")
    timed.add_argument("--source", type=Path, required=True)
    timed.add_argument("--split", default="test")
    timed.add_argument("--crs", default="popularity", choices=("popularity", "retrieval", "llm"))
    timed.add_argument("--popularity-source", type=Path)
    timed.set_defaults(func=run)
    args = parser.parse_args()
    args.func(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
