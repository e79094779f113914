"""``crsdata evaluate FOLDER --metrics ...``: score a built or simulated dataset folder.

Every metric the folder and options support, listing the others as skipped::

    crsdata evaluate out/interplay-sim

A popularity baseline on ReDial's test turns, with the numbers written to JSON and into the folder's card::

    crsdata evaluate out/redial --metrics ranking --baseline popularity --k 1,10,50 --json scores.json --update-card

Generated responses (JSON lines with ``dialogue_id``, ``index`` and ``text``) against the dataset's turns::

    crsdata evaluate out/redial --metrics bertscore --predictions generated.jsonl

The metrics are the entries of :data:`crsdata.metrics.registry.METRICS`; the behaviour is
:func:`crsdata.evaluation.evaluate`. Interplay's SR/ET/FR come from replay (``crsdata replay``), not from here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crsdata.evaluation import BASELINES, TURN_RULES, EvaluateConfig, evaluate, format_table, parse_ints


def _metric_table() -> str:
    import textwrap

    from crsdata.metrics.registry import METRICS, NOT_HERE

    entries = [(m.name, f"{m.summary} [needs: {', '.join(n.name for n in m.needs)}]") for m in METRICS]
    entries += [(name, f"not computed here. {why}") for name, why in NOT_HERE.items()]
    return "\n".join(
        textwrap.fill(text, width=110, initial_indent=f"  {name:<19} ", subsequent_indent=" " * 22)
        for name, text in entries
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a dataset folder with CRS metrics",
        description="Score a dataset folder written by `crsdata build` or `crsdata simulate`. Prints a table; "
        "--json writes the numbers, --update-card writes them into the folder's README.md.\n\n"
        "metrics:\n" + _metric_table() + "\n\n'auto' (default) runs every metric the folder and options support "
        "and lists the others as skipped; 'all' or named metrics stop with an error saying what is missing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="dataset folder (`load_dataset(folder, 'dialogues')` reads it)")
    parser.add_argument("--metrics", default="auto", help="comma-separated metric names, 'auto' (default) or 'all'")
    parser.add_argument("--split", help="split to score (default: test, or the only split)")
    parser.add_argument("--n", default="4", help="n-gram lengths for dist, comma-separated (default 4)")
    parser.add_argument("--k", default="1,10,50", help="cut-offs for ranking, comma-separated (default 1,10,50)")
    parser.add_argument(
        "--turns",
        choices=TURN_RULES,
        default="auto",
        help="recommendation turns: action recommend, recommender turns naming items, or auto (default)",
    )
    parser.add_argument("--baseline", choices=BASELINES, help="score a baseline's ranked lists")
    parser.add_argument("--popularity-split", default="train", help="split the popularity counts come from")
    parser.add_argument("--predictions", type=Path, help="JSON lines with dialogue_id, index, items and/or text")
    parser.add_argument(
        "--keep-mentioned", action="store_true", help="do not remove already-mentioned items in ranking"
    )
    parser.add_argument("--embedding-cache", type=Path, help="folder for the Match Score embedding cache")
    parser.add_argument("--bertscore-model", help="local model folder for BERTScore (default: MiniLM wheel)")
    parser.add_argument("--num-layers", type=int, default=5, help="BERTScore layer (default 5)")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this file")
    parser.add_argument(
        "--update-card", action="store_true", help="append or replace an 'Evaluation' section in README.md"
    )
    parser.set_defaults(func=run)


def _quiet_progress_bars() -> None:
    # Loading a folder and a model draws progress bars that would interleave with the table.
    import datasets

    datasets.disable_progress_bars()
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # transformers is an optional extra; only Match Score and BERTScore need it
        pass


def _replay_summary(folder: Path) -> str | None:
    """A ``crsdata replay`` folder's figures (the model's SR/ET/FR with the three baselines on the same
    dialogues and the per-proposal decision scores), or None when ``folder`` is not one."""
    from crsdata.simulate.replay import DECISIONS_NAME, RESULTS_NAME, summary_line

    results = folder / RESULTS_NAME
    if not (results.is_file() and (folder / DECISIONS_NAME).is_file()):
        return None
    figures = json.loads(results.read_text(encoding="utf-8"))
    if "baselines" not in figures:
        return None  # written before the baselines existed: evaluation.load_dialogues explains the folder
    return (
        f"{folder}: a `crsdata replay` folder ({figures['user_model']} on {figures['split']} of "
        f"{figures['source']}; one target per dialogue). Its figures, from {RESULTS_NAME}:\n" + summary_line(figures)
    )


def run(args: argparse.Namespace) -> int:
    replay = _replay_summary(Path(args.folder))
    if replay is not None:
        print(replay)
        return 0
    config = EvaluateConfig(
        folder=args.folder,
        metrics=args.metrics,
        split=args.split,
        n=parse_ints(args.n, "--n"),
        k=parse_ints(args.k, "--k"),
        turns=args.turns,
        baseline=args.baseline,
        popularity_split=args.popularity_split,
        predictions=args.predictions,
        keep_mentioned=args.keep_mentioned,
        embedding_cache=args.embedding_cache,
        bertscore_model=args.bertscore_model,
        num_layers=args.num_layers,
        json=args.json,
        update_card=args.update_card,
    )
    _quiet_progress_bars()
    result = evaluate(config)
    print(f"{result.folder} (split {result.split}, {result.n_dialogues:,} dialogues)")
    print(format_table(result.rows))
    for note in result.notes:
        print(f"note: {note}")
    for name, why in result.skipped.items():
        print(f"skipped {name}: {why}")
    if config.json:
        print(f"wrote {config.json}")
    if config.update_card:
        print(f"updated the Evaluation section of {result.folder / 'README.md'}")
    return 0
