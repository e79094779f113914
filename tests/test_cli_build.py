"""`crsdata build` and `crsdata info` end to end on the real corpora: what `load_dataset(folder, config)`
returns is exactly what the builder produced, with the schema's features."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import load_dataset

from crsdata.builders import BUILDERS
from crsdata.cli import main
from crsdata.errors import SkipLog
from crsdata.schema import DIALOGUE_FEATURES, ITEM_FEATURES

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}")

ID2INFO = DATA / "redial" / "redial__id2info.json"
MOVIELENS = DATA / "movielens-sample" / "movies_w_keywords.csv"
JOBS = {
    "redial": ([DATA / "redial" / "redial__valid_data.jsonl"], [ID2INFO]),
    "inspired": ([DATA / "inspired" / "dev.tsv", DATA / "inspired" / "test.tsv"], [ID2INFO, MOVIELENS]),
    "recllmsim": ([DATA / "recllmsim"], []),
}
EXPECTED_SPLITS = {
    "redial": {"validation": 1000},
    "inspired": {"validation": 99, "test": 99},
    "recllmsim": {"simulated": 1856, "human": 291, "human_v2": 1833},
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("built")
    for source, (inputs, catalogs) in JOBS.items():
        argv = ["build", source, "--out", str(out / source), "--version", "1.2.0"]
        argv += [a for path in inputs for a in ("--input", str(path))]
        argv += [a for path in catalogs for a in ("--catalog", str(path))]
        assert main(argv) == 0
    return {source: out / source for source in JOBS}


@pytest.mark.parametrize("source", list(JOBS))
def test_folder_loads_with_the_builders_rows_and_features(built: dict[str, Path], source: str) -> None:
    inputs, catalogs = JOBS[source]
    direct = BUILDERS[source]().build(inputs, catalogs=catalogs, skip=SkipLog())
    loaded = load_dataset(str(built[source]), "dialogues")
    assert {split: ds.num_rows for split, ds in loaded.items()} == EXPECTED_SPLITS[source]
    for split, rows in direct.splits.items():
        assert loaded[split].features == DIALOGUE_FEATURES
        # provenance.crsdata_version and everything else round-trip unchanged
        assert loaded[split].to_list() == rows
    if direct.items:
        items = load_dataset(str(built[source]), "items")["train"]
        assert items.features == ITEM_FEATURES
        assert items.to_list() == direct.items


def test_info_prints_counts_and_link_rate(built: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(built["redial"])]) == 0
    out = capsys.readouterr().out
    assert "dataset version 1.2.0" in out
    assert "dialogues                 1,000" in out
    rate = float(out.split("linked to catalog")[1].split("(")[1].split("%")[0])
    assert rate >= 95.0
    assert "adds up" in out and "DOES NOT ADD UP" not in out
    assert main(["info", str(built["inspired"])]) == 0
    out = capsys.readouterr().out
    assert "splits               test=99, validation=99" in out
    assert "end_reasons          accept=196, reject=2" in out


def test_card_reports_link_rate_and_statistics(built: dict[str, Path]) -> None:
    card = (built["inspired"] / "README.md").read_text()
    assert "mentions linked to the catalog" in card and "| dialogues | 198 |" in card
    assert "Dialogue acts" in card and "`recommend`" in card
    recllmsim = (built["recllmsim"] / "README.md").read_text()
    assert "### Intents" in recllmsim and "`Planning`" in recllmsim


def test_bad_input_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "train_data.jsonl"
    bad.write_text('{"conversationId": "1", "messages": [\n')
    assert main(["build", "redial", "--input", str(bad), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "line 1" in err and "invalid JSON" in err
    assert not (tmp_path / "out" / "README.md").exists()


def test_help_reads_like_the_docs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    out = capsys.readouterr().out
    for source in BUILDERS:
        assert source in out
    assert "--skip-bad" in out and "--catalog" in out
