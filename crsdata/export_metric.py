"""Exports a metric module folder (``metrics/<name>/``) so that it works where crsdata is not installed: on a
Hugging Face Space, or after ``evaluate.load`` in a stranger's environment.

Each module is a thin ``evaluate`` wrapper over plain functions in ``crsdata.metrics``, which stay the one
implementation. The export copies the module folder and, beside it, every crsdata module the folder's code
needs, with the imports rewritten to point at those copies::

    OUT/<OUT's name>.py                 the module (evaluate.load(".../X") and evaluate.load("ORG/X") look for
                                        X.py, so its file is named after OUT); ``from crsdata.metrics import f`` becomes
                                        ``from .crsdata_metrics_diversity import f``
    OUT/crsdata_metrics_diversity.py    a copy of crsdata.metrics.diversity (named after its module path, so no
                                        copy can shadow the module or another copy)
    OUT/app.py                          the Space, importing its helpers as ``from crsdata_metrics_widget import ...``
    OUT/README.md, examples.json        as in the source folder
    OUT/requirements.txt                the source's, without crsdata, plus every package the copies import
    OUT/crsdata.json                    {"kind": "space", "version", "module" (OUT's name), "vendored", ...}

How the closure is found, generically (nothing here names a metric or a crsdata module): every ``import`` in the
folder's Python files and, recursively, in the crsdata modules they reach (function bodies included) is read
with ``ast``. A name imported from a package (``from crsdata.metrics import f``) is followed to the module that
defines it through the package's own re-exports, so a package ``__init__`` that imports everything is not copied.

Why the rewritten imports look the way they do: ``evaluate`` copies into its module cache only the files that
the module imports itself, with ``from .x import ...`` at the start of a line, and does not follow the copies'
own imports. So the module gets one such line for every copy it needs indirectly. The Space runs ``app.py`` as
a script, where relative imports fail: its copies are imported by absolute name and must not import other
copies themselves.

What refuses an export (one clear message naming file and line): ``import crsdata.x`` statements (use
``from crsdata.x import ...``), a crsdata name that cannot be found, and a third-party import that is not
installed here or that a metric Space does not install (anything outside crsdata's core dependencies, its
``metrics`` extra and gradio: the simulation and training stack stays out of metric Spaces).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT_PACKAGE = "crsdata"
SCRIPT_FILES = ("app.py",)
# Extras of crsdata whose packages a metric Space may install, and packages it needs beyond them.
SPACE_EXTRAS = ("metrics",)
SPACE_PACKAGES = ("gradio", "evaluate")
EXAMPLES_FILE = "examples.json"
SKIPPED_NAMES = ("__pycache__",)


class ExportError(RuntimeError):
    pass


@dataclass
class _ImportEdit:
    """One ``from crsdata... import`` statement and what it becomes."""

    node: ast.ImportFrom
    # (target module, imported attribute or None for the module itself, bound name)
    targets: list[tuple[str, str | None, str]]


@dataclass
class _Source:
    path: Path
    module: str | None  # the crsdata module this file is, None for the metric folder's own files
    script: bool  # run as a script (app.py): copies are imported by absolute name
    text: str
    tree: ast.Module
    edits: list[_ImportEdit] = field(default_factory=list)
    third_party: list[tuple[str, int]] = field(default_factory=list)  # (top-level name, line)

    @property
    def package(self) -> str | None:
        if self.module is None:
            return None
        return self.module if self.path.name == "__init__.py" else self.module.rpartition(".")[0]


def vendored_file(module: str) -> str:
    """The file name of a copied crsdata module: its dotted path with underscores (crsdata_metrics_common.py)."""
    return module.replace(".", "_") + ".py"


def _spec(module: str):
    try:
        return importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return None


def _module_path(module: str) -> Path:
    spec = _spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ExportError(f"cannot find the source of {module}")
    return Path(spec.origin)


def _is_package(module: str) -> bool:
    spec = _spec(module)
    return spec is not None and spec.submodule_search_locations is not None


def _parse(path: Path) -> tuple[str, ast.Module]:
    text = path.read_text(encoding="utf-8")
    try:
        return text, ast.parse(text, filename=str(path))
    except SyntaxError as err:
        raise ExportError(f"{path}:{err.lineno}: cannot parse: {err.msg}") from None


def _absolute(node: ast.ImportFrom, package: str | None, where: str) -> str | None:
    """The absolute module of a from-import; None for a relative import in a file outside crsdata (a sibling
    file of the metric folder, copied with it)."""
    if node.level == 0:
        return node.module
    if package is None:
        return None
    parts = package.split(".")
    if node.level - 1 >= len(parts):
        raise ExportError(f"{where}:{node.lineno}: relative import beyond the top of {ROOT_PACKAGE}")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _is_crsdata(module: str | None) -> bool:
    return module is not None and (module == ROOT_PACKAGE or module.startswith(ROOT_PACKAGE + "."))


def _defined_names(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return names


def resolve_name(module: str, name: str, where: str = "") -> tuple[str, str | None]:
    """Where ``from module import name`` really comes from: ``(defining module, name)``, or ``(submodule, None)``
    when ``name`` is a submodule. A package's re-exports (its ``__init__``'s from-imports) are followed."""
    if not _is_package(module):
        return module, name
    init = _module_path(module)
    _, tree = _parse(init)
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            source = _absolute(node, module, str(init))
            for alias in node.names:
                if (alias.asname or alias.name) == name and _is_crsdata(source):
                    return resolve_name(source, alias.name, where)
    if name in _defined_names(tree):
        return module, name
    if _spec(f"{module}.{name}") is not None:
        return f"{module}.{name}", None
    raise ExportError(f"{where}: {module} has no name {name!r}")


def _analyse(source: _Source) -> None:
    where = str(source.path)
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_crsdata(alias.name):
                    raise ExportError(
                        f"{where}:{node.lineno}: 'import {alias.name}' cannot be exported; "
                        f"write 'from {alias.name.rpartition('.')[0] or alias.name} import ...'"
                    )
                source.third_party.append((alias.name.split(".")[0], node.lineno))
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, source.package, where)
            if module is None:
                continue  # a sibling file of the metric folder
            if not _is_crsdata(module):
                if node.level == 0:
                    source.third_party.append((module.split(".")[0], node.lineno))
                continue
            targets = []
            for alias in node.names:
                if alias.name == "*":
                    raise ExportError(f"{where}:{node.lineno}: 'from {module} import *' cannot be exported")
                target, attr = resolve_name(module, alias.name, f"{where}:{node.lineno}")
                targets.append((target, attr, alias.asname or alias.name))
            source.edits.append(_ImportEdit(node, targets))


def _import_lines(edit: _ImportEdit, script: bool) -> list[str]:
    grouped: dict[str, list[tuple[str | None, str]]] = {}
    for target, attr, bound in edit.targets:
        grouped.setdefault(target, []).append((attr, bound))
    lines = []
    for target, names in grouped.items():
        copy = vendored_file(target)[:-3]
        attrs = [a if a == bound else f"{a} as {bound}" for a, bound in names if a is not None]
        if attrs:
            lines.append(f"from {'' if script else '.'}{copy} import {', '.join(attrs)}")
        for attr, bound in names:
            if attr is None:
                lines.append(f"import {copy} as {bound}" if script else f"from . import {copy} as {bound}")
    return lines


def _rewrite(source: _Source, extra_after_imports: list[str], header: str) -> str:
    lines = source.text.splitlines(keepends=True)
    # (start index, end index exclusive, replacement lines), applied from the bottom up.
    changes: list[tuple[int, int, list[str]]] = []
    for edit in source.edits:
        node = edit.node
        first, last = lines[node.lineno - 1], lines[node.end_lineno - 1]
        before, after = first[: node.col_offset], last[node.end_col_offset :]
        if before.strip() or (after.strip() and not after.strip().startswith("#")):
            raise ExportError(f"{source.path}:{node.lineno}: put this import on lines of its own to export it")
        changes.append(
            (node.lineno - 1, node.end_lineno, [before + line + "\n" for line in _import_lines(edit, source.script)])
        )
    if extra_after_imports:
        imports = [n for n in source.tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        at = imports[-1].end_lineno if imports else 0
        changes.append((at, at, [line + "\n" for line in extra_after_imports]))
    for start, end, new in sorted(changes, key=lambda c: (c[0], c[1]), reverse=True):
        lines[start:end] = new
    return header + "".join(lines)


def _space_distributions() -> set[str]:
    """Canonical names of what a metric Space may install: crsdata's core dependencies, its metric extras, and
    :data:`SPACE_PACKAGES`."""
    from packaging.requirements import Requirement

    try:
        requires = importlib.metadata.requires(ROOT_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ExportError("crsdata is not installed as a package here (pip install -e .)") from None
    allowed = {_canonical(name) for name in SPACE_PACKAGES}
    for line in requires:
        requirement = Requirement(line)
        if requirement.marker is None or any(requirement.marker.evaluate({"extra": e}) for e in SPACE_EXTRAS):
            allowed.add(_canonical(requirement.name))
    return allowed


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(line: str) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return _canonical(Requirement(line).name)
    except InvalidRequirement:
        return None  # an option line (-r, --extra-index-url): kept as it is


def _requirements(sources: Iterable[_Source], source_requirements: Path) -> tuple[list[str], list[str]]:
    """(the source's lines without crsdata, pinned lines for what the code imports and the source lacks)."""
    from packaging.version import Version

    kept = []
    if source_requirements.is_file():
        for raw in source_requirements.read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].strip()
            if line and _requirement_name(line) != ROOT_PACKAGE:
                kept.append(line)
    listed = {_requirement_name(line) for line in kept}
    allowed = _space_distributions()
    distributions = importlib.metadata.packages_distributions()
    added: dict[str, str] = {}
    for source in sources:
        for top, line in source.third_party:
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            names = distributions.get(top)
            if not names:
                raise ExportError(
                    f"{source.path}:{line}: imports {top}, which is not installed here, so a published metric "
                    "could not install it either"
                )
            name = _canonical(names[0])
            if name not in allowed:
                raise ExportError(
                    f"{source.path}:{line}: imports {top} (package {names[0]}), which a metric Space does not "
                    f"install: metric code may use crsdata's core dependencies, its {', '.join(SPACE_EXTRAS)} "
                    f"extra and {', '.join(SPACE_PACKAGES)}; keep {top} out of it"
                )
            if name not in listed:
                # The public version: a local label (torch's "+cpu") names a build no package index serves.
                version = Version(importlib.metadata.version(names[0])).public
                added.setdefault(name, f"{names[0]}=={version}")
    return kept, sorted(added.values())


def find_metric_source(name_or_path: str | Path) -> Path:
    """A metric module folder from a path (``metrics/ranking``) or a name (``ranking``), looked up in
    ``./metrics`` and in the ``metrics/`` folder of the checkout crsdata runs from."""
    given = Path(name_or_path)
    candidates = [given]
    if len(given.parts) == 1:
        candidates += [Path("metrics") / given, Path(__file__).resolve().parents[1] / "metrics" / given]
    for folder in candidates:
        if (folder / f"{folder.name}.py").is_file():
            return folder
    tried = ", ".join(map(str, candidates))
    raise ExportError(f"{name_or_path}: no metric module folder (<name>/<name>.py) at {tried}")


def _closure(entries: list[_Source]) -> tuple[dict[str, _Source], set[str]]:
    """Every crsdata module the folder's files need (module name -> its source, imports analysed), and those of
    them that package-context files reach (the module's, as opposed to only the app's)."""
    # Breadth first over crsdata modules.
    vendored: dict[str, _Source] = {}
    queue = list(entries)
    reached_from_module: set[str] = set()
    while queue:
        current = queue.pop(0)
        _analyse(current)
        for edit in current.edits:
            for target, _, _ in edit.targets:
                if current.module is None and not current.script:  # the folder's own package-context files
                    reached_from_module.add(target)
                if target not in vendored:
                    path = _module_path(target)
                    text, tree = _parse(path)
                    vendored[target] = _Source(path, target, False, text, tree)
                    queue.append(vendored[target])
    # Modules reached from a package-context file reach their own imports in package context too.
    frontier = list(reached_from_module)
    while frontier:
        for edit in vendored[frontier.pop()].edits:
            for target, _, _ in edit.targets:
                if target not in reached_from_module:
                    reached_from_module.add(target)
                    frontier.append(target)
    for script in (e for e in entries if e.script):
        for edit in script.edits:
            for target, _, _ in edit.targets:
                if vendored[target].edits:
                    raise ExportError(
                        f"{script.path}:{edit.node.lineno}: {script.path.name} runs as a script and imports "
                        f"{target}, which imports other crsdata modules; a script can only import copies that "
                        "import no other copy"
                    )
    return vendored, reached_from_module


def export_metric(source: str | Path, out: str | Path, *, version: str | None = None) -> Path:
    """Writes the self-contained export of the metric folder ``source`` to ``out`` and returns ``out``.

    ``out`` is replaced if it holds an earlier export, and refused if it holds anything else.
    """
    from crsdata import __version__
    from crsdata.folder_metadata import read_folder_metadata, write_folder_metadata

    source = find_metric_source(source)
    out = Path(out)
    name = source.name
    # evaluate.load("ORG/X") and evaluate.load(".../X") look for X.py: the module script is named after `out`.
    script = out.name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", script) or script.startswith(f"{ROOT_PACKAGE}_"):
        raise ExportError(
            f"{out}: the folder name {script!r} names the module script ({script}.py), so it must be letters, digits, "
            f"'-' and '_' and not start with '{ROOT_PACKAGE}_' (the copies' prefix)"
        )
    if out.exists() and any(out.iterdir()):
        if not (out / "crsdata.json").is_file() or read_folder_metadata(out).get("kind") != "space":
            raise ExportError(f"{out} exists and is not an earlier metric export; choose a new or empty folder")

    files = sorted(
        p
        for p in source.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") or part in SKIPPED_NAMES for part in p.relative_to(source).parts)
        and p.suffix != ".pyc"
    )
    entries = []
    for path in files:
        if path.suffix == ".py":
            text, tree = _parse(path)
            entries.append(_Source(path, None, path.name in SCRIPT_FILES, text, tree))
    vendored, reached_from_module = _closure(entries)

    kept, added = _requirements([*entries, *vendored.values()], source / "requirements.txt")
    # Written beside `out` and renamed into place: a failed export leaves no half folder.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the export is an ordinary folder
    try:
        for path in files:
            relative = path.relative_to(source)
            target = tmp / (f"{script}.py" if relative.as_posix() == f"{name}.py" else relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            entry = next((e for e in entries if e.path == path), None)
            if entry is not None:
                text = _rewrite_entry(_renamed_script(entry, name, script), name, vendored, reached_from_module)
                target.write_text(text, encoding="utf-8")
            elif relative.as_posix() != "requirements.txt":
                shutil.copy2(path, target)
        for module, copy in vendored.items():
            header = f"# Copied from {module} (crsdata {__version__}) by `crsdata export-metric`: edit the original.\n"
            (tmp / vendored_file(module)).write_text(_rewrite(copy, [], header), encoding="utf-8")
        requirements = kept + (["# imported by the copied crsdata modules", *added] if added else [])
        (tmp / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
        write_folder_metadata(
            tmp,
            "space",
            version or __version__,
            module=script,
            vendored={module: vendored_file(module) for module in sorted(vendored)},
            requirements=requirements,
        )
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "export")
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _renamed_script(entry: _Source, name: str, script: str) -> _Source:
    """``entry`` with every string literal ``"<name>.py"`` in a script (app.py loads the module by its file path)
    changed to ``"<script>.py"``, the module's name in the export. Lines keep their number and imports their place."""
    if not entry.script or name == script:
        return entry
    lines = entry.text.splitlines(keepends=True)
    literals = [
        n
        for n in ast.walk(entry.tree)
        if isinstance(n, ast.Constant) and n.value == f"{name}.py" and n.lineno == n.end_lineno
    ]
    for node in sorted(literals, key=lambda n: (n.lineno, n.col_offset), reverse=True):
        line = lines[node.lineno - 1]
        quote = line[node.col_offset]
        lines[node.lineno - 1] = line[: node.col_offset] + f"{quote}{script}.py{quote}" + line[node.end_col_offset :]
    # The tree keeps its import nodes, whose positions did not move: the import rewriting still applies.
    return dataclasses.replace(entry, text="".join(lines))


def _rewrite_entry(entry: _Source, name: str, vendored: dict[str, _Source], reached: set[str]) -> str:
    header = (
        "# Exported by `crsdata export-metric`: the crsdata imports point at the copies beside this file.\n"
        if entry.edits
        else ""
    )
    extra: list[str] = []
    if entry.path.name == f"{name}.py":
        # evaluate copies only the files this module imports at the start of a line; import the rest too.
        direct = {
            target
            for edit in entry.edits
            if edit.node in entry.tree.body
            for target, attr, _ in edit.targets
            if attr is not None
        }
        for module in sorted(reached - direct):
            copy = vendored[module]
            names = _defined_names(copy.tree)
            if not names:
                raise ExportError(f"{copy.path}: defines no name the module could import")
            extra.append(f"from .{vendored_file(module)[:-3]} import {names[0]}")
        if extra:
            # No comment may follow these imports on their line: evaluate reads one as the file's download URL.
            extra.insert(0, "# Copies the ones above import: evaluate copies only the files this module imports.")
    return _rewrite(entry, extra, header)


# ---------------------------------------------------------------------------------------------------------
# Checking an export where crsdata cannot be imported

_ISOLATED_RUNNER = r'''
import importlib.abc, json, runpy, sys, traceback
from pathlib import Path


class NoCrsdata(importlib.abc.MetaPathFinder):
    """Makes crsdata unimportable, whatever sys.path holds: the export must not need it."""

    def find_spec(self, name, path=None, target=None):
        if name == "crsdata" or name.startswith("crsdata."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked for this check)", name=name)
        return None


sys.meta_path.insert(0, NoCrsdata())
try:
    import crsdata  # noqa: F401
    crsdata_importable = True
except ModuleNotFoundError:
    crsdata_importable = False

import evaluate

check_app = sys.argv[1] == "app"
report = {"crsdata_importable": crsdata_importable, "folders": {}}
for folder in map(Path, sys.argv[2:]):
    meta_path = folder / "crsdata.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    name = meta.get("module", folder.name)
    entry = {"module": name, "cases": [], "error": None, "app": None}
    report["folders"][str(folder)] = entry
    try:
        # evaluate.load(folder) looks for <folder name>.py; a folder named otherwise loads by file path.
        module = evaluate.load(str(folder) if folder.name == name else str(folder / f"{name}.py"))
        examples = folder / "examples.json"
        for case in json.loads(examples.read_text(encoding="utf-8")) if examples.is_file() else []:
            result = module.compute(**case["inputs"], **case.get("options", {}))
            entry["cases"].append({"name": case["name"], "result": result})
        if check_app and (folder / "app.py").is_file():
            before = set(sys.modules)
            sys.path.insert(0, str(folder))  # as `python app.py` would
            try:
                scope = runpy.run_path(str(folder / "app.py"), run_name="crsdata_export_check")
            finally:
                sys.path.remove(str(folder))
                for added in set(sys.modules) - before:
                    if getattr(sys.modules[added], "__file__", "") and str(folder) in sys.modules[added].__file__:
                        del sys.modules[added]
            entry["app"] = type(scope.get("demo")).__name__
    except Exception:
        entry["error"] = traceback.format_exc(limit=6)
print("CRSDATA-EXPORT-REPORT " + json.dumps(report, default=float))
'''


def run_isolated(folders: list[str | Path], *, check_app: bool = True, timeout: float = 900) -> dict[str, Any]:
    """Loads each exported folder with ``evaluate.load`` in a fresh Python process in which importing crsdata
    fails, runs its ``examples.json`` cases and (``check_app``) builds its Gradio app without launching it.

    Returns ``{"crsdata_importable": bool, "folders": {folder: {"cases": [{"name", "result"}], "error", "app"}}}``.
    The process gets its own ``HF_HOME`` (evaluate's module cache) and ``CRSDATA_CACHE``.
    """
    with tempfile.TemporaryDirectory(prefix="crsdata-export-check-") as tmp:
        script = Path(tmp) / "run_exported.py"
        script.write_text(_ISOLATED_RUNNER, encoding="utf-8")
        env = {**os.environ, "HF_HOME": str(Path(tmp) / "hf"), "CRSDATA_CACHE": str(Path(tmp) / "cache")}
        env.pop("PYTHONPATH", None)
        done = subprocess.run(
            # -B: no __pycache__ in the checked folders (publish uploads the folder it checked).
            [sys.executable, "-I", "-B", str(script), "app" if check_app else "no-app", *map(str, map(Path, folders))],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    marker = "CRSDATA-EXPORT-REPORT "
    lines = [line for line in done.stdout.splitlines() if line.startswith(marker)]
    if done.returncode != 0 or not lines:
        raise ExportError(f"the isolated check failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(lines[-1][len(marker) :])


def _close(actual: Any, expected: Any, tolerance: float) -> bool:
    if isinstance(expected, float) and isinstance(actual, int | float) and not isinstance(actual, bool):
        return math.isclose(actual, expected, rel_tol=0, abs_tol=tolerance)
    return actual == expected


def mismatches(folder: str | Path, entry: dict[str, Any]) -> list[str]:
    """What in ``entry`` (one folder of :func:`run_isolated`'s report) differs from the folder's examples.json."""
    folder = Path(folder)
    if entry["error"]:
        return [f"{folder}: {entry['error'].strip().splitlines()[-1]}"]
    examples_path = folder / EXAMPLES_FILE
    examples = json.loads(examples_path.read_text(encoding="utf-8")) if examples_path.is_file() else []
    problems = []
    results = {case["name"]: case["result"] for case in entry["cases"]}
    for case in examples:
        result = results.get(case["name"], {})
        for key, expected in case["expected"].items():
            if key not in result or not _close(result[key], expected, case.get("tolerance", 1e-12)):
                problems.append(f"{folder} {case['name']!r}: {key} = {result.get(key)!r}, expected {expected!r}")
    if (folder / "app.py").is_file() and entry.get("app") != "Blocks":
        problems.append(f"{folder}: app.py did not build a gradio Blocks named demo (got {entry.get('app')})")
    return problems


def verify_exported(folder: str | Path) -> None:
    """Raises :class:`ExportError` unless the export gives its examples' numbers and builds its app without
    crsdata."""
    report = run_isolated([folder])
    if report["crsdata_importable"]:
        raise ExportError("the isolated check could still import crsdata; it proves nothing")
    problems = mismatches(folder, report["folders"][str(Path(folder))])
    if problems:
        raise ExportError("the export does not work without crsdata:\n  " + "\n  ".join(problems))
