"""Titles held to a list while a model writes them: the local backend's ``ChatRequest.title_choices``.

A catalog-grounded recommender simulator sees five catalog films before each turn and is trained to name films from
that list, but a 135M model copies a title imperfectly: round 8's self-play kept "Avengers (2018)" from a list
holding "Avengers: Age of Ultron (2015)", and "The Shining (1976)" from "The Shining (1980)". Once the model has
opened a ``<movie_title>`` tag, :class:`TitleConstraint` allows only the tokens that continue one of the choices,
then the first token of the closing tag; outside a tag, and after the title, nothing is touched. The model still
decides whether to name a film, which one, and everything around it. The mask is transformers'
``PrefixConstrainedLogitsProcessor``, applied to the constrained row alone (``crsdata.backends.local.process_rows``),
so a row's tokens never depend on its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PrefixConstrainedLogitsProcessor

# The Interplay format's title tags (crsdata.simulate.actions writes them; backends sit below simulate).
TITLE_OPEN, TITLE_CLOSE = "<movie_title>", "</movie_title>"
# Tokens decoded to look for the opening tag at the end of the answer: every token is at least one byte.
_TAG_WINDOW = len(TITLE_OPEN.encode())


class TitleConstraint:
    """For one answer being written: inside an open ``<movie_title>`` tag, the allowed next tokens (a trie of the
    choices' token ids, each followed by the first token of ``</movie_title>``); None elsewhere."""

    def __init__(self, tokenizer: Any, choices: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        close = tokenizer(TITLE_CLOSE, add_special_tokens=False)["input_ids"][:1]
        self._next: dict[tuple[int, ...], set[int]] = {}
        for choice in dict.fromkeys(c for c in choices if c.strip()):
            ids = tuple(tokenizer(choice, add_special_tokens=False)["input_ids"]) + tuple(close)
            for k in range(len(ids)):
                self._next.setdefault(ids[:k], set()).add(ids[k])
        self._start: int | None = None  # where the title being written starts in the answer

    def allowed(self, answer: Sequence[int]) -> list[int] | None:
        """The tokens that may follow ``answer`` (the tokens written so far, one more than at the last call), or
        None when it is not inside a title that can still become one of the choices."""
        if not self._next:
            return None
        if self.tokenizer.decode(list(answer[-_TAG_WINDOW:])).endswith(TITLE_OPEN):
            self._start = len(answer)
        if self._start is None:
            return None
        following = self._next.get(tuple(answer[self._start :]))
        if following is None:  # the title and its closing token are written
            self._start = None
            return None
        return sorted(following)

    def apply(self, answer: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        """``logits`` (one row) with every token but the allowed ones masked, or unchanged outside a title."""
        allowed = self.allowed(answer)
        if allowed is None:
            return logits
        mask = PrefixConstrainedLogitsProcessor(lambda _batch, _ids: allowed, num_beams=1)
        return mask(torch.tensor([list(answer)], dtype=torch.long, device=logits.device), logits)
