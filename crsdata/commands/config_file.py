"""A command's options from its config dataclass, through TRL's ``TrlParser``, with ``--config FILE.yaml``.

Every command that runs a job (``simulate KIND``, ``replay``, ``crs-eval``, ``space``, ``train RECIPE``) declares
its options once, as the fields of one dataclass: the field's name is the flag (``max_turns`` is ``--max-turns`` and
``--max_turns``), its annotation the type, its default the default, and its ``metadata`` the flag's help and
anything else argparse takes (``choices``, ``metavar``, ``aliases``, ``action``, ``required``). TRL's
``TrlParser`` (a ``transformers.HfArgumentParser``) turns the fields into flags, so no command writes a default
or a type a second time. :class:`CommandParser` is that parser as the sub-command parser of ``crsdata``
(``add_subparsers(parser_class=CommandParser)``), with what our commands add to it:

- ``--config FILE.yaml`` read when the sub-command's parser runs: the file's keys are the flags (``max_turns``
  or ``max-turns``, ``no-progress``), its values become the parser's defaults (TRL's ``set_defaults_with_config``),
  so a flag given on the command line overrides the file, and an option the file gives is no longer required.
  A key that is not an option, an unreadable file or bad YAML is one :class:`~crsdata.errors.BadInputError`
  naming the file and the key. A repeatable flag given on the command line replaces the file's list.
- a list field's flag is repeatable (``--catalog A --catalog B``; TRL's alone keeps the last use);
- metadata ``group``: the help section a flag is listed under; metadata ``type``: a parser of the flag's text
  where the annotation's type is not enough (``--n all``).
- ``exclude``: fields the command fills itself (the kind, the card's command line), which are not flags;
  ``sections``: the help section of a dataclass's flags that name none; ``overrides``: argparse attributes of a
  flag that one command changes (``crsdata replay``'s ``--n`` is optional, with its own help).

The command builds its dataclass from the parsed namespace with :func:`dataclass_values`.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

from trl import TrlParser

CONFIG_DEST = "config_file"
# Metadata keys that are ours, not argparse's: taken off a field before TRL hands its metadata to add_argument.
_OWN_KEYS = ("group", "type", "in_run_config")


class CommandHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that names each flag once, as users type it: ``--max-turns``, not also TRL's ``--max_turns`` (which
    still parses)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        strings = action.option_strings
        shown = [s for s in strings if not (s.startswith("--") and "_" in s and s.replace("_", "-") in strings)]
        if shown == strings:
            return super()._format_action_invocation(action)
        visible = copy.copy(action)
        visible.option_strings = shown
        return super()._format_action_invocation(visible)


class CommandParser(TrlParser):
    """A ``crsdata`` sub-command's parser: ``dataclass_types``' fields as flags (TRL), plus ``--config FILE.yaml``.

    Without ``dataclass_types`` it is a plain ``argparse.ArgumentParser`` (the commands that declare their flags
    by hand, and the parser that only chooses a simulation kind); ``reads_config=True`` gives such a parser
    ``--config`` too."""

    def __init__(
        self,
        dataclass_types: Any = None,
        *,
        exclude: tuple[str, ...] = (),
        sections: dict[type, str] | None = None,
        overrides: dict[str, dict[str, Any]] | None = None,
        reads_config: bool | None = None,
        **kwargs: Any,
    ) -> None:
        # argparse's own by default (HfArgumentParser's would repeat every default); ours where a command keeps its
        # description's lines, which every command built from a dataclass does.
        formatter = kwargs.get("formatter_class") or argparse.HelpFormatter
        if formatter is argparse.RawDescriptionHelpFormatter:
            formatter = CommandHelpFormatter
        kwargs["formatter_class"] = formatter
        self._exclude = set(exclude)
        self._sections = sections or {}
        self._groups: dict[str, argparse._ArgumentGroup] = {}
        super().__init__(dataclass_types=dataclass_types, **kwargs)
        for name, changes in (overrides or {}).items():  # one command's view of a shared field (replay's --n)
            for key, value in changes.items():
                setattr(self._option_string_actions["--" + name.replace("_", "-")], key, value)
        self._reads_config = bool(self.dataclass_types) if reads_config is None else reads_config
        if self._reads_config:
            self.add_argument(
                "--config",
                dest=CONFIG_DEST,
                metavar="FILE.yaml",
                help="YAML file of this command's options (keys: the flags' names, max_turns or max-turns); a flag "
                "given on the command line overrides the file",
            )

    def group(self, title: str) -> argparse._ArgumentGroup:
        """The help section ``title`` (made on first use), where the fields with metadata ``group`` are listed."""
        if title not in self._groups:
            self._groups[title] = self.add_argument_group(title)
        return self._groups[title]

    def _add_dataclass_arguments(self, dtype: Any) -> None:
        hints = typing.get_type_hints(dtype)
        for f in dataclasses.fields(dtype):
            if not f.init or f.name in self._exclude:
                continue
            f.type = hints[f.name]
            own = {k: f.metadata[k] for k in _OWN_KEYS if k in f.metadata}
            section = own.get("group") or self._sections.get(dtype)
            target = self.group(section) if section else self
            is_list = typing.get_origin(f.type) is list
            if own or (is_list and "action" not in f.metadata):
                # argparse would refuse our keys: hand TRL a copy of the field without them; a list flag is
                # repeatable (--catalog A --catalog B), where TRL's would keep only the last use
                f = copy.copy(f)
                metadata = {k: v for k, v in f.metadata.items() if k not in _OWN_KEYS}
                f.metadata = types.MappingProxyType({"action": "extend", **metadata} if is_list else metadata)
                if "type" in own and not is_list:
                    f.type = str  # TRL reads only plain annotations; the flag's own parser is set below
            self._parse_dataclass_field(target, f)
            action = self._option_string_actions["--" + f.name]
            # --max-turns first: the usage line and argparse's errors name a flag by its first spelling.
            action.option_strings.sort(key=lambda option: "_" in option)
            for complement in self._actions[-1:]:  # TRL's --no-NAME of a true-default switch, added after it
                if complement.dest == f.name and complement is not action:
                    complement.option_strings.sort(key=lambda option: "_" in option)
            if "type" in own:  # TRL sets the annotation's type; this field parses its text its own way
                action.type = own["type"]
            if f.type is bool:
                action.metavar = "true|false"
                if f.default is True:  # its switch is --no-NAME (TRL's), which the field's help describes
                    action.help = argparse.SUPPRESS

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """argparse's, after ``--config FILE.yaml`` has set this parser's defaults (``crsdata`` calls it on the
        sub-command's arguments, as argparse calls any sub-parser)."""
        if self._reads_config and args is not None:
            args = list(args)
            path = _pop_config_path(args)
            if path is not None:
                self._apply_config(path, args)
        return super().parse_known_args(args, namespace)

    def _apply_config(self, path: str, argv: list[str]) -> None:
        """The file's values as defaults; a flag on the command line still wins (it is parsed afterwards)."""
        from crsdata.errors import BadInputError

        loaded = read_yaml_mapping(path)
        hidden = {"help", CONFIG_DEST, "debug"}
        by_name: dict[str, argparse.Action] = {}
        for action in self._actions:
            if action.option_strings and action.dest not in hidden:
                for option in action.option_strings:
                    by_name[option.lstrip("-").replace("-", "_")] = action
        values: dict[str, Any] = {}
        for key, value in loaded.items():
            name = str(key).replace("-", "_")
            action = by_name.get(name)
            if action is None:
                known = ", ".join(sorted({a.dest for a in by_name.values()}))
                raise BadInputError(path, "", str(key), f"not an option of this command (known: {known})")
            if _given(action, argv) and isinstance(action, argparse._AppendAction | argparse._ExtendAction):
                continue  # the flag's values replace the file's list instead of adding to it
            if action.nargs == 0:  # a switch (--quiet, --no-progress): true gives it, false leaves the default
                if value:
                    values[action.dest] = action.const
                continue
            kind = action.type
            if callable(kind) and isinstance(value, list):  # argparse converts a string default, not a list
                value = [kind(v) if isinstance(v, str) else v for v in value]
            values[action.dest] = value
        for action in self._actions:  # every action of a dest (--progress and --no-progress share one)
            if action.dest in values:
                action.default = values[action.dest]
                action.required = False


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The mapping in the YAML file ``path``; an unreadable file, bad YAML or another shape is bad input."""
    import yaml

    from crsdata.errors import BadInputError

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
    return loaded


def dataclass_values(args: argparse.Namespace, cls: Any, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields of ``cls`` that ``args`` holds (the parsed flags), as keyword arguments of ``cls``."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if f.init and f.name not in exclude and hasattr(args, f.name)
    }


def _pop_config_path(argv: list[str]) -> str | None:
    """Takes ``--config FILE`` / ``--config=FILE`` out of ``argv``; the last one given counts."""
    path = None
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
            del argv[i : i + 2]
        elif token.startswith("--config="):
            path = token.split("=", 1)[1]
            del argv[i]
        else:
            i += 1
    return path


def _given(action: argparse.Action, argv: list[str]) -> bool:
    """Whether the command line gives ``action``'s flag (``--data X`` or ``--data=X``)."""
    return any(token == flag or token.startswith(flag + "=") for token in argv for flag in action.option_strings)
