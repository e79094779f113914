"""``make_backend``: one string picks the backend, so the CLI and run configs never import backend classes."""

from __future__ import annotations

from typing import Any

from crsdata.backends.base import Backend


def make_backend(spec: str, model: str, **options: Any) -> Backend:
    """``spec`` "local" loads ``model`` ("embedded", a folder or a Hub id) into this process
    (:class:`~crsdata.backends.local.LocalBackend`); an http(s) base URL talks to an OpenAI-compatible server
    that serves ``model`` (:class:`~crsdata.backends.openai_compat.OpenAICompatibleBackend`). ``options`` go to
    the backend's constructor."""
    # Imported here so that choosing a server never imports torch, and the core install never needs httpx.
    if spec == "local":
        from crsdata.backends.local import LocalBackend

        return LocalBackend(model, **options)
    if spec.startswith(("http://", "https://")):
        from crsdata.backends.openai_compat import OpenAICompatibleBackend

        return OpenAICompatibleBackend(spec, model, **options)
    raise ValueError(f"backend spec must be 'local' or an http(s) URL of an OpenAI-compatible server, not {spec!r}")
