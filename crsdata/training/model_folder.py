"""The files every model folder gets, whatever recipe trained it.

::

    OUT/
      <model files>      written by the recipe (config.json + model.safetensors, adapter_*, model.skops, ...)
      results.json       held-out metrics and split sizes at the top level, the seed, and the recipe's details
      crsdata.json       {"kind": "model", "version": ...}: what `crsdata publish` reads to upload it as a model
      README.md          the model card: YAML metadata (base model, datasets with revisions, model-index with the
                         measured results, licence) and the recipe's card template
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crsdata.training.config import TrainConfig, config_as_dict
from crsdata.training.data import DataFolder

if TYPE_CHECKING:  # annotations only: recipe.py imports this module to write the folder
    from crsdata.training.recipe import Recipe, TrainResult

MODEL_FORMAT = "crsdata-model/1"
RESULTS_FILE = "results.json"


def results_document(config: TrainConfig, result: TrainResult) -> dict[str, Any]:
    return {
        **result.metrics,
        **result.split_sizes,
        "seed": config.seed,
        "base_model": result.base_model,
        "details": result.details,
    }


def card_metadata(recipe: Recipe, config: TrainConfig, data: list[DataFolder], result: TrainResult) -> Any:
    from huggingface_hub import EvalResult, ModelCardData

    revisions = {folder.source: f"v{folder.version}" for folder in data}
    eval_results = [
        EvalResult(
            task_type=score.task_type,
            dataset_type=score.dataset or (data[0].source if data else ""),
            dataset_name=score.dataset or (data[0].pretty_name if data else ""),
            dataset_split=score.split,
            dataset_revision=score.revision or revisions.get(score.dataset, ""),
            metric_type=score.metric,
            metric_value=round(float(score.value), 4),
            metric_name=score.name or score.metric,
        )
        for score in result.scores
    ]
    return ModelCardData(
        base_model=result.base_model or None,
        datasets=sorted({folder.source for folder in data}) or None,
        eval_results=eval_results or None,
        library_name=result.library_name,
        license=recipe.license,
        model_name=f"crsdata-{recipe.name}",
        pipeline_tag=result.pipeline_tag,
        tags=["crsdata", "conversational-recommendation", *recipe.tags]
        + (["peft"] if result.library_name == "peft" and "peft" not in recipe.tags else []),
    )


def render_model_card(recipe: Recipe, config: TrainConfig, data: list[DataFolder], result: TrainResult) -> str:
    import jinja2

    from crsdata import __version__
    from crsdata.cards import TEMPLATES

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(recipe.folder), str(TEMPLATES)]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    context = {
        "recipe": recipe.name,
        "summary": recipe.summary,
        "version": config.version,
        "crsdata_version": __version__,
        "config": config_as_dict(config),
        "data": [folder.reference() for folder in data],
        "result": result,
        "metrics": result.metrics,
        "split_sizes": result.split_sizes,
        "scores": [asdict(score) for score in result.scores],
        "seed": config.seed,
        "base_model": result.base_model,
        "library_name": result.library_name,
        **result.card,
    }
    body = env.get_template(recipe.card_template.name).render(**context)
    return f"---\n{card_metadata(recipe, config, data, result).to_yaml()}\n---\n\n{body}"


def write_model_folder(
    out: str | Path, recipe: Recipe, config: TrainConfig, data: list[DataFolder], result: TrainResult
) -> Path:
    """Writes results.json, crsdata.json and README.md into ``out`` (the recipe has written the model files)."""
    from crsdata.fileio import write_atomic
    from crsdata.folder_metadata import write_folder_metadata

    out = Path(out)
    results = results_document(config, result)
    write_atomic(out / RESULTS_FILE, json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    write_folder_metadata(
        out,
        "model",
        config.version,
        format=MODEL_FORMAT,
        recipe=recipe.name,
        base_model=result.base_model,
        library_name=result.library_name,
        config=config_as_dict(config),
        data=[folder.reference() for folder in data],
        metrics=result.metrics,
        split_sizes=result.split_sizes,
    )
    write_atomic(out / "README.md", render_model_card(recipe, config, data, result))
    return out
