"""GRSU benchmarks: P("Yes") scoring against per-pair generation, and the wall time of the default crs-eval sample.

    python benchmarks/grsu.py scoring --source out/redial-eval            # 1,000 pairs, embedded SmolLM2
    python benchmarks/grsu.py run --source out/redial-eval --crs popularity --popularity-source out/redial-train

``scoring`` takes ``--pairs`` (context, item) pairs from ``--split`` of a built ``redial-eval`` folder:
``--items-per-turn`` items per sampled turn, its first ground-truth item and random catalog items, and scores
them with the same model (``--model``, default the embedded SmolLM2-135M-Instruct) in two ways:

(a) batched   :class:`crsdata.grsu.user.GenerativeScorer`: P("Yes") from the backend's option probabilities, all
              pairs in one ``option_probabilities`` call (batched forward passes, no generation), each turn's
              shared prompt prefix computed once;
(b) generate  the same prompts, one ``generate`` call per pair, greedy (temperature 0), at most
              ``--max-new-tokens`` tokens; the answer is the first word of the reply (Yes, No, or neither).

Each runs on a fresh backend (no states kept from the other). Reported: seconds per pair for each, the ratio
(b)/(a) (target >= 10), and how often the two decide alike (P(Yes) >= 0.5 against the reply's Yes/No, over the
pairs where the reply says one of them). ``--generate-pairs`` times (b) on the first M pairs only (the per-pair
time is what is compared). The AUC of P(Yes) for ground-truth items against the random ones says how much the
zero-shot scorer knows. The load average is printed before and after: other jobs on a shared machine change
every figure.

``run`` times ``crsdata crs-eval`` with its default settings (50 turns, beam search B = N = 2, D = 2, the
embedding user) for the given CRS, in a fresh temporary folder, and prints the wall time and the results.
"""

from __future__ import annotations

import argparse
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


def scoring(args: argparse.Namespace) -> None:
    from crsdata.backends import ChatRequest, SamplingParams, make_backend
    from crsdata.grsu.user import GenerativeScorer

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    items, pairs, relevant = make_pairs(args.source, args.split, args.pairs, args.items_per_turn, args.seed)
    print(f"{len(pairs)} pairs from {len(pairs) // args.items_per_turn} turns; model {args.model}")
    print(f"load average before: {load_average()}")

    backend = make_backend("local", args.model, max_batch_size=args.batch_size)
    scorer = GenerativeScorer(backend, items, share_context=not args.no_shared_context)
    started = time.perf_counter()
    p_yes = scorer.score(pairs)
    batched = time.perf_counter() - started
    reused = backend.prompt_stats.reused_fraction
    backend.close()
    print(f"(a) batched P(Yes): {batched:.1f} s, {batched / len(pairs):.3f} s/pair ({reused:.0%} prompt tokens reused)")

    backend = make_backend("local", args.model, max_batch_size=args.batch_size)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
    subset = pairs[: args.generate_pairs or len(pairs)]
    requests = scorer.requests(subset)
    started = time.perf_counter()
    replies = [backend.generate([ChatRequest(messages=r.messages)], params)[0] for r in requests]
    generated = time.perf_counter() - started
    backend.close()
    per_pair = generated / len(subset)
    print(f"(b) generate per pair: {generated:.1f} s for {len(subset)} pairs, {per_pair:.3f} s/pair")
    print(f"ratio (b)/(a) per pair: {per_pair / (batched / len(pairs)):.1f}x (target >= 10)")

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
    score.add_argument("--no-shared-context", action="store_true", help="(a) without sending shared prefixes first")
    score.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's choice)")
    score.add_argument("--seed", type=int, default=0)
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
