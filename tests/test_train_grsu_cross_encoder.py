"""``crsdata train grsu-scorer --kind cross-encoder`` on real ReDial dialogues: a tiny BERT (all-MiniLM-L6-v2's
tokenizer) fine-tuned as a one-logit cross-encoder on the llm kind's scoring pairs, into a folder that loads with
``AutoModelForSequenceClassification``, scores like the recipe measured, and that ``crsdata crs-eval --scorer-model``
picks up as a cross-encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.grsu_scorer import CATALOG, build_small_redial, train_tiny_cross_encoder
from fixtures.tiny_models import build_tiny_encoder

from crsdata.cli import main

pytestmark = pytest.mark.skipif(not CATALOG.is_file(), reason=f"ReDial data not found: {CATALOG}")


@pytest.fixture(scope="module")
def redial_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_redial(tmp_path_factory.mktemp("cross-encoder-data"))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="module")
def trained(redial_folder: Path, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cross-encoder") / "scorer"
    return train_tiny_cross_encoder(redial_folder, tiny_bert, out, "--seed", "3")


def test_train_writes_a_cross_encoder_folder(trained: Path, tiny_bert: Path) -> None:
    from huggingface_hub import ModelCard

    results = json.loads((trained / "results.json").read_text())
    for key in ("auc", "auc_base", "validation_auc", "validation_auc_base", "recall@5", "ndcg@20", "base_mrr@20"):
        assert 0.0 <= results[key] <= 1.0, key
    assert results["recall@20"] == results["base_recall@20"] == results["retrieval_recall@20"]
    assert results["n_train_turns"] == 12 and results["n_test_turns"] == 6 and results["n_test"] >= 6 * 4
    details = results["details"]
    assert details["kind"] == "cross-encoder" and "cos" in details["score"]
    assert details["training"]["optimizer_steps"] == 2 and len(details["training"]["loss_history"]) == 2
    # Only scoring pairs train a cross-encoder: one target and three negatives (one per kind) per target.
    assert details["instruction_rows"] == {"scoring": results["n_train"]}
    assert set(details["pair_kinds"]) == {"target", "random", "popular", "similar"}
    metadata = json.loads((trained / "crsdata.json").read_text())
    assert metadata["config"]["kind"] == "cross-encoder" and metadata["library_name"] == "transformers"
    assert metadata["base_model"] == str(tiny_bert)
    config = json.loads((trained / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and len(config["id2label"]) == 1
    card = ModelCard.load(trained / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.library_name == "transformers"
    assert "AutoModelForSequenceClassification" in card.text and "zero-shot bi-encoder cosine" in card.text
    assert ("**This scorer did not learn.**" in card.text) != (results["auc"] - results["auc_base"] >= 0.05)


def test_folder_loads_and_scores_like_the_recipe(trained: Path, redial_folder: Path) -> None:
    """AutoModelForSequenceClassification + its tokenizer give the scorer's probabilities, which reproduce the
    recipe's test AUC on the same pairs."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from crsdata.grsu.user import CrossEncoderScorer, cross_encoder_texts, is_cross_encoder
    from crsdata.models.grsu_scorer.recipe import RECIPE, GrsuScorerConfig, pair_aucs
    from crsdata.training import load_data_folders, resolve_config

    assert is_cross_encoder(str(trained))
    config = resolve_config(
        GrsuScorerConfig,
        defaults=RECIPE.default_config,
        flags={"out": str(trained), "data": [str(redial_folder)], "kind": "cross-encoder", "seed": 3,
               "ce_max_train_turns": 12, "ce_validation_turns": 3, "ce_test_turns": 6},
    )  # fmt: skip
    prepared = RECIPE.prepare(config, load_data_folders([redial_folder]))
    pairs = prepared["eval_pairs"]["test"]
    scorer = CrossEncoderScorer(str(trained), prepared["items"])
    scores = scorer.score([(p.turn, p.item_id) for p in pairs])
    results = json.loads((trained / "results.json").read_text())
    assert pair_aucs(pairs, scores)["all"] == pytest.approx(results["auc"], abs=1e-6)

    tokenizer = AutoTokenizer.from_pretrained(trained, truncation_side="left")
    model = AutoModelForSequenceClassification.from_pretrained(trained).eval()
    conversation, facts = cross_encoder_texts(pairs[0].turn, prepared["items"], pairs[0].item_id)
    batch = tokenizer(conversation, facts, truncation="only_first", max_length=128, return_tensors="pt")
    with torch.no_grad():
        direct = torch.sigmoid(model(**batch).logits[0, 0]).item()
    assert direct == pytest.approx(scores[0], abs=1e-5)


def test_crs_eval_scores_with_the_cross_encoder(trained: Path, redial_folder: Path, tmp_path: Path) -> None:
    from crsdata.grsu.evaluation import CrsEvalConfig, run_crs_eval

    config = CrsEvalConfig(
        source=redial_folder,
        out=tmp_path / "eval",
        crs="popularity",
        n=2,
        scorer_model=str(trained),
        list_size=3,
        beam_width=1,
        expand_width=1,
        depth=2,
        bootstrap=20,
        progress=False,
    )
    results = run_crs_eval(config)
    assert results["user"]["scorer"] == {"name": "cross-encoder", "model": str(trained)}
    assert results["n_turns"] == 2 and 0.0 <= results["recall@10"] <= 1.0


def test_unknown_kind_is_one_line(redial_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "grsu-scorer", "--data", str(redial_folder), "--out", str(tmp_path / "m"), "--kind", "x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "option --kind: must be one of llm, cross-encoder, not 'x'" in err[0]
