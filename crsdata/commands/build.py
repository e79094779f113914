"""``crsdata build SOURCE --input PATH --out FOLDER``: a source corpus into a Hub-layout dataset folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from crsdata.errors import BadInputError, SkipLog
from crsdata.export import export_folder, read_metadata
from crsdata.stats import format_stats


def register(subparsers: argparse._SubParsersAction) -> None:
    from crsdata.builders import BUILDERS

    sources = "\n".join(f"  {name:<10} {cls.input_help}" for name, cls in BUILDERS.items())
    parser = subparsers.add_parser(
        "build",
        help="build a source corpus into a versioned dataset folder",
        description="Read a corpus in its original release format and write a Hub-layout folder: parquet "
        "shards per split in the crsdata schema, the item catalog, and a dataset card with statistics. "
        "The folder loads with `datasets.load_dataset(FOLDER, 'dialogues')` and publishes with "
        "`crsdata publish`.\n\nsources and what --input takes:\n" + sources,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", choices=sorted(BUILDERS), help="which corpus")
    parser.add_argument(
        "--input", "-i", type=Path, action="append", required=True, help="source file or folder; repeat for several"
    )
    parser.add_argument("--out", "-o", type=Path, required=True, help="output folder (created or overwritten)")
    parser.add_argument(
        "--catalog",
        type=Path,
        action="append",
        default=[],
        help="item catalog file to link titles against (ReDial id2info.json, movies_with_mentions.csv, "
        "MovieLens movies_w_keywords.csv or movies.csv); repeat for several",
    )
    parser.add_argument("--split", help="split name for every input, overriding what file names say")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip and count bad records instead of stopping at the first; counts go into the card",
    )
    parser.add_argument("--version", default="0.1.0", help="dataset version stamped on the build (default 0.1.0)")
    parser.add_argument("--repo-id", help="repository id shown in the card's loading example")
    parser.add_argument("--shard-rows", type=int, default=20_000, help="rows per parquet shard (default 20000)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from crsdata.builders import BUILDERS

    builder = BUILDERS[args.source]()
    skip = SkipLog(skip_bad=args.skip_bad)
    started = time.perf_counter()
    for path in args.input + args.catalog:
        if not path.exists():
            raise BadInputError(path, "", "", "does not exist", "not-found")
    kwargs = {"split": args.split} if args.split else {}
    result = builder.build(args.input, catalogs=args.catalog, skip=skip, **kwargs)
    if not any(result.splits.values()):
        accounting = result.accounting()
        raise BadInputError(
            ", ".join(str(p) for p in args.input),
            "",
            "",
            f"no dialogue kept (read {accounting['read']}, skipped {accounting['skipped']}, dropped "
            f"{accounting['dropped']}); nothing to write"
            + (f"; first skip: {result.skipped.examples[0]}" if result.skipped.examples else ""),
            "empty",
        )
    result.info = {**builder.info(), **result.info}
    export_folder(result, args.out, version=args.version, repo_hint=args.repo_id, shard_rows=args.shard_rows)
    elapsed = time.perf_counter() - started
    # The exporter computed the statistics from the written shards; reading them back again would double the work.
    stats = read_metadata(args.out)["stats"]
    print(f"built {args.source} into {args.out} in {elapsed:.1f}s (dataset version {args.version})")
    print(format_stats(stats))
    accounting = result.accounting()
    print(
        f"read {accounting['read']:,}, kept {accounting['kept']:,}, skipped {accounting['skipped']:,}, "
        f"dropped {accounting['dropped']:,}"
    )
    for example in skip.examples[:5]:
        print(f"  skipped: {example}")
    return 0
