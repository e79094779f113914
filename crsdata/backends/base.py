"""The one small interface every LLM backend implements, so simulators never know which one runs them.

A backend takes a batch of requests (chat messages, or a raw prompt for fine-tuned models that use the bare
turn format) and returns one :class:`Generation` per request, in order. Each request carries its own seed:
a backend must make a request's sampled text depend only on that request (prompt, seed, parameters), never
on which other requests share the batch. That is what lets the run engine batch dynamically and still give
the same results after a resume as an uninterrupted run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

# Memory the local backend keeps for conversation states between calls: the states of 32 conversations of ~1,400
# tokens each with SmolLM2-135M in float32 (46 KB a token). Here, not in local.py, so the CLI need not import torch.
DEFAULT_PREFIX_CACHE_MB = 2048


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 128
    temperature: float = 0.7  # 0 means greedy
    top_p: float = 0.95
    stop: tuple[str, ...] = ()
    # Within the turn being written (see LocalBackend): 1.0 and 0 are off. The prompt is left out because it holds
    # the action markup of every earlier turn, which an n-gram ban would forbid the model to write again.
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    # (text, bias) pairs: the logit of the text's last token is raised by bias where the answer so far ends with the
    # rest of the text (transformers' SequenceBiasLogitsProcessor; the local backend only). A user simulator's
    # calibrated accept decision is one: (" <action><accept", b) (crsdata.simulate.interplay).
    sequence_bias: tuple[tuple[str, float], ...] = ()

    @property
    def reshapes_logits(self) -> bool:
        """Whether a repetition penalty, an n-gram ban or a sequence bias changes the logits before sampling."""
        return self.repetition_penalty != 1.0 or self.no_repeat_ngram_size > 0 or bool(self.sequence_bias)


@dataclass
class ChatRequest:
    """One conversation to continue: ``messages`` ({"role", "content"} dicts) or a raw ``prompt``."""

    messages: list[dict[str, str]] = field(default_factory=list)
    prompt: str | None = None
    seed: int = 0
    # Where each conversation turn starts in ``prompt`` (character offsets, oldest first; the text before the
    # first is the header). Lets a backend drop the oldest turns of a raw prompt that is too long for the model
    # (crsdata.backends.context); empty: the prompt fits whole or is refused.
    turn_starts: tuple[int, ...] = ()
    # Words the answer may not contain, in any case, with or without a leading space (a resampled turn's
    # rejected greeting: crsdata.simulate.interplay). The local backend bans their tokens; a server ignores them.
    banned_words: tuple[str, ...] = ()
    # Titles a <movie_title> tag in the answer may hold: inside the tag the local backend allows only tokens that
    # continue one of them (crsdata.backends.constraints; a catalog-grounded recommender's list). A server ignores it.
    title_choices: tuple[str, ...] = ()


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop" (end of turn or a stop string), "length", or "error"
    completion_tokens: int = 0
    error: str = ""  # why, when finish_reason == "error"
    # The request itself was refused (a 4xx answer, a prompt too long for the model): sending it again cannot
    # help, so the engine ends the dialogue at once and counts it as ``refused`` with this error.
    refused: bool = False
    dropped_turns: int = 0  # the oldest turns left out of the prompt so that it fit the model's context


class BackendError(RuntimeError):
    """A backend failed in a way retries did not fix (server down, model missing)."""


class Backend(ABC):
    """Base class: ``model_id`` names the model in provenance; ``generate`` and ``option_probabilities``."""

    model_id: str

    @abstractmethod
    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        """One generation per request, same order. A failed request yields ``finish_reason="error"``."""

    @abstractmethod
    def option_probabilities(self, requests: list[ChatRequest], options: list[str]) -> list[dict[str, float]]:
        """For each request, the next-token probability of each option (its first token), renormalised
        over the options; used to score items as P("Yes") against P("No")."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        """Releases connections or memory; the default does nothing."""
