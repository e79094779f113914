"""RecLLMSim task scenarios: templates with variables, the xlsx converter, and the profile pool.

RecLLMSim (Apache-2.0, https://github.com/wzf2000/RecLLMSim) describes each task with a template such as
"You are planning a [DURATION]-long trip [TIME], [TYPE]. ..." and lists the options of every variable in an
xlsx sheet (columns Type, Prompt, Key, Option1..4). A scenario's task descriptions are all the combinations of
its variables' options, rendered into the template.

The template language, as the sheets use it:

- ``[KEY]`` is replaced by the chosen option of variable ``KEY``; an option may itself contain placeholders
  (the restaurant's ``TIME`` option mentions ``[PLACE]``), which are resolved in turn.
- ``[KEY:{"a": "x", "b": "y"}]`` is a lookup: it becomes ``x`` when ``KEY`` was set to ``a``. The map is JSON
  and is parsed with :func:`json.loads`, never evaluated.

We keep that language unchanged in the committed YAML files (``crsdata/simulate/scenarios/*.yaml``), so a
converted file can be checked line by line against its sheet. Convert a sheet with::

    python -m crsdata.simulate.scenarios convert task_context_en.xlsx task_context_en.yaml
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crsdata.errors import BadInputError

SCENARIO_DIR = Path(__file__).with_name("scenarios")
DEFAULT_SCENARIOS = "task_context_new"  # the sheet that covers every task type of the released RecLLMSim data
PROFILE_POOL = SCENARIO_DIR / "profile_pool_en.yaml"

# The nine fields RecLLMSim asks a profile generator to fill, in its order. Parsing accepts them in any order.
PROFILE_FIELDS: tuple[str, ...] = (
    "Gender",
    "Age",
    "Personality",
    "Occupation",
    "Daily Interests and Hobbies",
    "Travel Habits",
    "Dining Preferences",
    "Spending Habits",
    "Other Aspects",
)

ATTRIBUTION = """\
Converted from the RecLLMSim scenario data ({source}) by `python -m crsdata.simulate.scenarios convert`.
RecLLMSim: https://github.com/wzf2000/RecLLMSim (RecUserSim/data/), Copyright the RecLLMSim authors,
licensed under the Apache License 2.0 (http://www.apache.org/licenses/LICENSE-2.0). The text is unchanged;
only the layout differs (one scenario per entry, variables with their options).
Template language: [KEY] is replaced by the option of variable KEY; [KEY:{{"option": "text"}}] looks up the
option chosen for KEY in a JSON map."""

_KEY = re.compile(r"[A-Z][A-Z0-9_]*")
_DOUBLE_STOP = re.compile(r"(?<!\.)\.\.(?!\.)")


@dataclass
class Scenario:
    """One task type: a template and its variables (name -> options, in sheet order)."""

    type: str
    template: str
    variables: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskDescription:
    """One rendered combination: the task type, the text the user simulator gets, and the options chosen."""

    type: str
    text: str
    variables: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        return self.type + ":" + ",".join(f"{k}={v}" for k, v in self.variables)


# ---------------------------------------------------------------------------------------------------------
# Template rendering


@dataclass
class _Placeholder:
    start: int
    end: int  # index after the closing bracket
    key: str
    mapping: dict[str, str] | None


def _placeholders(text: str, where: str) -> list[_Placeholder]:
    """Finds ``[KEY]`` and ``[KEY:{json}]`` in ``text``. Brackets that do not start a placeholder (plain prose
    like "[note]" in lower case) are left alone; a lookup whose JSON does not parse is an error."""
    found = []
    pos = 0
    decoder = json.JSONDecoder()
    while (start := text.find("[", pos)) != -1:
        match = _KEY.match(text, start + 1)
        if not match:
            pos = start + 1
            continue
        after = match.end()
        if text.startswith("]", after):
            found.append(_Placeholder(start, after + 1, match.group(), None))
            pos = after + 1
            continue
        if text.startswith(":", after):
            try:
                mapping, json_end = decoder.raw_decode(text, after + 1)
            except json.JSONDecodeError as err:
                raise BadInputError(
                    where, match.group(), "", f"lookup map is not valid JSON ({err.msg})", "bad-template"
                ) from None
            if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
                raise BadInputError(
                    where, match.group(), "", "lookup map must be a JSON object of strings", "bad-template"
                )
            if not text.startswith("]", json_end):
                raise BadInputError(where, match.group(), "", "lookup map is not followed by ']'", "bad-template")
            found.append(_Placeholder(start, json_end + 1, match.group(), mapping))
            pos = json_end + 1
            continue
        pos = start + 1
    return found


def render(text: str, choice: dict[str, str], where: str = "<template>", _depth: int = 0) -> str:
    """``text`` with every placeholder replaced according to ``choice`` (variable -> chosen option)."""
    if _depth > 10:
        # Options that mention each other would loop forever; the sheets nest at most two levels.
        raise BadInputError(where, "", "", "placeholders nest more than 10 levels (a cycle?)", "bad-template")
    out = []
    pos = 0
    for ph in _placeholders(text, where):
        out.append(text[pos : ph.start])
        if ph.key not in choice:
            raise BadInputError(
                where, ph.key, "", f"placeholder [{ph.key}] names no variable of this scenario", "bad-template"
            )
        value = choice[ph.key]
        if ph.mapping is not None:
            if value not in ph.mapping:
                raise BadInputError(
                    where, ph.key, "", f"lookup for [{ph.key}] has no entry for option {value!r}", "bad-template"
                )
            value = ph.mapping[value]
        out.append(render(value, choice, where, _depth + 1))
        pos = ph.end
    out.append(text[pos:])
    return "".join(out)


def task_descriptions(scenarios: list[Scenario]) -> list[TaskDescription]:
    """Every combination of every scenario's options, rendered, in a fixed order (scenario order, then the
    options in sheet order with the last variable varying fastest). Combinations that render to the same
    text (a variable the chosen options never mention) are kept once, so no task is over-sampled."""
    out: list[TaskDescription] = []
    for scenario in scenarios:
        seen: set[str] = set()
        names = list(scenario.variables)
        for combo in itertools.product(*(scenario.variables[n] for n in names)):
            choice = dict(zip(names, combo, strict=True))
            where = f"scenario {scenario.type!r}"
            # A template ending a sentence after an option that already ends with one gives "..": tidy it.
            text = _DOUBLE_STOP.sub(".", render(scenario.template, choice, where))
            if text in seen:
                continue
            seen.add(text)
            rendered = tuple((name, render(value, choice, where)) for name, value in choice.items())
            out.append(TaskDescription(scenario.type, text, rendered))
    return out


# ---------------------------------------------------------------------------------------------------------
# Reading and writing scenario files


def _check(scenarios: list[Scenario], where: str) -> None:
    """Fails early, naming the scenario, when a template cannot render (so a bad sheet never reaches a run)."""
    for scenario in scenarios:
        if not scenario.template.strip():
            raise BadInputError(where, f"scenario {scenario.type!r}", "template", "empty template", "bad-template")
        for name, options in scenario.variables.items():
            if not options:
                raise BadInputError(
                    where, f"scenario {scenario.type!r}", name, "variable has no options", "bad-template"
                )
    task_descriptions(scenarios)  # renders every combination; raises on unknown or unmapped placeholders


def load_scenarios(path: str | Path | None = None) -> list[Scenario]:
    """Scenarios from a converted YAML file; ``None`` or a bare name loads a packaged file."""
    path = Path(path or DEFAULT_SCENARIOS)
    if not path.suffix and len(path.parts) == 1:  # a bare name such as "task_context_en" is a packaged file
        path = SCENARIO_DIR / f"{path}.yaml"
    if not path.is_file():
        packaged = ", ".join(sorted(p.stem for p in SCENARIO_DIR.glob("task_context_*.yaml")))
        raise BadInputError(path, "", "", f"no such scenario file (packaged: {packaged})", "missing-file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise BadInputError(path, "", "", f"invalid YAML ({err})", "invalid-yaml") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        raise BadInputError(path, "", "scenarios", "expected a mapping with a 'scenarios' list", "wrong-type")
    scenarios = []
    for i, entry in enumerate(data["scenarios"]):
        record = f"scenario {i}"
        if not isinstance(entry, dict):
            raise BadInputError(path, record, "", "expected a mapping", "wrong-type")
        for key in ("type", "template"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise BadInputError(path, record, key, "missing or not a string", "missing-field")
        variables = entry.get("variables") or {}
        if not isinstance(variables, dict) or not all(
            isinstance(opts, list) and all(isinstance(o, str) for o in opts) for opts in variables.values()
        ):
            raise BadInputError(
                path, record, "variables", "expected a mapping of name -> list of strings", "wrong-type"
            )
        scenarios.append(Scenario(entry["type"], entry["template"], {str(k): list(v) for k, v in variables.items()}))
    _check(scenarios, str(path))
    return scenarios


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a number typed into an option cell ("3") comes back from openpyxl as 3.0
    return str(value).strip()


def read_xlsx(path: str | Path) -> list[Scenario]:
    """Scenarios from a RecLLMSim sheet. A row with a Type starts a scenario (its Prompt is the template);
    rows with only a Key add variables to it; blank rows are skipped. Errors name the row and column."""
    import openpyxl

    path = Path(path)
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises several unrelated types for a file that is not a workbook
        raise BadInputError(path, "", "", f"cannot open as an xlsx workbook ({err})", "not-xlsx") from None
    try:
        rows = list(workbook.worksheets[0].iter_rows(values_only=True))
    finally:
        workbook.close()
    if not rows:
        raise BadInputError(path, "row 1", "", "empty sheet", "empty")
    header = [_cell(c) for c in rows[0]]
    for needed in ("Type", "Prompt", "Key", "Option1"):
        if needed not in header:
            raise BadInputError(path, "row 1", needed, f"missing column (header is {header})", "missing-field")
    col = {name: header.index(name) for name in header if name}
    option_cols = [col[name] for name in header if re.fullmatch(r"Option\d+", name)]

    scenarios: list[Scenario] = []
    for number, row in enumerate(rows[1:], start=2):
        cells = [_cell(c) for c in row] + [""] * (len(header) - len(row))
        kind, prompt, key = cells[col["Type"]], cells[col["Prompt"]], cells[col["Key"]]
        options = [cells[i] for i in option_cols if cells[i]]
        if not any(cells):
            continue
        if kind:
            if not prompt:
                raise BadInputError(
                    path, f"row {number}", "Prompt", f"scenario {kind!r} has no prompt", "missing-field"
                )
            scenarios.append(Scenario(kind, prompt))
        elif prompt:
            raise BadInputError(path, f"row {number}", "Type", "a prompt without a task type", "missing-field")
        if not key:
            if options:
                raise BadInputError(path, f"row {number}", "Key", "options without a variable name", "missing-field")
            continue
        if not scenarios:
            raise BadInputError(
                path, f"row {number}", "Key", "a variable before the first scenario row", "missing-field"
            )
        if not _KEY.fullmatch(key):
            raise BadInputError(
                path, f"row {number}", "Key", f"{key!r} is not an upper-case variable name", "bad-template"
            )
        if not options:
            raise BadInputError(path, f"row {number}", "Option1", f"variable {key} has no options", "missing-field")
        current = scenarios[-1]
        if key in current.variables:
            raise BadInputError(
                path, f"row {number}", "Key", f"variable {key} defined twice in {current.type!r}", "duplicate"
            )
        current.variables[key] = options
    if not scenarios:
        raise BadInputError(path, "", "Type", "no scenario rows", "empty")
    _check(scenarios, str(path))
    return scenarios


def dump_scenarios(scenarios: list[Scenario], source: str) -> str:
    """The YAML text of a converted sheet, attribution first."""
    header = "\n".join("# " + line if line else "#" for line in ATTRIBUTION.format(source=source).splitlines())
    body = {
        "source": source,
        "scenarios": [{"type": s.type, "template": s.template, "variables": s.variables} for s in scenarios],
    }
    return header + "\n" + yaml.dump(body, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000)


def convert(xlsx: str | Path, out: str | Path) -> list[Scenario]:
    """Converts one sheet to YAML, checks that the YAML reads back to the same scenarios, and writes it."""
    scenarios = read_xlsx(xlsx)
    text = dump_scenarios(scenarios, Path(xlsx).name)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    if load_scenarios(out) != scenarios:  # guards against YAML quoting surprises in long prompts
        raise RuntimeError(f"{out}: YAML does not read back to the converted scenarios")
    return scenarios


# ---------------------------------------------------------------------------------------------------------
# User profiles


def parse_profile(text: str) -> dict[str, str] | None:
    """The nine profile fields from text like "1. Gender: Male" (numbering, bullets, bold and case are
    forgiven), or ``None`` when a field is missing or empty or the age is not a plausible number."""
    found: dict[str, str] = {}
    lookup = {f.lower(): f for f in PROFILE_FIELDS}
    lookup.update({"hobbies": "Daily Interests and Hobbies", "interests and hobbies": "Daily Interests and Hobbies"})
    for line in text.splitlines():
        line = line.strip().strip("*").strip()
        match = re.match(r"^(?:\d+[.)]\s*|[-*•]\s*)?\**([A-Za-z][A-Za-z &]+?)\**\s*[:：]\s*(.+)$", line)
        if not match:
            continue
        name = lookup.get(re.sub(r"\s+", " ", match.group(1).strip().lower()))
        value = match.group(2).strip().strip("*").strip()
        if name and value and name not in found:
            found[name] = value
    if len(found) != len(PROFILE_FIELDS):
        return None
    age = re.match(r"^\d{1,3}", found["Age"])
    if not age or not 12 <= int(age.group()) <= 100:
        return None
    return found


def format_profile(fields: dict[str, str]) -> str:
    """The canonical profile text: numbered lines in RecLLMSim's field order (as in its pool)."""
    return "\n".join(f"{i}. {name}: {fields[name]}" for i, name in enumerate(PROFILE_FIELDS, start=1))


def parse_pool_text(text: str, where: str = "<pool>") -> list[str]:
    """Profiles from RecLLMSim's pool format: blocks separated by blank lines, each one parsable profile."""
    profiles = []
    for number, block in enumerate(re.split(r"\n\s*\n", text.strip()), start=1):
        fields = parse_profile(block)
        if fields is None:
            raise BadInputError(where, f"profile {number}", "", "not a complete nine-field profile", "bad-profile")
        profiles.append(format_profile(fields))
    return profiles


def load_profiles(path: str | Path | None = None) -> list[str]:
    """The packaged pool of 100 RecLLMSim profiles, or a pool in the same format (.txt) or as YAML."""
    path = Path(path) if path else PROFILE_POOL
    if not path.is_file():
        raise BadInputError(path, "", "", "no such profile pool", "missing-file")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(text)
        if not isinstance(data, dict) or not isinstance(data.get("profiles"), list):
            raise BadInputError(path, "", "profiles", "expected a mapping with a 'profiles' list", "wrong-type")
        return parse_pool_text("\n\n".join(str(p) for p in data["profiles"]), str(path))
    return parse_pool_text(text, str(path))


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings as literal blocks, so a profile reads in the file as it reads in the pool."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not value.endswith((" ", "\t")) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def convert_pool(txt: str | Path, out: str | Path) -> list[str]:
    """Packages a pool text file as YAML with the attribution header."""
    profiles = parse_pool_text(Path(txt).read_text(encoding="utf-8"), str(txt))
    header = "\n".join(
        "# " + line if line else "#"
        for line in (
            f"User profiles from RecLLMSim's pool ({Path(txt).name}), {len(profiles)} profiles written with an LLM by\n"
            "the RecLLMSim authors. RecLLMSim: https://github.com/wzf2000/RecLLMSim (RecUserSim/data/pool/),\n"
            "Copyright the RecLLMSim authors, licensed under the Apache License 2.0 (http://www.apache.org/licenses/LICENSE-2.0).\n"
            "The profile text is unchanged; only the layout differs (a YAML list)."
        ).splitlines()
    )
    body = yaml.dump(
        {"source": Path(txt).name, "profiles": profiles},
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=10_000,
    )
    Path(out).write_text(header + "\n" + body, encoding="utf-8")
    return profiles


# ---------------------------------------------------------------------------------------------------------
# Command line: python -m crsdata.simulate.scenarios convert|convert-pool|show


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crsdata.simulate.scenarios", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("convert", help="convert a RecLLMSim scenario sheet (xlsx) to YAML")
    p.add_argument("xlsx", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("convert-pool", help="package a RecLLMSim profile pool (txt) as YAML")
    p.add_argument("txt", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("show", help="print the task descriptions a scenario file expands to")
    p.add_argument("yaml", nargs="?", default=None, help=f"a YAML file or packaged name (default {DEFAULT_SCENARIOS})")
    args = parser.parse_args(argv)
    try:
        if args.command == "convert":
            scenarios = convert(args.xlsx, args.out)
            print(f"{args.out}: {len(scenarios)} scenarios, {len(task_descriptions(scenarios))} task descriptions")
        elif args.command == "convert-pool":
            print(f"{args.out}: {len(convert_pool(args.txt, args.out))} profiles")
        else:
            for task in task_descriptions(load_scenarios(args.yaml)):
                print(f"[{task.type}] {task.text}\n")
    except BadInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
