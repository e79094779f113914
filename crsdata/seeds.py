"""Seeds derived from named parts: the one way crsdata turns (run seed, dialogue, turn, attempt...) into a seed."""

from __future__ import annotations

import hashlib


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (a purpose label, run seed, index, turn, attempt...).

    Stable across processes and Python versions, unlike ``hash()``. The parts are joined by the unit separator
    (``\\x1f``), which no id or number contains, so ``("a:1", 2)`` and ``("a", "1:2")`` give different seeds;
    63 bits so that the seed fits a signed 64-bit integer (torch, numpy, parquet ``int64``).
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF
