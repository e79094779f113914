"""A source built without ``--catalog`` gives personas that want only a decade; ``simulate interplay`` and
``replay`` refuse it in one line naming ``--catalog`` (before any model loads), and accept the same folder once
``--catalog`` is given. On the first dialogues of ReDial's official test file."""

from __future__ import annotations

from pathlib import Path

import pytest

from crsdata.catalog import load_catalog
from crsdata.cli import main
from crsdata.simulate.interplay import InterplayOptions, InterplaySimulation, has_facts
from crsdata.simulate.persona import build_persona, catalog_row

REDIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "redial"
ID2INFO = REDIAL / "redial__id2info.json"


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 official test dialogues built by `crsdata build redial` with no catalog."""
    folder = tmp_path_factory.mktemp("redial-bare")
    lines = (REDIAL / "official" / "test_data.jsonl").read_text(encoding="utf-8").splitlines()[:20]
    (folder / "test_data.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["build", "redial", "--input", str(folder / "test_data.jsonl"), "--out", str(folder / "built")]) == 0
    return folder / "built"


def _error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"crsdata {command}: error: "), lines
    return lines[0]


def test_the_bare_folder_really_describes_targets_by_decade_only(bare: Path) -> None:
    from datasets import load_dataset

    records = load_dataset(str(bare), "dialogues", split="test").to_list()
    catalog = load_catalog([], default_folder=bare)
    assert catalog is not None
    rows = [catalog_row(catalog, t["item_id"]) for r in records for t in r["target_items"]]
    assert rows and not any(has_facts(row) for row in rows)
    persona = build_persona(next(r for r in records if r["target_items"]), catalog)
    assert persona.target_attributes.startswith("A movie from the ")


@pytest.mark.parametrize("command", ["simulate", "replay"])
def test_a_source_without_catalog_facts_is_refused_naming_the_option(bare, tmp_path, capsys, command):
    args = ["--source", str(bare), "--out", str(tmp_path / "out"), "--n", "2", "--no-progress"]
    argv = ["simulate", "interplay", *args] if command == "simulate" else ["replay", *args]
    assert main(argv) == 1
    line = _error_line(capsys, command)
    assert "--catalog" in line and "20 records" in line and "A movie from the 2000s." in line
    assert not (tmp_path / "out").exists()


def test_the_same_folder_with_a_catalog_is_accepted(bare: Path) -> None:
    options = InterplayOptions(catalog=[ID2INFO])
    source = InterplaySimulation.load_source(str(bare), None, options)
    assert len(source.records) == 20
