"""The datatrove pipeline of a distributed run: two steps, the same under every executor.

1. :class:`PlannedDialogues` reads the rank's share of the plan (``plan/task-NNNNN.jsonl``: index, dialogue id,
   dialogue seed and source position of each dialogue the task must write) and yields one document per dialogue;
   the task reads the source records themselves once (``plan/source.jsonl``).
2. :class:`DialogueRunner`, datatrove's ``InferenceRunner`` with our rollout: each document becomes one dialogue,
   run by :func:`crsdata.simulate.engine.run_dialogue` over the engine's
   :class:`~crsdata.simulate.engine.DialogueTask` (the simulation's step contract, the engine's retry rules),
   and the finished record goes to a parquet shard in the crsdata schema, ``tasks/<rank>/chunk-<k>.parquet``.
   The runner keeps at most ``concurrency`` dialogues in flight, writes every finished dialogue to a local
   checkpoint before it counts, and on a re-run of a killed task replays the checkpoints and runs only the rest.

Requests. One runner talks to one model (it sets ``payload["model"]`` itself) over one kind of endpoint (chat or
raw completions). A task routes each request: a request for the runner's model and kind goes through the runner's
``generate`` (its concurrency limit, retries, request cache and, with ``--server vllm``, the server it started);
any other (the second role's model when the two roles use different models, or a raw prompt when the runner
speaks chat) goes through an :class:`~crsdata.backends.openai_compat.OpenAICompatibleBackend` of the task, on the
same endpoint. Both send the same JSON body for the same request
(:func:`crsdata.backends.openai_compat.generation_request`).

The endpoint. datatrove 0.10.1's ``EndpointServer`` posts to ``<url>/v1/...`` on localhost but hands other URLs to
the ``openai`` client, which expects the ``/v1`` inside the URL, while its readiness check always asks
``<url>/v1/models``; no single URL works for a remote server both ways. :class:`OpenAIEndpoint` is the same
server contract over one pooled ``aiohttp`` session: every URL is normalised to ``.../v1``, any HTTP answer to
``GET /v1/models`` counts as ready (``transformers serve`` answers 500 there when ``HF_HUB_CACHE`` is unset),
timeouts, connection errors, 429 and 5xx are retried by the runner, 400 is a bad request (the dialogue's retry
rules take over), and 401/403/404 stop the task (every request would fail).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from datatrove.data import Document, DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.inference.checkpointing import RequestCache
from datatrove.pipeline.inference.run_inference import InferenceConfig, InferenceRunner
from datatrove.pipeline.inference.servers.base import InferenceServer
from datatrove.pipeline.inference.types import GenerateFunction, InferenceError, ServerError
from datatrove.pipeline.writers.parquet import ParquetWriter

from crsdata.backends import make_backend
from crsdata.backends.base import Backend, BackendError, ChatRequest, Generation, SamplingParams
from crsdata.backends.context import PromptTooLong, TokenCounter, fit_request, token_counter_for
from crsdata.backends.openai_compat import (
    generation_from_answer,
    generation_request,
)
from crsdata.schema import DIALOGUE_FEATURES
from crsdata.simulate.base import Simulation
from crsdata.simulate.engine import DialogueTask, run_dialogue

PLAN_DIR = "plan"
SOURCE_FILE = "source.jsonl"
OUTPUT_DIR = "tasks"
CHECKPOINT_DIR = "checkpoints"
OUTPUT_FILENAME = "${rank}/chunk-${chunk_index}.parquet"

# Builds the simulation from the backends of its roles. Must pickle (a module-level function or a partial of one):
# every task, possibly on another machine, builds its own simulation; backends are never pickled.
SimulationFactory = Callable[[dict[str, Backend]], Simulation]


def task_file(plan_dir: str | Path, rank: int) -> Path:
    return Path(plan_dir) / f"task-{rank:05d}.jsonl"


def load_source_records(plan_dir: str | Path) -> list[dict[str, Any]]:
    """The run's source records, in source order, as the plan saved them."""
    with (Path(plan_dir) / SOURCE_FILE).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


class ServedModel(Backend):
    """A model that a server serves to a datatrove task: what a simulation needs of its backend there, its
    ``model_id`` (provenance) and its identity (``name``, the model the requests ask for). A task sends requests
    asynchronously through :class:`TaskModels`, so this object has no synchronous way to reach the server."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.model_id = name

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        raise BackendError(
            f"{self.name} is served to a datatrove task; its requests go through the task's runner "
            "(crsdata.scaleout.pipeline.TaskModels.generate), not through this backend"
        )

    def option_probabilities(self, requests: list[ChatRequest], options: list[str]) -> list[dict[str, float]]:
        raise BackendError(f"{self.name}: option scoring is not available inside a datatrove simulation task")


def served_backends(models: dict[str, str]) -> dict[str, ServedModel]:
    """Role -> :class:`ServedModel` for ``models`` (role -> model name), one object per distinct model: what a
    simulation is built with in a task (and in the driver, to plan)."""
    served: dict[str, ServedModel] = {}
    return {role: served.setdefault(name, ServedModel(name)) for role, name in models.items()}


@dataclass
class TaskSpec:
    """What a task needs to rebuild the run (picklable; no backend, no key)."""

    sim_factory: SimulationFactory
    plan_dir: str  # the plan's folder: source records and the task files
    models: dict[str, str]  # role -> model name as given (what requests ask for)
    runner_model: str  # the model the InferenceRunner serves
    runner_chat: bool  # whether the runner speaks chat (else raw completions)
    endpoint: str | None  # ".../v1" of an existing server, None when each task starts its own (vLLM)
    split: str
    run_seed: int
    max_retries: int
    concurrency: int
    request_timeout_s: float
    api_key_env: str
    max_model_len: int | None = None  # prompts are fitted to it as the single-process backend fits them


class TaskModels:
    """One task's simulation and model clients, built inside the task from a :class:`TaskSpec`."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.backends = served_backends(spec.models)
        self.simulation = spec.sim_factory(self.backends)
        self.records = load_source_records(spec.plan_dir)
        self._clients: dict[str, Backend] = {}
        self._pool: ThreadPoolExecutor | None = None

    def through_runner(self, role: str, request: ChatRequest) -> bool:
        return self.spec.models[role] == self.spec.runner_model and (request.prompt is None) == self.spec.runner_chat

    async def generate(
        self, role: str, request: ChatRequest, params: SamplingParams, runner_generate: GenerateFunction
    ) -> Generation:
        """One generation for ``role``: through the runner when it serves this model and kind, else through this
        task's own client. A request that fails for good is an error generation (the retry rules decide)."""
        model = self.spec.models[role]
        if not self.through_runner(role, request):
            client = self._client(model)
            loop = asyncio.get_running_loop()
            return (await loop.run_in_executor(self._pool, client.generate, [request], params))[0]
        dropped = 0
        try:
            if self.spec.max_model_len:
                request, dropped = fit_request(request, self.spec.max_model_len, params.max_new_tokens, self._count)
            _, payload = generation_request(model, request, params)
            result = await runner_generate(payload)
        except PromptTooLong as err:
            return Generation("", "error", 0, str(err), refused=True)
        except ValueError as err:  # a request with neither messages nor a prompt
            return Generation("", "error", 0, str(err))
        except InferenceError as err:
            return Generation("", "error", 0, str(err.error), refused=_refused(err))
        tokens = int((result.usage or {}).get("completion_tokens") or 0)
        generation = generation_from_answer(result.text, result.finish_reason, tokens, params.stop)
        generation.dropped_turns = dropped
        return generation

    @property
    def _count(self) -> TokenCounter:
        """The runner model's token counter (its tokenizer when it is a local folder), as its backend counts."""
        if not hasattr(self, "_counter"):
            self._counter = token_counter_for(self.spec.runner_model)
        return self._counter

    def _client(self, model: str) -> Backend:
        if self.spec.endpoint is None:
            raise BackendError(
                f"model {model!r} needs a second server: with --server vllm each task serves one model over one "
                "kind of endpoint; use one model for both roles, or an existing server (--backend URL)"
            )
        if model not in self._clients:
            self._clients[model] = make_backend(
                self.spec.endpoint,
                model,
                max_concurrency=self.spec.concurrency,
                timeout_s=self.spec.request_timeout_s,
                api_key_env=self.spec.api_key_env,
                check_server=False,
                max_model_len=self.spec.max_model_len,
            )
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.spec.concurrency, thread_name_prefix="crsdata-second-model")
        return self._clients[model]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


@contextmanager
def task_models(spec: TaskSpec) -> Iterator[dict[str, TaskModels]]:
    """The runner's shared context: built once per task, closed when the task ends."""
    models = TaskModels(spec)
    try:
        yield {"models": models}
    finally:
        models.close()


class PlannedDialogues(PipelineStep):
    """Yields the rank's planned dialogues, in plan order (a resumed task relies on the order)."""

    name = "crsdata planned dialogues"
    type = "📖 - READER"

    def __init__(self, plan_dir: str) -> None:
        super().__init__()
        self.plan_dir = plan_dir

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        with task_file(self.plan_dir, rank).open(encoding="utf-8") as lines:
            for line in lines:
                entry = json.loads(line)
                self.stat_update("planned")
                # datatrove's checkpoint reader drops documents without text: the id is the text.
                yield Document(
                    text=entry["dialogue_id"],
                    id=entry["dialogue_id"],
                    metadata={"index": entry["index"], "seed": entry["seed"]},
                )


class OpenAIEndpoint(InferenceServer):
    """An existing OpenAI-compatible server, as datatrove's runner expects a server to behave (module doc).

    One pooled ``aiohttp`` session per task (keep-alive, TLS, the key from the environment): on 2 cores it sent
    ~500 requests/s to a server that answers at once, against ~140 for ``httpx``'s async client
    (docs/benchmarks.md)."""

    def __init__(self, config: InferenceConfig, rank: int, base_url: str, api_key_env: str) -> None:
        super().__init__(config, rank)
        self.base_url = base_url
        self.headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self._session: Any = None

    def _client(self) -> Any:
        import aiohttp

        if self._session is None:
            timeout = self.config.request_timeout
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=timeout, connect=min(10.0, timeout or 10.0)),
                connector=aiohttp.TCPConnector(limit=self.config.max_concurrent_generations),
            )
        return self._session

    async def start_server(self) -> None:
        return None  # it runs elsewhere

    async def monitor_health(self) -> None:
        await asyncio.Future()  # nothing to watch; failed requests tell

    def get_base_url(self) -> str:
        return self.base_url

    async def is_ready(self) -> bool:
        import aiohttp

        try:
            async with self._client().get(f"{self.base_url}/models", timeout=aiohttp.ClientTimeout(total=5)):
                return True
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _wait_until_ready(self, max_attempts: int = 30, delay_sec: float = 1.0) -> None:
        await super()._wait_until_ready(max_attempts=max_attempts, delay_sec=delay_sec)

    async def _make_request(self, payload: dict) -> dict:
        import aiohttp

        url = f"{self.base_url}{'/chat/completions' if self.config.use_chat else '/completions'}"
        try:
            async with self._client().post(url, json=payload) as response:
                status = response.status
                if status == 200:
                    return await response.json(content_type=None)
                text = (await response.text())[:300]
        except TimeoutError as exc:
            raise TimeoutError(f"{url}: timed out") from exc
        except aiohttp.ClientError as exc:
            raise ConnectionError(f"{url}: {type(exc).__name__}: {exc}") from exc
        detail = f"{url} answered {status} for model {payload.get('model')!r}: {text}"
        if status in (401, 403, 404):
            raise ServerError(detail)
        if status == 429 or status >= 500:
            raise ConnectionError(detail)  # the runner retries these with backoff
        raise InferenceError(None, f"BadRequestError: {detail}", payload=payload)

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await super().__aexit__(exc_type, exc_val, exc_tb)
        if self._session is not None:
            await self._session.close()


def dialogue_row(writer: ParquetWriter, document: Document) -> dict[str, Any]:
    """The writer's adapter: the finished dialogue record, exactly as the rollout returned it."""
    return document.metadata["rollout_results"][0]


def dialogue_writer(output_dir: str) -> ParquetWriter:
    """Parquet shards in the crsdata dialogue schema, one per rank and checkpoint chunk (a chunk re-run after a
    kill rewrites its own file and nobody else's)."""
    return ParquetWriter(
        output_dir,
        output_filename=OUTPUT_FILENAME,
        adapter=dialogue_row,
        schema=DIALOGUE_FEATURES.arrow_schema,
        max_file_size=-1,
    )


class DialogueRunner(InferenceRunner):
    """datatrove's ``InferenceRunner`` whose rollout is one whole simulated dialogue (module doc)."""

    name = "crsdata dialogues 💬"

    def __init__(
        self,
        spec: TaskSpec,
        config: InferenceConfig,
        output_dir: str,
        checkpoint_dir: str,
        records_per_chunk: int,
        request_cache: bool = False,
    ) -> None:
        super().__init__(
            self.rollout,
            config,
            dialogue_writer(output_dir),
            shared_context=partial(task_models, spec),
            checkpoints_local_dir=checkpoint_dir,
            records_per_chunk=records_per_chunk,
        )
        self.spec = spec
        if not request_cache:
            # datatrove also keeps every answered request of a task in sqlite (one commit per request), so that a
            # dialogue cut by a kill replays its answers. On 2 cores that cut a task's request rate from ~400 to ~35
            # a second (docs/benchmarks.md); and requests carry their seeds, so a resumed dialogue asks the same
            # questions and a seed-honouring server gives the same answers. The checkpoints stay on.
            self.request_cache = RequestCache(None)
            self.checkpoint_manager.request_cache = self.request_cache

    def _init_server(self, rank: int) -> InferenceServer:
        if self.config.server_type == "endpoint":
            return OpenAIEndpoint(self.config, rank, self.spec.endpoint or "", self.spec.api_key_env)
        return super()._init_server(rank)

    async def rollout(self, document: Document, generate: GenerateFunction, models: TaskModels) -> dict[str, Any]:
        """One dialogue: start it from the planned record and seed, run the turn loop, return the record."""
        spec = self.spec
        task = DialogueTask.begin(
            models.simulation, models.records, spec.run_seed, document.metadata["index"], spec.max_retries
        )
        requests = tokens = 0
        waited = 0.0

        async def send(role: str, request: ChatRequest, params: SamplingParams) -> Generation:
            nonlocal requests, tokens, waited
            started = time.perf_counter()
            generation = await models.generate(role, request, params, generate)
            waited += time.perf_counter() - started
            requests += 1
            tokens += generation.completion_tokens
            return generation

        turns = await run_dialogue(task, send)
        record, counters = task.to_record(spec.split, spec.run_seed)
        # Counted under their own names: the runner counts its own requests as requests/completion_tokens.
        self.stat_update("dialogues", unit="dialogue")
        self.stat_update("dialogue_turns", value=turns, unit="dialogue")
        self.stat_update("dialogue_requests", value=requests, unit="dialogue")
        self.stat_update("dialogue_tokens", value=tokens, unit="dialogue")
        self.stat_update("dialogue_request_seconds", value=waited, unit="dialogue")
        if counters.get("abandoned"):
            self.stat_update("dialogues_abandoned", unit="dialogue")
        return record


def build_pipeline(
    spec: TaskSpec, config: InferenceConfig, folder: Path, records_per_chunk: int, request_cache: bool = False
) -> list[PipelineStep]:
    """The two steps, reading the plan under ``folder`` and writing outputs and checkpoints there."""
    output, checkpoints = str(folder / OUTPUT_DIR), str(folder / CHECKPOINT_DIR)
    return [
        PlannedDialogues(str(folder / PLAN_DIR)),
        DialogueRunner(spec, config, output, checkpoints, records_per_chunk, request_cache=request_cache),
    ]


def _refused(err: InferenceError) -> bool:
    """Whether the runner's error is the server refusing the request itself (a 4xx other than 429): datatrove
    raises it at once with the server's answer (a 400 body, or the OpenAI client's error with its status)."""
    status = getattr(err.__cause__, "status_code", None)
    if isinstance(status, int):
        return 400 <= status < 500 and status != 429
    return str(err.error).startswith("Got BadRequestError")
