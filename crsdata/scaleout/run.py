"""``run_distributed``: a simulation run on a datatrove executor, ending in the same run folder and RunResult as
the single-process engine's. See the package doc for the guarantees."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.backends.base import BackendError
from crsdata.backends.embedded import resolve_model
from crsdata.backends.openai_compat import normalise_base_url
from crsdata.errors import BadInputError
from crsdata.fileio import write_json_atomic
from crsdata.scaleout.config import ScaleOutConfig
from crsdata.scaleout.pipeline import PLAN_DIR, SimulationFactory, TaskSpec, build_pipeline, served_backends
from crsdata.scaleout.plan import (
    chunk_files,
    completed_ranks,
    done_count,
    load_plan,
    make_plan,
    reset_interrupted,
    save_manifest,
    write_plan,
)
from crsdata.schema import load_extra
from crsdata.simulate.engine import (
    MANIFEST,
    DialogueTask,
    RunConfig,
    check_resume,
    commit_shard,
    read_run_result,
    read_shard,
    record_counters,
)
from crsdata.simulate.results import RunResult, RunStats
from crsdata.simulate.source import SimulationSource

SCALEOUT_DIR = "scaleout"
# The datatrove statistics the rollout keeps (crsdata.scaleout.pipeline.DialogueRunner.rollout), by RunStats field.
STAT_KEYS = {
    "dialogues": "dialogues",
    "turns": "dialogue_turns",
    "requests": "dialogue_requests",
    "completion_tokens": "dialogue_tokens",
    "generate_seconds": "dialogue_request_seconds",
}


@dataclass
class SubmittedRun:
    """A run handed to Slurm: the job ids, where to watch it, and what writes the folder when it is done."""

    job_ids: list[str]
    logging_dir: Path
    message: str
    scripts: list[Path] = field(default_factory=list)


def scaled_config(config: RunConfig, scale: ScaleOutConfig) -> RunConfig:
    """The run configuration as a distributed run records it: the server that answered (the endpoint URL, or
    ``vllm``) as the backend, and the executor and task count among the options, so that the card and the manifest
    say how the run was made and a resume with another executor or task count is refused (the tasks' files would
    not match). Nothing else changes, so the dialogues equal the single-process engine's."""
    from dataclasses import replace

    options = {**config.options, "executor": scale.executor, "tasks": scale.tasks}
    return replace(config, backend=scale.endpoint or str(scale.server), options=options, dtype="")


def run_distributed(
    sim_factory: SimulationFactory,
    source: SimulationSource,
    config: RunConfig,
    scale: ScaleOutConfig,
    work_dir: str | Path,
    *,
    progress: bool = True,
    merge_command: str | None = None,
) -> RunResult | SubmittedRun:
    """Runs (or resumes) ``config``'s simulation on ``scale``'s executor; writes the engine's run folder in
    ``work_dir`` (``manifest.json`` and ``shards/``) once every task is done and returns its RunResult. With Slurm
    the tasks run later: returns a :class:`SubmittedRun` (and, given ``merge_command``, submits a job that runs it
    after the array, e.g. the same ``crsdata simulate`` command, which then finds every task done and merges).

    ``sim_factory(backends)`` builds the simulation; it is called here (to plan) and in every task (with
    :class:`~crsdata.scaleout.pipeline.ServedModel` backends); it must pickle. ``config`` comes from the command as
    for the engine; :func:`scaled_config` is applied to it here.
    """
    started = time.time()
    scale.check()
    if scale.server is not None and len(set(config.models.values())) > 1:
        raise BadInputError(
            "", "", "--server", "each task's vLLM serves one model: give both roles the same model", "bad-option"
        )
    config = scaled_config(config, scale)
    work = Path(work_dir).resolve()
    folder = work / SCALEOUT_DIR
    logging_dir = Path(scale.logging_dir).resolve() if scale.logging_dir else folder / "logs"
    config_dict = config.as_dict()

    finished = check_resume(work, config_dict)
    if finished is not None:
        if finished.get("status") != "complete":
            raise BadInputError(
                work / MANIFEST,
                "",
                "",
                "this folder holds an unfinished single-process run; finish it with the same command without "
                "--executor, or use another --out",
                "config-mismatch",
            )
        _refuse_growth(work / MANIFEST, finished, config.n)
        return read_run_result(work, finished, RunStats(resumed_dialogues=len(_indices(finished))))

    manifest, timings = _plan(sim_factory(served_backends(config.models)), source, config, scale, folder)
    runner = manifest["runner"]
    spec = TaskSpec(
        sim_factory=sim_factory,
        plan_dir=str(folder / PLAN_DIR),
        models=dict(config.models),
        runner_model=runner["model"],
        runner_chat=runner["chat"],
        endpoint=normalise_base_url(scale.endpoint) if scale.endpoint else None,
        split=config.split,
        run_seed=config.seed,
        max_retries=config.max_retries,
        concurrency=scale.concurrency,
        request_timeout_s=scale.request_timeout_s,
        api_key_env=scale.api_key_env,
        max_model_len=scale.max_model_len or (scale.model_max_context if scale.endpoint is None else None),
    )
    pipeline = build_pipeline(
        spec,
        inference_config(scale, runner, logging_dir),
        folder,
        manifest["records_per_chunk"],
        request_cache=scale.request_cache,
    )

    for rank in reset_interrupted(folder, logging_dir, manifest):
        print(f"crsdata: task {rank} lost a closed chunk (killed while closing it); it starts again", file=sys.stderr)
    session = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "started_unix": started,
        "executor": scale.executor,
        "tasks": scale.tasks,
        "workers": scale.workers_at_once,
        "server": scale.endpoint or scale.server,
        "ranks_to_run": sorted(set(range(scale.tasks)) - completed_ranks(logging_dir, scale.tasks)),
        "timings": timings,
    }
    manifest["sessions"].append(session)
    manifest["status"] = "running"
    save_manifest(folder, manifest)

    executor = EXECUTORS[scale.executor](pipeline, scale, logging_dir)
    if scale.executor == "slurm":
        submitted = submit_slurm(executor, scale, logging_dir, merge_command)
        if submitted is not None:
            session["job_ids"] = submitted.job_ids
            save_manifest(folder, manifest)
            return submitted
    else:
        executor_started = time.perf_counter()
        with _ray_cluster(scale), _progress(folder, logging_dir, manifest, progress):
            try:
                executor.run()
            except Exception as err:  # a task's own error (the server went away, a bug): say where and how on
                raise BackendError(
                    f"a task failed ({type(err).__name__}: {err}); its log is in {logging_dir / 'logs'}. "
                    "Finished dialogues are kept: run the same command again to resume."
                ) from err
        timings["executor_seconds"] = time.perf_counter() - executor_started

    missing = sorted(set(range(scale.tasks)) - completed_ranks(logging_dir, scale.tasks))
    if missing:
        raise BackendError(
            f"{len(missing)} of {scale.tasks} tasks did not finish (ranks {', '.join(map(str, missing[:10]))}); "
            f"their logs are in {logging_dir / 'logs'}. Run the same command again to resume them."
        )
    session["ended_unix"] = time.time()
    return merge(work, folder, logging_dir, manifest, scale, started)


# ---------------------------------------------------------------------------------------------------------
# Planning helpers


def _plan(
    sim: Any, source: SimulationSource, config: RunConfig, scale: ScaleOutConfig, folder: Path
) -> tuple[dict[str, Any], dict[str, float]]:
    """The saved plan of this run (refusing one made with other options), or a new one; and the planning time."""
    manifest = load_plan(folder, config.as_dict())
    started = time.perf_counter()
    if manifest is not None:
        _refuse_growth(folder / MANIFEST, manifest, config.n)
    else:
        plan = make_plan(sim, source.records, config.seed, config.n)
        if not plan.entries:
            raise BadInputError(source.name, "", "", _no_dialogue(plan.skipped), "no-records")
        runner_model, runner_chat = _runner_endpoint(sim, source, config, plan.entries[0])
        extra = {"runner": {"model": runner_model, "chat": runner_chat}}
        # The checkpoint chunk size is fixed with the plan: a resumed task skips whole chunks by count.
        chunk = max(1, config.shard_size)
        manifest = write_plan(folder, sim, source, config, plan, scale.tasks, chunk, extra)
    if len(manifest["tasks"]) != scale.tasks:  # options.tasks is compared too; this guards a hand-edited file
        raise BadInputError(folder / MANIFEST, "", "tasks", "the plan was made for another task count", "corrupt-run")
    return manifest, {"plan_seconds": time.perf_counter() - started}


def _refuse_growth(path: Path, manifest: dict[str, Any], n: int) -> None:
    """A distributed run's plan is fixed when it is made: another --n (the engine grows a run) is refused."""
    if manifest["config"]["n"] != n:
        raise BadInputError(
            path,
            "config",
            "n",
            f"this distributed run was planned for --n {manifest['config']['n']}, not {n}; a run on an executor "
            "does not grow: use the same --n, or another --out folder",
            "config-mismatch",
        )


def _no_dialogue(skipped: list[dict[str, Any]]) -> str:
    reasons = Counter(entry["reason"] for entry in skipped)
    return "no source record can start a dialogue (" + ", ".join(f"{r}: {c}" for r, c in reasons.items()) + ")"


def _runner_endpoint(sim: Any, source: SimulationSource, config: RunConfig, first: int) -> tuple[str, bool]:
    """The model and endpoint kind (chat or raw completions) the runner serves: those of the run's first request.
    Requests of another model or kind go through a second client (crsdata.scaleout.pipeline.TaskModels)."""
    task = DialogueTask.begin(sim, source.records, config.seed, first, config.max_retries)
    role = task.next_role()
    return config.models[role], task.request(role).prompt is None


def inference_config(scale: ScaleOutConfig, runner: dict[str, Any], logging_dir: Path) -> Any:
    """datatrove's InferenceConfig for the runner: an existing endpoint, or a vLLM server per task."""
    from datatrove.pipeline.inference.run_inference import InferenceConfig

    vllm = scale.server == "vllm"
    return InferenceConfig(
        server_type="vllm" if vllm else "endpoint",
        # vLLM loads the model by path and serves it under that name; an endpoint serves the name as given.
        model_name_or_path=resolve_model(runner["model"]) if vllm else runner["model"],
        model_max_context=scale.model_max_context,
        use_chat=runner["chat"],
        endpoint_url=None if vllm else normalise_base_url(scale.endpoint or ""),
        tp=scale.tensor_parallel,
        max_concurrent_generations=scale.concurrency,
        max_concurrent_documents=scale.concurrency,
        request_timeout=scale.request_timeout_s,
        model_kwargs=dict(scale.server_args) or None,
        server_log_folder=str(logging_dir / "server_logs") if vllm else None,
    )


# ---------------------------------------------------------------------------------------------------------
# Executors: one builder per name (local processes, a Slurm job array, a Ray cluster)


def _local(pipeline: list, scale: ScaleOutConfig, logging_dir: Path) -> Any:
    from datatrove.executor import LocalPipelineExecutor

    return LocalPipelineExecutor(
        pipeline, tasks=scale.tasks, workers=scale.workers_at_once, logging_dir=str(logging_dir)
    )


def _slurm(pipeline: list, scale: ScaleOutConfig, logging_dir: Path) -> Any:
    from datatrove.executor import SlurmPipelineExecutor

    return SlurmPipelineExecutor(
        pipeline,
        tasks=scale.tasks,
        time=scale.slurm_time,
        partition=scale.slurm_partition,
        cpus_per_task=scale.cpus_per_task,
        mem_per_cpu_gb=int(scale.mem_per_cpu_gb),
        gpus_per_task=scale.task_gpus,
        workers=scale.workers,
        job_name=scale.job_name,
        env_command=scale.activate_command() or None,
        sbatch_args=dict(scale.slurm_args),
        logging_dir=str(logging_dir),
        qos="",
    )


def _ray(pipeline: list, scale: ScaleOutConfig, logging_dir: Path) -> Any:
    from datatrove.executor import RayPipelineExecutor

    return RayPipelineExecutor(
        pipeline,
        tasks=scale.tasks,
        workers=scale.workers_at_once,
        logging_dir=str(logging_dir),
        cpus_per_task=scale.cpus_per_task,
        mem_per_cpu_gb=scale.mem_per_cpu_gb,
        gpus_per_task=scale.task_gpus,
    )


EXECUTORS: dict[str, Callable[[list, ScaleOutConfig, Path], Any]] = {"local": _local, "slurm": _slurm, "ray": _ray}


def submit_slurm(
    executor: Any, scale: ScaleOutConfig, logging_dir: Path, merge_command: str | None
) -> SubmittedRun | None:
    """Submits the job array (datatrove writes ``launch_script.slurm`` and ``executor.pik`` in the logging folder)
    and, given ``merge_command``, a job that runs it once the array succeeded. None when every task is already
    done (nothing to submit: merge now)."""
    from datatrove.executor.slurm import launch_slurm_job

    executor.run()
    if executor.job_id in (None, -1):
        return None
    job_ids = [str(executor.job_id)]
    scripts = [logging_dir / "launch_script.slurm"]
    if merge_command:
        script = merge_script(executor, merge_command)
        path = logging_dir / "merge_script.slurm"
        path.write_text(script, encoding="utf-8")
        scripts.append(path)
        job_ids.append(str(launch_slurm_job(script, executor.job_id_retriever)))
    then = (
        f"job {job_ids[1]} writes the folder when they succeed"
        if merge_command
        else "run the same command again when they are done to write the folder"
    )
    message = (
        f"submitted {scale.tasks} Slurm tasks as job {job_ids[0]}; {then}. Logs, stats and completion markers: "
        f"{logging_dir}"
    )
    return SubmittedRun(job_ids, logging_dir, message, scripts)


def merge_script(executor: Any, command: str) -> str:
    """The sbatch script of the merge job: one CPU, after the array job succeeded, running ``command``."""
    args = {**executor.get_sbatch_args(), "cpus-per-task": 1, "job-name": f"{executor.job_name}-merge"}
    for key in ("array", "gpus"):
        args.pop(key, None)
    args["dependency"] = f"afterok:{executor.job_id}"
    return executor.get_launch_file_contents(args, command)


@contextmanager
def _ray_cluster(scale: ScaleOutConfig) -> Iterator[None]:
    """Connects to ``scale.ray_address`` (or ``RAY_ADDRESS``), else starts a local Ray cluster for the run; only a
    cluster started here is shut down here."""
    if scale.executor != "ray":
        yield
        return
    import ray

    if ray.is_initialized():
        yield
        return
    address = scale.ray_address or os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@contextmanager
def _progress(folder: Path, logging_dir: Path, manifest: dict[str, Any], show: bool) -> Iterator[None]:
    """A progress bar (dialogues written of the plan) fed by a thread that reads the tasks' files every second."""
    if not show:
        yield
        return
    from tqdm.auto import tqdm

    bar = tqdm(total=len(_plan_indices(manifest)), unit="dlg", desc="simulate (datatrove)", file=sys.stderr)
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(1.0):
            try:
                bar.n = done_count(folder, logging_dir, manifest)
                bar.refresh()
            except OSError:
                pass  # a file renamed under us; the next poll reads it

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.n = done_count(folder, logging_dir, manifest)
        bar.close()


# ---------------------------------------------------------------------------------------------------------
# Merge: the tasks' chunks become the engine's run folder


def _plan_indices(manifest: dict[str, Any]) -> list[int]:
    return [index for task in manifest["tasks"] for index in task["indices"]]


def _indices(manifest: dict[str, Any]) -> list[int]:
    return [index for shard in manifest["shards"] for index in shard["indices"]]


def merge(
    work: Path, folder: Path, logging_dir: Path, plan: dict[str, Any], scale: ScaleOutConfig, started: float
) -> RunResult:
    """Reads every task's chunks, checks that each planned dialogue is there exactly once, writes them in index
    order as the engine's shards and manifest (``status: complete``) and returns the RunResult.

    Streams: the tasks' blocks are consecutive ranges of the plan and a task's chunk ``k`` holds its ``k``-th
    run of documents, so sorting each chunk by index gives the whole run in order with one chunk and one shard in
    memory at a time."""
    merge_started = time.perf_counter()
    size = plan["config"]["shard_size"]
    shards: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    written = 0

    def flush(final: bool) -> None:
        while len(pending) >= size or (final and pending):
            chunk, pending[:] = pending[:size], pending[size:]
            shards.append(commit_shard(work, len(shards), [(_index(r), r, record_counters(r)) for r in chunk]))

    for task in plan["tasks"]:
        rank, expected = task["rank"], task["indices"]
        seen: list[int] = []
        for path in chunk_files(folder, rank):
            records = sorted(read_shard(path), key=_index)
            seen.extend(_index(r) for r in records)
            pending.extend(records)
            flush(final=False)
        if seen != expected:
            raise BadInputError(
                folder / "tasks" / f"{rank:05d}",
                "",
                "",
                _merge_problem(rank, expected, seen, folder, logging_dir),
                "corrupt-run",
            )
        written += len(seen)
    flush(final=True)
    plan["sessions"][-1].setdefault("timings", {})["merge_seconds"] = time.perf_counter() - merge_started
    sessions, this = session_stats(plan["sessions"], logging_dir, len(plan["tasks"]))
    totals: Counter[str] = Counter()
    for shard in shards:
        totals.update(shard["counters"])
    manifest = {
        "format": plan["format"],
        "config": plan["config"],
        "status": "complete",
        "created": plan["created"],
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "source": plan["source"],
        "shards": shards,
        "skipped": plan["skipped"],
        "counters": dict(sorted(totals.items())),
        "sessions": sessions,
        "executor": {**scale.describe(), "logging_dir": str(logging_dir), "runner": plan["runner"]},
    }
    write_json_atomic(work / MANIFEST, manifest)
    plan["status"] = "merged"
    save_manifest(folder, plan)
    this.wall_seconds = time.time() - started
    this.resumed_dialogues = written - this.dialogues
    return read_run_result(work, manifest, this)


def _index(record: dict[str, Any]) -> int:
    return int(load_extra(record["extra"])["run"]["index"])


def _merge_problem(rank: int, expected: list[int], seen: list[int], folder: Path, logging_dir: Path) -> str:
    missing, extra = set(expected) - set(seen), set(seen) - set(expected)
    twice = len(seen) - len(set(seen))
    found = ", ".join(
        part
        for part in (
            f"{len(missing)} planned dialogues missing (first index {min(missing)})" if missing else "",
            f"{len(extra)} not in its plan" if extra else "",
            f"{twice} written twice" if twice else "",
        )
        if part
    )
    redo = [
        logging_dir / "completions" / f"{rank:05d}",
        folder / "checkpoints" / "last_chunk" / f"{rank:05d}.txt",
        folder / "tasks" / f"{rank:05d}",
    ]
    return (
        f"task {rank}'s output does not match its plan ({found}); the task folders were changed or lost. To redo "
        f"that task, delete {', '.join(map(str, redo))} and run the same command again"
    )


def session_stats(
    sessions: list[dict[str, Any]], logging_dir: Path, tasks: int
) -> tuple[list[dict[str, Any]], RunStats]:
    """Each session with what its tasks did, from datatrove's per-task stats: a finished task counts for the last
    session that started before its completion marker was written. Wall time runs from the session's start to its
    last task's end. Returns the sessions and the current (last) session's RunStats."""
    attributed: dict[int, list[tuple[float, Counter[str]]]] = {}
    for rank in range(tasks):
        marker = logging_dir / "completions" / f"{rank:05d}"
        stats_file = logging_dir / "stats" / f"{rank:05d}.json"
        if not marker.is_file() or not stats_file.is_file():
            continue
        done = marker.stat().st_mtime
        owner = max((i for i, s in enumerate(sessions) if s["started_unix"] <= done), default=len(sessions) - 1)
        values: Counter[str] = Counter()
        for step in json.loads(stats_file.read_text()):  # datatrove's PipelineStats: a metric is a total or a dict
            for key, metric in step.get("stats", {}).items():
                values[key] += metric["total"] if isinstance(metric, dict) else metric
        attributed.setdefault(owner, []).append((done, values))
    out = []
    current = RunStats()
    for i, session in enumerate(sessions):
        stats = RunStats()
        entries = attributed.get(i, [])
        for _, values in entries:
            for field_name, key in STAT_KEYS.items():
                setattr(stats, field_name, getattr(stats, field_name) + type(getattr(stats, field_name))(values[key]))
        stats.calls = stats.requests
        end = max([done for done, _ in entries], default=session.get("ended_unix", session["started_unix"]))
        stats.wall_seconds = max(0.0, end - session["started_unix"])
        out.append({**{k: v for k, v in session.items() if k != "ranks_to_run"}, **stats.as_dict()})
        current = stats
    return out, current
