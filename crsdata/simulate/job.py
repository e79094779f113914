"""One simulation job, as ``crsdata simulate KIND`` runs it: source, models, run engine, export.

:class:`SimulateConfig` holds every option the kinds share (a kind's own options are its
:class:`~crsdata.simulate.base.SimulationOptions`); :func:`simulate` does the work:

1. check the options and load the kind's source (one split; nothing is written when it is unusable);
2. take the output folder's lock (``OUT/.simulate.lock``; a second job on the same folder is refused) and
   refuse a resume with other options before any model is loaded;
3. load one backend per distinct model name, build the kind's simulation and the run configuration;
4. run (or resume, or grow) the run with :class:`~crsdata.simulate.engine.RunEngine`;
5. hand the result to the kind's :meth:`~crsdata.simulate.base.Simulation.export` (by default a dataset folder).

Nothing here depends on the kind beyond what :class:`~crsdata.simulate.base.Simulation` declares.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crsdata.backends.base import DEFAULT_PREFIX_CACHE_MB, Backend, SamplingParams
from crsdata.errors import BadInputError
from crsdata.simulate.base import Simulation, SimulationOptions
from crsdata.simulate.engine import RunConfig, RunEngine, RunLock, RunResult, SimulationSource, check_resume
from crsdata.simulate.kinds import SIMULATIONS

RUN_DIR = ".simulate-run"
OUT_LOCK = ".simulate.lock"
DTYPES = ("float32", "bfloat16", "float16", "auto")


@dataclass
class SimulateConfig:
    """A simulation job. ``options`` are the kind's own (``None``: the kind's defaults); ``max_turns`` ``None``
    takes the kind's default; ``threads`` ``None`` keeps torch's default (all cores; see
    :mod:`crsdata.backends.threads` for why waiting threads should sleep); ``command`` is the command line
    recorded in the card."""

    kind: str
    source: str
    n: int
    out: Path
    options: SimulationOptions | None = None
    user_model: str = "embedded"
    recommender_model: str = "embedded"
    backend: str = "local"
    threads: int | None = None
    kv_cache_mb: int = DEFAULT_PREFIX_CACHE_MB
    dtype: str = "float32"
    seed: int = 0
    max_turns: int | None = None
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    max_retries: int = 2
    batch_size: int = 32
    shard_size: int = 50
    split: str | None = None
    run_dir: Path | None = None
    version: str = "0.1.0"
    progress: bool = True
    command: str = ""

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.kind not in SIMULATIONS:
            raise BadInputError("", "", "kind", f"unknown simulation {self.kind!r} ({', '.join(SIMULATIONS)})")
        if self.options is None:
            self.options = self.simulation_class.options_class()

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
        return SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p)

    def check(self) -> None:
        """BadInputError naming the option for a value out of range."""

        def bad(option: str, message: str) -> BadInputError:
            return BadInputError("", "", option, message, "bad-option")

        if self.threads is not None and self.threads < 1:
            raise bad("--threads", "must be at least 1")
        if self.kv_cache_mb < 0:
            raise bad("--kv-cache-mb", "must be 0 or more")
        for name in ("n", "batch_size", "shard_size", "max_new_tokens"):
            if getattr(self, name) < (0 if name == "n" else 1):
                raise bad(f"--{name.replace('_', '-')}", "must be positive")
        if self.max_turns is not None and self.max_turns < 1:
            raise bad("--max-turns", "must be at least 1")
        if self.max_retries < 0 or self.temperature < 0 or not 0 < self.top_p <= 1:
            raise bad("", "--max-retries and --temperature must be >= 0, --top-p in (0, 1]")
        if self.dtype not in DTYPES:
            raise bad("--dtype", f"must be one of {', '.join(DTYPES)}")


@dataclass
class Exported:
    """What a kind's export wrote: where, how many dialogues it kept, and how many it left out by reason."""

    path: Path
    kept: int
    dropped: dict[str, int] = field(default_factory=dict)
    description: str = "dataset folder"


@dataclass
class SimulateOutcome:
    result: RunResult
    source: SimulationSource
    exported: Exported
    seconds: float


def make_backends(config: SimulateConfig) -> dict[str, Backend]:
    """One backend per distinct model name: both roles share one loaded model when the names are equal."""
    from crsdata.backends import make_backend

    options: dict[str, Any]
    if config.backend == "local":
        options = {"dtype": config.dtype, "max_batch_size": config.batch_size, "prefix_cache_mb": config.kv_cache_mb}
    else:
        options = {"max_concurrency": config.batch_size}
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
        model_ids={r: b.model_id for r, b in simulation.backends.items()} if simulation else {},
        sampling={r: asdict(p) for r, p in simulation.params.items()} if simulation else {},
        source=source.name,
        source_kind=source.kind,
        source_fingerprint=source.fingerprint,
        options=config.options.run_config(),
        prompt_hashes=simulation.prompt_hashes() if simulation else {},
        settings=simulation.settings() if simulation else {},
        dtype=config.dtype if config.backend == "local" else "",
        max_retries=config.max_retries,
        batch_size=config.batch_size,
        shard_size=config.shard_size,
        crsdata_version=__version__,
    )


# Parts of the run configuration known only once the simulation exists (after loading the models).
_KNOWN_AFTER_LOADING = ("model_ids", "sampling", "prompt_hashes", "settings")


def simulate(config: SimulateConfig) -> SimulateOutcome:
    """Runs (or resumes, or grows) a simulation job and exports it; see the module docstring."""
    started = time.perf_counter()
    config.check()
    kind = config.simulation_class
    assert config.options is not None
    source = kind.load_source(config.source, config.split, config.options)
    with RunLock(config.out, OUT_LOCK, what="output folder"):
        # Refuse a mismatched resume before spending time loading models; the rest is checked by the engine.
        check_resume(config.work_dir, run_config(config, source).as_dict(), ignore=_KNOWN_AFTER_LOADING)
        if config.threads and config.backend == "local":
            import torch

            torch.set_num_threads(config.threads)
        backends = make_backends(config)
        params = config.sampling()
        simulation = kind.from_options(
            backends, {"user": params, "recommender": params}, config.turns, config.options, source
        )
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
        if not result.records:
            reasons = ", ".join(f"{r} {n}" for r, n in result.skipped.counts.items()) or "none requested"
            example = f"; first: {result.skipped.examples[0]}" if result.skipped.examples else ""
            raise BadInputError(
                source.name, "", "", f"no dialogue could be simulated (skipped: {reasons}){example}", "no-records"
            )
        exported = simulation.export(result, source, config)
    return SimulateOutcome(result, source, exported, time.perf_counter() - started)
