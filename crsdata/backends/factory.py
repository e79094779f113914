"""``make_backend``: one string picks the backend, so the CLI and run configs never import backend classes."""

from __future__ import annotations

from typing import Any

from crsdata.backends.base import Backend

# --max-model-len, the same in every command that takes a backend (simulate, replay, space, crs-eval).
MAX_MODEL_LEN_OPTION: dict[str, Any] = {
    "type": int,
    "metavar": "TOKENS",
    "help": "the model's context length (prompt plus new tokens). A prompt that does not fit loses its oldest turns, "
    "never the persona or the header; one that still does not fit ends its dialogue as a counted, refused request. "
    "Default: what the server reports (vLLM's max_model_len in /v1/models), or the local model's positions",
}


def make_backend(spec: str, model: str, *, max_model_len: int | None = None, **options: Any) -> Backend:
    """``spec`` "local" loads ``model`` ("embedded", a folder or a Hub id) into this process
    (:class:`~crsdata.backends.local.LocalBackend`); an http(s) base URL talks to an OpenAI-compatible server
    that serves ``model`` (:class:`~crsdata.backends.openai_compat.OpenAICompatibleBackend`). ``max_model_len``
    (``--max-model-len``): the context length in tokens that prompts are trimmed to fit, oldest turns first (None:
    the server's reported limit, or the local model's positions). ``options`` go to the backend's constructor."""
    # Imported here so that choosing a server never imports torch, and the core install never needs httpx.
    if spec == "local":
        from crsdata.backends.local import LocalBackend

        return LocalBackend(model, max_model_len=max_model_len, **options)
    if spec.startswith(("http://", "https://")):
        from crsdata.backends.openai_compat import OpenAICompatibleBackend

        return OpenAICompatibleBackend(spec, model, max_model_len=max_model_len, **options)
    raise ValueError(f"backend spec must be 'local' or an http(s) URL of an OpenAI-compatible server, not {spec!r}")
