"""``crsdata export-metric NAME OUT``: a metric module as a folder that works without crsdata installed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crsdata.export_metric import ExportError, export_metric, find_metric_source, verify_exported


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-metric",
        help="write a metric module as a self-contained folder (a Space, or for evaluate.load)",
        description="Write the metric module NAME (metrics/NAME/) to OUT as a folder that loads with "
        "`evaluate.load(OUT)` and runs as a Gradio Space where crsdata is not installed: the module, copies of "
        "the crsdata modules it needs beside it (imports rewritten to point at them), the card, the app, "
        "examples.json, a requirements.txt without crsdata, and crsdata.json (kind space). The crsdata "
        "functions stay the one implementation: export again after changing them. Fails, naming file and "
        "line, when the code needs a package a metric Space does not install. `crsdata publish` uses the same "
        "export for metric Spaces.",
    )
    parser.add_argument("name", help="metric module: a name (ranking) or a folder (metrics/ranking)")
    parser.add_argument(
        "out",
        type=Path,
        help="folder to write; the module script is named after it (OUT/X.py for a folder X), as "
        "evaluate.load(OUT) and evaluate.load('ORG/X') expect",
    )
    parser.add_argument("--version", help="version recorded in crsdata.json (the tag it may get); default crsdata's")
    parser.add_argument(
        "--check",
        action="store_true",
        help="then load the export in a Python process that cannot import crsdata, run examples.json and build "
        "the app (what `crsdata publish` checks)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        source = find_metric_source(args.name)
        out = export_metric(source, args.out, version=args.version)
        if args.check:
            verify_exported(out)
    except (ExportError, ValueError) as err:
        print(f"crsdata export-metric: error: {err}", file=sys.stderr)
        return 1
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    print(f"exported {source} to {out}: {len(files)} files" + (", checked without crsdata" if args.check else ""))
    for path in files:
        print(f"  {path}")
    return 0
