"""Seed derivation: one function for the run engine, the Interplay requests and the persona's picks."""

from __future__ import annotations

import hashlib

from crsdata.seeds import derive_seed
from crsdata.simulate.interplay import request_seed


def _colon_joined(*parts: object) -> int:
    # How the persona and the Interplay request seeds were derived before: parts joined by ":".
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "big")


def test_parts_cannot_run_into_each_other() -> None:
    """Dialogue ids may contain ":" ("redial:123"); joined by ":" two different part lists gave one seed."""
    assert _colon_joined("a:1", 2) == _colon_joined("a", "1:2")
    assert derive_seed("a:1", 2) != derive_seed("a", "1:2")


def test_stable_63_bit_and_used_by_the_simulators() -> None:
    seeds = {derive_seed("dialogue", 1, i) for i in range(2000)}
    assert len(seeds) == 2000 and all(0 <= s < 2**63 for s in seeds)
    # A constant, so that a change of the derivation (which changes every seeded run) cannot pass unnoticed.
    assert derive_seed("dialogue", 1, 0) == derive_seed("dialogue", 1, 0) == DIALOGUE_1_0
    assert request_seed(7, 3, 1) == derive_seed("interplay", 7, 3, 1)


DIALOGUE_1_0 = int.from_bytes(hashlib.sha256(b"dialogue\x1f1\x1f0").digest()[:8], "big") & (2**63 - 1)
