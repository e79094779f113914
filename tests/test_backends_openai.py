"""The OpenAI-compatible backend, over real HTTP on 127.0.0.1.

Fast tests run against :class:`FakeServer`, a stdlib ``http.server`` in a thread whose answers each test scripts
(failures, delays, logprobs). Tests marked ``slow`` start a real ``transformers serve`` process with the embedded
SmolLM2 (needs ``pip install 'transformers[serving]'``; run with ``pytest -m slow tests/test_backends_openai.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.fake_server import FakeServer, Reply, backend_for, completion

from crsdata.backends import BackendError, ChatRequest, Generation, SamplingParams, make_backend
from crsdata.backends.openai_compat import OpenAICompatibleBackend, normalise_base_url
from crsdata.servers import free_port, transformers_serve


# (status, JSON body, seconds to wait before answering, extra headers)
@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


def _chat(text: str, seed: int) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], seed=seed)


def test_payloads_pass_through_and_the_key_stays_secret(fake: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """FakeServer: chat goes to /v1/chat/completions, raw prompts to /v1/completions, with every parameter."""
    monkeypatch.setenv("CRSDATA_TEST_KEY", "sk-very-secret")
    backend = backend_for(fake, api_key_env="CRSDATA_TEST_KEY")
    params = SamplingParams(max_new_tokens=33, temperature=0.3, top_p=0.8, stop=("\nUser:",))
    outs = backend.generate([_chat("hello", 5), ChatRequest(prompt="User: hi\nAssistant:", seed=6)], params)
    assert outs == [Generation("answer for seed 5", "stop", 7), Generation("answer for seed 6", "stop", 7)]
    by_path = {path: (payload, headers) for path, payload, headers in fake.requests}
    chat, headers = by_path["/v1/chat/completions"]
    assert chat == {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 33,
        "temperature": 0.3,
        "top_p": 0.8,
        "seed": 5,
        "stop": ["\nUser:"],
    }
    assert headers["Authorization"] == "Bearer sk-very-secret"
    raw, _ = by_path["/v1/completions"]
    assert raw["prompt"] == "User: hi\nAssistant:" and "messages" not in raw and raw["seed"] == 6
    assert "sk-very-secret" not in repr(backend) and "sk-very-secret" not in str(vars(backend))
    backend.close()


def test_stop_strings_are_cut_even_when_the_server_keeps_them() -> None:
    """FakeServer answering like transformers serve, which leaves the stop string in the text."""
    server = FakeServer(lambda path, payload, attempt: completion(payload, "Try Dune.\nUser: thanks", "stop"))
    try:
        backend = backend_for(server)
        out = backend.generate([_chat("a book?", 1)], SamplingParams(stop=("\nUser:",)))[0]
        assert (out.text, out.finish_reason) == ("Try Dune.", "stop")
        long = backend.generate([_chat("a book?", 2)], SamplingParams())[0]
        assert long.text == "Try Dune.\nUser: thanks"
    finally:
        server.stop()


def test_length_finish_reason() -> None:
    """FakeServer reporting finish_reason "length"."""
    server = FakeServer(lambda path, payload, attempt: completion(payload, "cut off", "length"))
    try:
        assert backend_for(server).generate([_chat("x", 1)], SamplingParams())[0].finish_reason == "length"
    finally:
        server.stop()


def test_concurrency_is_bounded_and_used() -> None:
    """FakeServer that takes 0.2 s per request; 12 requests with max_concurrency=3."""
    server = FakeServer(lambda path, payload, attempt: (*completion(payload)[:2], 0.2, {}))
    try:
        backend = backend_for(server, max_concurrency=3)
        start = time.perf_counter()
        outs = backend.generate([_chat("hi", seed) for seed in range(12)], SamplingParams())
        elapsed = time.perf_counter() - start
        assert [g.text for g in outs] == [f"answer for seed {seed}" for seed in range(12)]  # order kept
        assert server.peak == 3
        assert elapsed < 12 * 0.2 * 0.75  # really concurrent, not one at a time
    finally:
        server.stop()


def test_retries_after_500_and_429_then_succeeds() -> None:
    """FakeServer that answers 500, then 429 with Retry-After, then success."""

    def reply(path: str, payload: dict[str, Any], attempt: int) -> Reply:
        if attempt == 0:
            return 500, {"error": "boom"}, 0.0, {}
        if attempt == 1:
            return 429, {"error": "slow down"}, 0.0, {"Retry-After": "0.05"}
        return completion(payload)

    server = FakeServer(reply)
    try:
        out = backend_for(server).generate([_chat("hi", 4)], SamplingParams())[0]
        assert out == Generation("answer for seed 4", "stop", 7)
        assert server.attempts(4) == 3
    finally:
        server.stop()


def test_timeout_is_retried() -> None:
    """FakeServer whose first answer comes after 1.5 s, past the 0.4 s per-request timeout."""

    def reply(path: str, payload: dict[str, Any], attempt: int) -> Reply:
        status, body, _, headers = completion(payload)
        return status, body, (1.5 if attempt == 0 else 0.0), headers

    server = FakeServer(reply)
    try:
        start = time.perf_counter()
        out = backend_for(server, timeout_s=0.4).generate([_chat("hi", 8)], SamplingParams())[0]
        assert out.finish_reason == "stop" and server.attempts(8) == 2
        assert time.perf_counter() - start < 1.4  # gave up on the slow attempt instead of waiting it out
    finally:
        server.stop()


def test_persistent_failures_become_error_generations_and_the_batch_survives() -> None:
    """FakeServer that always fails seed 13 (500) and seed 14 (400, not retried), and answers the others."""

    def reply(path: str, payload: dict[str, Any], attempt: int) -> Reply:
        if payload["seed"] == 13:
            return 500, {"error": "model crashed"}, 0.0, {}
        if payload["seed"] == 14:
            return 400, {"error": "prompt too long"}, 0.0, {}
        return completion(payload)

    server = FakeServer(reply)
    try:
        backend = backend_for(server, max_retries=2)
        requests = [_chat("a", 12), _chat("b", 13), _chat("c", 14), ChatRequest(seed=15)]
        outs = backend.generate(requests, SamplingParams())
        assert outs[0] == Generation("answer for seed 12", "stop", 7)
        assert outs[1].finish_reason == "error" and "HTTP 500" in outs[1].error and "3 attempts" in outs[1].error
        assert outs[2].finish_reason == "error" and "HTTP 400" in outs[2].error and "prompt too long" in outs[2].error
        assert outs[3].finish_reason == "error" and "neither messages nor a prompt" in outs[3].error
        assert (server.attempts(13), server.attempts(14), server.attempts(15)) == (3, 1, 0)
        # A 4xx is the request's own fault: refused, so the engine does not send it again; a 5xx is not.
        assert outs[2].refused and not outs[1].refused and not outs[0].refused
    finally:
        server.stop()


def test_unknown_model_stops_the_run() -> None:
    """FakeServer answering 404 (vLLM's answer for a model it does not serve)."""
    server = FakeServer(lambda path, payload, attempt: (404, {"error": "no such model"}, 0.0, {}))
    try:
        with pytest.raises(BackendError, match="404.*fake-model"):
            backend_for(server).generate([_chat("hi", 1)], SamplingParams())
        assert server.attempts(1) == 1
    finally:
        server.stop()


def test_unreachable_server_fails_at_start_with_its_url() -> None:
    """No server: a port that was just free on 127.0.0.1."""
    port = free_port()
    with pytest.raises(BackendError, match=f"http://127.0.0.1:{port}/v1/models"):
        OpenAICompatibleBackend(f"http://127.0.0.1:{port}", "m")


def test_option_probabilities_from_chat_top_logprobs() -> None:
    """FakeServer returning chat-style top_logprobs, with " Yes" and "Yes" both present."""
    top = [("Yes", 0.5), (" Yes", 0.1), ("No", 0.2), ("Maybe", 0.1), ("N", 0.05)]

    def reply(path: str, payload: dict[str, Any], attempt: int) -> Reply:
        status, body, delay, headers = completion(payload, "Yes")
        entries = [{"token": t, "logprob": math.log(p), "bytes": None} for t, p in top]
        first = {"token": "Yes", "logprob": math.log(0.5), "top_logprobs": entries}
        body["choices"][0]["logprobs"] = {"content": [first]}
        return status, body, delay, headers

    server = FakeServer(reply)
    try:
        backend = backend_for(server, top_logprobs=5)
        probs = backend.option_probabilities([_chat("Is it good?", 1), _chat("And this?", 2)], ["Yes", "No"])
        # "N" is a prefix of "No" only, so it counts for No; "Maybe" matches no option.
        assert probs[0] == pytest.approx({"Yes": 0.6 / 0.85, "No": 0.25 / 0.85})
        assert probs[1] == probs[0]
        payload = server.requests[0][1]
        assert (payload["logprobs"], payload["top_logprobs"], payload["max_tokens"], payload["temperature"]) == (
            True,
            5,
            1,
            0.0,
        )
    finally:
        server.stop()


def test_option_probabilities_from_completion_logprobs() -> None:
    """FakeServer returning legacy /v1/completions logprobs for a raw prompt."""

    def reply(path: str, payload: dict[str, Any], attempt: int) -> Reply:
        status, body, delay, headers = completion(payload, " No")
        top = {" No": math.log(0.3), " Yes": math.log(0.1)}
        body["choices"][0]["logprobs"] = {"tokens": [" No"], "top_logprobs": [top]}
        return status, body, delay, headers

    server = FakeServer(reply)
    try:
        probs = backend_for(server).option_probabilities([ChatRequest(prompt="Good? Answer:", seed=1)], [" Yes", " No"])
        assert probs == [pytest.approx({" Yes": 0.25, " No": 0.75})]
        assert server.requests[0][0] == "/v1/completions" and server.requests[0][1]["logprobs"] == 20
    finally:
        server.stop()


def test_option_probabilities_need_a_server_with_logprobs(fake: FakeServer) -> None:
    """FakeServer that ignores the logprobs request (like transformers serve)."""
    with pytest.raises(BackendError, match="returned no logprobs"):
        backend_for(fake).option_probabilities([_chat("Is it good?", 1)], ["Yes", "No"])


def test_urls_and_factory(fake: FakeServer) -> None:
    """FakeServer, reached through make_backend."""
    assert normalise_base_url("http://h:8000") == "http://h:8000/v1"
    assert normalise_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    with pytest.raises(ValueError, match="http"):
        normalise_base_url("h:8000")
    backend = make_backend(fake.url + "/v1", "fake-model", max_concurrency=2)
    assert isinstance(backend, OpenAICompatibleBackend) and backend.model_id == "fake-model"
    assert backend.generate([_chat("x", 3)], SamplingParams())[0].text == "answer for seed 3"


# ------------------------------------------------------------------------------------------------ slow: real server


@pytest.fixture(scope="module")
def served_smollm2(embedded_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A real ``transformers serve`` process on 127.0.0.1 serving the converted SmolLM2; stopped by its PID."""
    pytest.importorskip("fastapi", reason="needs pip install 'transformers[serving]'")
    pytest.importorskip("uvicorn", reason="needs pip install 'transformers[serving]'")
    with transformers_serve(embedded_model_dir, tmp_path_factory.mktemp("serve")) as url:
        yield url, str(embedded_model_dir)


@pytest.mark.slow
def test_real_server_chat_and_raw_prompt(served_smollm2: tuple[str, str]) -> None:
    """Real transformers serve with SmolLM2: chat, raw prompt, stop string, concurrent requests."""
    url, model = served_smollm2
    backend = make_backend(url, model, max_concurrency=2, timeout_s=120)
    requests = [
        _chat("What is the capital of France?", 1),
        ChatRequest(prompt="The capital of France is", seed=2),
        _chat("Name three fruits.", 3),
    ]
    outs = backend.generate(requests, SamplingParams(max_new_tokens=16, temperature=0.0))
    assert all(g.finish_reason in ("stop", "length") and g.text.strip() and g.completion_tokens > 0 for g in outs)
    assert "Paris" in outs[0].text
    stopped = backend.generate(requests[:1], SamplingParams(max_new_tokens=16, temperature=0.0, stop=("Paris",)))[0]
    assert stopped.finish_reason == "stop" and "Paris" not in stopped.text
    assert outs[0].text.startswith(stopped.text)
    backend.close()


@pytest.mark.slow
def test_real_server_without_logprobs_gives_a_clear_error(served_smollm2: tuple[str, str]) -> None:
    """Real transformers serve, which does not return logprobs (5.23)."""
    url, model = served_smollm2
    backend = make_backend(url, model)
    with pytest.raises(BackendError, match="no logprobs"):
        backend.option_probabilities([_chat("Is Paris in France? Answer Yes or No.", 1)], ["Yes", "No"])
    backend.close()


def _long_chat(turns: int, seed: int = 0) -> ChatRequest:
    messages = [{"role": "system", "content": "persona: likes quiet films. " * 10}]
    for i in range(turns):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append({"role": role, "content": f"turn {i}: " + "words " * 40})
    return ChatRequest(messages=messages, seed=seed)


def test_the_servers_max_model_len_trims_the_oldest_turns_and_keeps_the_system_message(fake: FakeServer) -> None:
    """vLLM reports max_model_len in /v1/models; without a local tokenizer the backend counts by the conservative
    estimate (bytes / 3), so the prompt it sends fits by that count."""
    from crsdata.backends.context import estimated_tokens

    fake.models = {"object": "list", "data": [{"id": "fake-model", "object": "model", "max_model_len": 400}]}
    backend = backend_for(fake)
    assert backend.max_model_len == 400
    request = _long_chat(8)
    assert estimated_tokens(request) > 400 - 32
    out = backend.generate([request], SamplingParams(max_new_tokens=32))[0]
    assert out.finish_reason == "stop" and out.dropped_turns > 0
    sent = fake.requests[-1][1]["messages"]
    assert sent[0] == request.messages[0] and sent[-1] == request.messages[-1]
    assert sent[1:] == request.messages[1 + out.dropped_turns :]  # the oldest went, in order
    assert (
        estimated_tokens(ChatRequest(messages=sent))
        <= 400 - 32
        < estimated_tokens(ChatRequest(messages=[sent[0], request.messages[out.dropped_turns], *sent[1:]]))
    )


def test_a_prompt_that_cannot_fit_is_refused_without_a_request(fake: FakeServer) -> None:
    backend = backend_for(fake, max_model_len=40)  # the option wins over what the server reports
    out = backend.generate([_long_chat(3)], SamplingParams(max_new_tokens=8))[0]
    assert out.finish_reason == "error" and out.refused and not fake.requests
    assert "after dropping every older turn" in out.error and "at most 40" in out.error


def test_raw_prompts_lose_whole_turns_after_the_header(fake: FakeServer) -> None:
    header, turns = "HEADER persona\n", [f"user: turn {i} " + "x" * 60 + "\n" for i in range(6)]
    starts, position = [], len(header)
    for turn in turns:
        starts.append(position)
        position += len(turn)
    request = ChatRequest(prompt=header + "".join(turns) + "user:", seed=3, turn_starts=tuple(starts))
    backend = make_backend(fake.url, "fake-model", max_model_len=120, backoff_s=0.01)
    out = backend.generate([request], SamplingParams(max_new_tokens=16))[0]
    sent = fake.requests[-1][1]["prompt"]
    assert out.dropped_turns > 0 and sent == header + "".join(turns[out.dropped_turns :]) + "user:"
    # Without turn offsets a raw prompt cannot be trimmed: it is refused.
    plain = backend.generate([ChatRequest(prompt=request.prompt, seed=4)], SamplingParams(max_new_tokens=16))[0]
    assert plain.refused and "at most 120" in plain.error
