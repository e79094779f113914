"""``crsdata info FOLDER``: statistics of a built or simulated dataset folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from crsdata.export import read_metadata
from crsdata.stats import dialogue_stats, format_stats, read_dialogues


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print statistics of a dataset folder",
        description="Print the statistics of a dataset folder written by `crsdata build` or `crsdata simulate`: "
        "dialogues and turns per split, mean turns and words, catalog link rate, action, intent and end-reason "
        "distributions, and the read/kept/skipped accounting of the build.",
    )
    parser.add_argument("folder", type=Path, help="dataset folder (the one `load_dataset(folder, 'dialogues')` reads)")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    metadata = read_metadata(args.folder)
    stats = dialogue_stats(read_dialogues(args.folder))
    stats.pop("turns_per_dialogue")
    if args.json:
        print(json.dumps({"metadata": metadata, "stats": stats}, indent=2, ensure_ascii=False))
        return 0
    accounting = metadata["accounting"]
    print(
        f"{args.folder}: {metadata['source']} dataset version {metadata['dataset_version']} "
        f"(crsdata {metadata['crsdata_version']})"
    )
    print(format_stats(stats))
    print(
        f"accounting           read={accounting['read']:,} kept={accounting['kept']:,} "
        f"skipped={accounting['skipped']:,} dropped={accounting['dropped']:,} "
        f"({'adds up' if accounting['balanced'] else 'DOES NOT ADD UP'})"
    )
    for reason, count in metadata["skipped"]["by_reason"].items():
        print(f"  skipped {reason}: {count}")
    for reason, count in metadata["dropped"].items():
        print(f"  dropped {reason}: {count}")
    return 0
