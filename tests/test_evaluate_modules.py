"""The ``evaluate`` modules in metrics/: they load offline, run their test cases (examples.json) and the code in
their cards, give the plain functions' numbers, combine, and serve a Gradio 6 Space."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import runpy
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["sr_et_fr", "distinct_n", "match_score", "ranking", "bertscore_offline"]
MODULE_TYPES = {"distinct_n": "measurement"}

evaluate = pytest.importorskip("evaluate")


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cards load "./metrics/<name>", relative to the repository root, as a reader would run them.
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _embedding_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRSDATA_CACHE", str(tmp_path_factory.getbasetemp() / "crsdata-cache"))


def load(name: str, **kwargs: Any) -> Any:
    return evaluate.load(f"./metrics/{name}", **kwargs)


def _close(actual: Any, expected: Any, tolerance: float) -> bool:
    if isinstance(expected, float) and isinstance(actual, int | float):
        return math.isclose(actual, expected, rel_tol=0, abs_tol=tolerance)
    return actual == expected


CASES = [
    pytest.param(name, case, id=f"{name}: {case['name']}")
    for name in MODULES
    for case in json.loads((ROOT / "metrics" / name / "examples.json").read_text(encoding="utf-8"))
]


@pytest.mark.parametrize(("name", "case"), CASES)
def test_examples_as_data(name: str, case: dict[str, Any]) -> None:
    result = load(name).compute(**case["inputs"], **case.get("options", {}))
    tolerance = case.get("tolerance", 1e-12)
    for key, expected in case["expected"].items():
        assert key in result, f"{key} missing from {sorted(result)}"
        assert _close(result[key], expected, tolerance), f"{key}: {result[key]} != {expected}"


def _card_blocks(card: str) -> list[tuple[str, str]]:
    """(python code, expected output) pairs: each ```python block followed by a ```text block."""
    return re.findall(r"```python\n(.*?)```\s*```text\n(.*?)```", card, flags=re.DOTALL)


@pytest.mark.parametrize("name", MODULES)
def test_card_front_matter_and_files(name: str) -> None:
    folder = ROOT / "metrics" / name
    for file in (f"{name}.py", "README.md", "app.py", "requirements.txt", "examples.json"):
        assert (folder / file).is_file(), file
    card = (folder / "README.md").read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", card, flags=re.DOTALL)
    assert match, "the card must start with YAML front matter"
    meta = yaml.safe_load(match.group(1))
    assert meta["sdk"] == "gradio" and str(meta["sdk_version"]).startswith("6.")
    assert meta["app_file"] == "app.py"
    assert {"evaluate", MODULE_TYPES.get(name, "metric")} <= set(meta["tags"])
    assert meta["title"] and meta["description"]
    requirements = (folder / "requirements.txt").read_text().split()
    assert any(r.startswith("evaluate") for r in requirements) and any(r.startswith("gradio") for r in requirements)
    assert _card_blocks(card), "the card needs at least one python example with its output"
    assert load(name).module_type == MODULE_TYPES.get(name, "metric")


@pytest.mark.parametrize("name", MODULES)
def test_card_examples_run(name: str) -> None:
    card = (ROOT / "metrics" / name / "README.md").read_text(encoding="utf-8")
    namespace: dict[str, Any] = {}
    for code, expected in _card_blocks(card):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(code, f"metrics/{name}/README.md", "exec"), namespace)  # runs the card's own example code
        assert out.getvalue().strip() == expected.strip()


# --------------------------------------------------------------------------------------------------------
# Same numbers as the plain functions


def test_ranking_module_equals_function() -> None:
    from crsdata.metrics import ranking_metrics

    predictions = [["a", "b", "c", "d"], ["d", "c"], [], ["b", "b", "a"]]
    references = [["c"], ["c", "a"], ["a"], ["a", "b"]]
    mentioned = [["a"], [], [], ["b"]]
    expected = ranking_metrics(predictions, references, [1, 2, 5], mentioned=mentioned)
    assert load("ranking").compute(
        predictions=predictions, references=references, k=[1, 2, 5], mentioned=mentioned
    ) == pytest.approx(expected)


def test_sr_et_fr_module_equals_function() -> None:
    from crsdata.metrics import sr_et_fr

    decisions = [[("a", False), ("t", True)], [("b", True)], [("t", False), ("b", True)], []]
    expected = sr_et_fr(decisions, ["t", "t", "t", "t"])
    result = load("sr_et_fr").compute(
        predictions=[[{"item": i, "accepted": a} for i, a in d] for d in decisions], references=["t"] * 4
    )
    assert (result["sr"], result["et"], result["fr"]) == (expected["sr"], expected["et"], expected["fr"])
    assert result["n_failure"] == expected["counts"]["failure"] == 2


def test_distinct_module_equals_function() -> None:
    from crsdata.metrics import distinct_n_scores

    corpus = ["I want a thriller like Heat.", "Any heist film works.", "I want a comedy, not a thriller."]
    module = load("distinct_n")
    assert module.compute(data=corpus, n=[1, 2, 3]) == distinct_n_scores(corpus, (1, 2, 3))
    assert module.compute(data=corpus, normalize_by="utterances") == distinct_n_scores(
        corpus, (4,), normalize_by="utterances"
    )


def test_match_module_equals_function() -> None:
    from crsdata.metrics import StaticEmbeddings, match_score

    vectors = {"a": [1.0, 0.0], "b": [0.6, 0.8], "c": [0.0, 1.0]}
    predictions, references = [["b", "c"], ["a"], ["c", "a"]], ["a", ["b", "c"], "a"]
    expected = match_score(predictions, references, StaticEmbeddings(vectors))
    result = load("match_score").compute(predictions=predictions, references=references, item_vectors=vectors, k=None)
    assert result == pytest.approx(expected)
    with pytest.raises(ValueError, match="needs the catalog"):
        load("match_score").compute(predictions=[["a"]], references=["a"])


def test_bertscore_module_equals_function() -> None:
    from crsdata.metrics import bertscore

    cands = ["Any ideas for a relaxing weekend in Chicago?", "I loved that film."]
    refs = ["Could you plan a calm weekend trip to Chicago?", "What time does the museum open?"]
    expected = bertscore(cands, refs)
    result = load("bertscore_offline").compute(predictions=cands, references=refs)
    assert result["f1"] == pytest.approx(expected["f1"], abs=1e-6)
    assert result["num_layers"] == 5 and result["rescaled"] is False


# --------------------------------------------------------------------------------------------------------
# combine, add_batch, and the Space


def test_combine_ranking_and_match_score() -> None:
    vectors = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 1.0]}
    combined = evaluate.combine([load("ranking"), load("match_score", item_vectors=vectors)])
    result = combined.compute(
        predictions=[["b", "a"], ["c"]], references=[["a"], ["a", "b"]], k=[1, 2], mentioned=[["b"], []]
    )
    # After removing b, example 1 ranks a first: a hit at 1; example 2 misses. Match: cos(a, a) = 1 and
    # cos(c, closest of a/b) = 0.7071.
    assert result["recall@1"] == 0.5 and result["ndcg@2"] == 0.5
    assert result["match_score@1"] == pytest.approx((1 + 2**-0.5) / 2)


def test_mixed_single_and_list_references() -> None:
    # evaluate would type the batch from the first reference (a string) and stringify the later list.
    result = load("ranking").compute(predictions=[["a"], ["b"]], references=["a", ["c", "b"]], k=1)
    assert result["recall@1"] == pytest.approx((1 + 0.5) / 2)
    outcomes = load("sr_et_fr")
    outcomes.add(prediction=[{"item": "u", "accepted": True}], reference="t")
    outcomes.add(prediction=[{"item": "u", "accepted": True}], reference=["u"])
    assert outcomes.compute()["sr"] == 0.5


def test_sr_et_fr_module_takes_one_target_per_dialogue() -> None:
    from crsdata.metrics import MetricError

    outcomes = load("sr_et_fr")
    with pytest.raises(MetricError, match="exactly one target per dialogue"):
        outcomes.compute(predictions=[[{"item": "u", "accepted": True}]], references=[["t", "u"]])


def test_add_batch_accumulates() -> None:
    ranking = load("ranking")
    ranking.add_batch(predictions=[["a", "b"]], references=[["b"]])
    ranking.add(prediction=["c"], reference=["c"])
    result = ranking.compute(k=[1, 2])
    assert result["recall@1"] == 0.5 and result["mrr@2"] == pytest.approx((0.5 + 1) / 2)
    distinct = load("distinct_n")
    distinct.add_batch(data=["a b c d", "a b c d"])
    assert distinct.compute(n=4) == {"dist_4": 0.5}


def test_spaces_build_and_answer() -> None:
    pytest.importorskip("gradio")
    from gradio_client import Client

    from crsdata.metrics.widget import compute_from_json

    demos = {name: runpy.run_path(str(ROOT / "metrics" / name / "app.py"))["demo"] for name in MODULES}
    assert all(hasattr(demo, "launch") for demo in demos.values())
    module = load("ranking")
    with pytest.raises(ValueError, match="missing \\['references'\\]"):
        compute_from_json(module, '{"predictions": [["a"]]}', "{}")
    with pytest.raises(ValueError, match="invalid JSON"):
        compute_from_json(module, "{", "{}")

    demo = demos["ranking"]
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        inputs = json.dumps({"predictions": [["a", "b", "c"]], "references": [["c"]]})
        result = client.predict(inputs, json.dumps({"k": [1, 3]}), api_name="/compute")
        assert result["ndcg@1"] == 0.0 and result["ndcg@3"] == 0.5
    finally:
        demo.close()
