"""Atomic writes and file hashes: the one implementation every writer and reader of crsdata uses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from crsdata.fileio import sha256_file, write_atomic, write_atomic_with, write_json_atomic


def test_write_atomic_text_bytes_and_json(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "folder" / "a.txt"
    write_atomic(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    write_json_atomic(tmp_path / "m.json", {"title": "Amélie", "n": 1})
    assert (tmp_path / "m.json").read_text(encoding="utf-8") == '{\n  "title": "Amélie",\n  "n": 1\n}\n'
    assert json.loads((tmp_path / "m.json").read_text(encoding="utf-8")) == {"title": "Amélie", "n": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "m.json"]  # no temporary file left behind


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "shard.parquet"
    write_atomic(target, "old")

    def half_written(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        write_atomic_with(target, half_written)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["shard.parquet"]


def test_sha256_file_reads_in_blocks(tmp_path: Path) -> None:
    data = bytes(range(256)) * 9000  # over two blocks
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
