"""Titles held to a list inside ``<movie_title>`` (``ChatRequest.title_choices``, crsdata.backends.constraints).

The trie and the mask on the tiny model's tokenizer, then the embedded SmolLM2 (slow) continuing a few-shot
recommender turn: with choices, the title it writes is one of them; without, nothing changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crsdata.backends import ChatRequest, SamplingParams
from crsdata.backends.constraints import TITLE_CLOSE, TITLE_OPEN, TitleConstraint
from crsdata.backends.local import LocalBackend, process_rows
from crsdata.simulate.actions import format_turn, mark_titles

CHOICES = ("The Shining (1980)", "Annabelle (2014)")


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> LocalBackend:
    torch.set_num_threads(1)
    return LocalBackend(tiny_model_dir, device="cpu")


def test_the_tags_are_the_ones_the_turn_format_writes() -> None:
    text = format_turn("recommend", mark_titles("Try The Shining (1980).", ["The Shining (1980)"]))
    assert f"{TITLE_OPEN}The Shining (1980){TITLE_CLOSE}" in text


def test_inside_a_title_only_tokens_that_continue_a_choice_are_allowed(tiny: LocalBackend) -> None:
    """Outside a tag: None (nothing is touched). After the opening tag: the first tokens of the choices; along a
    choice: its next token; after its last token: the closing tag's first token; then free again."""
    tokenizer = tiny.tokenizer

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    constraint = TitleConstraint(tokenizer, CHOICES)
    answer = ids(f"<action><recommend></action><response>Try {TITLE_OPEN}")
    for k in range(1, len(answer)):  # the answer is written token by token
        assert constraint.allowed(answer[:k]) is None
    assert constraint.allowed(answer) == sorted({ids(c)[0] for c in CHOICES})
    title = ids(CHOICES[0])
    for k in range(1, len(title)):
        assert constraint.allowed(answer + title[:k]) == [title[k]]
    close = ids(TITLE_CLOSE)[0]
    assert constraint.allowed(answer + title) == [close]
    assert constraint.allowed([*answer, *title, close]) is None
    assert TitleConstraint(tokenizer, ()).allowed(answer) is None

    # The mask, through process_rows: the constrained row keeps only the allowed logits, the other row is untouched.
    logits = torch.randn(2, len(tokenizer))
    out = process_rows(logits, [answer, answer], [], titles=[TitleConstraint(tokenizer, CHOICES), None])
    kept = torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert kept == sorted({ids(c)[0] for c in CHOICES})
    assert torch.equal(out[1], logits[1])


@pytest.fixture(scope="module")
def smol(embedded_model_dir: Path) -> LocalBackend:
    return LocalBackend(embedded_model_dir, device="cpu")


@pytest.mark.slow
def test_smollm2_names_a_listed_film_when_held_to_the_list(smol: LocalBackend) -> None:
    shots = "".join(
        f"recommender: {format_turn('recommend', f'Try {TITLE_OPEN}{title}{TITLE_CLOSE}.')}\nuser: Another one?\n"
        for title in ("Saw (2004)", "Scream (1996)", "Halloween (1978)")
    )
    prompt = shots + "recommender: <action><recommend></action><response>Try <movie_title>"
    greedy = SamplingParams(max_new_tokens=24, temperature=0.0, stop=("</response>",))
    # The opening tag is the answer's, not the prompt's: the prompt ends before it.
    prompt = prompt.removesuffix(f" {TITLE_OPEN}")
    free, held = smol.generate([ChatRequest(prompt=prompt), ChatRequest(prompt=prompt, title_choices=CHOICES)], greedy)
    assert TITLE_OPEN in free.text, free.text
    title = held.text.split(TITLE_OPEN, 1)[1].split("</", 1)[0]
    assert title in CHOICES, held.text
    assert free.text != held.text or free.text.split(TITLE_OPEN, 1)[1].startswith(title)
    # Without choices, the request is the one it always was.
    assert smol.generate([ChatRequest(prompt=prompt)], greedy)[0] == free
