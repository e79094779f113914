"""Files on disk: atomic writes and content hashes, the one implementation of each.

A write goes to a temporary file in the target's folder, is flushed to disk (``fsync``), renamed over the
target (``os.replace``, atomic on POSIX and Windows), and the folder entry is flushed too. A reader, or a run
killed halfway and resumed, therefore sees the old file or the new one, never half of one, even after a power
loss. The temporary file is removed when the write fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

BLOCK_SIZE = 1 << 20


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; some file systems (and Windows) cannot open a folder, which is fine.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic_with(path: str | Path, write: Callable[[str], None]) -> None:
    """Writes ``path`` through ``write(tmp_path)`` (a writer that takes a file name: ``pq.write_table``,
    ``fig.savefig``...) into a temporary file in the same folder, fsyncs, then renames it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Writes ``data`` (text as UTF-8) to ``path`` atomically."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    write_atomic_with(path, lambda tmp: Path(tmp).write_bytes(payload))


def write_json_atomic(path: str | Path, data: Any) -> None:
    """``data`` as indented UTF-8 JSON with a final newline, written atomically."""
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def update_from_file(digest: Any, path: str | Path) -> None:
    """Feeds the bytes of ``path`` to a ``hashlib`` object, a block at a time (files may be large)."""
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK_SIZE), b""):
            digest.update(block)


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    update_from_file(digest, path)
    return digest.hexdigest()
