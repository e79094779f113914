"""Two LoRA adapters trained one after the other, written as one.

A second stage that trains a fresh adapter on top of a first one merged into the base (``crsdata train
user-simulator --init-adapter FOLDER --stack-adapter``) may use more layers or a higher rank than the first: the
first stage's adapter on the top 8 layers did not learn the user's decision, and a second stage confined to those
layers cannot tell whether more capacity would. The two are saved as one adapter over the base, so every loader
of a ``crsdata train`` folder keeps working: for each module, ``W + s1 B1 A1 + s2 B2 A2 = W + [s1 B1, s2 B2]
[A1; A2]``, a LoRA whose rank is the sum of the two ranks there (peft's ``rank_pattern``) with a scale of 1
(``alpha_pattern`` = rank). Exact, up to the bfloat16 the adapter is stored in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from crsdata.backends.embedded import ADAPTER_CONFIG, ADAPTER_WEIGHTS


def _scale(config: Any, module: str, rank: int) -> float:
    """peft's scale of ``module`` in ``config``: its alpha over its rank (the patterns first)."""
    alpha = next((a for key, a in (config.alpha_pattern or {}).items() if _matches(module, key)), config.lora_alpha)
    return alpha / (rank**0.5 if config.use_rslora else rank)


def _matches(module: str, pattern: str) -> bool:
    return module == pattern or module.endswith("." + pattern)


def _modules(tensors: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Module path -> (A, B) of a saved adapter's tensors (``base_model.model.<path>.lora_A.weight``)."""
    pairs: dict[str, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        for part in ("lora_A", "lora_B"):
            marker = f".{part}.weight"
            if key.endswith(marker):
                pairs.setdefault(key[: -len(marker)], {})[part] = tensor
    return {module: (ab["lora_A"], ab["lora_B"]) for module, ab in pairs.items()}


def read_adapter(folder: str | Path) -> tuple[Any, dict[str, Any]]:
    """The LoraConfig and the tensors (float32) of an adapter folder."""
    from peft import LoraConfig
    from safetensors.torch import load_file

    folder = Path(folder)
    config = LoraConfig.from_pretrained(str(folder))
    return config, {k: v.float() for k, v in load_file(str(folder / ADAPTER_WEIGHTS)).items()}


def stack_adapters(
    first: tuple[Any, dict[str, Any]], second: tuple[Any, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One adapter equal to ``first`` then ``second`` (each a LoraConfig and its saved tensors): the adapter
    config (a dict for ``adapter_config.json``) and the tensors, keyed as peft saves them."""
    import torch

    (config1, tensors1), (config2, tensors2) = first, second
    modules1, modules2 = _modules(tensors1), _modules(tensors2)
    tensors: dict[str, Any] = {}
    ranks: dict[str, int] = {}
    for module in sorted(modules1.keys() | modules2.keys()):
        parts_a, parts_b = [], []
        for config, modules in ((config1, modules1), (config2, modules2)):
            if module in modules:
                a, b = modules[module]
                parts_a.append(a)
                parts_b.append(b * _scale(config, module.removeprefix("base_model.model."), a.shape[0]))
        tensors[f"{module}.lora_A.weight"] = torch.cat(parts_a, dim=0).contiguous()
        tensors[f"{module}.lora_B.weight"] = torch.cat(parts_b, dim=1).contiguous()
        ranks[module.removeprefix("base_model.model.")] = sum(a.shape[0] for a in parts_a)
    config = config2.to_dict()
    config.update(
        r=max(ranks.values()),
        lora_alpha=max(ranks.values()),
        # Full module paths: peft matches a target or a pattern that equals a module's name or ends it.
        target_modules=sorted(ranks),
        layers_to_transform=None,
        layers_pattern=None,
        rank_pattern=dict(ranks),
        alpha_pattern=dict(ranks),
        use_rslora=False,
    )
    for key, value in config.items():
        if isinstance(value, set):
            config[key] = sorted(value)
    return config, tensors


def save_stacked(first_folder: str | Path, trained: Any, out: str | Path, *, base_model: str) -> None:
    """Writes into ``out`` the adapter of ``first_folder`` stacked with the adapter of ``trained`` (a peft model
    trained on the base with the first one merged in), in bfloat16, naming ``base_model`` as its base."""
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    second = (trained.peft_config["default"], {k: v.float() for k, v in get_peft_model_state_dict(trained).items()})
    config, tensors = stack_adapters(read_adapter(first_folder), second)
    config["base_model_name_or_path"] = base_model
    config["inference_mode"] = True
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.bfloat16) for k, v in tensors.items()}, str(out / ADAPTER_WEIGHTS))
    (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True, default=str) + "\n")
