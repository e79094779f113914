"""``flag``: a config dataclass field that is also a command-line flag, declared once.

A command's options are the fields of its config dataclass (``SimulateConfig``, ``CrsEvalConfig``,
``PlaygroundConfig``); TRL's ``TrlParser`` turns each field into a flag (``max_turns`` is ``--max-turns`` and
``--max_turns``) with the annotation as its type and the field's default as its default (see
:mod:`crsdata.commands.config_file`). This module holds only the field helper, so that the libraries that define
those dataclasses need no command-line code.
"""

from __future__ import annotations

from dataclasses import MISSING, field
from typing import Any


def flag(
    default: Any = MISSING,
    help: str = "",  # noqa: A002 - argparse's word
    group: str = "",
    **argparse_keys: Any,
) -> Any:
    """A dataclass field and its flag. ``help`` is the flag's help (``%(default)s`` shows the field's default, so
    the help never repeats it by hand; a literal percent sign is ``%%``); ``group`` the help section it is listed
    under; ``argparse_keys`` any other argparse keyword (``choices``, ``metavar``, ``aliases``, ``required``,
    ``action``) or ``type``, a parser of the flag's text where the annotation's type is not enough. A list default
    is given as ``default_factory`` in ``argparse_keys``."""
    metadata = {"help": help, **({"group": group} if group else {})}
    factory = argparse_keys.pop("default_factory", MISSING)
    metadata.update(argparse_keys)
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)
