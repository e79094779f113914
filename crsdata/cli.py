"""The ``crsdata`` command line: one sub-command a module in ``crsdata/commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines ``register(subparsers)``, which adds its parser and sets ``func`` on it.
COMMANDS = ["build", "info", "publish", "simulate", "evaluate", "crs_eval"]

DESCRIPTION = """\
crsdata turns conversational recommendation corpora (ReDial, INSPIRED, RecLLMSim, PEARL) and freshly
simulated dialogues into versioned Hugging Face datasets, scores them with standard metrics, and publishes
them to the Hub. Every command works offline on local folders; only `publish` talks to the Hub.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crsdata", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from crsdata import __version__

    parser.add_argument("--version", action="version", version=f"crsdata {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"crsdata.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from crsdata.errors import BadInputError

    try:
        return int(args.func(args) or 0)
    except BadInputError as err:
        # Bad input is the user's to fix: one clear line, no traceback.
        print(f"crsdata {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
