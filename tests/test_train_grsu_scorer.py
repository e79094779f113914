"""``crsdata train grsu-scorer`` on real ReDial dialogues: the instruction data (scoring pairs with random, popular
and similar negatives; attribute critiques) in the shared GRSU prompts, a tiny model trained end to end into a model
folder that loads with PEFT and scores like the recipe measured, and one clear line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.grsu_scorer import CATALOG, TINY_RUN, build_small_redial, build_tiny_base, train_tiny_scorer

from crsdata.cli import main

pytestmark = pytest.mark.skipif(not CATALOG.is_file(), reason=f"ReDial data not found: {CATALOG}")


@pytest.fixture(scope="module")
def redial_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_small_redial(tmp_path_factory.mktemp("scorer-data"))


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_base(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def trained(redial_folder: Path, tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_scorer(redial_folder, tiny_base, tmp_path_factory.mktemp("run") / "scorer", "--seed", "7")


@pytest.fixture(scope="module")
def train_turns(redial_folder: Path):
    from crsdata.models.grsu_scorer import instructions as ins
    from crsdata.training import load_data_folders

    folders = load_data_folders([redial_folder])
    items = ins.catalog_of(folders)
    turns, skipped = ins.split_turns(folders, "train", items, 500)
    return items, turns, skipped


def test_scoring_pairs_label_targets_and_draw_each_negative_kind(train_turns) -> None:
    from crsdata.grsu.prompts import scoring_messages
    from crsdata.models.grsu_scorer import instructions as ins

    items, turns, _ = train_turns
    assert len(turns) > 30 and all(t.key.startswith("redial/") for t in turns)
    sampler = ins.NegativeSampler(items, ins.popularity(turns))
    pairs = ins.scoring_pairs(turns, sampler, {"random": 1, "popular": 1, "similar": 2}, seed=0)
    by_turn: dict[str, list] = {}
    for pair in pairs:
        by_turn.setdefault(pair.turn.key, []).append(pair)
    targets = sum(len(t.targets) for t in turns)
    kinds = {kind: sum(p.kind == kind for p in pairs) for kind in ("target", *ins.NEGATIVE_KINDS)}
    assert kinds == {"target": targets, "random": targets, "popular": targets, "similar": 2 * targets}
    for turn in turns:
        mine = by_turn[turn.key]
        assert {p.item_id for p in mine if p.label} == set(turn.targets)
        negatives = [p for p in mine if not p.label]
        assert not {p.item_id for p in negatives} & (set(turn.targets) | set(turn.mentioned))
        assert len({p.item_id for p in negatives}) == len(negatives)  # no negative twice in one turn
        near = {i for t in turn.targets for i in sampler.near(t)[: ins.SIMILAR_POOL]}
        assert all(p.item_id in near for p in negatives if p.kind == "similar")
        assert all(p.item_id in sampler.popular for p in negatives if p.kind == "popular")
    # The shared GRSU prompt, answered by the first assistant token.
    row = ins.scoring_row(pairs[0], items)
    assert row["prompt"] == scoring_messages(pairs[0].turn, items, pairs[0].item_id)
    assert row["completion"] == [{"role": "assistant", "content": "Yes"}]
    assert ins.scoring_row(next(p for p in pairs if not p.label), items)["completion"][0]["content"] == "No"
    assert (
        "## Conversation" in row["prompt"][0]["content"]
        and "Accept the recommendation (Yes/No)?" in (row["prompt"][0]["content"])
    )


def test_critiques_name_an_attribute_of_a_target(train_turns) -> None:
    from crsdata.grsu.prompts import critique_messages
    from crsdata.grsu.user import AttributeCritic
    from crsdata.models.grsu_scorer import instructions as ins

    items, turns, _ = train_turns
    sampler = ins.NegativeSampler(items, ins.popularity(turns))
    examples, skipped = ins.critique_examples(turns, sampler, AttributeCritic(items), list_size=4, fraction=1.0, seed=3)
    assert len(examples) + sum(skipped.values()) == len(turns)
    assert {e.with_targets for e in examples} == {True, False}  # both of GRSU's list constructions
    for example in examples:
        assert len(example.items) == 4
        listed_targets = set(example.items) & set(example.turn.targets)
        assert bool(listed_targets) == example.with_targets and len(listed_targets) < 4
        critique = example.critique
        wanted = {v for t in example.turn.targets for v in items.attributes(t)[critique.attribute]}
        assert critique.value in wanted and critique.value in critique.text
        (avoid,) = critique.avoid
        assert avoid in example.items and avoid not in example.turn.targets
        assert items.title(avoid) in critique.text
    row = ins.critique_row(examples[0], items)
    assert row["prompt"] == critique_messages(examples[0].turn, items, examples[0].items)
    assert row["completion"][0]["content"] == examples[0].critique.text


def test_auc_agrees_with_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    from crsdata.models.grsu_scorer.recipe import auc

    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.3
    scores = np.round(rng.random(300) + labels * 0.3, 1)  # rounded: many ties
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    assert auc([True, False], [0.9, 0.1]) == 1.0 and auc([False, True], [0.9, 0.1]) == 0.0
    assert np.isnan(auc([True, True], [0.1, 0.2]))  # one class only: undefined


def test_train_writes_a_model_folder_with_results_and_card(trained: Path, redial_folder: Path) -> None:
    from huggingface_hub import ModelCard

    results = json.loads((trained / "results.json").read_text())
    for key in ("auc", "auc_base", "validation_auc", "validation_auc_base", "recall@5", "ndcg@20", "mrr@20"):
        assert 0.0 <= results[key] <= 1.0, key
    for prefix in ("base_", "retrieval_"):
        assert 0.0 <= results[f"{prefix}ndcg@5"] <= 1.0
    # Recall@k of the full candidate list cannot change with the order.
    assert results["recall@20"] == results["base_recall@20"] == results["retrieval_recall@20"]
    assert results["seed"] == 7 and results["n_test_turns"] == 6 and results["n_validation_turns"] == 3
    assert results["n_train_turns"] == 12 and 0 < results["n_train"] and results["n_test"] >= 6 * 4
    training = results["details"]["training"]
    assert training["optimizer_steps"] == 2 and training["tokens_per_second"] > 0 and training["loss_history"]
    assert results["details"]["instruction_rows"]["scoring"] > 0
    assert set(results["details"]["pair_kinds"]) == {"target", "random", "popular", "similar"}
    metadata = json.loads((trained / "crsdata.json").read_text())
    assert metadata["kind"] == "model" and metadata["recipe"] == "grsu-scorer" and metadata["library_name"] == "peft"
    card = ModelCard.load(trained / "README.md")
    assert card.data.license == "cc-by-4.0" and card.data.datasets == ["redial"] and card.data.library_name == "peft"
    entries = {e.metric_type: e for e in card.data.eval_results}
    assert entries["auc"].metric_value == pytest.approx(results["auc"], abs=1e-4)
    assert entries["ndcg@5"].dataset_revision == "v0.1.0" and entries["ndcg@5"].dataset_split == "test"
    assert "Accept the recommendation (Yes/No)?" in card.text and "| fine-tuned P(Yes) |" in card.text
    assert "zero-shot base" in card.text
    # Two steps of a tiny random model learn nothing, and the card must say so in words.
    learnt = results["auc"] - results["auc_base"] >= 0.05
    assert ("**This scorer did not learn.**" in card.text) != learnt


def test_adapter_loads_with_peft_and_scores_like_the_backend(trained: Path, tiny_base: Path, tmp_path: Path) -> None:
    """PeftModel on the base gives the P("Yes") that the recipe's backend (merged model, option probabilities)
    gives for the same scoring prompt."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from crsdata.backends import make_backend
    from crsdata.backends.base import ChatRequest
    from crsdata.grsu.prompts import SCORE_OPTIONS

    assert json.loads((trained / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny_base)
    tokenizer = AutoTokenizer.from_pretrained(trained)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), trained).eval()
    messages = [{"role": "user", "content": "## Conversation\n\nUser: a funny film please\n\nAccept? Yes or No."}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    option_ids = [tokenizer(o, add_special_tokens=False).input_ids[0] for o in SCORE_OPTIONS]
    with torch.no_grad():
        p_yes = torch.softmax(model(ids).logits[0, -1, option_ids], dim=-1)[0].item()
    merged = tmp_path / "merged"
    model.merge_and_unload().save_pretrained(merged)
    tokenizer.save_pretrained(merged)
    backend = make_backend("local", str(merged), device="cpu")
    (probs,) = backend.option_probabilities([ChatRequest(messages=messages)], SCORE_OPTIONS)
    assert probs["Yes"] == pytest.approx(p_yes, abs=1e-5)


def test_a_folder_without_target_items_is_one_line(
    redial_folder: Path, tiny_base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The built ReDial folder with every item reference removed from its dialogues: nothing to say Yes to."""
    import shutil

    import datasets

    folder = tmp_path / "no-targets"
    shutil.copytree(redial_folder, folder)
    for shard in sorted(folder.glob("dialogues/*.parquet")):
        table = datasets.Dataset.from_parquet(str(shard))
        stripped = table.map(
            lambda r: {"turns": [{**t, "items": []} for t in r["turns"]], "target_items": []},
            features=table.features,
        )
        stripped.to_parquet(str(shard))
    capsys.readouterr()
    code = main(["train", "grsu-scorer", "--data", str(folder), "--out", str(tmp_path / "m"), "--base", str(tiny_base)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("crsdata train: error: ") and str(folder) in err[0]
    assert "split train, field 'target_items': no recommendation turn with a ground-truth (target) item" in err[0]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--ks", "10", "100"], "option --ks: cut-offs must be between 1 and --rerank-k (50)"),
        (["--critique-fraction", "2"], "option --critique-fraction: must be between 0 and 1"),
        (["--random-negatives", "0", "--popular-negatives", "0", "--similar-negatives", "0"], "needs negatives"),
    ],
)
def test_bad_options_are_one_line(
    redial_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], expected: str
) -> None:
    code = main(["train", "grsu-scorer", "--data", str(redial_folder), "--out", str(tmp_path / "m"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and expected in err[0]


def test_a_stopped_run_resumes_from_its_checkpoint(
    redial_folder: Path, tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scorer trains through the shared layer (crsdata.training.sft), so a run stopped after a checkpoint
    (Ctrl-C: exit 130) resumes with the same command, and its results say from which step."""
    import functools

    from fixtures.stopping import InterruptAfterSave

    from crsdata.training import sft

    out = tmp_path / "scorer"
    args = ["train", "grsu-scorer", "--data", str(redial_folder), "--out", str(out), "--base", str(tiny_base)]
    args += [*TINY_RUN, "--save-steps", "1"]
    fit = sft.fit_sft
    with monkeypatch.context() as patch:
        patch.setattr(sft, "fit_sft", functools.partial(fit, callbacks=[InterruptAfterSave(1)]))
        assert main(args) == 130
    assert [p.name for p in (out / ".trainer").glob("checkpoint-*")] == ["checkpoint-1"]
    assert not (out / "results.json").exists()
    assert main(args) == 0
    training = json.loads((out / "results.json").read_text())["details"]["training"]
    assert training["resumed_from_step"] == 1 and training["optimizer_steps"] == 2
    assert [h["step"] for h in training["loss_history"]] == [1, 2]
    assert not (out / ".trainer").exists()
