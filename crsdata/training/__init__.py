"""The training framework behind ``crsdata train``: recipe configs, data folders, and the model folder a run writes.

A recipe (one per published model, in ``models/<name>/``) is a config dataclass plus a :class:`Recipe` whose
``train`` returns a :class:`TrainResult`; everything around it (config from YAML and flags, reading built data
folders through the one schema, ``results.json``, ``crsdata.json`` and the model card) lives here, so every
recipe writes the same layout. The LLM recipes fine-tune through one layer, :mod:`crsdata.training.sft` (TRL's
trainer and LoRA, resumable), with the options of :class:`~crsdata.training.config.SFTTrainConfig`. Code of one
recipe only lives in its ``models/<name>/`` folder.
"""

from crsdata.training.config import TrainConfig, resolve_config
from crsdata.training.data import DataFolder, load_data_folders
from crsdata.training.model_folder import write_model_folder
from crsdata.training.recipe import EvalScore, Recipe, TrainResult, run_recipe

__all__ = [
    "DataFolder",
    "EvalScore",
    "Recipe",
    "TrainConfig",
    "TrainResult",
    "load_data_folders",
    "resolve_config",
    "run_recipe",
    "write_model_folder",
]
