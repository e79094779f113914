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
    """``SFTTrainer(``, ``SFTConfig(`` and ``LoraConfig(`` are called in crsdata/training/sft.py only."""
    calls: dict[str, list[str]] = {"SFTTrainer(": [], "SFTConfig(": [], "LoraConfig(": []}
    for path in sorted([*(ROOT / "crsdata").rglob("*.py"), *(ROOT / "models").rglob("*.py")]):
        text = path.read_text(encoding="utf-8")
        for call, found in calls.items():
            found += [str(path.relative_to(ROOT))] * len(re.findall(rf"\b{re.escape(call)}", text))
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


def _data() -> PreparedData:
    ids = [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14], [15, 16, 17, 18, 19], [20, 21, 22]]
    labels = [[IGNORE_INDEX, *row[1:]] for row in ids]
    return PreparedData("user", input_ids=ids, labels=labels, tokens=sum(map(len, ids)))


def _train(tiny_model_dir: Path, out: Path, callbacks: list | None = None):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = InterplayTrainConfig(
        out=str(out), max_steps=4, save_steps=1, batch_size=2, bf16=False, logging_steps=1, learning_rate=1e-2
    )
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    return train_sequences(config, _data(), tokenizer, model, hub_id="tiny/base", callbacks=callbacks)


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
    assert not (out / ".trainer").exists()  # removed once the adapter is saved
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
