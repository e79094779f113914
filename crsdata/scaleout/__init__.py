"""Simulation runs on datatrove executors (local processes, Slurm, Ray) against OpenAI-compatible servers.

``crsdata simulate ... --executor local|slurm|ray --tasks T`` runs the same simulation classes, prompts, leak
guard, parsers and quality filters as the single-process engine, inside a datatrove pipeline: one dialogue is one
document, and the rollout that turns it into a record is the engine's own per-dialogue loop
(:func:`crsdata.simulate.engine.run_dialogue` over ``DialogueTask``, with its retry rules). :func:`run_distributed` is
the one entry point; it returns the engine's :class:`~crsdata.simulate.base.RunResult`, so the command writes the same
Hub-layout folder and card either way.

How a run goes
1. Plan (driver): the first ``n`` indices whose records start a dialogue, exactly as the engine draws them; skips
   recorded; indices cut into ``T`` contiguous blocks (:mod:`crsdata.scaleout.plan`).
2. Tasks (datatrove ranks): each reads its block and runs its dialogues with datatrove's ``InferenceRunner``,
   ``concurrency`` at a time, against an existing server (``--backend URL``) or a vLLM it starts
   (``--server vllm``); finished dialogues go to ``tasks/<rank>/chunk-<k>.parquet`` in the crsdata schema
   (:mod:`crsdata.scaleout.pipeline`).
3. Merge (driver, or a Slurm job after the array): every planned index exactly once, written in index order as
   the engine's ``shards/`` and ``manifest.json``, with the executor, tasks and server in the manifest
   (:mod:`crsdata.scaleout.run`).

Guarantees
- Dialogue ``i`` depends only on ``(seed, i)``: the plan fixes its record and seed; every request carries its
  seed (the OpenAI ``seed`` field, which vLLM honours), whichever task sends it.
- Same records as the single-process engine against the same server when the server answers a request the same
  way each time (greedy decoding, or a server that honours per-request seeds).
- Resume after a kill: datatrove skips tasks with a completion marker; a killed task replays its checkpoints
  (every finished dialogue is saved locally before it counts) and runs only the rest; the merge refuses a missing
  or duplicated index. Run the same command again.
"""

from typing import Any

# The configuration imports nothing heavy (the CLI builds its options from it); the runner needs datatrove (the
# `scale` extra) and is imported on first use.
from crsdata.scaleout.config import EXECUTORS, SERVERS, ScaleOutConfig, parse_key_values

_RUN = ("SubmittedRun", "run_distributed", "scaled_config", "served_backends")


def __getattr__(name: str) -> Any:
    if name in _RUN:
        from crsdata.scaleout import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EXECUTORS",
    "SERVERS",
    "ScaleOutConfig",
    "SubmittedRun",
    "parse_key_values",
    "run_distributed",
    "scaled_config",
    "served_backends",
]
