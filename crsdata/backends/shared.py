"""One backend shared by many callers (the Space's visitors): requests that arrive while the model is busy wait in
one line and run as one batched ``generate`` call, each caller with its own time limit."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from crsdata.backends.base import Backend, ChatRequest, Generation, SamplingParams


@dataclass
class _Job:
    requests: list[ChatRequest]
    params: SamplingParams
    future: Future


class SharedBackend(Backend):
    """A backend shared by every visitor of the page.

    Requests from several visitors that arrive while the model is busy wait in one line and then run as one
    ``generate`` call (the local backend decodes them together, and a request's text never depends on its batch).
    A caller waits at most ``timeout_s``, line included; then it gets ``finish_reason="error"`` and its job is
    dropped if it has not started (a started one runs on; a model cannot be interrupted mid-step). An exception
    inside the backend becomes an error generation for every request of that call, so the page can say so and
    keep serving.
    """

    def __init__(self, inner: Backend, timeout_s: float) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.timeout_s = timeout_s
        self.calls = 0
        self.largest_call = 0  # most requests one generate call has carried
        self._pending: list[_Job] = []
        self._wake = threading.Condition()
        self._busy = threading.Lock()
        self._closed = False
        threading.Thread(target=self._serve, name=f"backend-{self.model_id}", daemon=True).start()

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        job = _Job(list(requests), params, Future())
        with self._wake:
            self._pending.append(job)
            self._wake.notify()
        try:
            return job.future.result(timeout=self.timeout_s)
        except FutureTimeout:
            job.future.cancel()
            message = f"no answer within {self.timeout_s:g} s (the model is slow or busy); send again"
            return [Generation("", "error", 0, message) for _ in requests]

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                jobs, self._pending = self._pending, []
            live = [job for job in jobs if job.future.set_running_or_notify_cancel()]
            groups: dict[SamplingParams, list[_Job]] = {}
            for job in live:
                groups.setdefault(job.params, []).append(job)
            for params, group in groups.items():
                requests = [r for job in group for r in job.requests]
                try:
                    with self._busy:
                        self.calls += 1
                        self.largest_call = max(self.largest_call, len(requests))
                        generations = self.inner.generate(requests, params)
                except Exception as exc:  # the backend's failure is every caller's message, not the thread's end
                    message = f"{type(exc).__name__}: {exc}"
                    generations = [Generation("", "error", 0, message) for _ in requests]
                start = 0
                for job in group:
                    job.future.set_result(generations[start : start + len(job.requests)])
                    start += len(job.requests)

    def option_probabilities(self, requests: list[ChatRequest], options: list[str]) -> list[dict[str, float]]:
        with self._busy:
            return self.inner.option_probabilities(requests, options)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self.inner.close()
