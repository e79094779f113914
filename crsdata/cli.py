"""The ``crsdata`` command line: one sub-command a module in ``crsdata/commands``.

Every failure a user can cause ends in one line on stderr, ``crsdata <command>: error: ...``, and a non-zero
exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module defines ``register(subparsers)``, which adds its parser and sets ``func`` on it.
COMMANDS = ["build", "info", "publish", "simulate", "evaluate", "train", "export_metric", "space", "crs_eval", "replay"]

DESCRIPTION = """\
crsdata turns conversational recommendation corpora (ReDial, INSPIRED, RecLLMSim, PEARL) and freshly
simulated dialogues into versioned Hugging Face datasets, trains the simulators that make them, scores them
with standard metrics, and publishes them to the Hub. Every command works offline on local folders; only
`publish` talks to the Hub.
"""

DEBUG_HELP = "show the full traceback of an error instead of one line"


def _add_debug(parser: argparse.ArgumentParser) -> None:
    # On every (sub)parser, so `crsdata --debug simulate ...` and `crsdata simulate ... --debug` both work.
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _add_debug(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crsdata", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from crsdata import __version__

    parser.add_argument("--version", action="version", version=f"crsdata {__version__}")
    from crsdata.commands.config_file import CommandParser

    # A command whose options are a dataclass passes ``dataclass_types=`` to ``add_parser`` (TRL's TrlParser builds
    # its flags and reads its --config); the others declare their flags by hand on the same parser class.
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for name in COMMANDS:
        importlib.import_module(f"crsdata.commands.{name}").register(subparsers)
    _add_debug(parser)
    return parser


def error_line(err: BaseException) -> str:
    """The one line a user sees for ``err``: its message, on one line, without a class name where the
    message already says what went wrong."""
    from crsdata.errors import BadInputError

    message = " ".join(str(err).split())
    if isinstance(err, BadInputError | FileNotFoundError | PermissionError | IsADirectoryError):
        return message
    known = {"BackendError", "PublishError", "RunConfigMismatch", "HfHubHTTPError", "ConnectError"}
    if type(err).__name__ in known and message:
        return message
    return f"{type(err).__name__}: {message or 'no message'} (run with --debug for the traceback)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Loading a local folder is quick; datasets' "Generating split" bars would only bury our own progress and
    # error lines. (The command modules have imported datasets by now, so the environment variable is too late.)
    import datasets

    datasets.disable_progress_bars()
    argv = list(sys.argv[1:] if argv is None else argv)
    from crsdata.errors import BadInputError

    try:
        args = parser.parse_args(argv)  # a command's --config FILE.yaml is read here, by its parser
    except BadInputError as err:  # a bad config file is one line, like any other bad input
        if "--debug" in argv:
            raise
        print(f"crsdata {argv[0] if argv else ''}: error: {error_line(err)}", file=sys.stderr)
        return 1
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"crsdata {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if getattr(args, "debug", False):
            raise
        print(f"crsdata {args.command}: error: {error_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
