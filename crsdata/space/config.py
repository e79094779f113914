"""What ``crsdata space`` and the Space's ``app.py`` can set, and the one error the page shows as it is."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crsdata.backends.base import DEFAULT_PREFIX_CACHE_MB
from crsdata.simulate.interplay import InterplaySimulation

MODES = ("recommender", "user", "watch")  # whom the person plays: tab 1, tab 2, nobody (tab 3)
DEFAULT_SAVE_DIR = "out/space-saved"
# A Hub dataset id: "org/name". Anything else that is not a configured folder is refused, so a visitor cannot
# make the Space read arbitrary local paths.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


class SpaceError(Exception):
    """A problem the page shows as it is: the message never holds a token or a local path."""


@dataclass
class SpaceConfig:
    """Everything ``crsdata space`` and the Space's ``app.py`` can set (see :meth:`from_env`)."""

    data: list[str] = field(default_factory=list)  # built folders or Hub dataset ids offered on the page
    backend: str = "local"  # "local" or the base URL of an OpenAI-compatible server
    # The shipped fine-tuned pair, as `crsdata simulate interplay` (the zero-shot base where this install lacks it).
    user_model: str = field(default_factory=lambda: InterplaySimulation.default_model("user"))
    recommender_model: str = field(default_factory=lambda: InterplaySimulation.default_model("recommender"))
    save_dir: str = DEFAULT_SAVE_DIR
    max_input_chars: int = 500
    max_turns: int = 12  # per chat, both sides together
    timeout_s: float = 60.0  # per generation, waiting in line included
    concurrency: int = 2  # generations at once (the Gradio queue's default_concurrency_limit)
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    kv_cache_mb: int = DEFAULT_PREFIX_CACHE_MB
    max_model_len: int | None = None  # the models' context in tokens (None: the server's, or the model's own)
    seed: int | None = None  # None: each chat draws a seed; N: chats get N, N+1, ... in the order they start

    def __post_init__(self) -> None:
        for name in ("max_input_chars", "max_turns", "concurrency", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, not {self.timeout_s}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SpaceConfig:
        """The configuration of a deployed Space, from its variables: ``CRSDATA_SPACE_DATA`` (folders or Hub ids,
        separated by commas or spaces), ``CRSDATA_BACKEND``, ``CRSDATA_USER_MODEL``, ``CRSDATA_RECOMMENDER_MODEL``,
        ``CRSDATA_SPACE_SAVE_DIR``, ``CRSDATA_SPACE_MAX_TURNS``, ``CRSDATA_SPACE_TIMEOUT``,
        ``CRSDATA_SPACE_CONCURRENCY``, ``CRSDATA_SPACE_MAX_INPUT_CHARS``, ``CRSDATA_SPACE_MAX_NEW_TOKENS``,
        ``CRSDATA_SPACE_SEED``; defaults for what is unset."""
        env = os.environ if env is None else env
        config = cls(data=[d for d in re.split(r"[,\s]+", env.get("CRSDATA_SPACE_DATA", "")) if d])
        text = {
            "backend": "CRSDATA_BACKEND",
            "user_model": "CRSDATA_USER_MODEL",
            "recommender_model": "CRSDATA_RECOMMENDER_MODEL",
            "save_dir": "CRSDATA_SPACE_SAVE_DIR",
        }
        numbers = {
            "max_turns": "CRSDATA_SPACE_MAX_TURNS",
            "timeout_s": "CRSDATA_SPACE_TIMEOUT",
            "concurrency": "CRSDATA_SPACE_CONCURRENCY",
            "max_input_chars": "CRSDATA_SPACE_MAX_INPUT_CHARS",
            "max_new_tokens": "CRSDATA_SPACE_MAX_NEW_TOKENS",
            "seed": "CRSDATA_SPACE_SEED",
        }
        changes: dict[str, Any] = {k: env[v] for k, v in text.items() if env.get(v)}
        kinds = {"timeout_s": float}
        changes.update({k: kinds.get(k, int)(float(env[v])) for k, v in numbers.items() if env.get(v)})
        return dataclasses.replace(config, **changes)
