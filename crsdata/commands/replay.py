"""``crsdata replay --source FOLDER --split test --out FOLDER``: SR/ET/FR of a user simulator (Interplay 4.3.1).

The ``replay`` simulation kind (:mod:`crsdata.simulate.replay`) run by the same job as ``crsdata simulate``
(:func:`crsdata.simulate.job.simulate`: the run engine, batched and resumable) with the options only the user
simulator needs; prints SR/ET/FR with their intervals and the accounting::

    crsdata replay --source out/redial-test --split test --n 100 --out out/replay-embedded
    crsdata replay --source out/pearl --split test --out out/replay-usersim --user-model models/usersim \\
        --prompt-style finetuned

``--baselines-only`` scores the baselines alone (no model loaded; :mod:`crsdata.simulate.rule_baselines`).
"""

from __future__ import annotations

import argparse
import json

from crsdata.commands.simulate import COMMON, _examples, add_kind_parser, config_from_args

N_HELP = (
    "score N dialogues: the first N that can be replayed in a seeded shuffle of the split, each source dialogue at "
    "most once; those drawn and skipped on the way are counted by reason (default: the whole split; a larger --n "
    "grows a finished run)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    from crsdata.simulate.replay import ReplaySimulation

    # Only the user simulator speaks (no --recommender-model); --n is optional, with its own meaning.
    parser = add_kind_parser(
        subparsers,
        "replay",
        ReplaySimulation,
        exclude=("recommender_model",),
        overrides={"n": {"required": False, "help": N_HELP}},
        help="replay real dialogues to a user simulator: SR/ET/FR with intervals (resumable)",
        description=ReplaySimulation.description + "\n\n" + COMMON,
        epilog=_examples(ReplaySimulation),
    )
    parser.set_defaults(func=run_command, kind=ReplaySimulation.name)


def run_command(args: argparse.Namespace) -> int:
    from crsdata.backends.threads import prefer_passive_waiting
    from crsdata.simulate.job import simulate
    from crsdata.simulate.replay import RESULTS_NAME, baselines_line, summary_line

    prefer_passive_waiting()  # before anything loads torch: see crsdata.backends.threads
    # Only the user simulator speaks: the recommender role shares its model, so nothing else is loaded.
    args.recommender_model = args.user_model
    config = config_from_args(args, "replay")
    if args.baselines_only:
        from crsdata.simulate.rule_baselines import BASELINES_NAME, baselines_only

        results = baselines_only(config)
        print(
            f"baselines on {results['split']} of {results['source']} (persona history {results['persona_history']}, "
            f"grounding {results['grounding']}; no model loaded) into {config.out}/{BASELINES_NAME}"
        )
        print(baselines_line(results).split("\n")[0])
        print(f"over {results['n_dialogues']} dialogues; {results['n_skipped']} skipped {results['skipped']}")
        return 0
    outcome = simulate(config)
    results = json.loads((outcome.exported.path / RESULTS_NAME).read_text(encoding="utf-8"))
    stats = outcome.result.stats
    resumed = f", {stats.resumed_dialogues} from an earlier run" if stats.resumed_dialogues else ""
    print(
        f"replayed {results['split']} of {results['source']} with {results['user_model']} into "
        f"{outcome.exported.path} ({outcome.exported.description}) in {outcome.seconds:.1f}s{resumed}"
    )
    print(summary_line(results))
    for example in results["skipped_examples"][:3]:
        print(f"  skipped: {example}")
    return 0
