"""A server's context limit, end to end: ``transformers serve`` (5.25 refuses a prompt whose tokens plus
``max_tokens`` exceed the model's positions with HTTP 400) serves the tiny test model, which has 512 positions,
and ``crsdata simulate recllmsim`` runs dialogues whose prompts outgrow it.

- With ``--max-model-len 512`` the backend trims each prompt (oldest turns first, counted with the model's own
  tokenizer) before sending it: the run writes dialogues, some of whose prompts were trimmed, and no refusal.
- Without it the server refuses the long prompts: each refusal ends its dialogue as a counted failure with the
  server's reason (no retries, no empty turn), in the card, the records and the summary line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures.servers import transformers_serve

from crsdata.cli import main
from crsdata.schema import load_extra

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


def test_prompts_are_trimmed_to_the_context_given(server, tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "trimmed"
    assert simulate(server, tiny_model_dir, out, "--max-model-len", "512") == 0
    summary = capsys.readouterr().out
    records = run_records(out)
    assert len(records) == 3
    assert_no_empty_turn(records)
    runs = [load_extra(r["extra"])["run"] for r in records]
    assert not any(run["counters"].get("refused") for run in runs), [run.get("end_detail") for run in runs]
    assert not any(run["counters"].get("backend_errors") for run in runs)
    trimmed = sum(run["counters"].get("context_trimmed", 0) for run in runs)
    assert trimmed > 0 and all(len(r["turns"]) >= 2 for r in records)
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
