"""A recipe: one published model's config dataclass and the ``train`` that turns built data folders into it.

Recipes live in ``models/<name>/recipe.py`` next to their default ``config.yaml`` and their model-card template
``card.md.jinja``, and are registered by name in :data:`crsdata.models.RECIPES`. A recipe's ``train`` writes the
model files into ``config.out`` and returns a :class:`TrainResult`; :func:`run_recipe` does the rest that every
recipe shares (checking the data folders, ``results.json``, ``crsdata.json`` and the card), so each run leaves
the same layout whatever trained it.
"""

from __future__ import annotations

import inspect
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from crsdata.errors import BadInputError
from crsdata.training.config import TrainConfig
from crsdata.training.data import DataFolder, load_data_folders

# Checkpoints and the finished run's record, under the output folder until the folder is complete
# (crsdata.training.sft).
CHECKPOINTS = ".trainer"


@dataclass
class EvalScore:
    """One held-out result, as a ``model-index`` entry of the card."""

    metric: str  # machine name: "accuracy", "success_rate", ...
    value: float
    name: str = ""  # what a reader sees: "Success rate (replay)"
    dataset: str = ""  # DataFolder.source the score was measured on
    split: str = "test"
    revision: str = ""  # the data folder's version tag, "v0.1.0"
    task_type: str = "text-generation"


@dataclass
class TrainResult:
    """What a recipe's ``train`` measured; ``metrics`` and ``split_sizes`` go to the top level of results.json."""

    metrics: dict[str, float]  # held-out metrics of the trained model
    split_sizes: dict[str, int]  # {"n_train": ..., "n_validation": ..., "n_test": ...}
    base_model: str  # Hub id of the base model ("" for a model trained from scratch)
    library_name: str  # "transformers", "peft" or "sklearn": how the folder loads
    scores: list[EvalScore] = field(default_factory=list)
    pipeline_tag: str | None = None
    card: dict[str, Any] = field(default_factory=dict)  # recipe-specific context for card.md.jinja
    details: dict[str, Any] = field(default_factory=dict)  # more for results.json: baselines, loss history, timings


class Recipe(ABC):
    """Base class of the recipes in ``models/``; see the module doc."""

    name: ClassVar[str]  # the `crsdata train NAME` name
    config_class: ClassVar[type[TrainConfig]]
    summary: ClassVar[str]  # one line for `crsdata train --help`
    description: ClassVar[str] = ""  # the recipe's --help text: what it trains and ready-to-run commands
    license: ClassVar[str] = "apache-2.0"
    tags: ClassVar[tuple[str, ...]] = ()

    @property
    def folder(self) -> Path:
        """``models/<name>/``: the recipe's module, config.yaml and card template."""
        return Path(inspect.getfile(type(self))).resolve().parent

    @property
    def default_config(self) -> Path:
        return self.folder / "config.yaml"

    @property
    def card_template(self) -> Path:
        return self.folder / "card.md.jinja"

    @abstractmethod
    def train(self, config: Any, data: list[DataFolder]) -> TrainResult:
        """Trains on ``data``, writes the model files into ``config.out`` and measures it on held-out data."""

    def check(self, config: Any) -> None:  # noqa: B027 - optional hook
        """Refuses a config the recipe cannot run (BadInputError naming the key), before any data is read."""


def is_main_process() -> bool:
    """False on the other ranks of a multi-process job (``accelerate launch``, torchrun): they train, only rank 0
    scores and writes the model folder."""
    return int(os.environ.get("RANK", "0")) == 0


def _inside(child: Path, parent: Path) -> bool:
    child, parent = child.resolve(), parent.resolve()
    return child == parent or parent in child.parents


def run_recipe(recipe: Recipe, config: TrainConfig, *, data: list[DataFolder] | None = None) -> TrainResult:
    """Checks ``config`` and its data folders, trains, and writes the model folder's shared files."""
    from crsdata.training.model_folder import write_model_folder

    if not config.out:
        raise BadInputError("", "", "--out", "give the output model folder", "bad-option")
    recipe.check(config)
    folders = data if data is not None else load_data_folders(config.data)
    out = Path(config.out)
    for folder in folders:
        if _inside(out, folder.path) or _inside(folder.path, out):
            raise BadInputError(
                out, "", "--out", f"must not be inside, or contain, the data folder {folder.path}", "bad-option"
            )
    out.mkdir(parents=True, exist_ok=True)
    result = recipe.train(config, folders)
    if is_main_process():
        write_model_folder(out, recipe, config, folders, result)
        # The folder is complete: the finished run's record (crsdata.training.sft) has done its job.
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    return result
