"""scripts/ship_adapter.py: a `crsdata train` out folder's adapter (or, as a stand-in, its newest checkpoint) copied
into the package as the shipped files of a named embedded model, checked before anything is replaced."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"adapter_config.json", "adapter_model.safetensors", "README.md", "crsdata.json", "results.json"}


@pytest.fixture(scope="module")
def ship_adapter() -> Any:
    spec = importlib.util.spec_from_file_location("ship_adapter", ROOT / "scripts" / "ship_adapter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ship_adapter"] = module
    spec.loader.exec_module(module)
    return module


def _finished_run(out: Path, base: Path, grounding: str) -> Path:
    """What `crsdata train recommender-simulator` leaves: the adapter saved by the recipe's own code (one step on
    the tiny model), the tokenizer, a checkpoint, and the folder files."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from crsdata.folder_metadata import write_folder_metadata
    from crsdata.training.interplay import IGNORE_INDEX, InterplayTrainConfig, PreparedData, train_sequences

    tokenizer = AutoTokenizer.from_pretrained(base)
    data = PreparedData("recommender", input_ids=[[5, 6, 7, 8]] * 2, labels=[[IGNORE_INDEX, 6, 7, 8]] * 2, tokens=8)
    config = InterplayTrainConfig(out=str(out), max_steps=1, batch_size=2, bf16=False)
    train_sequences(config, data, tokenizer, AutoModelForCausalLM.from_pretrained(base), hub_id="tiny/base")
    write_folder_metadata(out, "model", "0.1.0", recipe="recommender-simulator", config={"grounding": grounding})
    (out / "README.md").write_text("# card\n", encoding="utf-8")
    (out / "results.json").write_text("{}\n", encoding="utf-8")
    return out


def _checkpoint(folder: Path, base: Path, step: int) -> Path:
    """A trainer checkpoint: the adapter in float32 with a local base path, and trainer_state.json."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules=["q_proj"]))
    model.save_pretrained(folder)
    state = {"global_step": step, "max_steps": 351, "epoch": step / 351, "log_history": [{"loss": 1.5, "step": step}]}
    (folder / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
    return folder


def _dtypes(path: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return {handle.get_slice(k).get_dtype() for k in handle.keys()}


def test_a_finished_run_ships_its_five_files(ship_adapter: Any, tiny_model_dir: Path, tmp_path: Path) -> None:
    run = _finished_run(tmp_path / "run", tiny_model_dir, "catalog")
    target = tmp_path / "models" / "recommender_simulator" / "adapter-catalog"
    target.mkdir(parents=True)
    (target / "stale.txt").write_text("from the stand-in", encoding="utf-8")
    shipped = ship_adapter.ship(run, target=target, hub_id="tiny/base")
    assert {p.name for p in shipped.iterdir()} == SHIPPED  # no tokenizer, no .trainer, the stale file gone
    assert (shipped / "adapter_model.safetensors").read_bytes() == (run / "adapter_model.safetensors").read_bytes()
    assert _dtypes(shipped / "adapter_model.safetensors") == {"BF16"}


def test_a_run_is_refused_when_it_does_not_fit_the_registry(
    ship_adapter: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    run = _finished_run(tmp_path / "run", tiny_model_dir, "none")
    target = tmp_path / "models" / "recommender_simulator" / "adapter-catalog"
    with pytest.raises(ship_adapter.ShipError, match="config.grounding is 'none'.*recommender-catalog"):
        ship_adapter.ship(run, target=target, hub_id="tiny/base")
    with pytest.raises(ship_adapter.ShipError, match="base_model_name_or_path is 'tiny/base'"):
        ship_adapter.ship(run, target=tmp_path / "elsewhere" / "adapter", hub_id="HuggingFaceTB/SmolLM2-135M-Instruct")
    assert not target.exists() or not any(target.iterdir())  # nothing replaced


def test_an_unfinished_run_ships_its_newest_checkpoint_only_as_a_stand_in(
    ship_adapter: Any, tiny_model_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    for step in (20, 100):  # checkpoint-100 is the newest, though it sorts first as text
        _checkpoint(run / ".trainer" / f"checkpoint-{step}", tiny_model_dir, step)
    target = tmp_path / "models" / "recommender_simulator" / "adapter-catalog"
    with pytest.raises(ship_adapter.ShipError, match="--stand-in"):
        ship_adapter.ship(run, recipe="recommender-simulator", target=target)
    shipped = ship_adapter.ship(run, recipe="recommender-simulator", stand_in=True, target=target, hub_id="tiny/base")
    assert {p.name for p in shipped.iterdir()} == SHIPPED
    assert _dtypes(shipped / "adapter_model.safetensors") == {"BF16"}
    config = json.loads((shipped / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny/base" and config["inference_mode"] is True
    metadata = json.loads((shipped / "crsdata.json").read_text())
    assert metadata["config"]["grounding"] == "catalog" and metadata["stand_in"]["checkpoint"] == "checkpoint-100"
    assert "stand-in from checkpoint-100" in (shipped / "README.md").read_text()
    # The converted adapter loads on its base, with the checkpoint's weights.
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), shipped)
    original = load_file(str(run / ".trainer" / "checkpoint-100" / "adapter_model.safetensors"))
    key = next(k for k in original if "lora_A" in k)
    loaded = dict(model.named_parameters())[key.replace("lora_A.weight", "lora_A.default.weight")]
    assert torch.allclose(loaded.float(), original[key], atol=1e-2)
