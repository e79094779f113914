"""One simulation job, as ``crsdata simulate KIND`` runs it: source, models, run engine, export.

:class:`SimulateConfig` holds every option the kinds share (a kind's own options are its
:class:`~crsdata.simulate.base.SimulationOptions`); :func:`simulate` does the work:

1. check the options and load the kind's source (one split; nothing is written when it is unusable);
2. take the output folder's lock (``OUT/.simulate.lock``; a second job on the same folder is refused) and
   refuse a resume with other options before any model is loaded;
3. load one backend per distinct model name, build the kind's simulation and the run configuration;
4. run (or resume, or grow) the run with :class:`~crsdata.simulate.engine.RunEngine`; or, with ``executor`` set,
   on a datatrove executor against a server (:func:`crsdata.scaleout.job.simulate_scaled` passes the part that
   runs there: the same simulation, the same :class:`~crsdata.simulate.engine.DialogueTask` rules, the same run
   folder);
5. hand the result to the kind's :meth:`~crsdata.simulate.base.Simulation.export` (by default a dataset folder).

Nothing here depends on the kind beyond what :class:`~crsdata.simulate.base.Simulation` declares.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from crsdata.backends.base import DEFAULT_PREFIX_CACHE_MB, Backend, SamplingParams
from crsdata.backends.factory import MAX_MODEL_LEN_OPTION
from crsdata.errors import BadInputError
from crsdata.options import flag
from crsdata.simulate.base import _KNOWN_AFTER_LOADING, Exported, Simulation, SimulationOptions, simulation_parts
from crsdata.simulate.engine import RunConfig, RunEngine, RunLock, check_resume
from crsdata.simulate.kinds import SIMULATIONS
from crsdata.simulate.results import RunResult
from crsdata.simulate.source import SimulationSource

# A job run elsewhere (crsdata.scaleout.job): (simulation, result), or the message of a run handed to Slurm.
ScaledRun = Callable[["SimulateConfig", SimulationSource], "tuple[Simulation, RunResult] | str"]

RUN_DIR = ".simulate-run"
OUT_LOCK = ".simulate.lock"
DTYPES = ("float32", "bfloat16", "float16", "auto")
# The executors and servers of scale-out (crsdata.scaleout), named here so that the job's options can offer them
# without importing scale-out (which sits above simulate).
EXECUTORS = ("local", "slurm", "ray")
SERVERS = ("vllm",)
SCALE_OUT = "scale-out"


@dataclass
class SimulateConfig:
    """A simulation job. ``options`` are the kind's own (``None``: the kind's defaults); a model ``None`` and
    ``max_turns`` ``None`` take the kind's defaults (the models are filled in at construction, and the kind
    completes its options from them: :meth:`~crsdata.simulate.base.Simulation.complete_options`); ``threads``
    ``None`` keeps torch's default (all cores; see :mod:`crsdata.backends.threads` for why waiting threads should
    sleep); ``command`` is the command line recorded in the card.

    Scale-out (README "Scaling out"): ``executor`` (``local``, ``slurm`` or ``ray``; ``None`` runs this process's
    engine) runs the job as ``tasks`` datatrove tasks, ``workers`` at once, against the server at ``backend`` (a
    URL) or a vLLM each task starts (``server="vllm"``); ``batch_size`` is then the dialogues in flight per task.
    ``logging_dir`` holds datatrove's logs; ``slurm_*`` and ``server_args`` (``KEY[=VALUE]`` strings) go to
    ``sbatch`` and ``vllm serve``. See :class:`crsdata.scaleout.config.ScaleOutConfig`."""

    kind: str  # the sub-command (simulate KIND), not a flag
    source: str = flag(help="where personas or tasks come from (see the kind's description)")
    n: int | None = flag(help="number of dialogues to write (a larger --n grows a run)")  # None: the kind's default_n
    out: Path = flag(help="output dataset folder (run files inside it)", aliases=["-o"])
    options: SimulationOptions | None = None  # the kind's own flags
    # None: the kind's default (Simulation.default_model)
    user_model: str | None = flag(None, "model of the user simulator (default: the kind's, see models below)", "models")
    recommender_model: str | None = flag(
        None, "model of the recommender / assistant (default: the kind's, see models below)", "models"
    )
    backend: str = flag(
        "local", "`local` (transformers in this process) or the base URL of an OpenAI-compatible server", "models"
    )
    threads: int | None = flag(
        None,
        "CPU threads for the local backend (default: torch's, one per core). Waiting threads sleep "
        "(OMP_WAIT_POLICY=PASSIVE unless you set it): on a machine shared with other jobs, threads spinning while "
        "they wait for a busy core stalled every step, see docs/benchmarks.md",
        "models",
    )
    kv_cache_mb: int = flag(
        DEFAULT_PREFIX_CACHE_MB,
        "memory for the conversation states the local backend keeps between turns, so that a turn runs only its new "
        "text through the model (default %(default)s; 0 recomputes every prompt)",
        "models",
    )
    # the model's context in tokens; None: the server's or the model's own
    max_model_len: int | None = flag(None, group="models", **MAX_MODEL_LEN_OPTION)
    dtype: str = flag(
        "float32",
        "local backend weights (default %(default)s: only float32 keeps a dialogue independent of batching, which "
        "resuming and growing rely on; bfloat16 is faster but changes texts with the batch, see docs/benchmarks.md)",
        "models",
        choices=DTYPES,
    )
    seed: int = flag(0, "run seed (default %(default)s)", "generation")
    max_turns: int | None = flag(None, "turns per dialogue, both roles (default: the kind's)", "generation")
    max_new_tokens: int = flag(128, "tokens per generated turn (default %(default)s)", "generation")
    temperature: float = flag(0.7, "sampling temperature, 0 = greedy (default %(default)s)", "generation")
    top_p: float = flag(0.95, "nucleus sampling mass (default %(default)s)", "generation")
    repetition_penalty: float = flag(  # 1.0: off (local backend only; see crsdata.backends.local)
        1.0,
        "transformers' repetition penalty on the tokens of the turn being written, local backend (default "
        "%(default)s, off)",
        "generation",
    )
    no_repeat_ngram_size: int = flag(
        0,
        "ban any n-gram of this size from repeating within a turn, local backend (default %(default)s, off)",
        "generation",
    )
    max_retries: int = flag(
        2,
        "retries of a turn whose generation fails (timeout, server error) before the dialogue ends with end_reason "
        "error (default %(default)s)",
        "generation",
    )
    batch_size: int = flag(
        32,
        "dialogues in flight at once, one backend call per step (default %(default)s; on a CPU, larger batches "
        "decode more tokens per second, see docs/benchmarks.md)",
        "run",
    )
    shard_size: int = flag(50, "finished dialogues per saved shard (default %(default)s)", "run")
    split: str | None = flag(
        None,
        "the one source split to draw from; the output split has its name (default: train, else the only split "
        "with usable records; several and none named train is an error)",
        "run",
    )
    run_dir: Path | None = flag(None, "run files (shards, manifest); default OUT/.simulate-run", "run")
    version: str = flag("0.1.0", "dataset version stamped on the folder (default %(default)s)", "run")
    progress: bool = flag(True, "no progress bar", "run")
    command: str = ""  # the command line recorded in the card, not a flag
    executor: str | None = flag(
        None, "local processes, a Slurm job array or a Ray cluster", SCALE_OUT, choices=EXECUTORS
    )
    tasks: int = flag(1, "shards of the run, one datatrove task each (default %(default)s)", SCALE_OUT, metavar="T")
    workers: int = flag(-1, "tasks running at once (default: all)", SCALE_OUT, metavar="W")
    server: str | None = flag(
        None, "start this server in each task instead of --backend URL", SCALE_OUT, choices=SERVERS
    )
    logging_dir: Path | None = flag(
        None,
        "datatrove's logs, stats and completion markers (default OUT/.simulate-run/scaleout/logs)",
        SCALE_OUT,
        metavar="D",
    )
    slurm_partition: str = flag("", "Slurm partition (required with --executor slurm)", SCALE_OUT, metavar="P")
    slurm_time: str = flag("24:00:00", "Slurm time limit per task (default %(default)s)", SCALE_OUT, metavar="HH:MM:SS")
    slurm_args: list[str] = flag(
        help="an extra #SBATCH option (repeatable)",
        group=SCALE_OUT,
        default_factory=list,
        aliases=["--slurm-arg"],
        metavar="KEY=VALUE",
    )
    server_args: list[str] = flag(
        help="a `vllm serve` option, e.g. gpu-memory-utilization=0.85 or enforce-eager (repeatable)",
        group=SCALE_OUT,
        default_factory=list,
        aliases=["--server-arg"],
        metavar="KEY[=VALUE]",
    )

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.kind not in SIMULATIONS:
            raise BadInputError("", "", "kind", f"unknown simulation {self.kind!r} ({', '.join(SIMULATIONS)})")
        if self.options is None:
            self.options = self.simulation_class.options_class()
        kind = self.simulation_class
        self.user_model = self.user_model or kind.default_model("user")
        self.recommender_model = self.recommender_model or kind.default_model("recommender")
        kind.complete_options(self.options, {"user": self.user_model, "recommender": self.recommender_model})

    @property
    def simulation_class(self) -> type[Simulation]:
        return SIMULATIONS[self.kind]

    @property
    def work_dir(self) -> Path:
        return Path(self.run_dir) if self.run_dir else self.out / RUN_DIR

    @property
    def turns(self) -> int:
        return self.max_turns or self.simulation_class.default_max_turns

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
            no_repeat_ngram_size=self.no_repeat_ngram_size,
        )

    def check(self) -> None:
        """BadInputError naming the option for a value out of range."""

        def bad(option: str, message: str) -> BadInputError:
            return BadInputError("", "", option, message, "bad-option")

        if self.threads is not None and self.threads < 1:
            raise bad("--threads", "must be at least 1")
        if self.kv_cache_mb < 0:
            raise bad("--kv-cache-mb", "must be 0 or more")
        assert self.options is not None
        self.options.check()
        for name in ("n", "batch_size", "shard_size", "max_new_tokens"):
            value = getattr(self, name)
            if value is not None and value < (0 if name == "n" else 1):
                raise bad(f"--{name.replace('_', '-')}", "must be positive")
        if self.max_turns is not None and self.max_turns < 1:
            raise bad("--max-turns", "must be at least 1")
        if self.max_retries < 0 or self.temperature < 0 or not 0 < self.top_p <= 1:
            raise bad("", "--max-retries and --temperature must be >= 0, --top-p in (0, 1]")
        if self.repetition_penalty <= 0 or self.no_repeat_ngram_size < 0:
            raise bad("--repetition-penalty", "--repetition-penalty must be > 0, --no-repeat-ngram-size >= 0")
        if self.backend != "local" and self.sampling().reshapes_logits:
            raise bad(
                "--repetition-penalty",
                "--repetition-penalty and --no-repeat-ngram-size run in the local backend only, not against a server",
            )
        if self.dtype not in DTYPES:
            raise bad("--dtype", f"must be one of {', '.join(DTYPES)}")
        if self.executor is None and (self.server is not None or self.tasks != 1 or self.workers != -1):
            raise bad("--executor", "--tasks, --workers and --server run a job on an executor: give --executor too")
        source, out = Path(self.source), self.out
        if source.is_dir() and (out.resolve() == source.resolve() or source.resolve() in out.resolve().parents):
            raise bad(
                "--out",
                f"{out} is the --source folder or inside it; write the output elsewhere, so that a run never "
                "changes the folder it reads",
            )


@dataclass
class SimulateOutcome:
    """A finished job (``result`` and ``exported``), or one handed to Slurm (``submitted`` says what to expect;
    ``result`` and ``exported`` are None until the merge job, the same command, has run)."""

    result: RunResult | None
    source: SimulationSource
    exported: Exported | None
    seconds: float
    submitted: str = ""


@dataclass
class SimulationBuilder:
    """Builds the job's simulation from the backends of its roles. Picklable, so that every scale-out task (maybe on
    another machine) builds its own; it carries the source without its records (kinds build from its name and
    kind, see :meth:`~crsdata.simulate.base.Simulation.constructor_options`)."""

    kind: str
    params: SamplingParams
    max_turns: int
    options: SimulationOptions
    source: SimulationSource

    @classmethod
    def of(cls, config: SimulateConfig, source: SimulationSource) -> SimulationBuilder:
        assert config.options is not None
        return cls(config.kind, config.sampling(), config.turns, config.options, replace(source, records=[]))

    def __call__(self, backends: dict[str, Backend]) -> Simulation:
        params = {"user": self.params, "recommender": self.params}
        return SIMULATIONS[self.kind].from_options(backends, params, self.max_turns, self.options, self.source)


def make_backends(config: SimulateConfig) -> dict[str, Backend]:
    """One backend per distinct model name: both roles share one loaded model when the names are equal."""
    from crsdata.backends import make_backend

    options: dict[str, Any] = {"max_model_len": config.max_model_len}
    if config.backend == "local":
        options |= {"dtype": config.dtype, "max_batch_size": config.batch_size, "prefix_cache_mb": config.kv_cache_mb}
    else:
        options["max_concurrency"] = config.batch_size
    loaded: dict[str, Backend] = {}
    backends = {}
    for role, model in (("user", config.user_model), ("recommender", config.recommender_model)):
        if model not in loaded:
            try:
                loaded[model] = make_backend(config.backend, model, **options)
            except ValueError as err:
                raise BadInputError(config.backend, "", "--backend", str(err), "bad-option") from None
        backends[role] = loaded[model]
    return backends


# Parts of the run configuration known only once the simulation exists (after loading the models).
def run_config(config: SimulateConfig, source: SimulationSource, simulation: Simulation | None = None) -> RunConfig:
    """The run configuration the manifest records. Without ``simulation`` (before the models are loaded) the
    parts only it knows (model ids, sampling with its stop strings, prompt hashes, settings) are left empty."""
    from crsdata import __version__

    assert config.options is not None
    return RunConfig(
        simulation=config.kind,
        n=config.n,
        seed=config.seed,
        max_turns=config.turns,
        split=source.split,
        backend=config.backend,
        models={"user": config.user_model, "recommender": config.recommender_model},
        source=source.name,
        source_kind=source.kind,
        source_fingerprint=source.fingerprint,
        options=config.options.run_config(),
        **(simulation_parts(simulation) if simulation else {key: {} for key in _KNOWN_AFTER_LOADING}),
        dtype=config.dtype if config.backend == "local" else "",
        max_retries=config.max_retries,
        batch_size=config.batch_size,
        shard_size=config.shard_size,
        crsdata_version=__version__,
    )


def simulate(config: SimulateConfig, scaled: ScaledRun | None = None) -> SimulateOutcome:
    """Runs (or resumes, or grows) a simulation job and exports it; see the module docstring. ``scaled`` runs
    the job elsewhere once the source is loaded and the output folder locked (:mod:`crsdata.scaleout.job`
    passes it: this package never imports crsdata.scaleout); it returns (simulation, result), or the message of a
    run handed to Slurm."""
    started = time.perf_counter()
    config.check()
    kind = config.simulation_class
    assert config.options is not None
    source = kind.load_source(config.source, config.split, config.options)
    if config.n is None:
        config.n = kind.default_n(source)
    with RunLock(config.out, OUT_LOCK, what="output folder"):
        if scaled is not None:
            done = scaled(config, source)
            if isinstance(done, str):  # handed to Slurm: the same command, run later as a job, merges and exports
                return SimulateOutcome(None, source, None, time.perf_counter() - started, submitted=done)
            return _export(*done, source, config, started)
        if config.executor is not None:
            raise BadInputError("", "", "--executor", "a job on an executor runs through crsdata.scaleout.job")
        # Refuse a mismatched resume before spending time loading models; the rest is checked by the engine.
        check_resume(config.work_dir, run_config(config, source).as_dict(), ignore=_KNOWN_AFTER_LOADING)
        if config.threads and config.backend == "local":
            import torch

            torch.set_num_threads(config.threads)
        backends = make_backends(config)
        simulation = SimulationBuilder.of(config, source)(backends)
        engine = RunEngine(
            simulation,
            source,
            run_config(config, source, simulation),
            config.work_dir,
            progress=config.progress,
        )
        try:
            result = engine.run()
        finally:
            for backend in {id(b): b for b in backends.values()}.values():
                backend.close()
        return _export(simulation, result, source, config, started)


def _export(
    simulation: Simulation, result: RunResult, source: SimulationSource, config: SimulateConfig, started: float
) -> SimulateOutcome:
    if not result.records:
        reasons = ", ".join(f"{r} {n}" for r, n in result.skipped.counts.items()) or "none requested"
        example = f"; first: {result.skipped.examples[0]}" if result.skipped.examples else ""
        raise BadInputError(
            source.name, "", "", f"no dialogue could be simulated (skipped: {reasons}){example}", "no-records"
        )
    exported = simulation.export(result, source, config)
    return SimulateOutcome(result, source, exported, time.perf_counter() - started)
