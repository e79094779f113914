"""Any server that speaks the OpenAI HTTP API: vLLM, TGI, ``transformers serve``, Ollama, or OpenAI itself.

Requests go out concurrently (at most ``max_concurrency`` in flight, so a shared server is not flooded), each
with its own timeout. Connection errors, timeouts, 5xx and 429 are retried with exponential backoff; a request
that still fails becomes ``Generation(finish_reason="error")`` so one bad request never loses the batch. Only
problems that every request would hit (server unreachable at start-up, bad API key, unknown model) raise
:class:`BackendError`.

A request the server refuses (any other 4xx, e.g. a prompt longer than the model takes) is not retried: it
becomes a *refused* error generation with the server's reason, which the engine counts and reports.

The context limit: ``max_model_len`` (``--max-model-len``), else what the server reports in ``GET /v1/models``
(vLLM's ``max_model_len``). With a limit known, every request is fitted before it is sent
(:func:`crsdata.backends.context.fit_request`): the oldest turns go, never the system message or the header, and
a prompt that cannot fit is refused here without a round trip. Tokens are counted with the model's own tokenizer
when ``model`` is a local folder that holds one; otherwise with a conservative estimate (UTF-8 bytes / 3, plus 8
per message), which may trim more than needed but not less for common BPE vocabularies.

Batch invariance is the server's business: each request carries its own ``seed``, which vLLM and OpenAI honour
per request; servers that ignore it give different (but still valid) samples on a resume.
"""

from __future__ import annotations

import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from crsdata.backends.base import Backend, BackendError, ChatRequest, Generation, SamplingParams
from crsdata.backends.context import PromptTooLong, TokenCounter, fit_request, token_counter_for

log = logging.getLogger(__name__)

# Statuses that mean every request will fail the same way: stop the run instead of filling it with errors.
_FATAL = {401: "the server rejected the API key", 403: "access is forbidden", 404: "the model or endpoint is unknown"}


class _Failed(Exception):
    """A request that failed for good (after retries, or with a status not worth retrying: ``refused``)."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def normalise_base_url(url: str) -> str:
    """``http://host:8000``, ``http://host:8000/`` and ``http://host:8000/v1`` all become ``.../v1``."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"an OpenAI-compatible backend needs an http(s) URL, not {url!r}")
    return url if url.endswith("/v1") else url + "/v1"


def _cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    # OpenAI leaves stop strings out of the text but some servers (transformers serve) keep them: cut here too.
    cuts = [text.find(s) for s in stops if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def request_body(
    model: str, request: ChatRequest, max_tokens: int, temperature: float, top_p: float
) -> tuple[str, dict[str, Any]]:
    """The endpoint path (``/chat/completions`` or ``/completions``, under ``/v1``) and JSON body of one request;
    ValueError when the request has neither messages nor a prompt."""
    payload: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "seed": request.seed,
    }
    if request.prompt is not None:
        return "/completions", {**payload, "prompt": request.prompt}
    if not request.messages:
        raise ValueError("the request has neither messages nor a prompt")
    return "/chat/completions", {**payload, "messages": request.messages}


def generation_request(model: str, request: ChatRequest, params: SamplingParams) -> tuple[str, dict[str, Any]]:
    """Path and body of a generation request with ``params`` (stop strings included). Every client of an
    OpenAI-compatible server sends exactly this, so the same request gives the same text whoever sends it
    (this backend, or a datatrove task in :mod:`crsdata.scaleout`)."""
    path, payload = request_body(model, request, params.max_new_tokens, params.temperature, params.top_p)
    stops = [s for s in params.stop if s]
    if stops:
        payload["stop"] = stops
    return path, payload


def generation_from_answer(
    text: str, finish_reason: str | None, completion_tokens: int, stops: tuple[str, ...]
) -> Generation:
    """A :class:`Generation` from a server's answer: the text cut at the first stop string (some servers keep it),
    ``length`` only when the token budget ended it and no stop string did."""
    text, cut = _cut_at_stop(text or "", tuple(s for s in stops if s))
    return Generation(text, "length" if finish_reason == "length" and not cut else "stop", int(completion_tokens or 0))


class OpenAICompatibleBackend(Backend):
    """Chat requests go to ``/v1/chat/completions``, raw prompts to ``/v1/completions``.

    ``base_url``: the server (with or without ``/v1``). ``model``: the model name the server knows.
    ``max_concurrency``: requests in flight at once. ``timeout_s``: per request and attempt. ``max_retries``:
    extra attempts after the first; waits ``backoff_s * 2**attempt`` (at most ``max_backoff_s``, or the server's
    ``Retry-After``). ``api_key_env``: the environment variable holding the key (read once, never logged).
    ``top_logprobs``: alternatives asked for in :meth:`option_probabilities`. ``check_server``: contact the
    server at start-up so a wrong URL fails at once (and read its ``max_model_len``). ``max_model_len``: the
    server's context length in tokens (prompt plus new tokens); None: as the server reports it, or no limit.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        max_concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        api_key_env: str = "OPENAI_API_KEY",
        top_logprobs: int = 20,
        check_server: bool = True,
        model_id: str | None = None,
        max_model_len: int | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}")
        self.base_url = normalise_base_url(base_url)
        self.model = model
        self.model_id = model_id or model
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.top_logprobs = top_logprobs
        if max_model_len is not None and max_model_len < 1:
            raise ValueError(f"max_model_len must be at least 1, not {max_model_len}")
        self.max_model_len = max_model_len
        self._counter: TokenCounter | None = None
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
        )
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="crsdata-openai")
        if check_server:
            self._check_server()

    def __repr__(self) -> str:  # the default repr would be fine today; this one can never grow the key into it
        return f"OpenAICompatibleBackend({self.base_url!r}, model={self.model!r})"

    def _check_server(self) -> None:
        url = f"{self.base_url}/models"
        try:
            response = self._client.get(url)
        except httpx.HTTPError as exc:
            self.close()
            raise BackendError(f"Cannot reach the OpenAI-compatible server at {url}: {exc}") from exc
        # Any answer means the server is up (transformers serve even answers 500 here when offline); only a
        # refused key is worth stopping for before the first real request.
        if response.status_code in (401, 403):
            self.close()
            raise BackendError(f"The server at {url} answered {response.status_code}: {_FATAL[response.status_code]}")
        if self.max_model_len is None and response.status_code == 200:
            self.max_model_len = served_max_model_len(response, self.model)

    @property
    def token_counter(self) -> TokenCounter:
        """The model's tokenizer when ``model`` is a local folder with one, else the conservative estimate."""
        if self._counter is None:
            self._counter = token_counter_for(self.model)
        return self._counter

    # ----------------------------------------------------------------------------------------------- HTTP

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST with retries; returns the JSON body, raises _Failed or (for fatal statuses) BackendError."""
        url = f"{self.base_url}{path}"
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                response = self._client.post(url, json=payload)
            except httpx.TransportError as exc:  # refused, reset, timed out: worth another try
                last = f"{type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise _Failed(f"invalid JSON from {url}: {exc}") from exc
                if status in _FATAL:
                    raise BackendError(f"{url} answered {status} for model {self.model!r}: {_FATAL[status]}")
                last = f"HTTP {status}: {response.text[:300]}"
                if status != 429 and status < 500:
                    raise _Failed(last, refused=True)  # the request itself is wrong (e.g. too long): no retry
                retry_after = _retry_after(response)
            if attempt < self.max_retries:
                wait = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                time.sleep(min(self.max_backoff_s, retry_after) if retry_after is not None else wait)
        raise _Failed(f"{url} failed after {self.max_retries + 1} attempts; last: {last}")

    def _payload(self, request: ChatRequest, max_tokens: int, temperature: float, top_p: float) -> tuple[str, dict]:
        try:
            return request_body(self.model, request, max_tokens, temperature, top_p)
        except ValueError as exc:
            raise _Failed(str(exc)) from None

    # ----------------------------------------------------------------------------------------------- generate

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        """One generation per request, same order; failures after retries yield ``finish_reason="error"``."""
        return list(self._pool.map(lambda r: self._generate_one(r, params), requests))

    def _generate_one(self, request: ChatRequest, params: SamplingParams) -> Generation:
        dropped = 0
        try:
            if self.max_model_len:
                request, dropped = fit_request(request, self.max_model_len, params.max_new_tokens, self.token_counter)
            path, payload = generation_request(self.model, request, params)
            body = self._post(path, payload)
            choice = body["choices"][0]
            text = choice["message"]["content"] if path == "/chat/completions" else choice["text"]
            tokens = int((body.get("usage") or {}).get("completion_tokens") or 0)
        except PromptTooLong as exc:
            return Generation("", "error", 0, str(exc), refused=True)
        except _Failed as exc:
            return Generation("", "error", 0, str(exc), refused=exc.refused)
        except ValueError as exc:
            return Generation("", "error", 0, str(exc))
        except (KeyError, IndexError, TypeError) as exc:
            return Generation("", "error", 0, f"unexpected response shape ({type(exc).__name__}: {exc})")
        generation = generation_from_answer(text, choice.get("finish_reason"), tokens, params.stop)
        generation.dropped_turns = dropped
        return generation

    # ----------------------------------------------------------------------------------------------- scoring

    def option_probabilities(self, requests: list[ChatRequest], options: list[str]) -> list[dict[str, float]]:
        """From the log-probabilities of one greedy token: the chosen token and its ``top_logprobs``.

        A returned token counts for an option when it equals the option or is a prefix of it and of no other
        option (spaces stripped, so "Yes" and " Yes" both count). When every option is among the returned
        tokens, their probabilities are renormalised over the options (the local backend's definition). When
        only some are (a server that returns the chosen token's logprob alone, as GRSU reads vLLM), those keep
        their probability and the others share the rest: with Yes/No, P(Yes) = p when the greedy token is "Yes"
        and 1 - p when it is "No", GRSU's rule. When no option is returned, the answer is uniform (and a warning
        is logged). Raises BackendError when the server returns no logprobs at all or a request fails after
        retries."""
        if not options:
            raise ValueError("option_probabilities needs at least one option")
        return list(self._pool.map(lambda r: self._options_one(r, options), requests))

    def _options_one(self, request: ChatRequest, options: list[str]) -> dict[str, float]:
        try:
            path, payload = self._payload(request, 1, 0.0, 1.0)
            if path == "/chat/completions":
                payload.update(logprobs=True, top_logprobs=self.top_logprobs)
            else:
                payload["logprobs"] = self.top_logprobs
            body = self._post(path, payload)
        except _Failed as exc:
            raise BackendError(f"option scoring failed: {exc}") from exc
        top = _top_logprobs(body, path)
        if top is None:
            raise BackendError(
                f"The server at {self.base_url} returned no logprobs, so option_probabilities cannot work with it: "
                "it ignores the logprobs/top_logprobs request (`transformers serve` does). Score with a server "
                "that returns them (vLLM, OpenAI) or in-process with the local backend"
            )
        return _match_options(top, options)

    def close(self) -> None:
        """Stops the worker threads and closes the connections."""
        self._pool.shutdown(wait=True)
        self._client.close()


def served_max_model_len(response: httpx.Response, model: str) -> int | None:
    """``max_model_len`` of ``model`` (or of the only model) in a ``GET /v1/models`` answer, as vLLM reports it;
    None when the server does not say (``transformers serve``, OpenAI)."""
    try:
        entries = [e for e in response.json().get("data", []) if isinstance(e, dict)]
    except (ValueError, AttributeError):
        return None
    chosen = [e for e in entries if e.get("id") == model] or (entries if len(entries) == 1 else [])
    value = chosen[0].get("max_model_len") if chosen else None
    return int(value) if isinstance(value, int) and value > 0 else None


def _retry_after(response: httpx.Response) -> float | None:
    try:
        value = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _top_logprobs(body: dict[str, Any], path: str) -> dict[str, float] | None:
    """token -> logprob for the first generated token: its alternatives and the token itself; None when the
    server sent no logprobs."""
    try:
        logprobs = body["choices"][0].get("logprobs")
        if not logprobs:
            return None
        if path == "/chat/completions":
            first = logprobs["content"][0]
            found = {e["token"]: float(e["logprob"]) for e in first.get("top_logprobs") or []}
            chosen = (first.get("token"), first.get("logprob"))
        else:
            found = {token: float(lp) for token, lp in ((logprobs.get("top_logprobs") or [None])[0] or {}).items()}
            chosen = ((logprobs.get("tokens") or [None])[0], (logprobs.get("token_logprobs") or [None])[0])
        if chosen[0] is not None and chosen[1] is not None:
            found.setdefault(chosen[0], float(chosen[1]))
        return found or None
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None


def _match_options(top: dict[str, float], options: list[str]) -> dict[str, float]:
    stripped = [o.strip() for o in options]
    mass = dict.fromkeys(options, 0.0)
    for token, logprob in top.items():
        t = token.strip()
        if not t:
            continue
        exact = [o for o, s in zip(options, stripped, strict=True) if s == t]
        prefix = [o for o, s in zip(options, stripped, strict=True) if s.startswith(t)]
        owner = exact[0] if len(exact) == 1 else prefix[0] if len(prefix) == 1 else None
        if owner is not None:
            mass[owner] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        log.warning("none of the options %s is among the server's top tokens; scoring them as equal", options)
        return {o: 1.0 / len(options) for o in options}
    unknown = [o for o in options if mass[o] <= 0]
    if not unknown:
        return {o: m / total for o, m in mass.items()}
    # Some options were not returned (only the chosen token's logprob came back): GRSU's rule, they share the rest.
    rest = max(0.0, 1.0 - total) / len(unknown)
    return {o: (m if m > 0 else rest) for o, m in mass.items()}
