"""Errors for bad input, and the ledger of what `--skip-bad` skipped.

Every error names the file, the record (line number or record id) and the field, so a user can open the
file and fix it. Skipping is never silent: a :class:`SkipLog` counts each skipped record by reason and its
totals go into the dataset card, so that ``read == kept + skipped`` can be checked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


class BadInputError(ValueError):
    """A record that cannot be read or does not fit the schema.

    ``path`` is the input file, ``record`` the line number (``"line 12"``) or record id, ``field`` the
    offending field (``""`` when the whole record is unreadable), ``reason`` a short machine-friendly
    category used to count skips (``"invalid-json"``, ``"missing-field"``, ...).
    """

    def __init__(self, path: str | Path, record: str, field: str, message: str, reason: str = "invalid") -> None:
        self.path = str(path)
        self.record = str(record)
        self.field = field
        self.message = message
        self.reason = reason
        # Command-line options have no file or record: only the parts that exist are named.
        parts = [part for part in (self.path, self.record) if part]
        if field:
            parts.append(f"field '{field}'" if parts else f"option {field}")
        super().__init__(f"{', '.join(parts)}: {message}" if parts else message)


@dataclass
class SkipLog:
    """Decides what happens to a bad record and remembers it.

    With ``skip_bad=False`` (the default everywhere) the first bad record raises. With ``skip_bad=True``
    it is counted under its reason, the first few errors are kept as examples, and the run goes on.
    """

    skip_bad: bool = False
    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    max_examples: int = 20

    def handle(self, error: BadInputError) -> None:
        if not self.skip_bad:
            raise error
        self.counts[error.reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(str(error))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: SkipLog) -> None:
        self.counts.update(other.counts)
        room = self.max_examples - len(self.examples)
        self.examples.extend(other.examples[: max(room, 0)])

    def as_dict(self) -> dict[str, object]:
        return {"total": self.total, "by_reason": dict(sorted(self.counts.items())), "examples": list(self.examples)}
