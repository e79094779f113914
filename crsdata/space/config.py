"""What ``crsdata space`` and the Space's ``app.py`` can set, and the one error the page shows as it is."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crsdata.backends.base import DEFAULT_PREFIX_CACHE_MB
from crsdata.backends.factory import MAX_MODEL_LEN_OPTION
from crsdata.options import flag
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
    """Everything ``crsdata space`` and the Space's ``app.py`` can set (see :meth:`from_env`); each field is also
    a flag of ``crsdata space`` (:mod:`crsdata.commands.config_file`)."""

    data: list[str] = flag(
        help="built or simulated dataset folders (or Hub dataset ids) for personas and browsing "
        "(default: every built folder under ./out)",
        metavar="FOLDER",
        default_factory=list,
    )
    backend: str = flag(
        "local", "`local` (transformers in this process, default) or the base URL of an OpenAI-compatible server"
    )
    # The shipped default pair, as `crsdata simulate interplay` (the zero-shot base where this install lacks it).
    user_model: str = flag(
        help="user simulator model (default: the shipped default user simulator, as crsdata simulate)",
        default_factory=lambda: InterplaySimulation.default_model("user"),
    )
    recommender_model: str = flag(
        help="recommender simulator model (default: the shipped default recommender simulator, as crsdata simulate)",
        default_factory=lambda: InterplaySimulation.default_model("recommender"),
    )
    save_dir: str = flag(
        DEFAULT_SAVE_DIR, "folder that Save in the Watch tab appends dialogues to (default %(default)s)"
    )
    max_input_chars: int = flag(500, "longest message a visitor may send (default %(default)s)", "limits")
    max_turns: int = flag(12, "turns per chat, both sides together (default %(default)s)", "limits")
    timeout_s: float = flag(
        60.0,
        "seconds a generation may take, waiting in line included, before the page shows an error (default %(default)s)",
        "limits",
        aliases=["--timeout"],
    )
    concurrency: int = flag(
        2, "generations at once (the Gradio queue's default_concurrency_limit; default %(default)s)", "limits"
    )
    max_new_tokens: int = flag(64, "tokens per simulator turn (default %(default)s)", "limits")
    temperature: float = flag(0.7, "sampling temperature of the simulators (default %(default)s)", "sampling")
    top_p: float = flag(0.95, "nucleus sampling share (default %(default)s)", "sampling")
    kv_cache_mb: int = flag(
        DEFAULT_PREFIX_CACHE_MB,
        "memory for the conversation states the local backend keeps between turns (default %(default)s)",
        "sampling",
    )
    # the models' context in tokens (None: the server's, or the model's own)
    max_model_len: int | None = flag(None, **MAX_MODEL_LEN_OPTION)
    seed: int | None = flag(
        None,
        "seed of the first chat, the next chats get the following numbers, so a session can be replayed "
        "(default: a random seed per chat)",
    )

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
