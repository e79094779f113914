"""Reading source files with errors that say where: file, line or record, field.

Builders read through these helpers so that a truncated JSON line, a file that is not UTF-8 or a missing
field always produce the same kind of :class:`~crsdata.errors.BadInputError`.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crsdata.errors import BadInputError, SkipLog


def read_text(path: str | Path) -> str:
    """The whole file as UTF-8 text; a decoding error names the line and byte offset."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise BadInputError(
            path, f"line {line}", "", f"not UTF-8 (byte {err.start}: {err.reason})", "not-utf8"
        ) from None


def iter_lines(path: str | Path, skip: SkipLog) -> Iterator[tuple[int, str]]:
    """Yields ``(line number, text)`` of a UTF-8 file.

    A file that is not UTF-8 is decoded line by line, so that one bad byte costs one record: each line that
    does not decode goes through ``skip`` (reason ``not-utf8``, naming the line and the byte offset in the
    file), and without ``--skip-bad`` the error is the one :func:`read_text` would raise.
    """
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        yield from enumerate(text.splitlines(), start=1)
        return
    offset = 0
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            yield number, line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as err:
            message = f"not UTF-8 (byte {offset + err.start}: {err.reason})"
            skip.handle(BadInputError(path, f"line {number}", "", message, "not-utf8"))
        offset += len(line) + 1


def json_error_message(err: json.JSONDecodeError) -> str:
    """``invalid JSON (Expecting ',' delimiter at column 12)``; json's messages that already end in "at" (such as
    "Unterminated string starting at") get the column without a second "at"."""
    joiner = " column" if err.msg.endswith(" at") else " at column"
    return f"invalid JSON ({err.msg}{joiner} {err.colno})"


def iter_jsonl(path: str | Path, skip: SkipLog) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields ``(line number, object)`` for each non-empty line; bad lines (not UTF-8 included) go through ``skip``."""
    for number, line in iter_lines(path, skip):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            skip.handle(BadInputError(path, f"line {number}", "", json_error_message(err), "invalid-json"))
            continue
        if not isinstance(obj, dict):
            skip.handle(
                BadInputError(
                    path, f"line {number}", "", f"expected a JSON object, got {type(obj).__name__}", "wrong-type"
                )
            )
            continue
        yield number, obj


def read_json(path: str | Path) -> Any:
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise BadInputError(path, f"line {err.lineno}", "", json_error_message(err), "invalid-json") from None


def read_tsv(path: str | Path) -> list[dict[str, str]]:
    """Rows of a tab-separated file with a header line, as dicts; ``line`` holds the 1-based line number."""
    text = read_text(path)
    reader = csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    rows = []
    for row in reader:
        row["line"] = str(reader.line_num)
        rows.append(row)
    return rows


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "an object",
    bool: "a boolean",
}


def require(obj: dict[str, Any], field: str, kind: type | tuple[type, ...], path: str | Path, record: str) -> Any:
    """``obj[field]`` if present and of ``kind``, else a :class:`BadInputError` naming the field."""
    if field not in obj or obj[field] is None:
        raise BadInputError(path, record, field, "missing required field", "missing-field")
    value = obj[field]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; a JSON true must not pass where a number is required.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise BadInputError(path, record, field, f"expected {wanted}, got {type(value).__name__}", "wrong-type")
    return value
