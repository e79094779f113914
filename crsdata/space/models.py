"""The simulator models a visitor may choose, each behind one :class:`SharedBackend` for every chat."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from crsdata.backends.base import Backend, ChatRequest, SamplingParams
from crsdata.backends.shared import SharedBackend
from crsdata.simulate.persona import Persona
from crsdata.simulate.prompts import finetuned_prompt, instruct_messages
from crsdata.space.config import SpaceConfig, SpaceError
from crsdata.space.privacy import model_label


class Models:
    """Configured models by the label the page shows.

    ``injected`` maps model names to ready backends (tests inject tiny or failing ones); other names are loaded
    with :func:`crsdata.backends.make_backend` on first use. Either way each is wrapped in a :class:`SharedBackend`,
    so requests of chats that arrive together are decoded together. ``public`` cleans error messages for the page;
    ``lock`` is the Space's loading lock (one load at a time, models and corpora alike).
    """

    def __init__(
        self,
        config: SpaceConfig,
        injected: Mapping[str, Backend] | None,
        public: Callable[[str], str],
        lock: threading.Lock,
    ) -> None:
        self.config = config
        self._injected = dict(injected or {})
        self._public = public
        self._backends: dict[str, SharedBackend] = {}
        self._lock = lock

    def _names(self) -> list[str]:
        return [self.config.user_model, self.config.recommender_model, *self._injected]

    def labels(self) -> list[str]:
        """The model names a visitor may choose (only configured ones: a public page loads nothing else)."""
        return list(dict.fromkeys(model_label(n) for n in self._names()))

    def spec(self, label: str) -> str:
        """The configured name or folder behind a label."""
        for name in self._names():
            if model_label(name) == label:
                return name
        raise SpaceError(f"Unknown model {label!r}; choose one of {', '.join(self.labels())}.")

    def style_of(self, label: str) -> str:
        """The prompt layout a configured model reads: ``finetuned`` for crsdata's simulators, else ``instruct``."""
        from crsdata.backends.embedded import prompt_style_of

        try:
            spec = self.spec(label)
        except SpaceError:
            spec = label
        return prompt_style_of(spec) or "instruct"

    def backend(self, label: str) -> SharedBackend:
        spec = self.spec(label)
        with self._lock:
            if spec not in self._backends:
                inner = self._injected[spec] if spec in self._injected else self._load(label, spec)
                self._backends[spec] = SharedBackend(inner, self.config.timeout_s)
            return self._backends[spec]

    def _load(self, label: str, spec: str) -> Backend:
        from crsdata.backends import make_backend

        options: dict[str, Any] = {"max_concurrency": self.config.concurrency}
        if self.config.backend == "local":
            options = {"max_batch_size": self.config.concurrency, "prefix_cache_mb": self.config.kv_cache_mb}
        try:
            return make_backend(self.config.backend, spec, max_model_len=self.config.max_model_len, **options)
        except Exception as exc:
            raise SpaceError(self._public(f"Cannot load model {label}: {exc}")) from None

    def params(self) -> SamplingParams:
        c = self.config
        return SamplingParams(max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p)

    def warm_up(self) -> float:
        """Loads the default models and runs the instructions every chat starts with through them, so that the
        first reply of the first chat pays only for its own persona. Returns the seconds it took."""
        started = time.perf_counter()
        persona = Persona("I like many kinds of movies.", [], "A movie.")
        for role, label in (("user", self.config.user_model), ("recommender", self.config.recommender_model)):
            backend = self.backend(model_label(label))
            if self.style_of(label) == "finetuned":
                request = ChatRequest(prompt=finetuned_prompt(role, persona, []))
            else:
                request = ChatRequest(messages=instruct_messages(role, persona, []))
            backend.generate([request], SamplingParams(max_new_tokens=1, temperature=0))
        return time.perf_counter() - started
