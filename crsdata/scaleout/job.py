"""``crsdata simulate ... --executor``: a simulation job (:mod:`crsdata.simulate.job`) on a datatrove executor.

Here, above :mod:`crsdata.simulate`, so that the simulation package never imports scale-out: the command calls
:func:`simulate_scaled`, which hands :func:`crsdata.simulate.job.simulate` the part that runs on the executor.
"""

from __future__ import annotations

from functools import partial

from crsdata.errors import BadInputError
from crsdata.scaleout.config import ScaleOutConfig, parse_key_values
from crsdata.scaleout.run import SubmittedRun, run_distributed, served_backends
from crsdata.simulate.base import Simulation
from crsdata.simulate.job import SimulateConfig, SimulateOutcome, SimulationBuilder, run_config, simulate
from crsdata.simulate.results import RunResult
from crsdata.simulate.source import SimulationSource


def simulate_scaled(config: SimulateConfig) -> SimulateOutcome:
    """Runs ``config`` (with ``executor`` set) on its executor; checks the scale-out options first."""
    scale = scale_out(config)
    if scale is None:
        raise BadInputError("", "", "--executor", "no executor given")
    scale.check()
    return simulate(config, scaled=partial(_simulate_scaled, scale=scale))


def scale_out(self: SimulateConfig) -> ScaleOutConfig | None:
    """How the job runs on a datatrove executor; None without ``executor`` (this process's engine)."""
    if self.executor is None:
        return None
    return ScaleOutConfig(
        executor=self.executor,
        tasks=self.tasks,
        workers=self.workers,
        logging_dir=str(self.logging_dir) if self.logging_dir else None,
        endpoint=None if self.backend == "local" else self.backend,
        server=self.server,
        concurrency=self.batch_size,
        max_model_len=self.max_model_len,
        slurm_partition=self.slurm_partition,
        slurm_time=self.slurm_time,
        slurm_args=parse_key_values(self.slurm_args, "--slurm-arg"),
        server_args=parse_key_values(self.server_args, "--server-arg", flag=True),
    )


def _simulate_scaled(
    config: SimulateConfig, source: SimulationSource, scale: ScaleOutConfig
) -> tuple[Simulation, RunResult] | str:
    """The job on a datatrove executor (:mod:`crsdata.scaleout`): the same simulation, built in every task by a
    :class:`SimulationBuilder`, the same run folder and export. With Slurm the tasks run later: the outcome says
    so, and the same command (submitted as a job after the array) merges and exports."""
    build = SimulationBuilder.of(config, source)
    simulation = build(served_backends({"user": config.user_model, "recommender": config.recommender_model}))
    outcome = run_distributed(
        build,
        source,
        run_config(config, source, simulation),
        scale,
        config.work_dir,
        progress=config.progress,
        merge_command=config.command or None,
    )
    if isinstance(outcome, SubmittedRun):
        return outcome.message
    return simulation, outcome
