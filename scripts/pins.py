"""Writes the locked versions into the requirements that the Hub installs: the Space's and each metric's.

A Space or a metric folder on the Hub installs from PyPI on another platform, so it cannot use our hashed lock
(``requirements/lock.txt``, torch's CPU build from this disk); its ``name==version`` pins take the lock's
versions instead, so every install path agrees on one set. ``python3 scripts/pins.py`` rewrites them (``lock.sh``
runs it); ``--check`` only lists the pins that differ and exits 1 if any does (tests/test_locked_versions.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKS = [ROOT / "requirements" / name for name in ("lock.txt", "models.txt")]
PINNED_FILES = [ROOT / "spaces" / "playground" / "requirements.txt", *sorted(ROOT.glob("metrics/*/requirements.txt"))]
_LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_PIN = re.compile(r"^(\s*)([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;#]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions() -> dict[str, str]:
    """Canonical package name -> locked version, from every lock file."""
    versions = {}
    for lock in LOCKS:
        for line in lock.read_text(encoding="utf-8").splitlines():
            match = _LOCK_LINE.match(line)
            if match:
                versions[canonical(match.group(1))] = match.group(2)
    return versions


def differences(versions: dict[str, str]) -> list[tuple[Path, int, str, str, str]]:
    """(file, line number, package, pinned version, locked version) for every ``==`` pin that disagrees."""
    found = []
    for path in PINNED_FILES:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            match = _PIN.match(line)
            if (
                match
                and canonical(match.group(2)) in versions
                and match.group(4) != versions[canonical(match.group(2))]
            ):
                found.append((path, number, match.group(2), match.group(4), versions[canonical(match.group(2))]))
    return found


def main(argv: list[str]) -> int:
    versions = locked_versions()
    found = differences(versions)
    for path, number, name, pinned, locked in found:
        print(f"{path.relative_to(ROOT)}:{number}: {name}=={pinned}, the lock has {locked}")
    if "--check" in argv:
        return 1 if found else 0
    for path in {f[0] for f in found}:
        text = path.read_text(encoding="utf-8").splitlines(keepends=True)
        for i, line in enumerate(text):
            match = _PIN.match(line)
            if match and canonical(match.group(2)) in versions:
                start, end = match.span(4)
                text[i] = line[:start] + versions[canonical(match.group(2))] + line[end:]
        path.write_text("".join(text), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
