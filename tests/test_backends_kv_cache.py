"""Key/value states written in place and kept between calls: reuse must never change a token."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crsdata.backends import ChatRequest, SamplingParams
from crsdata.backends.kv_cache import InPlaceCache, PrefixStore
from crsdata.backends.local import LocalBackend

SAMPLED = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=0.9)
GREEDY = SamplingParams(max_new_tokens=10, temperature=0.0)
RULES = "You are a movie recommender. Ask about tastes, then recommend one film in <movie_title> tags."


@pytest.fixture(autouse=True)
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _backend(tiny_model_dir: Path, cache_mb: int) -> LocalBackend:
    return LocalBackend(tiny_model_dir, device="cpu", prefix_cache_mb=cache_mb)


def _dialogues(backend: LocalBackend, params: SamplingParams, turns: int = 3) -> list[list[str]]:
    """Three conversations advanced together, each turn appending the answer and a new user message."""
    openers = ["Hi, I want a thriller.", "Something funny for tonight?", "I loved Arrival. More like it?"]
    conversations = [[{"role": "system", "content": RULES}, {"role": "user", "content": text}] for text in openers]
    answers: list[list[str]] = [[] for _ in openers]
    for turn in range(turns):
        requests = [ChatRequest(list(c), seed=100 * turn + i) for i, c in enumerate(conversations)]
        for i, generation in enumerate(backend.generate(requests, params)):
            answers[i].append(generation.text)
            conversations[i] += [
                {"role": "assistant", "content": generation.text},
                {"role": "user", "content": f"Not that one ({turn}). Another?"},
            ]
    return answers


@pytest.mark.parametrize("params", [SAMPLED, GREEDY])
def test_kept_states_give_the_same_dialogues_as_recomputing_everything(
    tiny_model_dir: Path, params: SamplingParams
) -> None:
    kept = _backend(tiny_model_dir, cache_mb=64)
    fresh = _backend(tiny_model_dir, cache_mb=0)
    assert _dialogues(kept, params) == _dialogues(fresh, params)
    assert fresh.prompt_stats.reused_tokens == 0 and len(fresh.prefix_store) == 0
    # Later turns re-send earlier ones, and all three share the rules: most prompt tokens were not recomputed.
    assert kept.prompt_stats.reused_fraction > 0.5
    assert kept.prompt_stats.prompt_tokens == fresh.prompt_stats.prompt_tokens


def test_option_probabilities_reuse_the_conversation_without_storing_each_prompt(tiny_model_dir: Path) -> None:
    kept = _backend(tiny_model_dir, cache_mb=64)
    fresh = _backend(tiny_model_dir, cache_mb=0)
    conversation = [{"role": "system", "content": RULES}, {"role": "user", "content": "A sci-fi film, please."}]
    kept.generate([ChatRequest(conversation, seed=1)], GREEDY)
    stored = len(kept.prefix_store)
    scoring = [
        ChatRequest([*conversation, {"role": "user", "content": f"Would you like {title}? Yes or No."}])
        for title in ("Alien", "Heat", "Up", "Solaris")
    ]
    got = kept.option_probabilities(scoring, ["Yes", "No"])
    expected = fresh.option_probabilities(scoring, ["Yes", "No"])
    for a, b in zip(got, expected, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert kept.prompt_stats.reused_tokens > 0
    assert len(kept.prefix_store) == stored


def test_prompts_of_near_lengths_share_a_prefill_pass_padded_and_give_their_own_text(tiny_model_dir: Path) -> None:
    backend = _backend(tiny_model_dir, cache_mb=64)
    prompts = [ChatRequest(prompt="a b c d e f g h i j", seed=1), ChatRequest(prompt="a b c d e f g h i j k l", seed=2)]
    lengths = [len(backend.encode(r)) for r in prompts]
    order, groups = backend._plan_prefill([backend.encode(r) for r in prompts])
    assert lengths[0] < lengths[1] and groups == [(0, 2)]  # one pass, the shorter prompt padded inside it
    together = backend.generate(prompts, SAMPLED)
    for entry in backend.prefix_store._entries.values():
        assert not any(t.isnan().any() for t in (*entry.keys, *entry.values))
    alone = [_backend(tiny_model_dir, cache_mb=0).generate([r], SAMPLED)[0] for r in prompts]
    assert together == alone


def test_prefill_groups_bound_their_padding() -> None:
    backend = LocalBackend.__new__(LocalBackend)  # planning needs only the store
    backend.prefix_store = PrefixStore(0)
    rows = [[1] * n for n in (100, 10, 12, 95, 400, 11)]
    order, groups = backend._plan_prefill(rows)
    assert [len(rows[i]) for i in order] == [10, 11, 12, 95, 100, 400]
    assert groups == [(0, 3), (3, 5), (5, 6)]


# ------------------------------------------------------------------------------------------------ the store


def _states(length: int, fill: float = 0.0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return [torch.full((2, length, 4), fill)], [torch.full((2, length, 4), fill)]


def test_match_finds_the_longest_common_prefix_even_when_it_is_partial() -> None:
    store = PrefixStore(max_bytes=1 << 20)
    store.put(np.array([1, 2, 3, 4]), *_states(4))
    store.put(np.array([1, 2, 9]), *_states(3))
    entry, length = store.match(np.array([1, 2, 3, 7, 7]))
    assert length == 3 and entry is not None and entry.ids.tolist() == [1, 2, 3, 4]
    assert store.match(np.array([5, 6])) == (None, 0)
    assert store.match(np.array([], dtype=np.int64)) == (None, 0)


def test_put_replaces_what_it_extends_and_skips_what_is_already_held() -> None:
    store = PrefixStore(max_bytes=1 << 20)
    store.put(np.array([1, 2]), *_states(2))
    store.put(np.array([1, 2, 3]), *_states(3))  # extends [1, 2]: replaces it
    assert len(store) == 1
    store.put(np.array([1, 2]), *_states(2))  # already inside [1, 2, 3]: nothing new
    assert len(store) == 1
    assert store.nbytes == 2 * 2 * 3 * 4 * 4  # keys and values, 2 heads x 3 tokens x 4 dims of float32


def test_least_recently_used_entries_go_first_and_the_budget_holds() -> None:
    one = 2 * 2 * 4 * 4 * 4  # an entry of 4 tokens
    store = PrefixStore(max_bytes=2 * one)
    store.put(np.array([1, 1, 1, 1]), *_states(4))
    store.put(np.array([2, 2, 2, 2]), *_states(4))
    store.match(np.array([1, 1]))  # touches the first
    store.put(np.array([3, 3, 3, 3]), *_states(4))
    assert store.nbytes <= 2 * one
    assert store.match(np.array([2]))[1] == 0 and store.match(np.array([1]))[1] == 1
    PrefixStore(max_bytes=0).put(np.array([1]), *_states(1))  # off: stores nothing, raises nothing
    with pytest.raises(ValueError, match="max_bytes"):
        PrefixStore(max_bytes=-1)


def test_in_place_cache_writes_into_its_buffer_and_grows_past_capacity() -> None:
    keys, values = [torch.zeros(1, 2, 3, 4)], [torch.zeros(1, 2, 3, 4)]
    cache = InPlaceCache(keys, values, filled=1)
    k, v = cache.update(torch.ones(1, 2, 2, 4), torch.ones(1, 2, 2, 4), 0)
    assert k.shape[2] == 3 and keys[0][0, 0, 1:].eq(1).all()  # written into the caller's buffer, no copy
    k, _ = cache.update(torch.full((1, 2, 2, 4), 2.0), torch.full((1, 2, 2, 4), 2.0), 0)
    assert k.shape[2] == 5 and cache.get_seq_length() == 5 and k[0, 0, 3:].eq(2).all() and k[0, 0, 1:3].eq(1).all()


def test_the_cache_goes_under_the_keyword_the_model_takes_without_deprecation_warnings(tiny_model_dir: Path) -> None:
    import warnings

    from crsdata.backends.kv_cache import cache_argument

    class Old(torch.nn.Module):
        def forward(self, input_ids=None, past_key_values=None, use_cache=None):  # transformers before 5.24
            return input_ids

    assert cache_argument(Old()) == "past_key_values"
    backend = _backend(tiny_model_dir, cache_mb=64)
    assert backend.cache_argument == cache_argument(backend.model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # transformers 5.24 warns at every call given `past_key_values`
        _dialogues(backend, SAMPLED, turns=2)


@pytest.mark.slow
def test_kept_states_change_no_token_of_six_turn_dialogues_on_the_embedded_model(tmp_path: Path) -> None:
    """SmolLM2-135M (float32), two RecLLMSim dialogues of 6 turns each through the run engine, 48 sampled tokens
    a turn: the records with the store of kept states (2048 MB) and without it (every prompt recomputed) are
    equal, and the store served most prompt tokens."""
    from fixtures.fake_simulation import make_config

    from crsdata.simulate.engine import RunEngine
    from crsdata.simulate.recllmsim import RecLLMSimSimulation, scenario_source

    source = scenario_source()

    def run(cache_mb: int) -> tuple[list[dict], LocalBackend]:
        backend = LocalBackend("embedded", device="cpu", prefix_cache_mb=cache_mb, max_batch_size=2)
        params = {r: SamplingParams(max_new_tokens=48, temperature=0.7, top_p=0.95) for r in ("user", "recommender")}
        sim = RecLLMSimSimulation({"user": backend, "recommender": backend}, params, 6)
        config = make_config(sim, source, n=2, batch_size=2, max_turns=6, seed=7)
        return RunEngine(sim, source, config, tmp_path / f"cache-{cache_mb}", progress=False).run().records, backend

    kept, with_store = run(2048)
    fresh, without = run(0)
    assert [len(r["turns"]) for r in kept] == [6, 6]  # 135M never says goodbye this early with seed 7
    assert [[t["text"] for t in r["turns"]] for r in kept] == [[t["text"] for t in r["turns"]] for r in fresh]
    assert kept == fresh
    assert with_store.prompt_stats.reused_fraction > 0.5 and without.prompt_stats.reused_tokens == 0
