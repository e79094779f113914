"""The install layout: builders/, cards/ and models/ install as crsdata.builders, crsdata.cards and
crsdata.models, never as top-level packages, and no package folder of the repository is left out."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_package_folder_is_listed_under_the_crsdata_namespace() -> None:
    config = _config()
    mapping = {"crsdata": "crsdata", **config["package-dir"]}
    found = set()
    for package, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            if ".venv" in init.parts or "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *relative.parts]) if relative.parts else package)
    assert set(config["packages"]) == found
    assert all(name == "crsdata" or name.startswith("crsdata.") for name in config["packages"])


def test_mapped_folders_import_inside_the_namespace() -> None:
    from crsdata.builders import BUILDERS
    from crsdata.cards import template_path

    assert "redial" in BUILDERS
    assert template_path("dataset").is_file()


def test_every_shipped_adapter_is_package_data() -> None:
    """A named embedded simulator's adapter files go into the wheel (package data), not only into a checkout."""
    from fnmatch import fnmatch

    from crsdata.backends.embedded import EMBEDDED_MODELS

    patterns = _config()["package-data"]["crsdata.models"]
    adapters = [m.adapter for m in EMBEDDED_MODELS.values() if m.adapter]
    assert adapters
    for adapter in adapters:
        files = [p for p in (ROOT / "models" / adapter).rglob("*") if p.is_file()]  # with a decision/ scorer
        assert files, adapter
        for path in files:
            relative = path.relative_to(ROOT / "models").as_posix()
            assert any(fnmatch(relative, pattern) for pattern in patterns), relative
