"""``crsdata train grsu-scorer``: the GRSU simulated user as a generative reward model (Wang et al. 2025, 3.2).

Fine-tunes a causal LM (default the embedded SmolLM2-135M-Instruct, with LoRA) on the instruction data of
:mod:`.instructions` (item scoring, plus attribute critiques) with TRL's SFT on prompt/completion rows, so that only
the answer is trained. At inference an item's score is P("Yes"): one forward pass, softmax over the ``Yes`` and
``No`` tokens after the prompt (the backend's ``option_probabilities``, as ``crsdata crs-eval``'s generative
scorer reads it).

Held-out evaluation, the tuned model beside the zero-shot base model, both scored the same way:

- AUC of P("Yes") over (turn, item) pairs of sampled test turns: each ground-truth item against the negatives of
  :data:`.instructions.NEGATIVE_KINDS` (per kind in ``details``), and the same on the validation turns;
- re-ranking: the MiniLM retrieval CRS of :mod:`crsdata.grsu.crs` proposes its top ``rerank_k`` items per test
  turn (mentioned items excluded); each scorer re-orders them by P("Yes"); Recall/NDCG/MRR@k
  (:func:`crsdata.metrics.ranking_scores`, mentioned items removed) of the retrieval order and of both re-rankings.

Validation turns come from the folders' ``validation`` split, or, when none has one, from a seeded
``validation_fraction`` of the training conversations (held out of training).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crsdata.errors import BadInputError
from crsdata.metrics.ranking import auc
from crsdata.training import EvalScore, Recipe, TrainResult
from crsdata.training.config import SFTTrainConfig
from crsdata.training.data import DataFolder
from crsdata.training.sft import check_sft_options

from . import instructions as ins

HUB_BASE_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the embedded GGUF was converted from
KINDS = ("llm", "cross-encoder")
METRIC_LABELS = {"recall": "Recall", "ndcg": "NDCG", "mrr": "MRR"}


@dataclass
class GrsuScorerConfig(SFTTrainConfig):
    """grsu-scorer's data and evaluation options; the fine-tuning ones (LoRA, learning rate, steps, ...) are
    the shared :class:`SFTTrainConfig`, set for this recipe in its config.yaml."""

    kind: str = field(
        default="llm",
        metadata={"help": "`llm`: P(Yes) SFT of a causal LM; `cross-encoder`: fine-tuned MiniLM (the --ce-* options)"},
    )
    # data
    context_chars: int = field(default=400, metadata={"help": "characters of conversation kept (most recent)"})
    max_train_turns: int = field(default=40, metadata={"help": "seeded sample of training turns (0: all)"})
    random_negatives: int = field(default=1, metadata={"help": "random catalog negatives per ground-truth item"})
    popular_negatives: int = field(default=1, metadata={"help": "popular-item negatives per ground-truth item"})
    similar_negatives: int = field(default=1, metadata={"help": "negatives near the target (MiniLM) per target"})
    critique_fraction: float = field(default=0.2, metadata={"help": "share of turns that also get a critique example"})
    critique_list_size: int = field(default=3, metadata={"help": "items in a critiqued list (GRSU: 10)"})
    validation_fraction: float = field(
        default=0.1, metadata={"help": "training conversations held out for validation when no validation split"}
    )
    # evaluation
    validation_turns: int = field(default=10, metadata={"help": "seeded sample of validation turns (0: all)"})
    test_turns: int = field(default=30, metadata={"help": "seeded sample of test turns (0: all)"})
    rerank_k: int = field(default=50, metadata={"help": "retrieval candidates re-ranked per test turn"})
    ks: list[int] = field(default_factory=lambda: [10, 50], metadata={"help": "cut-offs of Recall/NDCG/MRR"})
    eval_batch_size: int = field(default=8, metadata={"help": "prompts per scoring forward pass"})
    # --kind cross-encoder (its own sizes: an encoder of 22M parameters learns from far more pairs on a CPU)
    # Defaults: 225 steps of 16 at lr 1e-4 over all training turns, 96 word pieces a side: what trains in under 8
    # minutes on 2 cores and did best in that budget on validation (docs/grsu_scorer.md, round 12).
    ce_max_train_turns: int = field(default=0, metadata={"help": "cross-encoder: training turns (0: all)"})
    ce_validation_turns: int = field(default=300, metadata={"help": "cross-encoder: validation turns (0: all)"})
    ce_test_turns: int = field(default=200, metadata={"help": "cross-encoder: test turns (0: all)"})
    ce_max_length: int = field(default=96, metadata={"help": "cross-encoder: word pieces per pair (conversation cut)"})
    ce_learning_rate: float = field(default=1e-4, metadata={"help": "cross-encoder: peak learning rate (AdamW)"})
    ce_batch_size: int = field(
        default=16, metadata={"help": "cross-encoder: pairs (bi-encoder: targets with their negatives) per step"}
    )
    ce_epochs: float = field(default=1.0, metadata={"help": "cross-encoder: epochs over the pairs"})
    ce_max_steps: int = field(default=225, metadata={"help": "cross-encoder: optimizer steps (-1: --ce-epochs)"})
    ce_architecture: str = field(
        default="bi-encoder",
        metadata={"help": "cross-encoder kind: `bi-encoder` (contrastive, the default) or `cross-encoder` (one logit)"},
    )
    ce_freeze_embeddings: bool = field(default=True, metadata={"help": "cross-encoder: keep the word embeddings"})
    ce_lora_r: int = field(
        default=0,
        metadata={
            "help": "bi-encoder: train a LoRA adapter of this rank on every attention and dense layer (peft) instead "
            "of the encoder's weights, merged into the saved encoder (0: fine-tune the weights)"
        },
    )
    ce_context_chars: int = field(
        default=0, metadata={"help": "cross-encoder: characters of conversation loaded (0: all; the text keeps less)"}
    )


def pair_aucs(pairs: Sequence[ins.ScoringPair], scores: Sequence[float]) -> dict[str, float]:
    """``all``: AUC over every pair; per negative kind: the targets against that kind only."""
    out = {"all": auc([p.label for p in pairs], scores)}
    for kind in ins.NEGATIVE_KINDS:
        chosen = [(p.label, s) for p, s in zip(pairs, scores, strict=True) if p.label or p.kind == kind]
        if any(not label for label, _ in chosen):
            out[kind] = auc([label for label, _ in chosen], [s for _, s in chosen])
    return out


def _score_in_batches(scorer: Any, pairs: list[tuple[Any, str]], what: str, per_call: int = 64) -> list[float]:
    from tqdm.auto import tqdm

    scores: list[float] = []
    with tqdm(total=len(pairs), desc=what, unit="pair", leave=False) as bar:
        for start in range(0, len(pairs), per_call):
            chunk = pairs[start : start + per_call]
            scores.extend(scorer.score(chunk))
            bar.update(len(chunk))
    return scores


def rerank(lists: Sequence[Sequence[str]], scores: Sequence[Sequence[float]]) -> list[list[str]]:
    """Each list re-ordered by its scores, highest first; ties keep the list's order."""
    return [
        [item for _, _, item in sorted(zip([-s for s in row], range(len(items)), items, strict=True))]
        for items, row in zip(lists, scores, strict=True)
    ]


class GrsuScorerRecipe(Recipe):
    name = "grsu-scorer"
    config_class = GrsuScorerConfig
    summary = 'GRSU simulated user: P("Yes") item scorer with attribute critiques, SFT (LoRA) on built folders.'
    description = """\
GRSU's simulated user as a generative reward model (Wang et al., SIGIR 2025, section 3.2): a causal LM
fine-tuned to answer "Accept the recommendation (Yes/No)?" for one candidate item, described by its catalog
attributes (genre, actors, writer, director), after the conversation; and to critique a recommended list by an
attribute. The score of an item is P("Yes") from one forward pass.

Training data: the recommendation turns of the --data folders' train splits (every recommender turn that names
catalog items; or turn samples from `crsdata build redial-eval`): each ground-truth item is a "Yes", and per
ground-truth item one random, one popular and one similar item (MiniLM neighbours) are "No"; a share of the
turns also gives an attribute-critique example. Loss on the answer only (TRL prompt/completion SFT).

Evaluation on the test splits, beside the zero-shot base model: AUC of P("Yes"), and Recall/NDCG/MRR@10/50 of
re-ranking the MiniLM retrieval CRS's top 50 by P("Yes"). results.json, the model card and crsdata.json record
them with the split sizes and the seed.

Example (the CPU default run of docs/grsu_scorer.md: 16 steps, 31 minutes on 2 cores shared with other jobs):

  crsdata build redial --input ../shared/data/redial/train_partial/kepler_train_subset_500.jsonl \\
      --input ../shared/data/redial/official/test_data.jsonl \\
      --catalog ../shared/data/redial/redial__id2info.json --out data/redial
  crsdata train grsu-scorer --data data/redial --out models-out/grsu-scorer

On a GPU, use all training turns and more test turns, e.g.
  crsdata train grsu-scorer --data data/redial --out OUT --max-train-turns 0 --test-turns 0 --bf16 true
"""
    license = "cc-by-4.0"  # ReDial's licence; the base model's (Apache-2.0) is named in the card
    tags = ("grsu", "user-simulator", "reward-model")  # "peft" is added when the folder holds adapters

    def check(self, config: GrsuScorerConfig) -> None:
        if config.kind not in KINDS:
            raise BadInputError(
                "", "", "--kind", f"must be one of {', '.join(KINDS)}, not {config.kind!r}", "bad-option"
            )
        if config.kind == "cross-encoder" and min(config.ce_batch_size, config.ce_max_length) < 1:
            raise BadInputError("", "", "--ce-batch-size/--ce-max-length", "must be at least 1", "bad-option")
        from .cross_encoder import ARCHITECTURES

        if config.ce_architecture not in ARCHITECTURES:
            raise BadInputError(
                "",
                "",
                "--ce-architecture",
                f"must be one of {', '.join(ARCHITECTURES)}, not {config.ce_architecture!r}",
                "bad-option",
            )
        if config.ce_lora_r < 0 or (config.ce_lora_r and config.ce_architecture != "bi-encoder"):
            raise BadInputError(
                "", "", "--ce-lora-r", "a rank of 0 or more, for the bi-encoder architecture only", "bad-option"
            )
        check_sft_options(config)
        for name in ("rerank_k", "eval_batch_size"):
            if getattr(config, name) < 1:
                raise BadInputError("", "", "--" + name.replace("_", "-"), "must be at least 1", "bad-option")
        for name in ("random_negatives", "popular_negatives", "similar_negatives", "max_train_turns", "test_turns"):
            if getattr(config, name) < 0:
                raise BadInputError("", "", "--" + name.replace("_", "-"), "must not be negative", "bad-option")
        for name in ("critique_fraction", "validation_fraction"):
            if not 0.0 <= getattr(config, name) <= 1.0:
                raise BadInputError("", "", "--" + name.replace("_", "-"), "must be between 0 and 1", "bad-option")
        if not config.ks or min(config.ks) < 1 or max(config.ks) > config.rerank_k:
            raise BadInputError("", "", "--ks", f"cut-offs must be between 1 and --rerank-k ({config.rerank_k})")
        if config.random_negatives + config.popular_negatives + config.similar_negatives == 0:
            raise BadInputError("", "", "--random-negatives", "the scorer needs negatives of some kind", "bad-option")

    # ------------------------------------------------------------------------------------------------ data

    @staticmethod
    def sizes(config: GrsuScorerConfig) -> dict[str, int]:
        """Turns sampled per split (0: all), by kind."""
        if config.kind == "cross-encoder":
            return {
                "train": config.ce_max_train_turns,
                "validation": config.ce_validation_turns,
                "test": config.ce_test_turns,
            }
        return {"train": config.max_train_turns, "validation": config.validation_turns, "test": config.test_turns}

    def prepare(self, config: GrsuScorerConfig, data: list[DataFolder]) -> dict[str, Any]:
        """Turns of each split, the catalog, the negative sampler, the instruction rows; bad input first."""
        items = ins.catalog_of(data)
        context_chars = config.ce_context_chars if config.kind == "cross-encoder" else config.context_chars
        train, train_skipped = ins.split_turns(data, "train", items, context_chars)
        ins.require_turns(data, "train", train, train_skipped)
        if not any(folder.has_split("test") for folder in data):
            data[0].records("test")  # the missing-split error naming the folder
        test, test_skipped = ins.split_turns(data, "test", items, context_chars)
        ins.require_turns(data, "test", test, test_skipped)
        if any(folder.has_split("validation") for folder in data):
            validation, _ = ins.split_turns(data, "validation", items, context_chars)
            validation_from = "validation split"
        else:
            train, validation = ins.hold_out(train, config.validation_fraction, config.seed)
            validation_from = f"{config.validation_fraction:.0%} of the training conversations (seeded)"
        if not validation:
            raise BadInputError(data[0].path, "split train", "", "too few conversations to hold out a validation set")
        sizes = self.sizes(config)
        used_train = ins.sample_turns(train, sizes["train"] or None, config.seed)
        from crsdata.grsu.vectors import ItemVectors

        vectors = ItemVectors(items)
        counts = ins.popularity(train)
        sampler = ins.NegativeSampler(items, counts, ins.embedding_neighbours(vectors.matrix, vectors.ids))
        negatives = {
            "random": config.random_negatives,
            "popular": config.popular_negatives,
            "similar": config.similar_negatives,
        }
        pairs = ins.scoring_pairs(used_train, sampler, negatives, config.seed)
        from crsdata.grsu.user import AttributeCritic

        critiques, critique_skipped = ins.critique_examples(
            used_train,
            sampler,
            AttributeCritic(items),
            list_size=config.critique_list_size,
            fraction=config.critique_fraction,
            seed=config.seed + 1,
        )
        rows = [ins.scoring_row(p, items) for p in pairs] + [ins.critique_row(c, items) for c in critiques]
        eval_turns = {
            "validation": ins.sample_turns(validation, sizes["validation"] or None, config.seed + 2),
            "test": ins.sample_turns(test, sizes["test"] or None, config.seed + 3),
        }
        eval_pairs = {
            split: ins.scoring_pairs(turns, sampler, negatives, config.seed + 4) for split, turns in eval_turns.items()
        }
        return {
            "items": items,
            "vectors": vectors,
            "rows": rows,
            "pairs": pairs,
            "critiques": critiques,
            "turns": {"train": train, "used_train": used_train, "validation": validation, "test": test},
            "eval_turns": eval_turns,
            "eval_pairs": eval_pairs,
            "skipped": {
                "train_turns": dict(train_skipped),
                "test_turns": dict(test_skipped),
                "critiques": dict(critique_skipped),
            },
            "validation_from": validation_from,
            "popular_pool": len(sampler.popular),
        }

    # ------------------------------------------------------------------------------------------------ train

    def _fit_length(self, rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> tuple[list, Counter, int]:
        """Rows whose prompt and completion fit ``max_length`` tokens (a cut would remove the answer), the rows
        left out by task, and the tokens of the kept rows."""
        kept, left_out, tokens = [], Counter(), 0
        for row in rows:
            text = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
            length = len(tokenizer(text, add_special_tokens=False).input_ids)
            if length > max_length:
                left_out[row["task"]] += 1
            else:
                kept.append(row)
                tokens += length
        return kept, left_out, tokens

    def fit(
        self, config: GrsuScorerConfig, rows: list[dict[str, Any]], base_path: str, hub_base: str
    ) -> dict[str, Any]:
        """SFT of ``base_path`` on ``rows`` through the shared layer (:func:`crsdata.training.sft.fit_sft`, which
        resumes from ``OUT/.trainer``); the adapter (or model) is saved into ``config.out`` (:meth:`save`).
        Returns the trained model, the tokenizer and the run's numbers."""
        import datasets
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from crsdata.training.sft import fit_sft

        tokenizer = AutoTokenizer.from_pretrained(base_path)
        rows, left_out, tokens = self._fit_length(rows, tokenizer, config.max_length)
        if not rows:
            raise BadInputError("", "", "--max-length", f"no example fits {config.max_length} tokens", "bad-option")
        random_order = np.random.default_rng(config.seed).permutation(len(rows))
        dataset = datasets.Dataset.from_list(
            [{"prompt": rows[i]["prompt"], "completion": rows[i]["completion"]} for i in random_order]
        )
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        trained, run = fit_sft(
            config,
            model,
            tokenizer,
            dataset,
            tokens=tokens,
            save=lambda trained: self.save(config, trained, tokenizer, hub_base),
        )
        return {
            "model": trained,
            "tokenizer": tokenizer,
            "numbers": {
                "examples": len(rows),
                "examples_left_out_too_long": dict(left_out),
                "example_tokens": tokens,
                "optimizer_steps": run.steps,
                "train_seconds": round(run.seconds, 1),
                "tokens_per_second": round(run.tokens_per_second, 1) or None,
                "final_train_loss": round(run.train_loss, 4),
                "loss_history": run.loss_history,
                "trainable_parameters": run.trainable_parameters,
                "device": run.device,
                "resumed_from_step": run.resumed_from_step,
            },
        }

    def save(self, config: GrsuScorerConfig, model: Any, tokenizer: Any, hub_base: str) -> None:
        """Writes the adapter (or the whole model) and the tokenizer into ``config.out``; the adapter names
        ``hub_base`` as its base, the Hub id a user loads, not this machine's cache path."""
        out = Path(config.out)
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        if config.lora:
            adapter_config = out / "adapter_config.json"
            saved = json.loads(adapter_config.read_text(encoding="utf-8"))
            saved["base_model_name_or_path"] = hub_base
            adapter_config.write_text(json.dumps(saved, indent=2) + "\n", encoding="utf-8")

    @staticmethod
    def loadable(config: GrsuScorerConfig, model: Any, tokenizer: Any, work: Path) -> Path:
        """A folder that ``LocalBackend`` loads as a plain model: ``config.out`` itself, or for LoRA a merged copy
        in ``work``."""
        if not config.lora:
            return Path(config.out)
        merged = work / "merged"
        model.merge_and_unload().save_pretrained(merged)
        tokenizer.save_pretrained(merged)
        return merged

    # ------------------------------------------------------------------------------------------------ evaluate

    def evaluate(self, config: GrsuScorerConfig, prepared: dict[str, Any], scorers: dict[str, Any]) -> dict[str, Any]:
        """AUCs of every scorer on the validation and test pairs, and the re-ranking of the retrieval CRS's top
        ``rerank_k`` on the test turns."""
        from crsdata.grsu.crs import RetrievalCRS
        from crsdata.grsu.search import CrsQuery
        from crsdata.metrics import ranking_scores

        aucs: dict[str, dict[str, dict[str, float]]] = {}
        for split, pairs in prepared["eval_pairs"].items():
            for name, scorer in scorers.items():
                scores = _score_in_batches(scorer, [(p.turn, p.item_id) for p in pairs], f"{split} AUC, {name}")
                aucs.setdefault(split, {})[name] = pair_aucs(pairs, scores)
        turns = prepared["eval_turns"]["test"]
        crs = RetrievalCRS(prepared["vectors"])
        queries = [CrsQuery(t, k=config.rerank_k, seed=0, exclude=frozenset(t.mentioned)) for t in turns]
        lists = crs.recommend(queries)
        # A turn without a ground-truth item among its candidates scores 0 at every k however they are ordered,
        # so only the others are scored: the metrics over all sampled turns are exact, at a fraction of the cost.
        hit = [bool(set(t.targets) & set(found)) for t, found in zip(turns, lists, strict=True)]
        todo = [i for i, h in enumerate(hit) if h]
        rankings = {"retrieval": lists}
        for name, scorer in scorers.items():
            flat = _score_in_batches(scorer, [(turns[i], item) for i in todo for item in lists[i]], f"rerank, {name}")
            ranked, start = [list(found) for found in lists], 0
            for i in todo:
                ranked[i] = rerank([lists[i]], [flat[start : start + len(lists[i])]])[0]
                start += len(lists[i])
            rankings[name] = ranked
        ranking = {}
        for name, ranked in rankings.items():
            scores = ranking_scores(
                ranked, [t.targets for t in turns], config.ks, mentioned=[t.mentioned for t in turns]
            )
            ranking[name] = {**scores.mean(), "n_evaluated": int(len(scores.evaluated))}
        return {"auc": aucs, "ranking": ranking, "turns_with_a_target_in_candidates": len(todo)}

    # ------------------------------------------------------------------------------------------------ run

    def train(self, config: GrsuScorerConfig, data: list[DataFolder]) -> TrainResult:
        if config.kind == "cross-encoder":
            return self.train_cross_encoder(config, data)
        return self.train_llm(config, data)

    def train_cross_encoder(self, config: GrsuScorerConfig, data: list[DataFolder]) -> TrainResult:
        """MiniLM cross-encoder on the scoring pairs (:mod:`.cross_encoder`), evaluated beside the zero-shot
        MiniLM bi-encoder."""
        from crsdata.backends.embedded import EMBEDDED_NAMES
        from crsdata.grsu.user import BiEncoderScorer, CrossEncoderScorer
        from crsdata.metrics.match import default_model_dir

        from . import cross_encoder as ce

        started = time.perf_counter()
        prepared = self.prepare(config, data)
        default_base = str(config.base).lower() in EMBEDDED_NAMES
        base_path = str(default_model_dir()) if default_base else str(config.base)
        hub_base = ce.HUB_BASE_MODEL if default_base else str(config.base)
        work = Path(tempfile.mkdtemp(prefix="grsu-cross-encoder-"))
        try:
            numbers = ce.fit(config, prepared["pairs"], prepared["items"], base_path, work, Path(config.out))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        eval_started = time.perf_counter()
        items, length = prepared["items"], config.ce_max_length
        tuned = (
            BiEncoderScorer(items, config.out, max_length=length)
            if config.ce_architecture == "bi-encoder"
            else CrossEncoderScorer(config.out, items, max_length=length)
        )
        scorers = {"base": BiEncoderScorer(items, base_path, max_length=length), "tuned": tuned}
        evaluation = self.evaluate(config, prepared, scorers)
        timings = {
            "eval_seconds": round(time.perf_counter() - eval_started, 1),
            "total_seconds": round(time.perf_counter() - started, 1),
        }
        return self.result(config, data, prepared, numbers, evaluation, hub_base, timings)

    def train_llm(self, config: GrsuScorerConfig, data: list[DataFolder]) -> TrainResult:
        from crsdata.backends import make_backend
        from crsdata.backends.embedded import EMBEDDED_NAMES, resolve_model
        from crsdata.grsu.user import GenerativeScorer

        started = time.perf_counter()
        prepared = self.prepare(config, data)
        embedded = str(config.base).lower() in EMBEDDED_NAMES
        base_path = resolve_model(config.base)
        hub_base = HUB_BASE_MODEL if embedded else str(config.base)
        work = Path(tempfile.mkdtemp(prefix="grsu-scorer-"))
        try:
            fitted = self.fit(config, prepared["rows"], base_path, hub_base)
            tuned_path = self.loadable(config, fitted["model"], fitted["tokenizer"], work)
            del fitted["model"]
            eval_started = time.perf_counter()
            backends = {
                "base": make_backend("local", base_path, max_batch_size=config.eval_batch_size, model_id=hub_base),
                "tuned": make_backend("local", tuned_path, max_batch_size=config.eval_batch_size, model_id=config.out),
            }
            scorers = {name: GenerativeScorer(b, prepared["items"]) for name, b in backends.items()}
            evaluation = self.evaluate(config, prepared, scorers)
            for backend in backends.values():
                backend.close()
            eval_seconds = time.perf_counter() - eval_started
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self.result(
            config,
            data,
            prepared,
            fitted["numbers"],
            evaluation,
            hub_base,
            {
                "eval_seconds": round(eval_seconds, 1),
                "total_seconds": round(time.perf_counter() - started, 1),
            },
        )

    def result(
        self,
        config: GrsuScorerConfig,
        data: list[DataFolder],
        prepared: dict[str, Any],
        numbers: dict[str, Any],
        evaluation: dict[str, Any],
        hub_base: str,
        timings: dict[str, float],
    ) -> TrainResult:
        aucs, ranking = evaluation["auc"], evaluation["ranking"]
        cross = config.kind == "cross-encoder"
        bi = cross and config.ce_architecture == "bi-encoder"
        score_name = (
            "(1 + cos) / 2 of the fine-tuned bi-encoder"
            if bi
            else "sigmoid of the cross-encoder's logit"
            if cross
            else "P(Yes)"
        )
        metrics: dict[str, float] = {
            "auc": aucs["test"]["tuned"]["all"],
            "auc_base": aucs["test"]["base"]["all"],
            "validation_auc": aucs["validation"]["tuned"]["all"],
            "validation_auc_base": aucs["validation"]["base"]["all"],
        }
        for name, prefix in (("tuned", ""), ("base", "base_"), ("retrieval", "retrieval_")):
            for key, value in ranking[name].items():
                if "@" in key:
                    metrics[f"{prefix}{key}"] = value
        turns, pairs = prepared["turns"], prepared["eval_pairs"]
        split_sizes = {
            "n_train": numbers["examples"],
            "n_train_turns": len(turns["used_train"]),
            "n_validation": len(pairs["validation"]),
            "n_validation_turns": len(prepared["eval_turns"]["validation"]),
            "n_test": len(pairs["test"]),
            "n_test_turns": len(prepared["eval_turns"]["test"]),
        }
        source = data[0].source
        pipeline = "sentence-similarity" if bi else "text-classification" if cross else "text-generation"
        scores = [
            EvalScore("auc", metrics["auc"], f"AUC of {score_name}, test pairs", source, "test", task_type=pipeline)
        ]
        for key in ("recall", "ndcg", "mrr"):
            for k in config.ks:
                scores.append(
                    EvalScore(
                        f"{key}@{k}",
                        metrics[f"{key}@{k}"],
                        f"{METRIC_LABELS[key]}@{k}, re-ranking retrieval top {config.rerank_k}",
                        source,
                        "test",
                        task_type=pipeline,
                    )
                )
        task_counts = (
            Counter({"scoring": len(prepared["pairs"])}) if cross else Counter(row["task"] for row in prepared["rows"])
        )
        example = prepared["rows"][0]
        if cross:
            from crsdata.grsu.user import cross_encoder_texts

            first = prepared["pairs"][0]
            conversation, facts = cross_encoder_texts(first.turn, prepared["items"], first.item_id)
            example = {
                "prompt": [{"content": f"{conversation}\n\n[SEP]\n\n{facts}"}],
                "completion": [{"content": "1 (accepted)" if first.label else "0 (not accepted)"}],
            }
        critique_example = next((r for r in prepared["rows"] if r["task"] == "critique"), None)
        details = {
            "training": numbers,
            "timings": timings,
            "auc": aucs,
            "ranking": ranking,
            "turns_with_a_target_in_candidates": evaluation["turns_with_a_target_in_candidates"],
            "instruction_rows": dict(task_counts),
            "pair_kinds": dict(Counter(p.kind for p in prepared["pairs"])),
            "turns_available": {split: len(t) for split, t in turns.items()},
            "turns_skipped": prepared["skipped"],
            "validation_from": prepared["validation_from"],
            "negatives": {
                "random": config.random_negatives,
                "popular": f"{config.popular_negatives} from the {prepared['popular_pool']} most recommended",
                "similar": f"{config.similar_negatives} from the {ins.SIMILAR_POOL} MiniLM neighbours of the target",
            },
            "kind": config.kind,
            "architecture": config.ce_architecture if cross else "causal-lm",
            "score": (
                "(1 + cos) / 2 of the mean-pooled embeddings of (conversation, item facts) from MiniLM fine-tuned "
                "contrastively; base: the same cos from the zero-shot MiniLM"
                if bi
                else "sigmoid(logit) of MiniLM with a one-logit head on (conversation, item facts); base: "
                "(1 + cos) / 2 of the mean-pooled zero-shot MiniLM embeddings of the same two texts"
                if cross
                else "P(Yes) = softmax over the first tokens of 'Yes' and 'No' after the chat prompt"
            ),
        }
        return TrainResult(
            metrics=metrics,
            split_sizes=split_sizes,
            base_model=hub_base,
            library_name="peft" if config.lora and not cross else "sentence-transformers" if bi else "transformers",
            scores=scores,
            pipeline_tag=pipeline,
            card={
                "aucs": aucs,
                "ranking": ranking,
                "ks": list(config.ks),
                "rerank_k": config.rerank_k,
                "training": numbers,
                "timings": timings,
                "instruction_rows": dict(task_counts),
                "pair_kinds": details["pair_kinds"],
                "validation_from": prepared["validation_from"],
                "example_prompt": example["prompt"][0]["content"],
                "example_answer": example["completion"][0]["content"],
                "critique_prompt": critique_example["prompt"][0]["content"] if critique_example else "",
                "critique_answer": critique_example["completion"][0]["content"] if critique_example else "",
                "negative_kinds": list(ins.NEGATIVE_KINDS),
                "hits": evaluation["turns_with_a_target_in_candidates"],
                "lora": config.lora and not cross,
                "cross_encoder": cross,
                "bi_encoder": bi,
                "max_length": config.ce_max_length,
            },
            details=details,
        )


RECIPE = GrsuScorerRecipe()
