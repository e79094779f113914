"""The one fine-tuning layer of the LLM recipes: TRL's ``SFTConfig``, peft's ``LoraConfig`` and the
``SFTTrainer`` are built here, from the options of :class:`~crsdata.training.config.SFTTrainConfig`, and nowhere
else.

Both kinds of training data TRL takes go through :func:`fit_sft` unchanged:

- ``input_ids`` + ``labels`` (the Interplay simulators: one tokenized dialogue per row, -100 where no loss);
- ``prompt`` + ``completion`` conversations (grsu-scorer: TRL applies the chat template, loss on the answer).

Token weights: ``fit_sft(..., weighted=TokenWeight(tag, weight))`` multiplies the loss of every trained token
that follows the token ids ``tag`` by ``weight`` (the Interplay recipes' ``--action-loss-weight``: the first
token of each turn's action, whose accept-or-not is one token among a hundred in a turn and so is barely learned
at weight 1). The loss is still summed over the trained tokens and divided by their number, so at weight 1 it is
the model's own loss. A dataset of ``input_ids`` rows may also carry a ``loss_weights`` column, one float per token
(:data:`LOSS_WEIGHTS`): it rides through TRL's collator (padded with 1) and multiplies those weights, for weights
that the token ids alone cannot place (the user's answers to a proposal, among all its actions).

Checkpoints: every ``save_steps`` optimizer steps the trainer writes ``OUT/.trainer/checkpoint-N`` (the last one
kept). A run that stops before its end (killed, out of time) leaves them there, and the same command resumes from
the last one: the optimizer, the scheduler and the data order go on where they were. Once the trained model is
saved the checkpoints go, and ``OUT/.trainer/run.json`` keeps the run's figures and training configuration until
the recipe has written the whole folder (scores, card): a command stopped after training (its scoring failed or
was killed) is run again as it was, and a recipe that reads :func:`finished_run` then scores the saved model
instead of training again. A finished model folder holds no ``.trainer``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crsdata.errors import BadInputError
from crsdata.fileio import write_json_atomic
from crsdata.training.config import SFTTrainConfig
from crsdata.training.recipe import CHECKPOINTS, is_main_process


@dataclass
class TrainRun:
    """What one fine-tuning run measured (results.json's ``details.training``)."""

    steps: int
    epochs: float
    seconds: float
    tokens_per_second: float
    loss_history: list[dict[str, float]]
    first_loss: float
    last_loss: float
    trainable_parameters: int
    total_parameters: int
    device: str
    resumed_from_step: int = 0  # the checkpoint this process started from (0: a fresh run)
    train_loss: float = math.nan  # the trainer's mean loss over the steps this process ran

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The optional per-token weight column of an ``input_ids`` dataset (see the module doc).
LOSS_WEIGHTS = "loss_weights"


@dataclass(frozen=True)
class TokenWeight:
    """Weight ``weight`` on the loss of each trained token that comes right after the token ids ``tag``."""

    tag: tuple[int, ...]
    weight: float

    def positions(self, labels: Any) -> Any:
        """A bool tensor shaped like ``labels`` (-100 where untrained): True at the trained tokens that follow
        ``tag`` (itself trained)."""
        import torch

        n = len(self.tag)
        follows = torch.zeros_like(labels, dtype=torch.bool)
        if labels.shape[-1] > n:
            match = torch.ones_like(labels[..., n:], dtype=torch.bool)
            for k, token in enumerate(self.tag):
                match &= labels[..., k : labels.shape[-1] - n + k] == token
            follows[..., n:] = match & (labels[..., n:] != -100)
        return follows

    def weights(self, labels: Any) -> Any:
        """A float tensor shaped like ``labels``: ``weight`` at :meth:`positions`, 1 elsewhere."""
        import torch

        ones = torch.ones_like(labels, dtype=torch.float32)
        return torch.where(self.positions(labels), ones * self.weight, ones)


class _WeightsCollator:
    """TRL's collator with the :data:`LOSS_WEIGHTS` column padded beside ``labels`` (1 on padding, whose label is
    -100 anyway); TRL's own collator knows only its columns."""

    def __init__(self, collate: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> None:
        self.collate = collate

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        rows = [example.pop(LOSS_WEIGHTS) for example in examples]
        batch = self.collate(examples)
        weights = torch.ones(batch["labels"].shape, dtype=torch.float32)
        for i, row in enumerate(rows):
            n = min(len(row), weights.shape[1])
            weights[i, :n] = torch.tensor(row[:n], dtype=torch.float32)
        batch[LOSS_WEIGHTS] = weights
        return batch


def weighted_token_loss(logits: Any, labels: Any, weights: Any, num_items_in_batch: Any = None) -> Any:
    """Next-token cross-entropy summed with ``weights`` over the trained positions of ``labels`` and divided by
    their number (``num_items_in_batch`` across accumulated batches when given, as transformers' own loss)."""
    import torch

    target = labels[..., 1:]
    losses = torch.nn.functional.cross_entropy(
        logits[..., :-1, :].float().reshape(-1, logits.shape[-1]),
        target.reshape(-1),
        ignore_index=-100,
        reduction="none",
    ).view_as(target)
    trained = target != -100
    count = num_items_in_batch if num_items_in_batch is not None else trained.sum()
    return (losses * weights[..., 1:] * trained).sum() / count


def check_sft_options(config: SFTTrainConfig) -> None:
    """Refuses options no fine-tuning run can use (BadInputError naming the flag), before any data is read."""
    for name in ("batch_size", "gradient_accumulation_steps", "lora_r", "max_length", "logging_steps"):
        if getattr(config, name) < 1:
            raise BadInputError(
                "", "", "--" + name.replace("_", "-"), f"must be at least 1, got {getattr(config, name)}", "bad-option"
            )
    for name in ("lora_layers", "save_steps", "threads", "weight_decay", "max_grad_norm"):
        if getattr(config, name) < 0:
            raise BadInputError("", "", "--" + name.replace("_", "-"), "must not be negative", "bad-option")
    if not 0 < config.learning_rate < 1:
        raise BadInputError(
            "", "", "--learning-rate", f"expected a value in (0, 1), got {config.learning_rate}", "bad-option"
        )
    # transformers reads a warm-up below 1 as a share of the steps, 1 or more as a number of steps.
    if not 0 <= config.warmup_ratio < 1:
        raise BadInputError("", "", "--warmup-ratio", "must be at least 0 and below 1", "bad-option")
    if not 0 <= config.min_lr_ratio <= 1:
        raise BadInputError("", "", "--min-lr-ratio", "must be between 0 and 1", "bad-option")


def checkpoint_folder(out: str | Path) -> Path:
    return Path(out) / CHECKPOINTS


FINISHED_RUN = "run.json"
# Options that change how a run is scored, logged or scheduled, not the model it trains: a finished run may be scored
# again with other values.
NOT_TRAINING = frozenset(
    {"eval_size", "eval_split", "eval_batch_size", "eval_max_new_tokens", "compare_base", "threads", "logging_steps"}
)


def _training_options(config: SFTTrainConfig) -> dict[str, Any]:
    as_json = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    return {k: v for k, v in as_json.items() if k not in NOT_TRAINING}


def save_finished_run(config: SFTTrainConfig, run: TrainRun) -> None:
    """Writes ``OUT/.trainer/run.json`` (atomically): the figures of a run whose model is saved in ``OUT``."""
    path = checkpoint_folder(config.out) / FINISHED_RUN
    write_json_atomic(path, {"config": _training_options(config), "run": run.as_dict()})


def finished_run(config: SFTTrainConfig) -> TrainRun | None:
    """The figures of the run whose trained model ``OUT`` already holds, when the command stopped before the folder
    was complete (see the module doc); None when there is none. Refused, naming the options, when that run was
    trained with other options than ``config``'s."""
    path = checkpoint_folder(config.out) / FINISHED_RUN
    if not path.is_file():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    now = _training_options(config)
    changed = sorted(k for k in set(saved["config"]) | set(now) if saved["config"].get(k) != now.get(k))
    if changed:
        raise BadInputError(
            path,
            "",
            changed[0],
            f"{config.out} holds a model trained with other options ({', '.join(changed)}): give another --out, or "
            "remove the folder to train again",
            "bad-option",
        )
    return TrainRun(**saved["run"])


def last_checkpoint_step(out: str | Path) -> int:
    """The step of the newest checkpoint in ``OUT/.trainer`` (0: none, a fresh run)."""
    folder = checkpoint_folder(out)
    steps = [int(c.name.rsplit("-", 1)[-1]) for c in folder.glob("checkpoint-*")] if folder.is_dir() else []
    return max(steps, default=0)


def linear_module_names(model: Any) -> list[str]:
    """The names of the linear layers inside ``model``'s decoder blocks (what "all-linear" means to peft)."""
    import torch

    output = model.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not output
        }
    )


def top_layers(model: Any, count: int) -> list[int] | None:
    """Indices of the top ``count`` decoder layers of ``model`` (None: every layer)."""
    layers = getattr(model.config, "num_hidden_layers", 0)
    if count <= 0 or count >= layers:
        return None
    return list(range(layers - count, layers))


def lora_config(config: SFTTrainConfig, model: Any) -> Any:
    """peft's LoraConfig of ``config`` for ``model`` (None for a full fine-tune): every linear layer of the
    decoder blocks, or of the top ``lora_layers`` only, where the backward pass then stops."""
    if not config.lora or getattr(model, "peft_config", None):
        return None  # a full fine-tune, or a model that carries its adapter already (a second stage)
    layers = top_layers(model, config.lora_layers)
    return peft_lora_config(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        # peft takes a layer subset only with the modules named (not "all-linear").
        target_modules=linear_module_names(model) if layers is not None else "all-linear",
        layers_to_transform=layers,
        task_type="CAUSAL_LM",
    )


def with_encoder_lora(encoder: Any, r: int) -> Any:
    """``encoder`` (a BERT-style sentence encoder) with a trainable LoRA adapter of rank ``r`` on every attention
    projection and dense layer, alpha 2r, no dropout (peft): the user decision scorer and the GRSU bi-encoder's
    ``--ce-lora-r``."""
    from peft import get_peft_model

    modules = ["query", "key", "value", "dense"]
    return get_peft_model(encoder, peft_lora_config(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=modules))


def peft_lora_config(**options: Any) -> Any:
    """peft's LoraConfig, built here alone (tests/test_train_sft.py)."""
    from peft import LoraConfig

    return LoraConfig(**options)


def sft_config(config: SFTTrainConfig, *, cuda: bool) -> Any:
    """TRL's SFTConfig of ``config``: cosine decay (to ``min_lr_ratio`` of the peak) after a linear warm-up,
    checkpoints into ``OUT/.trainer``, seeded data order, nothing reported anywhere."""
    from trl import SFTConfig

    schedule: dict[str, Any] = {"lr_scheduler_type": "cosine"}
    if config.min_lr_ratio > 0:
        schedule = {
            "lr_scheduler_type": "cosine_with_min_lr",
            "lr_scheduler_kwargs": {"min_lr_rate": config.min_lr_ratio},
        }
    return SFTConfig(
        output_dir=str(checkpoint_folder(config.out)),
        max_steps=config.max_steps,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        **schedule,
        warmup_steps=config.warmup_ratio,  # below 1: a share of the steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        save_strategy="steps" if config.save_steps > 0 else "no",
        save_steps=max(config.save_steps, 1),
        save_total_limit=1,
        report_to="none",
        bf16=config.bf16,
        use_cpu=not cuda,
        gradient_checkpointing=False,
        max_length=config.max_length,
        # Examples of similar length share a batch, so little of each step is padding.
        train_sampling_strategy="group_by_length" if config.bucketing else "random",
        seed=config.seed,
        data_seed=config.seed,
        dataloader_num_workers=0,
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def fit_sft(
    config: SFTTrainConfig,
    model: Any,
    tokenizer: Any,
    dataset: Any,
    *,
    tokens: int,
    save: Callable[[Any], None],
    callbacks: list[Any] | None = None,
    weighted: TokenWeight | None = None,
) -> tuple[Any, TrainRun]:
    """Fine-tunes ``model`` on ``dataset`` (``input_ids``/``labels`` or ``prompt``/``completion`` rows, see the
    module doc) with TRL's SFTTrainer, LoRA when ``config.lora``, resuming from ``OUT/.trainer`` when an earlier
    run left a checkpoint there. ``tokens`` (of the whole dataset) gives the throughput. On the main process
    ``save(trained_model)`` writes the model into ``config.out``; the checkpoints are removed after it.
    ``weighted``: a weight on the loss of some tokens (see the module doc).
    Returns the trained model (adapters not merged) and the run's figures."""
    import torch
    from trl import SFTTrainer

    row_weights = LOSS_WEIGHTS in getattr(dataset, "column_names", ())

    class Trainer(SFTTrainer):
        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            if row_weights and LOSS_WEIGHTS not in self._signature_columns:
                self._signature_columns = [*self._signature_columns, LOSS_WEIGHTS]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # type: ignore[no-untyped-def]
            rows = inputs.pop(LOSS_WEIGHTS, None)
            if rows is None and (weighted is None or weighted.weight == 1):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs["labels"]
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            weights = weighted.weights(labels) if weighted is not None else torch.ones_like(labels, dtype=torch.float32)
            if rows is not None:
                weights = weights * rows
            loss = weighted_token_loss(outputs.logits, labels, weights, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

    check_sft_options(config)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    cuda = torch.cuda.is_available()
    first_step = last_checkpoint_step(config.out)  # this process's figures count only the steps it runs
    trainer = Trainer(
        model=model,
        args=sft_config(config, cuda=cuda),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config, model),
        callbacks=callbacks,
    )
    if row_weights:
        trainer.data_collator = _WeightsCollator(trainer.data_collator)
    trained = trainer.model
    trainable = sum(p.numel() for p in trained.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trained.parameters())
    if first_step:
        print(f"[crsdata train] resuming from step {first_step} in {checkpoint_folder(config.out)}", flush=True)
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=True if first_step else None)
    seconds = time.perf_counter() - started
    state = trainer.state
    history = [
        {"step": int(h["step"]), "loss": float(h["loss"]), "learning_rate": float(h.get("learning_rate", 0.0))}
        for h in state.log_history
        if "loss" in h
    ]
    world = int(os.environ.get("WORLD_SIZE", "1"))
    examples = (state.global_step - first_step) * config.batch_size * config.gradient_accumulation_steps * world
    seen = examples * tokens / max(len(dataset), 1)
    losses = [h["loss"] for h in history]
    run = TrainRun(
        steps=state.global_step,
        epochs=float(state.epoch or 0.0),
        seconds=seconds,
        tokens_per_second=seen / seconds if seconds else 0.0,
        loss_history=history,
        first_loss=_mean(losses[:1]),
        last_loss=_mean(losses[-3:]),
        trainable_parameters=trainable,
        total_parameters=total,
        device="cuda" if cuda else "cpu",
        resumed_from_step=first_step,
        train_loss=float(output.training_loss),
    )
    if is_main_process():
        save(trained)
        shutil.rmtree(checkpoint_folder(config.out), ignore_errors=True)
        save_finished_run(config, run)
    return trained, run
