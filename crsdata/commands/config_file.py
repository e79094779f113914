"""``--config FILE.yaml`` for a command: the file's keys are the command's options; a flag overrides the file."""

from __future__ import annotations

import argparse
from pathlib import Path

CONFIG_DEST = "config_file"


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE.yaml`` on a command's parser: its keys are the command's options (``max_turns`` or
    ``max-turns``), read before the command line, so that a flag given on the command line overrides the file."""
    parser.add_argument(
        "--config",
        dest=CONFIG_DEST,
        metavar="FILE.yaml",
        help="YAML file of this command's options (keys: the flags' names, max_turns or max-turns); a flag given "
        "on the command line overrides the file",
    )


def _selected_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser:
    """The (sub)parser the command line selects, following sub-command names."""
    for token in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and token in subs[0].choices:
            parser = subs[0].choices[token]
    return parser


def apply_config_file(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Makes the values of ``--config FILE`` the defaults of the selected parser (as TRL's ``TrlParser`` does with
    its ``--config``): the command line, parsed afterwards, overrides them, and an option the file gives is no
    longer required on the command line. A key that is not an option is bad input naming the file and the key."""
    from crsdata.errors import BadInputError

    selected = _selected_parser(parser, argv)
    actions = {a.dest: a for a in selected._actions}
    if CONFIG_DEST not in actions:
        return
    path = None
    for i, token in enumerate(argv):
        if token == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
        elif token.startswith("--config="):
            path = token.split("=", 1)[1]
    if path is None:
        return
    import yaml

    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise BadInputError(
            path, "", "--config", f"cannot read the config file ({err.strerror})", "not-found"
        ) from None
    except yaml.YAMLError as err:
        raise BadInputError(path, "", "--config", f"not valid YAML ({err})", "bad-config") from None
    if not isinstance(loaded, dict):
        raise BadInputError(path, "", "--config", "expected a mapping of option names to values", "bad-config")
    hidden = {"help", CONFIG_DEST, "func", "debug"}
    known = sorted(d for d, a in actions.items() if a.option_strings and d not in hidden)
    for key, value in loaded.items():
        dest = str(key).replace("-", "_")
        if dest not in known:
            raise BadInputError(path, "", str(key), f"not an option of this command (known: {', '.join(known)})")
        action = actions[dest]
        if isinstance(action, argparse._AppendAction | argparse._ExtendAction) and _given(action, argv):
            continue  # the flag's values replace the file's list instead of adding to it
        kind = action.type
        if callable(kind) and isinstance(value, list):  # argparse converts a string default itself, not a list
            value = [kind(v) if isinstance(v, str) else v for v in value]
        action.default = value
        action.required = False


def _given(action: argparse.Action, argv: list[str]) -> bool:
    """Whether the command line gives ``action``'s flag (``--data X`` or ``--data=X``)."""
    return any(token == flag or token.startswith(flag + "=") for token in argv for flag in action.option_strings)
