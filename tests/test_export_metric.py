"""``crsdata export-metric``: every metric module exports to a folder that ``evaluate.load`` runs where crsdata
cannot be imported, with the numbers of its examples.json; the export follows imports generically and refuses
what a metric Space could not install."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from crsdata import export_metric as exporter
from crsdata.cli import main
from crsdata.export_metric import ExportError, export_metric, mismatches, resolve_name, run_isolated

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.name for p in (ROOT / "metrics").iterdir() if (p / f"{p.name}.py").is_file())


def crsdata_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "crsdata":
            found.append(node.module)
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "crsdata"]
    return found


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("exported")
    return {name: export_metric(ROOT / "metrics" / name, out / name) for name in MODULES}


def test_every_module_gives_its_examples_numbers_without_crsdata(exported: dict[str, Path]) -> None:
    """evaluate.load(exported folder) in a process where importing crsdata fails, for every metric module; the
    unexported source folder is the control: it must fail there for the lack of crsdata."""
    assert len(MODULES) >= 5
    control = ROOT / "metrics" / "distinct_n"
    report = run_isolated([*exported.values(), control])
    assert report["crsdata_importable"] is False
    for name, folder in exported.items():
        entry = report["folders"][str(folder)]
        assert entry["error"] is None, entry["error"]
        examples = json.loads((folder / "examples.json").read_text(encoding="utf-8"))
        assert [c["name"] for c in entry["cases"]] == [c["name"] for c in examples] and examples, name
        assert mismatches(folder, entry) == [], name
        assert entry["app"] == "Blocks", name
    # evaluate checks the module's library imports first and asks for crsdata by name.
    assert "install the following dependencies['crsdata']" in report["folders"][str(control)]["error"]


def test_export_layout(exported: dict[str, Path]) -> None:
    from evaluate.loading import get_imports

    for name, folder in exported.items():
        meta = json.loads((folder / "crsdata.json").read_text(encoding="utf-8"))
        assert meta["kind"] == "space" and meta["module"] == name and meta["version"]
        for file in (f"{name}.py", "app.py", "README.md", "examples.json", "requirements.txt"):
            assert (folder / file).is_file(), (name, file)
        assert sorted(meta["vendored"].values()) == sorted(p.name for p in folder.glob("crsdata_*.py"))
        for path in folder.glob("*.py"):
            assert crsdata_imports(path) == [], path
        requirements = (folder / "requirements.txt").read_text(encoding="utf-8").splitlines()
        assert not [r for r in requirements if r.lower().startswith("crsdata")], requirements
        assert "evaluate==0.4.6" in requirements
        # evaluate copies exactly the files the module imports itself (its own parser says which): every copy
        # the module's code reaches through relative imports must be among them.
        copied = {imported for kind, imported, _, _ in get_imports(str(folder / f"{name}.py")) if kind == "internal"}
        assert _reached_copies(folder / f"{name}.py") <= copied, name


def _reached_copies(module: Path) -> set[str]:
    """The sibling files a module reaches through relative imports, transitively."""
    reached: set[str] = set()
    frontier = [module]
    while frontier:
        for node in ast.walk(ast.parse(frontier.pop().read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module not in reached:
                reached.add(node.module)
                frontier.append(module.parent / f"{node.module}.py")
    return reached


class _DropCrsdataImports(ast.NodeTransformer):
    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST | None:
        module = node.module or ""
        if module.split(".")[0] == "crsdata" or (node.level == 1 and module.startswith("crsdata_")):
            return None
        return node


def _code_without_crsdata_imports(path: Path) -> str:
    return ast.dump(_DropCrsdataImports().visit(ast.parse(path.read_text(encoding="utf-8"))))


def test_copies_are_the_original_code(exported: dict[str, Path]) -> None:
    """One implementation: a copy is its crsdata module's code, only the crsdata imports differ."""
    for folder in exported.values():
        meta = json.loads((folder / "crsdata.json").read_text(encoding="utf-8"))
        for module, file in meta["vendored"].items():
            original = exporter._module_path(module)
            assert (folder / file).read_text(encoding="utf-8").startswith(f"# Copied from {module} ")
            assert _code_without_crsdata_imports(folder / file) == _code_without_crsdata_imports(original), file


def test_names_are_followed_through_package_reexports() -> None:
    module, attr = resolve_name("crsdata.metrics", "distinct_n_scores")
    assert module.startswith("crsdata.metrics.") and attr == "distinct_n_scores"
    defined = exporter._defined_names(ast.parse(exporter._module_path(module).read_text(encoding="utf-8")))
    assert "distinct_n_scores" in defined
    assert resolve_name("crsdata.metrics", "common") == ("crsdata.metrics.common", None)
    with pytest.raises(ExportError, match="has no name 'no_such_metric'"):
        resolve_name("crsdata.metrics", "no_such_metric")


def _metric_folder(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "probe"
    folder.mkdir(parents=True)
    (folder / "probe.py").write_text(body, encoding="utf-8")
    return folder


def test_function_level_imports_and_aliases_are_rewritten(tmp_path: Path) -> None:
    source = _metric_folder(
        tmp_path,
        "from crsdata.metrics import MetricError as Failure\n\n\ndef score(xs):\n"
        "    from crsdata.metrics import ranking_metrics\n\n    return ranking_metrics, Failure\n",
    )
    out = export_metric(source, tmp_path / "exported" / "probe")
    text = (out / "probe.py").read_text(encoding="utf-8")
    assert "from .crsdata_metrics_common import MetricError as Failure\n" in text
    assert "    from .crsdata_metrics_ranking import ranking_metrics\n" in text
    assert crsdata_imports(out / "probe.py") == []


def test_refuses_what_a_space_cannot_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ExportError, match=r"probe\.py:1: imports trl \(package trl\), which a metric Space"):
        export_metric(_metric_folder(tmp_path / "a", "import trl\n"), tmp_path / "out-a")
    with pytest.raises(ExportError, match=r"probe\.py:2: imports no_such_package_xyz, which is not installed"):
        export_metric(_metric_folder(tmp_path / "b", "import os\nimport no_such_package_xyz\n"), tmp_path / "out-b")
    with pytest.raises(ExportError, match="'import crsdata.metrics' cannot be exported"):
        export_metric(_metric_folder(tmp_path / "c", "import crsdata.metrics\n"), tmp_path / "out-c")
    # The rule covers the copied crsdata modules too, not only the module's own imports.
    monkeypatch.setattr(exporter, "_space_distributions", lambda: {"evaluate", "gradio", "datasets"})
    with pytest.raises(ExportError, match=r"crsdata/metrics/\w+\.py:\d+: imports \w+ .*which a metric Space"):
        export_metric(ROOT / "metrics" / "distinct_n", tmp_path / "out-d")
    assert not (tmp_path / "out-d").exists()


def test_export_replaces_an_earlier_export_only(tmp_path: Path) -> None:
    out = export_metric(ROOT / "metrics" / "sr_et_fr", tmp_path / "sr_et_fr", version="1.2.3")
    (out / "stale.txt").write_text("from an older export")
    export_metric(ROOT / "metrics" / "sr_et_fr", out, version="1.2.4")
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "crsdata.json").read_text())["version"] == "1.2.4"
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match="is not an earlier metric export"):
        export_metric(ROOT / "metrics" / "sr_et_fr", other)
    assert (other / "mine.txt").read_text() == "keep me"


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export-metric", "ranking", str(tmp_path / "ranking"), "--version", "0.2.0"]) == 0
    out = capsys.readouterr().out
    assert "exported" in out and "  ranking.py" in out and "  crsdata_metrics_ranking.py" in out
    assert main(["export-metric", "no_such_metric", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith("crsdata export-metric: error: no_such_metric: no metric module folder") and err.count("\n") == 1
    )


def test_exported_requirements_pin_the_locked_versions(exported: dict[str, Path]) -> None:
    """A metric Space installs from PyPI, not from our hashed lock, so its pins are the lock's versions: the
    source's pins (scripts/pins.py keeps them so) and those added for what the copied modules import (the
    installed versions, which setup.sh takes from the lock)."""
    import re

    from packaging.version import Version

    locked = {}
    for lock in ("lock.txt", "models.txt"):
        for line in (ROOT / "requirements" / lock).read_text(encoding="utf-8").splitlines():
            match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
            if match:
                locked[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    pins = 0
    for name, folder in exported.items():
        for line in (folder / "requirements.txt").read_text(encoding="utf-8").splitlines():
            match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)", line.strip())
            if match:
                package = re.sub(r"[-_.]+", "-", match.group(1)).lower()
                # The public version: PyPI has no local builds such as the lock's torch 2.13.0+cpu.
                assert Version(locked[package]).public == match.group(2), (name, line, locked.get(package))
                pins += 1
    assert pins >= 2 * len(exported)


def test_a_module_exported_under_another_name_loads_from_its_folder_without_crsdata(tmp_path: Path) -> None:
    """evaluate.load("ORG/X") and evaluate.load(".../X") look for X.py: the export names the script after OUT,
    and the Space's app.py loads that file."""
    out = export_metric(ROOT / "metrics" / "ranking", tmp_path / "crs-ranking")
    assert (out / "crs-ranking.py").is_file() and not (out / "ranking.py").exists()
    assert json.loads((out / "crsdata.json").read_text(encoding="utf-8"))["module"] == "crs-ranking"
    assert '"crs-ranking.py"' in (out / "app.py").read_text(encoding="utf-8")
    # The isolated runner calls evaluate.load(str(out)) for a folder named after its module.
    report = run_isolated([out])
    assert report["crsdata_importable"] is False
    entry = report["folders"][str(out)]
    assert entry["error"] is None, entry["error"]
    assert entry["cases"] and mismatches(out, entry) == []
    assert entry["app"] == "Blocks"


@pytest.mark.parametrize("name", ["my.metric", "crsdata_ranking", "-x"])
def test_a_folder_name_that_cannot_name_the_script_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ExportError, match=f"the folder name '{name}' names the module script"):
        export_metric(ROOT / "metrics" / "ranking", tmp_path / name)
