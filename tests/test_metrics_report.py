"""``python -m crsdata.metrics.report``: finds the shared data through --data (or the current folder), never
through where the module is installed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crsdata.metrics import report

DATA = Path(os.environ.get("CRSDATA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_data = pytest.mark.skipif(not (DATA / "redial").is_dir(), reason=f"shared data not found at {DATA}")


def test_default_is_relative_to_the_current_folder() -> None:
    assert report.DEFAULT_DATA == Path("..") / "shared" / "data"
    assert "site-packages" not in str(report.DEFAULT_DATA)


def test_missing_data_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--data", str(tmp_path / "nowhere"), "--no-match"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "is not a folder" in err and "Traceback" not in err
    (tmp_path / "redial").mkdir()
    with pytest.raises(SystemExit):
        report.main(["--data", str(tmp_path), "--no-match"])
    assert "lacks recllmsim/LLM_agent_user" in capsys.readouterr().err


@needs_data
def test_runs_on_the_shared_data(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # --data, not the current folder, says where the data is
    assert report.main(["--data", str(DATA), "--no-match", "--k", "1,10"]) == 0
    out = capsys.readouterr().out
    assert "Dist-4 (distinct / all 4-grams)      0.5029" in out and "ReDial test turns (iEvaLM, 3,341)" in out
