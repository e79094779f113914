"""The same seed gives byte-identical dialogues across refactors.

A short Interplay run and a short RecLLMSim run, both with the tiny random model through the real command line,
are compared with a golden file made on main before the layout refactor of issue 17 (moved modules, new parsers,
backends built through ``make_backend``). The tiny model writes gibberish, but deterministic gibberish: any change
to prompts, seeds, sampling or the order of calls shows up as a different text.

To remake the golden file after an intended change of the dialogues, run this file with
``CRSDATA_WRITE_GOLDEN=1`` and say in the commit why the dialogues changed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import pytest
from fixtures.simulate_records import CATALOG_FILES, redial_records
from fixtures.tiny_models import widened

from crsdata.build import BuildResult
from crsdata.cli import main
from crsdata.export import export_folder
from crsdata.simulate.scenarios import PROFILE_FIELDS

GOLDEN = Path(__file__).resolve().parent / "data" / "golden_dialogues.json"
VALUES = ["Female", "34", "Curious", "Teacher", "Hiking", "Cycles", "Cooks", "Careful", "Has a dog"]
PROFILE = "\n".join(f"{i}. {name}: {v}" for i, (name, v) in enumerate(zip(PROFILE_FIELDS, VALUES, strict=True), 1))
COMMON = ["--max-new-tokens", "12", "--max-turns", "4", "--batch-size", "2", "--seed", "7", "--no-progress"]
COMMON += ["--threads", "1"]


def _dialogues(folder: Path) -> list[dict]:
    """Every field of every dialogue, as loaded by a consumer (the card's timings are not dialogue content)."""
    # A cache of its own: datasets' shared cache may hand back rows of an earlier session's folder.
    rows = datasets.load_dataset(str(folder), "dialogues", split=None, cache_dir=str(folder.parent / "hf-cache"))
    return [row for split in sorted(rows) for row in rows[split].to_list()]


def _runs(tmp_path: Path, model: Path) -> dict[str, list[dict]]:
    records = redial_records(6)
    for row in records:
        row["split"] = "validation"
    redial = export_folder(BuildResult(source="redial", splits={"validation": records}), tmp_path / "redial")
    models = ["--user-model", str(model), "--recommender-model", str(model)]
    interplay = tmp_path / "interplay"
    code = main(
        ["simulate", "interplay", "--source", str(redial), "--n", "3", "--out", str(interplay), "--infer-actions"]
        + ["--catalog", str(CATALOG_FILES[0])]
        + models
        + COMMON
    )
    assert code == 0
    scenarios = tmp_path / "scenarios.yaml"
    scenarios.write_text(
        "scenarios:\n"
        "- type: recipe planning\n  template: Plan a meal [WHO].\n  variables:\n    WHO: [for one, for two]\n"
    )
    pool = tmp_path / "pool.txt"
    pool.write_text(PROFILE + "\n\n" + PROFILE.replace("Female", "Male"))
    recllmsim = tmp_path / "recllmsim"
    code = main(
        ["simulate", "recllmsim", "--source", str(scenarios), "--profiles", str(pool), "--n", "3"]
        + ["--out", str(recllmsim)]
        + models
        + COMMON
    )
    assert code == 0
    return {"interplay": _dialogues(interplay), "recllmsim": _dialogues(recllmsim)}


def test_the_same_seed_gives_the_same_dialogues_as_before_the_refactor(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = widened(tiny_model_dir, tmp_path / "tiny")
    runs = _runs(tmp_path, model)
    # The model folder's path is the only thing that differs between two sessions; it is not the dialogue.
    text = json.dumps(runs, indent=1, sort_keys=True, ensure_ascii=False).replace(str(model), "TINY_MODEL")
    if os.environ.get("CRSDATA_WRITE_GOLDEN"):
        GOLDEN.write_text(text + "\n", encoding="utf-8")
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} is missing; make it with CRSDATA_WRITE_GOLDEN=1 on main")
    assert sum(len(d["turns"]) for d in runs["interplay"]) > 0, "the interplay run wrote no turn at all"
    assert sum(len(d["turns"]) for d in runs["recllmsim"]) > 0, "the recllmsim run wrote no turn at all"
    assert text + "\n" == GOLDEN.read_text(encoding="utf-8")
