"""The locked versions (requirements/*.txt, written by scripts/lock.sh): hashed, CPU-only, inside pyproject.toml's
ranges, installed here, and the same as the pins of the requirements that the Hub installs (the Space's and each
metric's)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def entries(path: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of a lock file."""
    found: dict[str, tuple[str, list[str]]] = {}
    name = None
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        if match:
            name = canonical(match.group(1))
            found[name] = (match.group(2), [])
        elif line.strip().startswith("--hash=sha256:") and name:
            found[name][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return found


@pytest.mark.parametrize("lock", ["lock.txt", "models.txt", "olah.txt"])
def test_every_locked_package_has_a_sha256(lock: str) -> None:
    locked = entries(ROOT / "requirements" / lock)
    assert locked
    assert all(len(h) == 1 and re.fullmatch(r"[0-9a-f]{64}", h[0]) for _, h in locked.values()), lock


def test_lock_holds_the_cpu_build_of_torch_and_nothing_of_cuda() -> None:
    locked = entries(LOCK)
    assert locked["torch"][0] == "2.13.0+cpu"
    assert not [n for n in locked if n.startswith(("nvidia-", "cuda-")) or n == "triton"]


def test_lock_satisfies_the_ranges_of_pyproject() -> None:
    """Every dependency of crsdata[dev] (the extras it names, followed) is locked at a version its range allows."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    locked = entries(LOCK)
    todo, seen, checked = ["dev"], set(), 0
    requirements = [Requirement(r) for r in project["dependencies"]]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in extras[extra]:
            requirement = Requirement(line)
            if requirement.name == "crsdata":
                todo += sorted(requirement.extras)
            else:
                requirements.append(requirement)
    for requirement in requirements:
        name = canonical(requirement.name)
        assert name in locked, f"{requirement} is not locked"
        version = Version(locked[name][0])
        assert requirement.specifier.contains(version, prereleases=True), f"lock has {name} {version}: {requirement}"
        checked += 1
    assert checked > 30 and "import-linter" in locked


@pytest.mark.skipif(
    bool(os.environ.get("CRSDATA_CHECK_LATEST")), reason="scripts/check-latest.sh runs the newest versions"
)
def test_this_environment_has_exactly_the_locked_versions() -> None:
    installed = {canonical(d.metadata["Name"]): d.version for d in distributions()}
    locked = {**entries(LOCK), **entries(ROOT / "requirements" / "models.txt")}
    wrong = {n: (v, installed.get(n)) for n, (v, _) in locked.items() if installed.get(n) != v and n != "pip"}
    assert not wrong, f"not the locked versions here (locked, installed): {wrong}; run bash scripts/setup.sh"


def test_space_and_metric_pins_are_the_locked_versions() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "pins.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    space = (ROOT / "spaces" / "playground" / "requirements.txt").read_text(encoding="utf-8")
    assert f"gradio=={entries(LOCK)['gradio'][0]}" in space
