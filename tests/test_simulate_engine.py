"""The run engine: batching, shards and manifest, skips, backend errors, config checks, progress.

Fake backends and a small fake simulation (tests/fixtures/) keep these tests fast and independent of any model.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from fixtures.fake_backends import FakeBackend, TransientFailures
from fixtures.fake_simulation import EndlessSimulation, make_config, talk, talk_source

from crsdata.backends.base import BackendError, ChatRequest, Generation, SamplingParams
from crsdata.errors import BadInputError
from crsdata.schema import validate_dialogue
from crsdata.simulate.base import Simulation
from crsdata.simulate.engine import MANIFEST, RunConfigMismatch, RunEngine, dialogue_seed, source_index
from crsdata.simulate.source import SimulationSource

# ---------------------------------------------------------------------------------------------------------
# Fakes


def run(tmp: Path, sim: Simulation, source: SimulationSource | None = None, **overrides: Any):
    source = source or talk_source()
    return RunEngine(sim, source, make_config(sim, source, **overrides), tmp, progress=False).run()


def texts(records: list[dict[str, Any]]) -> list[tuple[str, list[str], str]]:
    return [(r["dialogue_id"], [t["text"] for t in r["turns"]], r["outcome"]["end_reason"]) for r in records]


# ---------------------------------------------------------------------------------------------------------
# Seeds and record choice


def test_source_index_is_a_permutation_per_pass_and_independent_of_n():
    picks = [source_index(5, i, 7) for i in range(21)]
    for start in (0, 7, 14):
        assert sorted(picks[start : start + 7]) == list(range(7))
    assert picks[:7] != picks[7:14]  # a new order on each pass, so repeats do not line up
    assert [source_index(5, i, 7) for i in range(3)] == picks[:3]
    assert [source_index(6, i, 7) for i in range(7)] != picks[:7]


def test_seeds_are_distinct_and_stable_within_a_process():
    seeds = {dialogue_seed(1, i) for i in range(1000)}
    assert len(seeds) == 1000 and all(0 <= s < 2**63 for s in seeds)
    assert dialogue_seed(1, 5) == dialogue_seed(1, 5) != dialogue_seed(2, 5)


# ---------------------------------------------------------------------------------------------------------
# Batching


def test_results_do_not_depend_on_batch_size(tmp_path):
    results = [texts(run(tmp_path / f"b{b}", talk(), batch_size=b).records) for b in (1, 3, 8)]
    assert results[0] == results[1] == results[2]
    assert len(results[0]) == 12
    assert [r[0] for r in results[0]] == [f"talk-s3-{i:06d}" for i in range(12)]


def test_one_call_per_step_for_all_active_dialogues_and_refill(tmp_path):
    backend = FakeBackend()
    result = run(tmp_path, talk(backend), n=20, batch_size=5)
    # Both roles share one backend and parameters, so every active dialogue goes into each call.
    assert max(backend.calls) == 5
    assert sum(backend.calls) == sum(len(r["turns"]) for r in result.records)
    # Finished dialogues are replaced at once: the batch is full until fewer than 5 dialogues remain.
    full = backend.calls.index(next(c for c in backend.calls if c < 5))
    assert full >= len(backend.calls) // 2
    assert result.stats.calls == len(backend.calls) and result.stats.requests == sum(backend.calls)


def test_separate_backends_take_the_role_with_most_waiting(tmp_path):
    user, recommender = FakeBackend("u"), FakeBackend("r")
    result = run(tmp_path, talk(user, recommender), n=10, batch_size=4)
    # Each call holds one role only, and every request went to its own role's backend.
    assert all("user of" in r.messages[0]["content"] for r in user.requests)
    assert all("recommender of" in r.messages[0]["content"] for r in recommender.requests)
    assert len(user.requests) + len(recommender.requests) == sum(len(r["turns"]) for r in result.records)
    assert max(user.calls) == 4  # at the start every dialogue waits on the user


# ---------------------------------------------------------------------------------------------------------
# Shards and manifest


def test_shards_every_k_dialogues_and_manifest(tmp_path):
    result = run(tmp_path, talk(), n=12, shard_size=5)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["status"] == "complete"
    assert [s["rows"] for s in manifest["shards"]] == [5, 5, 2]
    ids = [i for s in manifest["shards"] for i in s["dialogue_ids"]]
    assert sorted(ids) == [f"talk-s3-{i:06d}" for i in range(12)]
    assert manifest["config"]["seed"] == 3 and manifest["config"]["prompt_hashes"] == {"talk": "0" * 64}
    assert manifest["config"]["crsdata_version"] == ""  # as given by the test config
    for shard in manifest["shards"]:
        path = tmp_path / shard["file"]
        assert path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == shard["sha256"]
    assert not list(tmp_path.rglob("*.tmp"))  # temporary files never stay behind
    assert manifest["counters"]["dialogues"] == 12
    assert manifest["counters"]["turns"] == sum(len(r["turns"]) for r in result.records)
    for record in result.records:
        validate_dialogue(record)
        run_info = json.loads(record["extra"])["run"]
        assert run_info["dialogue_seed"] == dialogue_seed(3, run_info["index"])
        assert record["provenance"]["seed"] == 3


def test_rerunning_a_complete_run_generates_nothing(tmp_path):
    first = run(tmp_path, talk())
    backend = FakeBackend()
    again = run(tmp_path, talk(backend))
    assert backend.calls == []
    assert texts(again.records) == texts(first.records)
    assert again.stats.resumed_dialogues == 12


def test_mismatched_config_on_resume_is_refused(tmp_path):
    run(tmp_path, talk())
    with pytest.raises(RunConfigMismatch, match=r"seed: 3 in the existing run, 4 now"):
        run(tmp_path, talk(), seed=4)
    with pytest.raises(RunConfigMismatch, match="model_ids"):
        run(tmp_path, talk(FakeBackend("other-model")))
    # Scheduling does not change results, so it may differ.
    assert len(run(tmp_path, talk(), batch_size=2, shard_size=3).records) == 12


def test_a_run_written_before_an_option_existed_resumes_when_the_option_keeps_its_old_behaviour(tmp_path):
    # The first run's config predates grounding and the decoding penalties: neither is in its manifest.
    first = run(tmp_path, talk())
    later = {"options": {"grounding": "none", "tags": None}}
    sampling = {
        role: {"max_new_tokens": 128, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}
        for role in ("user", "recommender")
    }
    backend = FakeBackend()
    again = run(tmp_path, talk(backend), sampling=sampling, **later)
    assert backend.calls == []
    assert texts(again.records) == texts(first.records)
    with pytest.raises(RunConfigMismatch, match=r"options: \{\} in the existing run, \{'grounding': 'catalog'\} now"):
        run(tmp_path, talk(), options={"grounding": "catalog"})
    with pytest.raises(RunConfigMismatch, match="sampling"):
        run(tmp_path, talk(), sampling={**sampling, "user": {**sampling["user"], "repetition_penalty": 1.3}})


def test_a_changed_shard_is_detected(tmp_path):
    run(tmp_path, talk())
    shard = next((tmp_path / "shards").glob("*.parquet"))
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(BadInputError, match="missing or changed"):
        run(tmp_path, talk())


# ---------------------------------------------------------------------------------------------------------
# Bad input and backend failures: nothing is lost


def test_bad_source_records_are_skipped_counted_and_replaced_by_the_next_draw(tmp_path):
    source = talk_source(7, broken=(2, 5))
    result = run(tmp_path, talk(), source=source, n=14)
    skipped = result.manifest["skipped"]
    assert len(result.records) == 14  # as many as requested: each skip draws the next index
    # Two broken records in 7: the first 14 good indices lie among the first 19 or 20, two or three passes.
    assert len(skipped) in (5, 6)
    assert {s["source_record"] for s in skipped} == {"src-2", "src-5"}
    assert all(s["reason"] == "bad-task" and "unusable task" in s["message"] for s in skipped)
    assert result.skipped.total == len(skipped) and result.skipped.counts == {"bad-task": len(skipped)}
    written = [int(r["dialogue_id"].rsplit("-", 1)[1]) for r in result.records]
    assert sorted(written + [s["index"] for s in skipped]) == list(range(14 + len(skipped)))


def test_a_source_without_any_usable_record_writes_nothing_and_stops(tmp_path):
    result = run(tmp_path, talk(), source=talk_source(3, broken=(0, 1, 2)), n=5)
    assert result.records == [] and len(result.manifest["skipped"]) == 3  # each record once, then it stops


def test_transient_backend_errors_are_retried_to_the_same_result(tmp_path):
    clean = run(tmp_path / "clean", talk())
    failures = TransientFailures(times=2)
    flaky = run(tmp_path / "flaky", talk(FakeBackend(fail=failures)), max_retries=2)
    assert texts(flaky.records) == texts(clean.records)
    assert flaky.counters["backend_errors"] == sum(min(n, 2) for n in failures.attempts.values()) > 0
    assert "abandoned" not in flaky.counters


def test_persistent_backend_errors_end_the_dialogue_with_a_reason(tmp_path):
    def fail(request: ChatRequest) -> str:
        return "HTTP 500" if "000003" in request.messages[0]["content"] else ""

    result = run(tmp_path, talk(FakeBackend(fail=fail)), max_retries=2)
    assert len(result.records) == 12  # nothing lost
    broken = next(r for r in result.records if r["dialogue_id"].endswith("000003"))
    assert broken["outcome"]["end_reason"] == "error"
    run_info = json.loads(broken["extra"])["run"]
    assert run_info["end_detail"] == "backend error after 3 attempts: HTTP 500"
    assert run_info["counters"]["backend_errors"] == 3
    assert result.counters["abandoned"] == 1 and result.counters["end_reason.error"] == 1


class RefusingBackend(FakeBackend):
    """Refuses (as a server's 4xx) every request of dialogue 000003 once it has two turns; trims dialogue 000005's."""

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        out = super().generate(requests, params)
        for i, request in enumerate(requests):
            if "000003" in request.messages[0]["content"] and len(request.messages) > 2:
                out[i] = Generation("", "error", 0, 'HTTP 400: {"detail": "The prompt has 901 tokens"}', refused=True)
            elif "000005" in request.messages[0]["content"]:
                out[i].dropped_turns = 1
        return out


def test_a_refused_request_ends_its_dialogue_at_once_with_the_reason(tmp_path):
    backend = RefusingBackend()
    result = run(tmp_path, talk(backend), max_retries=2)
    assert len(result.records) == 12
    refused = next(r for r in result.records if r["dialogue_id"].endswith("000003"))
    run_info = json.loads(refused["extra"])["run"]
    assert refused["outcome"]["end_reason"] == "error" and len(refused["turns"]) == 2
    assert all(turn["text"] for turn in refused["turns"])  # never an empty turn
    assert run_info["counters"]["refused"] == 1 and run_info["counters"]["backend_errors"] == 1  # not retried
    assert run_info["end_detail"] == (
        f'{refused["dialogue_id"]}: refused by the backend: HTTP 400: {{"detail": "The prompt has 901 tokens"}}'
    )
    assert result.counters["refused"] == 1 and result.counters["abandoned"] == 1
    trimmed = next(r for r in result.records if r["dialogue_id"].endswith("000005"))
    counters = json.loads(trimmed["extra"])["run"]["counters"]
    assert counters["context_trimmed"] == len(trimmed["turns"]) == counters["context_dropped_turns"]


def test_backend_going_away_keeps_finished_work_and_resumes(tmp_path):
    clean = run(tmp_path / "clean", talk(), shard_size=50)
    with pytest.raises(BackendError):
        run(tmp_path / "run", talk(FakeBackend(raise_after=6)), shard_size=50)
    saved = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert saved["status"] == "running" and sum(s["rows"] for s in saved["shards"]) > 0
    resumed = run(tmp_path / "run", talk(), shard_size=50)
    assert texts(resumed.records) == texts(clean.records)


def test_a_simulation_that_never_ends_is_stopped(tmp_path):
    sim = EndlessSimulation(
        {"user": FakeBackend(), "recommender": FakeBackend()},
        {"user": SamplingParams(), "recommender": SamplingParams()},
        max_turns=2,
    )
    result = run(tmp_path, sim, n=2)
    assert [r["outcome"]["end_reason"] for r in result.records] == ["unknown", "unknown"]
    assert "no end after" in json.loads(result.records[0]["extra"])["run"]["end_detail"]


# ---------------------------------------------------------------------------------------------------------
# Progress


def test_progress_bar_shows_dialogues_and_turn_rate(tmp_path, capsys):
    sim = talk()
    source = talk_source()
    RunEngine(sim, source, make_config(sim, source, n=6), tmp_path, progress=True).run()
    err = capsys.readouterr().err
    assert "6/6" in err and "turns/s" in err and "dlg" in err


# ---------------------------------------------------------------------------------------------------------
# Growing a run, and one process per run folder


def test_a_finished_run_grows_with_a_larger_n_and_keeps_its_dialogues_byte_for_byte(tmp_path):
    small = run(tmp_path / "run", talk(), n=20, shard_size=8)
    shards_before = {p.name: p.read_bytes() for p in (tmp_path / "run" / "shards").glob("*.parquet")}
    backend = FakeBackend()
    grown = run(tmp_path / "run", talk(backend), n=50, shard_size=8)
    clean = run(tmp_path / "clean", talk(), n=50, shard_size=8)
    assert len(small.records) == 20 and len(grown.records) == 50
    # The first 20 are the same records, field for field, and their shard files were not touched.
    dumps = [json.dumps(r, sort_keys=True) for r in grown.records]
    assert dumps[:20] == [json.dumps(r, sort_keys=True) for r in small.records]
    for name, data in shards_before.items():
        assert (tmp_path / "run" / "shards" / name).read_bytes() == data
    # Only the 30 new dialogues were generated, and the grown run equals one run of 50.
    assert grown.stats.dialogues == 30 and grown.stats.resumed_dialogues == 20
    assert sum(backend.calls) == sum(len(r["turns"]) for r in grown.records[20:])
    assert dumps == [json.dumps(r, sort_keys=True) for r in clean.records]
    manifest = json.loads((tmp_path / "run" / MANIFEST).read_text())
    assert manifest["config"]["n"] == 50 and [s["n"] for s in manifest["sessions"]] == [20, 50]


def test_a_run_never_shrinks(tmp_path):
    run(tmp_path, talk(), n=12)
    with pytest.raises(RunConfigMismatch, match=r"already holds 12 dialogues, more than --n 5"):
        run(tmp_path, talk(), n=5)
    assert len(run(tmp_path, talk(), n=12).records) == 12


def test_growing_keeps_the_skips_and_draws_past_them(tmp_path):
    source = talk_source(7, broken=(2, 5))
    small = run(tmp_path / "run", talk(), source=source, n=6)
    grown = run(tmp_path / "run", talk(), source=source, n=15)
    clean = run(tmp_path / "clean", talk(), source=source, n=15)
    assert texts(grown.records)[:6] == texts(small.records)
    assert texts(grown.records) == texts(clean.records)
    assert grown.manifest["skipped"] == clean.manifest["skipped"]


def test_the_run_folder_is_locked_while_a_run_is_active(tmp_path):
    from crsdata.simulate.engine import RunLock, RunLocked

    with RunLock(tmp_path):
        with pytest.raises(RunLocked, match=rf"another `crsdata simulate` \(pid {os.getpid()}\) is running"):
            run(tmp_path, talk())
    assert len(run(tmp_path, talk()).records) == 12  # released: the next run takes it
