"""The one fine-tuning layer (:mod:`crsdata.training.sft`): the only place that builds TRL's trainer, its options
shared by every LLM recipe, and a stopped run that resumes from its checkpoint to the weights an uninterrupted
run reaches. The tiny random model; the Interplay recipes' data path (``train_sequences``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fixtures.stopping import InterruptAfterSave

from crsdata.training.interplay import IGNORE_INDEX, InterplayTrainConfig, PreparedData, train_sequences

ROOT = Path(__file__).resolve().parents[1]


def test_trl_and_peft_configs_are_built_in_one_place() -> None:
    """``SFTConfig(`` and ``LoraConfig(`` are called, and ``SFTTrainer`` is subclassed (its one subclass is the
    one trainer built), in crsdata/training/sft.py only."""
    calls: dict[str, list[str]] = {"SFTTrainer)": [], "SFTTrainer(": [], "SFTConfig(": [], "LoraConfig(": []}
    for path in sorted([*(ROOT / "crsdata").rglob("*.py"), *(ROOT / "models").rglob("*.py")]):
        text = path.read_text(encoding="utf-8")
        for call, found in calls.items():
            found += [str(path.relative_to(ROOT))] * len(re.findall(rf"\b{re.escape(call)}", text))
    assert calls.pop("SFTTrainer(") == []
    assert calls == {call: ["crsdata/training/sft.py"] for call in calls}


def test_both_llm_recipes_share_one_set_of_options() -> None:
    """The fine-tuning options have one name and one definition, inherited by both recipes' configs."""
    import dataclasses

    from crsdata.models.grsu_scorer.recipe import GrsuScorerConfig
    from crsdata.training.config import SFTTrainConfig

    shared = {f.name: f for f in dataclasses.fields(SFTTrainConfig)}
    for cls in (InterplayTrainConfig, GrsuScorerConfig):
        assert issubclass(cls, SFTTrainConfig)
        own = {f.name: f for f in dataclasses.fields(cls)}
        assert all(own[name] is field or own[name].default == field.default for name, field in shared.items())
    assert {"gradient_accumulation_steps", "warmup_ratio", "lora_layers", "save_steps", "bucketing"} <= set(shared)
    assert "gradient_accumulation" not in {f.name for f in dataclasses.fields(GrsuScorerConfig)}


def _data(weight: float | None = None) -> PreparedData:
    ids = [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14], [15, 16, 17, 18, 19], [20, 21, 22]]
    labels = [[IGNORE_INDEX, *row[1:]] for row in ids]
    weights = [[weight] * len(row) for row in ids] if weight is not None else []
    return PreparedData("user", input_ids=ids, labels=labels, loss_weights=weights, tokens=sum(map(len, ids)))


def _train(tiny_model_dir: Path, out: Path, callbacks: list | None = None, weight: float | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = InterplayTrainConfig(
        out=str(out), max_steps=4, save_steps=1, batch_size=2, bf16=False, logging_steps=1, learning_rate=1e-2
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return train_sequences(config, _data(weight), tokenizer, model, hub_id="tiny/base", callbacks=callbacks)


def test_a_stopped_run_resumes_to_the_uninterrupted_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    _, straight = _train(tiny_model_dir, tmp_path / "straight")
    assert straight.steps == 4 and straight.resumed_from_step == 0

    out = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_model_dir, out, callbacks=[InterruptAfterSave(2)])
    assert sorted(p.name for p in (out / ".trainer").iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2"]
    assert not (out / "adapter_model.safetensors").exists()  # nothing saved before the end

    _, resumed = _train(tiny_model_dir, out)
    assert resumed.resumed_from_step == 2 and resumed.steps == 4
    assert [h["step"] for h in resumed.loss_history] == [1, 2, 3, 4]  # the first two from the checkpoint's state
    # The checkpoints go once the adapter is saved; the run's record stays until the recipe's folder is complete.
    assert [p.name for p in (out / ".trainer").iterdir()] == ["run.json"]
    a = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    b = load_file(out / "adapter_model.safetensors")
    assert a.keys() == b.keys() and any(a[k].abs().sum() > 0 for k in a if "lora_B" in k)  # it did train
    for key in a:
        assert (a[key].float() - b[key].float()).abs().max().item() < 1e-6, key


def test_bad_options_are_refused_before_training(tiny_model_dir: Path, tmp_path: Path) -> None:
    from crsdata.errors import BadInputError
    from crsdata.training.sft import check_sft_options

    with pytest.raises(BadInputError, match="--warmup-ratio"):
        check_sft_options(InterplayTrainConfig(out=str(tmp_path), warmup_ratio=1.0))
    with pytest.raises(BadInputError, match="--gradient-accumulation-steps"):
        check_sft_options(InterplayTrainConfig(out=str(tmp_path), gradient_accumulation_steps=0))


def test_token_weights_fall_on_the_trained_tokens_after_the_tag() -> None:
    import torch

    from crsdata.training.sft import TokenWeight

    labels = torch.tensor([[-100, 5, 6, 9, 3, 5, 6, 7], [5, 6, -100, -100, 1, 2, 5, 6]])
    weights = TokenWeight((5, 6), 4.0).weights(labels)
    assert weights.tolist() == [[1, 1, 1, 4, 1, 1, 1, 4], [1.0] * 8]


def test_weighted_loss_is_the_model_loss_at_weight_one_and_weighs_the_tagged_tokens(tiny_model_dir: Path) -> None:
    """At weight 1 the loss is transformers' own causal-LM loss; at weight w the tagged tokens' loss counts w
    times (same divisor: the number of trained tokens)."""
    import torch
    from transformers import AutoModelForCausalLM

    from crsdata.training.sft import TokenWeight, weighted_token_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[11, 12, 13, 14, 15, 16, 13, 14, 17, 18]])
    labels = ids.clone()
    labels[0, :3] = -100
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
    tag = TokenWeight((13, 14), 3.0)
    one = weighted_token_loss(out.logits, labels, torch.ones_like(labels, dtype=torch.float32))
    assert float(one) == pytest.approx(float(out.loss), abs=1e-5)
    heavy = weighted_token_loss(out.logits, labels, tag.weights(labels))
    losses = torch.nn.functional.cross_entropy(out.logits[0, :-1].float(), labels[0, 1:], reduction="none")
    tagged = [j for j in range(2, 10) if labels[0, j - 2] == 13 and labels[0, j - 1] == 14]
    expected = (losses.sum() + 2 * sum(losses[j - 1] for j in tagged)) / (labels[0, 1:] != -100).sum()
    assert tagged == [8] and float(heavy) == pytest.approx(float(expected), abs=1e-5)


def test_a_loss_weights_column_reaches_the_loss(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Per-token weights given as a column ride through TRL's collator into the loss: all 1 trains the weights
    a run without the column reaches (to bf16's rounding: the loss is computed apart from transformers' own), all
    0 leaves the adapter untrained (its B matrices start at 0)."""
    from safetensors.torch import load_file

    for name, weight in (("plain", None), ("ones", 1.0), ("zeros", 0.0)):
        _train(tiny_model_dir, tmp_path / name, weight=weight)
    plain, ones, zeros = (
        load_file(tmp_path / name / "adapter_model.safetensors") for name in ("plain", "ones", "zeros")
    )
    assert any(plain[k].abs().sum() > 0 for k in plain if "lora_B" in k)
    for key in plain:
        assert (plain[key].float() - ones[key].float()).abs().max().item() < 1e-4, key
    assert all(zeros[k].abs().sum() == 0 for k in zeros if "lora_B" in k)
