"""Repetition penalty and n-gram ban in the local backend (transformers' logits processors, per row).

The tiny random model from ``tests/fixtures/tiny_models.py`` repeats itself under greedy decoding, which is what
these settings exist to change. References are hand-rolled greedy loops over the model's own logits.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from crsdata.backends import ChatRequest, SamplingParams
from crsdata.backends.local import LocalBackend
from crsdata.errors import BadInputError

PROMPTS = [
    ChatRequest(prompt="You might enjoy Shutter Island, Memento or Arrival.", seed=1),
    ChatRequest(messages=[{"role": "user", "content": "Hi! I am looking for a movie"}], seed=2),
    ChatRequest(prompt="Thanks", seed=3),
]
STEPS = 24


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> LocalBackend:
    torch.set_num_threads(1)
    return LocalBackend(tiny_model_dir, device="cpu")


def _reference(backend: LocalBackend, request: ChatRequest, penalty: float = 1.0, ngram: int = 0) -> str:
    """Greedy decoding written out by hand: the model's logits for prompt + answer, the penalty and the ban
    applied to the answer so far, argmax, stop at an end token."""
    prompt = backend.encode(request)
    answer: list[int] = []
    with torch.inference_mode():
        for _ in range(STEPS):
            logits = backend.model(torch.tensor([prompt + answer])).logits[0, -1].float().clone()
            for token in set(answer):
                logits[token] = logits[token] * penalty if logits[token] < 0 else logits[token] / penalty
            if ngram and len(answer) >= ngram - 1:
                tail = tuple(answer[len(answer) - ngram + 1 :])
                for i in range(len(answer) - ngram + 1):
                    if tuple(answer[i : i + ngram - 1]) == tail:
                        logits[answer[i + ngram - 1]] = -float("inf")
            token = int(logits.argmax())
            answer.append(token)
            if token in backend.end_token_ids:
                answer.pop()
                break
    return backend.tokenizer.decode(answer, skip_special_tokens=True)


def _bigrams_repeat(backend: LocalBackend, text: str) -> bool:
    ids = backend.tokenizer(text, add_special_tokens=False).input_ids
    pairs = list(zip(ids, ids[1:], strict=False))
    return len(pairs) != len(set(pairs))


def test_off_leaves_tokens_as_the_model_picks_them(tiny: LocalBackend) -> None:
    off = SamplingParams(max_new_tokens=STEPS, temperature=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0)
    assert not off.reshapes_logits
    got = tiny.generate(PROMPTS, off)
    assert [g.text for g in got] == [_reference(tiny, r) for r in PROMPTS]
    # and sampled texts are those of parameters that never mention the two settings
    sampled = SamplingParams(max_new_tokens=STEPS, temperature=1.0, top_p=0.9)
    assert tiny.generate(PROMPTS, sampled) == tiny.generate(
        PROMPTS, SamplingParams(max_new_tokens=STEPS, temperature=1.0, top_p=0.9, repetition_penalty=1.0)
    )


def test_ngram_ban_follows_the_hand_written_rule_and_changes_the_text(tiny: LocalBackend) -> None:
    off = tiny.generate(PROMPTS, SamplingParams(max_new_tokens=STEPS, temperature=0.0))
    on = tiny.generate(PROMPTS, SamplingParams(max_new_tokens=STEPS, temperature=0.0, no_repeat_ngram_size=2))
    assert [g.text for g in on] == [_reference(tiny, r, ngram=2) for r in PROMPTS]
    assert any(_bigrams_repeat(tiny, g.text) for g in off), "the tiny model should loop without the ban"
    assert [g.text for g in on] != [g.text for g in off]


def test_repetition_penalty_follows_the_hand_written_rule(tiny: LocalBackend) -> None:
    params = SamplingParams(max_new_tokens=STEPS, temperature=0.0, repetition_penalty=3.0)
    on = tiny.generate(PROMPTS, params)
    assert [g.text for g in on] == [_reference(tiny, r, penalty=3.0) for r in PROMPTS]
    off = tiny.generate(PROMPTS, SamplingParams(max_new_tokens=STEPS, temperature=0.0))
    assert [g.text for g in on] != [g.text for g in off]


def test_processed_rows_do_not_depend_on_the_batch(tiny: LocalBackend) -> None:
    params = SamplingParams(
        max_new_tokens=STEPS, temperature=1.0, top_p=0.9, repetition_penalty=1.3, no_repeat_ngram_size=3
    )
    together = tiny.generate(PROMPTS, params)
    assert together == [tiny.generate([r], params)[0] for r in PROMPTS]
    with pytest.raises(ValueError, match="raw_generate"):
        tiny.raw_generate(PROMPTS, params)


def test_flags_reach_the_run_config_and_servers_refuse_them(tmp_path: Path) -> None:
    from crsdata.cli import build_parser
    from crsdata.commands.simulate import config_from_args

    parser = build_parser()
    base = ["simulate", "interplay", "--source", str(tmp_path / "src"), "--n", "1", "--out", str(tmp_path / "o")]
    args = parser.parse_args([*base, "--repetition-penalty", "1.2", "--no-repeat-ngram-size", "4"])
    config = config_from_args(args, "simulate")
    sampling = config.sampling()
    assert (sampling.repetition_penalty, sampling.no_repeat_ngram_size) == (1.2, 4)
    assert SamplingParams() != sampling  # the engine groups and the manifest compares by these values
    served = parser.parse_args([*base, "--backend", "http://localhost:1/v1", "--repetition-penalty", "1.2"])
    with pytest.raises(BadInputError, match="local backend only"):
        config_from_args(served, "simulate").check()


def test_banned_words_never_appear_and_leave_other_rows_alone(tiny: LocalBackend) -> None:
    """A request's `banned_words` (a resampled turn's rejected greeting) ban that word's tokens in its row only:
    the greedy answer's first word is gone from it, and the other rows of the batch are as before."""
    greedy = SamplingParams(max_new_tokens=STEPS, temperature=0.0)
    before = tiny.generate(PROMPTS, greedy)
    word = before[0].text.split()[0]
    banned = [ChatRequest(prompt=PROMPTS[0].prompt, seed=1, banned_words=(word,)), *PROMPTS[1:]]
    after = tiny.generate(banned, greedy)
    assert word not in after[0].text.split() and after[0].text != before[0].text
    assert [g.text for g in after[1:]] == [g.text for g in before[1:]]


def test_a_sequence_bias_moves_its_last_token_only_after_the_rest_of_it(tiny: LocalBackend) -> None:
    """`sequence_bias` (the user simulator's accept bias, " <action><accept") raises its last token's logit only
    where the answer so far ends with the tokens before it: the hand-written greedy loop with that rule."""
    greedy = SamplingParams(max_new_tokens=STEPS, temperature=0.0)
    first = tiny.tokenizer(tiny.generate(PROMPTS[:1], greedy)[0].text, add_special_tokens=False).input_ids[0]
    # A two-token text that encodes back to the same two tokens: first token of the greedy answer, then a word.
    text, ids = next(
        (t, ids)
        for word in (" movie", " film", " the", " and", " good")
        for t in [tiny.tokenizer.decode([first]) + word]
        for ids in [tiny.tokenizer(t, add_special_tokens=False).input_ids]
        if len(ids) == 2 and ids[0] == first
    )
    biased = SamplingParams(max_new_tokens=STEPS, temperature=0.0, sequence_bias=((text, 50.0),))
    assert biased.reshapes_logits
    prompt = tiny.encode(PROMPTS[0])
    answer: list[int] = []
    with torch.inference_mode():
        for _ in range(STEPS):
            logits = tiny.model(torch.tensor([prompt + answer])).logits[0, -1].float().clone()
            if answer and answer[-1] == ids[0]:
                logits[ids[1]] += 50.0
            answer.append(int(logits.argmax()))
            if answer[-1] in tiny.end_token_ids:
                answer.pop()
                break
    got = tiny.generate(PROMPTS, biased)
    assert got[0].text == tiny.tokenizer.decode(answer, skip_special_tokens=True)
    assert tiny.tokenizer(got[0].text, add_special_tokens=False).input_ids[:2] == ids
    assert got == [tiny.generate([r], biased)[0] for r in PROMPTS]  # per row, whatever the batch
