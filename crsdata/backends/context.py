"""Fitting a request into a model's context: drop the oldest conversation turns, never the header.

A server refuses a prompt whose tokens plus ``max_tokens`` exceed its maximum model length (``transformers serve``
and vLLM answer HTTP 400), and a local model has a fixed number of positions. Both backends call
:func:`fit_request` before they send a request: it keeps the system message (the persona and the instructions)
or, for a raw prompt, its header, and drops whole turns from the oldest one on until the prompt fits. When even
the header and the newest turn do not fit, it raises :class:`PromptTooLong` with both lengths, and the backend
answers with a refused :class:`~crsdata.backends.base.Generation`, which the engine counts and reports.

Raw prompts are trimmed only where the simulation says where its turns start (``ChatRequest.turn_starts``);
otherwise such a prompt either fits whole or is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from crsdata.backends.base import ChatRequest

# Counts the tokens of a chat request's messages (with the generation prompt) or of a raw prompt.
TokenCounter = Callable[[ChatRequest], int]

# Bytes per token in :func:`estimated_tokens`: English BPE vocabularies of 32k-150k tokens spend 3.5-4.5 bytes a
# token on chat text; 3 overestimates, so a prompt trimmed by the estimate fits all of them.
BYTES_PER_TOKEN = 3
# The chat template's framing of one message (role markers, end-of-turn token, newline).
TOKENS_PER_MESSAGE = 8


class PromptTooLong(ValueError):
    """Even the header and the newest turn exceed the budget."""

    def __init__(self, tokens: int, limit: int, max_new_tokens: int) -> None:
        self.tokens, self.limit, self.max_new_tokens = tokens, limit, max_new_tokens
        super().__init__(
            f"the prompt has {tokens} tokens after dropping every older turn, but the model takes at most {limit} "
            f"(prompt and {max_new_tokens} new tokens)"
        )


def estimated_tokens(request: ChatRequest) -> int:
    """A conservative token count without a tokenizer: UTF-8 bytes / :data:`BYTES_PER_TOKEN`, plus
    :data:`TOKENS_PER_MESSAGE` per chat message."""
    if request.prompt is not None:
        return math.ceil(len(request.prompt.encode("utf-8")) / BYTES_PER_TOKEN)
    return (
        sum(
            math.ceil(len(str(m.get("content", "")).encode("utf-8")) / BYTES_PER_TOKEN) + TOKENS_PER_MESSAGE
            for m in request.messages
        )
        + TOKENS_PER_MESSAGE
    )


def tokenizer_counter(tokenizer) -> TokenCounter:  # noqa: ANN001 - any transformers tokenizer
    """Exact counts with ``tokenizer``: its chat template (with the generation prompt) for messages, plain
    encoding without special tokens added for a raw prompt (the way the backends send them)."""

    def count(request: ChatRequest) -> int:
        if request.prompt is not None:
            return len(tokenizer(request.prompt, add_special_tokens=False)["input_ids"])
        ids = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):  # a BatchEncoding when the tokenizer returns a dict
            ids = ids["input_ids"]
        return len(ids)

    return count


def token_counter_for(model: str) -> TokenCounter:
    """The model's own tokenizer when ``model`` is a local folder that holds one (and transformers is installed),
    else :func:`estimated_tokens`."""
    import logging
    import os

    if os.path.isdir(model):
        try:
            from transformers import AutoTokenizer

            return tokenizer_counter(AutoTokenizer.from_pretrained(model))
        except (ImportError, OSError, ValueError) as exc:
            logging.getLogger(__name__).warning("counting tokens by estimate: no tokenizer in %s (%s)", model, exc)
    return estimated_tokens


def fit_request(
    request: ChatRequest, max_model_len: int | None, max_new_tokens: int, count: TokenCounter
) -> tuple[ChatRequest, int]:
    """``request`` as it fits ``max_model_len`` tokens together with ``max_new_tokens`` new ones, and how many
    turns were dropped. Chat: the leading system message stays, then turns go from the oldest, and the newest
    always stays. Raw prompt: the text before ``turn_starts[0]`` (the header) stays, then turns go from the
    oldest. ``max_model_len`` None: nothing to fit. Raises :class:`PromptTooLong`."""
    if not max_model_len:
        return request, 0
    budget = max_model_len - max_new_tokens
    candidate, dropped = request, 0
    while True:
        tokens = count(candidate)
        if tokens <= budget:
            return candidate, dropped
        shorter = _without_oldest_turn(candidate)
        if shorter is None:
            raise PromptTooLong(tokens, max_model_len, max_new_tokens)
        candidate, dropped = shorter, dropped + 1


def _without_oldest_turn(request: ChatRequest) -> ChatRequest | None:
    if request.prompt is not None:
        starts = request.turn_starts
        if len(starts) < 2:  # no known turns, or only the newest one left
            return None
        cut = starts[1] - starts[0]
        prompt = request.prompt[: starts[0]] + request.prompt[starts[1] :]
        return replace(request, prompt=prompt, turn_starts=(starts[0], *(s - cut for s in starts[2:])))
    messages = request.messages
    keep = 1 if messages and messages[0].get("role") == "system" else 0
    if len(messages) - keep < 2:
        return None
    return replace(request, messages=[*messages[:keep], *messages[keep + 1 :]])
