"""``crsdata train grsu-scorer --kind cross-encoder`` on real ReDial dialogues, with a tiny BERT (all-MiniLM-L6-v2's
tokenizer) as the base, in both architectures:

- ``bi-encoder`` (the default): the encoder fine-tuned contrastively on the llm kind's scoring pairs, saved as a
  plain ``AutoModel`` folder whose mean-pooled cosine reproduces the recipe's AUC;
- ``cross-encoder``: a one-logit sequence classifier that loads with ``AutoModelForSequenceClassification``.

``crsdata crs-eval --scorer-model`` picks up a folder of either."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.grsu_scorer import CATALOG, build_small_redial, train_tiny_cross_encoder
from fixtures.tiny_models import build_tiny_encoder

from crsdata.cli import main

pytestmark = pytest.mark.skipif(not CATALOG.is_file(), reason=f"ReDial data not found: {CATALOG}")
SIZES = {"ce_max_train_turns": 12, "ce_validation_turns": 3, "ce_test_turns": 6}


@pytest.fixture(scope="module")
def redial_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_redial(tmp_path_factory.mktemp("cross-encoder-data"))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert") / "model")


@pytest.fixture(scope="module")
def trained(redial_folder: Path, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default architecture, the bi-encoder."""
    out = tmp_path_factory.mktemp("bi-encoder") / "scorer"
    return train_tiny_cross_encoder(redial_folder, tiny_bert, out, "--seed", "3")


@pytest.fixture(scope="module")
def trained_logit(redial_folder: Path, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cross-encoder") / "scorer"
    return train_tiny_cross_encoder(redial_folder, tiny_bert, out, "--seed", "3", "--ce-architecture", "cross-encoder")


def _common_results(folder: Path, tiny_bert: Path, architecture: str) -> dict:
    from huggingface_hub import ModelCard

    results = json.loads((folder / "results.json").read_text())
    for key in ("auc", "auc_base", "validation_auc", "validation_auc_base", "recall@5", "ndcg@20", "base_mrr@20"):
        assert 0.0 <= results[key] <= 1.0, key
    assert results["recall@20"] == results["base_recall@20"] == results["retrieval_recall@20"]
    assert results["n_train_turns"] == 12 and results["n_test_turns"] == 6 and results["n_test"] >= 6 * 4
    details = results["details"]
    assert details["kind"] == "cross-encoder" and details["architecture"] == architecture and "cos" in details["score"]
    assert details["training"]["optimizer_steps"] == 2 and len(details["training"]["loss_history"]) == 2
    # Only scoring pairs train it: one target and three negatives (one per kind) per target.
    assert details["instruction_rows"] == {"scoring": results["n_train"]}
    assert set(details["pair_kinds"]) == {"target", "random", "popular", "similar"}
    metadata = json.loads((folder / "crsdata.json").read_text())
    assert metadata["config"]["kind"] == "cross-encoder" and metadata["config"]["ce_architecture"] == architecture
    assert metadata["base_model"] == str(tiny_bert)
    card = ModelCard.load(folder / "README.md")
    assert "zero-shot bi-encoder cosine" in card.text
    assert ("**This scorer did not learn.**" in card.text) != (results["auc"] - results["auc_base"] >= 0.05)
    return {"results": results, "metadata": metadata, "card": card}


def test_bi_encoder_is_the_default_and_saves_a_plain_encoder(trained: Path, tiny_bert: Path) -> None:
    found = _common_results(trained, tiny_bert, "bi-encoder")
    assert found["metadata"]["library_name"] == "sentence-transformers"
    # Each ground-truth pair is one contrastive group: the target, its three negatives, the batch's candidates.
    training = found["results"]["details"]["training"]
    assert training["groups"] == found["results"]["n_train"] // 4
    assert training["groups_trained"] == min(training["groups"], 2 * 8)
    assert json.loads((trained / "config.json").read_text())["architectures"] == ["BertModel"]
    assert [m["path"] for m in json.loads((trained / "modules.json").read_text())] == ["", "1_Pooling", "2_Normalize"]
    card = found["card"]
    assert card.data.pipeline_tag == "sentence-similarity" and "AutoModel.from_pretrained" in card.text


def test_bi_encoder_folder_scores_like_the_recipe(trained: Path, redial_folder: Path) -> None:
    """Mean-pooled cosine of AutoModel + its tokenizer gives the scorer's numbers, which reproduce the recipe's
    test AUC on the same pairs."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from crsdata.grsu.user import BiEncoderScorer, cross_encoder_texts, is_cross_encoder, minilm_scorer

    assert is_cross_encoder(str(trained))
    prepared, pairs, scorer = _recipe_pairs(trained, redial_folder)
    assert isinstance(scorer, BiEncoderScorer) and scorer.max_length == 128
    scores = scorer.score([(p.turn, p.item_id) for p in pairs])
    results = json.loads((trained / "results.json").read_text())
    from crsdata.models.grsu_scorer.recipe import pair_aucs

    assert pair_aucs(pairs, scores)["all"] == pytest.approx(results["auc"], abs=1e-6)
    tokenizer = AutoTokenizer.from_pretrained(trained, truncation_side="left")
    model = AutoModel.from_pretrained(trained).eval()
    texts = list(cross_encoder_texts(pairs[0].turn, prepared["items"], pairs[0].item_id))
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    a, b = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert (1 + (a @ b).item()) / 2 == pytest.approx(scores[0], abs=1e-5)
    assert isinstance(minilm_scorer(str(trained), prepared["items"]), BiEncoderScorer)


def test_a_lora_bi_encoder_is_merged_into_a_plain_encoder(
    redial_folder: Path, tiny_bert: Path, trained: Path, tmp_path: Path
) -> None:
    """``--ce-lora-r``: only the adapter trains, and the saved folder is the merged encoder, read without peft."""
    from crsdata.models.grsu_scorer.recipe import pair_aucs

    lora = train_tiny_cross_encoder(redial_folder, tiny_bert, tmp_path / "lora", "--seed", "3", "--ce-lora-r", "4")
    found = _common_results(lora, tiny_bert, "bi-encoder")
    assert found["metadata"]["config"]["ce_lora_r"] == 4
    full = json.loads((trained / "results.json").read_text())["details"]["training"]["trainable_parameters"]
    assert 0 < found["results"]["details"]["training"]["trainable_parameters"] < full / 2
    assert not (lora / "adapter_config.json").exists()
    assert json.loads((lora / "config.json").read_text())["architectures"] == ["BertModel"]
    _, pairs, scorer = _recipe_pairs(lora, redial_folder)
    scores = scorer.score([(p.turn, p.item_id) for p in pairs])
    assert pair_aucs(pairs, scores)["all"] == pytest.approx(found["results"]["auc"], abs=1e-6)


def _recipe_pairs(folder: Path, redial_folder: Path) -> tuple:
    from crsdata.grsu.user import minilm_scorer
    from crsdata.models.grsu_scorer.recipe import RECIPE, GrsuScorerConfig
    from crsdata.training import load_data_folders, resolve_config

    flags = {"out": str(folder), "data": [str(redial_folder)], "kind": "cross-encoder", "seed": 3, **SIZES}
    config = resolve_config(GrsuScorerConfig, defaults=RECIPE.default_config, flags=flags)
    prepared = RECIPE.prepare(config, load_data_folders([redial_folder]))
    return prepared, prepared["eval_pairs"]["test"], minilm_scorer(str(folder), prepared["items"])


def test_contrastive_groups_keep_each_targets_negatives_and_mask_the_turns_other_targets(
    redial_folder: Path, trained: Path
) -> None:
    from transformers import AutoTokenizer

    from crsdata.models.grsu_scorer.cross_encoder import contrastive_collator, contrastive_groups

    prepared, _, _ = _recipe_pairs(trained, redial_folder)
    pairs = prepared["pairs"]
    groups = contrastive_groups(pairs)
    assert len(groups) == sum(p.label for p in pairs) and all(len(g["negatives"]) == 3 for g in groups)
    several = next((g for g in groups if g["others"]), None)
    chosen = [g for g in groups if several is not None and g["turn"] is several["turn"]] or groups[:2]
    batch = contrastive_collator(AutoTokenizer.from_pretrained(trained), prepared["items"], 64)(chosen)
    columns = batch["candidates"]["input_ids"].shape[0]
    assert columns == len({x for g in chosen for x in (g["target"], *g["negatives"])})
    for row, group in enumerate(chosen):
        assert not batch["mask"][row, batch["labels"][row]]
        assert int(batch["mask"][row].sum()) == sum(o in {c["target"] for c in chosen} for o in group["others"])


def test_cross_encoder_architecture_saves_a_sequence_classifier(
    trained_logit: Path, tiny_bert: Path, redial_folder: Path
) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from crsdata.grsu.user import CrossEncoderScorer, cross_encoder_texts
    from crsdata.models.grsu_scorer.recipe import pair_aucs

    found = _common_results(trained_logit, tiny_bert, "cross-encoder")
    assert found["metadata"]["library_name"] == "transformers"
    config = json.loads((trained_logit / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"] and len(config["id2label"]) == 1
    card = found["card"]
    assert card.data.pipeline_tag == "text-classification" and "AutoModelForSequenceClassification" in card.text
    prepared, pairs, scorer = _recipe_pairs(trained_logit, redial_folder)
    assert isinstance(scorer, CrossEncoderScorer)
    scores = scorer.score([(p.turn, p.item_id) for p in pairs])
    assert pair_aucs(pairs, scores)["all"] == pytest.approx(found["results"]["auc"], abs=1e-6)
    tokenizer = AutoTokenizer.from_pretrained(trained_logit, truncation_side="left")
    model = AutoModelForSequenceClassification.from_pretrained(trained_logit).eval()
    conversation, facts = cross_encoder_texts(pairs[0].turn, prepared["items"], pairs[0].item_id)
    batch = tokenizer(conversation, facts, truncation="only_first", max_length=128, return_tensors="pt")
    with torch.no_grad():
        direct = torch.sigmoid(model(**batch).logits[0, 0]).item()
    assert direct == pytest.approx(scores[0], abs=1e-5)


@pytest.mark.parametrize(("folder", "name"), [("trained", "bi-encoder"), ("trained_logit", "cross-encoder")])
def test_crs_eval_scores_with_either_architecture(
    folder: str, name: str, redial_folder: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from crsdata.grsu.evaluation import CrsEvalConfig, run_crs_eval

    model = request.getfixturevalue(folder)
    config = CrsEvalConfig(
        source=redial_folder,
        out=tmp_path / "eval",
        crs="popularity",
        n=2,
        scorer_model=str(model),
        list_size=3,
        beam_width=1,
        expand_width=1,
        depth=2,
        bootstrap=20,
        progress=False,
    )
    results = run_crs_eval(config)
    assert results["user"]["scorer"] == {"name": name, "model": str(model)}
    assert results["n_turns"] == 2 and 0.0 <= results["recall@10"] <= 1.0


def test_the_scorer_text_is_the_seekers_side(redial_folder: Path, trained: Path) -> None:
    """The conversation side holds what the seeker said and a line per mentioned film, never the recommender's
    words."""
    from crsdata.grsu.user import MENTIONED_FILMS, cross_encoder_texts

    prepared, pairs, _ = _recipe_pairs(trained, redial_folder)
    turn = next(p.turn for p in pairs if p.turn.mentioned)
    conversation, facts = cross_encoder_texts(turn, prepared["items"], pairs[0].item_id)
    films = [m for m in turn.mentioned if m in prepared["items"]][-MENTIONED_FILMS:]
    assert conversation.splitlines()[-len(films) :] == [
        f"{prepared['items'].title(m)}: {', '.join(prepared['items'].attributes(m)['genre'])}" for m in films
    ]
    assert turn.user_text()[-50:] in conversation
    assert facts == prepared["items"].describe(pairs[0].item_id)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--kind", "x"], "option --kind: must be one of llm, cross-encoder, not 'x'"),
        (["--kind", "cross-encoder", "--ce-architecture", "y"], "option --ce-architecture: must be one of"),
        (
            ["--kind", "cross-encoder", "--ce-architecture", "cross-encoder", "--ce-lora-r", "8"],
            "bi-encoder architecture only",
        ),
    ],
)
def test_unknown_kind_or_architecture_is_one_line(
    flags: list[str], message: str, redial_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "grsu-scorer", "--data", str(redial_folder), "--out", str(tmp_path / "m"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and message in err[0]
