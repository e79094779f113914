"""A server's context limit, end to end: ``transformers serve`` (5.25 refuses a prompt whose tokens plus
``max_tokens`` exceed the model's positions with HTTP 400) serves the tiny test model, which has 512 positions,
and ``crsdata simulate recllmsim`` runs dialogues whose prompts outgrow it.

- Without ``--max-model-len`` the server refuses the long prompts: each refusal ends its dialogue as a counted
  failure with the server's reason (no retries, no empty turn), in the records and in the one error (or the card
  and summary line) of the run.
- With ``--max-model-len 512`` the backend fits each prompt before sending it. RecLLMSim's user prompt holds a
  profile and a task of about 900 of this tokenizer's tokens, more than 512 on its own, so each dialogue ends at
  once with one clear error naming it and both lengths, and the server is never asked.
- Dialogues that outgrow a context their header fits in lose their oldest turns: the same model widened to 2,048
  positions, with ``--max-model-len 1300`` (user prompts grow from about 1,000 to 1,900 tokens over 12 turns).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures.tiny_models import widened

from crsdata.cli import main
from crsdata.schema import load_extra
from crsdata.servers import transformers_serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("fastapi", reason="needs pip install 'transformers[serving]'")
    assert json.loads((tiny_model_dir / "config.json").read_text())["max_position_embeddings"] == 512
    with transformers_serve(None, tmp_path_factory.mktemp("serve")) as url:
        yield url


def simulate(url: str, model: Path, out: Path, *extra: str) -> int:
    """Three RecLLMSim dialogues of up to 8 turns, greedy, both roles played by ``model`` on the server."""
    fixed = "simulate recllmsim --source scenarios --n 3 --max-turns 8 --max-new-tokens 24 --temperature 0"
    models = ["--user-model", str(model), "--recommender-model", str(model)]
    return main([*fixed.split(), "--backend", url, *models, "--out", str(out), "--no-progress", *extra])


def run_records(out: Path) -> list[dict[str, Any]]:
    """Every written dialogue, kept or left out of the folder, from the run's shards."""
    import pyarrow.parquet as pq

    return [
        row
        for shard in sorted((out / ".simulate-run" / "shards").glob("*.parquet"))
        for row in pq.read_table(shard).to_pylist()
    ]


def assert_no_empty_turn(records: list[dict[str, Any]]) -> None:
    assert all(turn["text"].strip() for record in records for turn in record["turns"])


def test_a_header_longer_than_the_context_is_one_clear_error(server, tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "too-long"
    assert simulate(server, tiny_model_dir, out, "--max-model-len", "512") == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "every simulated dialogue was left out (filter-no_turns 3)" in error
    assert "3 refused by the backend, first: recllmsim-s0-000000: refused by the backend: the prompt has " in error
    assert "tokens after dropping every older turn, but the model takes at most 512 (prompt and 24 new" in error
    records = run_records(out)
    assert len(records) == 3 and not any(r["turns"] for r in records)
    runs = [load_extra(r["extra"])["run"] for r in records]
    assert all(run["counters"]["refused"] == run["counters"]["backend_errors"] == 1 for run in runs), runs


def test_prompts_are_trimmed_to_the_context_given(server, tiny_model_dir, tmp_path, capsys) -> None:
    wide = widened(tiny_model_dir, tmp_path / "tiny-2048")
    out = tmp_path / "trimmed"
    assert simulate(server, wide, out, "--max-model-len", "1300", "--max-turns", "12") == 0
    summary = capsys.readouterr().out
    records = run_records(out)
    assert len(records) == 3
    assert_no_empty_turn(records)
    runs = [load_extra(r["extra"])["run"] for r in records]
    assert not any(run["counters"].get("refused") for run in runs), [run.get("end_detail") for run in runs]
    assert not any(run["counters"].get("backend_errors") for run in runs)
    trimmed = sum(run["counters"].get("context_trimmed", 0) for run in runs)
    assert trimmed > 0 and all(len(r["turns"]) >= 6 for r in records)
    assert "refused" not in summary
    card = (out / "README.md").read_text()
    assert "prompts trimmed to the model's context" in card


def test_a_refusal_is_a_counted_failure_with_the_servers_reason(server, tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "refused"
    code = simulate(server, tiny_model_dir, out)
    captured = capsys.readouterr()
    records = run_records(out)
    assert len(records) == 3
    assert_no_empty_turn(records)
    runs = [load_extra(r["extra"])["run"] for r in records]
    refused = [run for run in runs if run["counters"].get("refused")]
    assert refused, "the server refused nothing: the prompts never outgrew 512 tokens"
    for run, record in zip(runs, records, strict=True):
        if run["counters"].get("refused"):
            # Refused once, not retried, with the dialogue and both lengths in the reason.
            assert run["counters"]["backend_errors"] == 1 and record["outcome"]["end_reason"] == "error"
            detail = run["end_detail"]
            assert detail.startswith(f"{record['dialogue_id']}: refused by the backend: HTTP 400")
            assert "The prompt has" in detail and "at most 512" in detail
    note = f"{len(refused)} refused by the backend, first: "
    if code == 0:  # some dialogues have turns: the summary line and the card count the refusals
        assert note in captured.out
        card = (out / "README.md").read_text()
        assert "refused by the backend, not retried" in card and "## Refused requests" in card
    else:  # every dialogue was refused before its first turn: one error that says why
        assert code == 1 and note in captured.err and "every simulated dialogue was left out" in captured.err
