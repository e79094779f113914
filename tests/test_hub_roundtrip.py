"""Consumer round trip through a real Hub-API server: publish two versions each of a dataset, a model and a
metric Space into LocalHub's git repositories, serve them read-only with olah on 127.0.0.1, and load every tag
back in a separate process, by repo id and revision only, as a user would:

- ``load_dataset("crs/redial", "dialogues", revision=tag)`` gives that tag's rows (v0.1.0: 4 rows in 2 shards,
  v0.2.0: 3 other rows in 1 shard, so shards left over from v0.1.0 would break v0.2.0), and ``items`` loads;
- ``AutoModelForCausalLM.from_pretrained("crs/tiny", revision=tag)`` gives that tag's weights;
- ``PeftModel.from_pretrained(base, "crs/tiny-simulator", revision="v0.1.0")`` gives the LoRA weights of an adapter
  folder saved as the Interplay simulator recipes save theirs;
- the GRSU scorer (``crsdata train grsu-scorer``: LoRA adapters on a tiny base, trained on real ReDial turns) loads
  with ``PeftModel.from_pretrained(base, "crs/grsu-scorer", revision="v0.1.0")`` and gives its P("Yes"); its
  ``--kind cross-encoder`` (on a tiny BERT) loads with ``AutoModel`` in its default architecture (a fine-tuned
  bi-encoder) and with ``AutoModelForSequenceClassification`` with ``--ce-architecture cross-encoder``;
- ``evaluate.load("crs/distinct_n", revision=tag)`` gives the examples' numbers, in a process without crsdata.

The server runs for this module only and is stopped by its PID, also when a test fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fixtures import olah_server
from fixtures.grsu_scorer import (
    CATALOG,
    build_small_redial,
    build_tiny_base,
    train_tiny_cross_encoder,
    train_tiny_scorer,
)
from fixtures.local_hub import LocalHub
from fixtures.publishable import adapter_folder, dataset_folder, model_folder
from fixtures.tiny_models import build_tiny_encoder

from crsdata.export_metric import mismatches
from crsdata.publish import publish

ROOT = Path(__file__).resolve().parents[1]
TAGS = ("v0.1.0", "v0.2.0")
DIALOGUES = {"v0.1.0": ["d0", "d1", "d2", "d3"], "v0.2.0": ["e0", "e1", "e2"]}
ITEMS = {"v0.1.0": ["7", "8"], "v0.2.0": ["7", "8", "9"]}


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Publishes everything into one LocalHub, serves it with olah, runs the consumer once; returns its answers
    by request name."""
    work = tmp_path_factory.mktemp("hub-roundtrip")
    hub = LocalHub(work / "mirrors")
    publish(
        dataset_folder(work / "ds1", "0.1.0", 4, shard_rows=2, items=ITEMS["v0.1.0"]),
        "crs/redial",
        tag="v0.1.0",
        client=hub,
    )
    publish(
        dataset_folder(work / "ds2", "0.2.0", 3, prefix="e", items=ITEMS["v0.2.0"]),
        "crs/redial",
        tag="v0.2.0",
        client=hub,
    )
    models = {tag: model_folder(work / f"model-{tag}", tag[1:], seed=seed) for seed, tag in enumerate(TAGS)}
    for tag, folder in models.items():
        publish(folder, "crs/tiny", tag=tag, client=hub)
    for tag in TAGS:
        publish(ROOT / "metrics" / "distinct_n", "crs/distinct_n", tag=tag, client=hub, verify=False)
    adapter = adapter_folder(work / "adapter", models[TAGS[0]], TAGS[0][1:])
    publish(adapter, "crs/tiny-simulator", tag=TAGS[0], client=hub)
    scorer = cross_encoder = logit_encoder = None
    if CATALOG.is_file():
        scorer_base = build_tiny_base(work / "scorer-base")
        redial = build_small_redial(work)
        scorer = train_tiny_scorer(redial, scorer_base, work / "grsu-scorer")
        publish(scorer, "crs/grsu-scorer", tag="v0.1.0", client=hub)
        cross_base = build_tiny_encoder(work / "cross-encoder-base")
        cross_encoder = train_tiny_cross_encoder(redial, cross_base, work / "grsu-cross-encoder")
        publish(cross_encoder, "crs/grsu-cross-encoder", tag="v0.1.0", client=hub)
        logit_encoder = train_tiny_cross_encoder(
            redial, cross_base, work / "grsu-cross-encoder-logit", "--ce-architecture", "cross-encoder"
        )
        publish(logit_encoder, "crs/grsu-cross-encoder-logit", tag="v0.1.0", client=hub)

    requests: dict[str, dict[str, Any]] = {}
    for tag in TAGS:
        for config in ("dialogues", "items"):
            requests[f"{config}@{tag}"] = {"dataset": "crs/redial", "config": config, "revision": tag}
        requests[f"model@{tag}"] = {"model": "crs/tiny", "revision": tag, "local": str(models[tag])}
        requests[f"metric@{tag}"] = {
            "metric": "crs/distinct_n",
            "revision": tag,
            "examples": str(ROOT / "metrics" / "distinct_n" / "examples.json"),
        }
    requests["adapter"] = {
        "adapter": "crs/tiny-simulator",
        "revision": TAGS[0],
        "base": str(models[TAGS[0]]),
        "local": str(adapter),
    }
    if scorer is not None:
        requests["scorer@v0.1.0"] = {
            "adapter": "crs/grsu-scorer",
            "revision": "v0.1.0",
            "base": str(scorer_base),
            "local": str(scorer),
            "p_yes": True,
        }
        requests["cross-encoder@v0.1.0"] = {
            "classifier": "crs/grsu-cross-encoder",
            "revision": "v0.1.0",
            "local": str(cross_encoder),
            "files": ["crsdata.json", "config.json", "tokenizer.json", "modules.json"],
            "encoder": True,
        }
        requests["cross-encoder-logit@v0.1.0"] = {
            "classifier": "crs/grsu-cross-encoder-logit",
            "revision": "v0.1.0",
            "local": str(logit_encoder),
            "files": ["crsdata.json", "config.json", "tokenizer.json"],
        }
    answers = dict(zip(requests, olah_server.consume(work / "mirrors", work, list(requests.values())), strict=True))
    return {
        "answers": answers,
        "models": models,
        "scorer": scorer,
        "cross_encoder": cross_encoder,
        "logit_encoder": logit_encoder,
    }


def _answer(published: dict[str, Any], name: str) -> dict[str, Any]:
    answer = published["answers"][name]
    assert "error" not in answer, f"{name}:\n{answer.get('error')}"
    return answer


@pytest.mark.parametrize("tag", TAGS)
def test_each_dataset_tag_loads_its_own_rows(published: dict[str, Any], tag: str) -> None:
    assert _answer(published, f"dialogues@{tag}")["splits"] == {"test": DIALOGUES[tag]}
    assert _answer(published, f"items@{tag}")["splits"] == {"train": ITEMS[tag]}


def test_each_model_tag_loads_its_own_weights(published: dict[str, Any]) -> None:
    first, second = (_answer(published, f"model@{tag}") for tag in TAGS)
    assert first["class"] == second["class"] == "LlamaForCausalLM"
    assert first["equal_to_local"] and second["equal_to_local"]
    assert first["checksum"] != second["checksum"]  # seeds 0 and 1: v0.2.0 is not v0.1.0 served again


def test_simulator_adapter_loads_with_peft_by_repo_id(published: dict[str, Any]) -> None:
    answer = _answer(published, "adapter")
    assert answer["class"] == "PeftModelForCausalLM" and answer["lora_tensors"] > 0
    assert answer["equal_to_local"]


def test_grsu_scorer_adapter_loads_with_peft(published: dict[str, Any]) -> None:
    if published["scorer"] is None:
        pytest.skip(f"ReDial data not found: {CATALOG}")
    answer = _answer(published, "scorer@v0.1.0")
    assert answer["equal_to_local"] and answer["lora_tensors"] > 0
    assert 0.0 < answer["p_yes"] < 1.0


def test_grsu_cross_encoder_loads_as_a_sentence_encoder(published: dict[str, Any]) -> None:
    """The default architecture of ``--kind cross-encoder``: a fine-tuned bi-encoder, a plain ``AutoModel``."""
    import json

    if published["cross_encoder"] is None:
        pytest.skip(f"ReDial data not found: {CATALOG}")
    answer = _answer(published, "cross-encoder@v0.1.0")
    assert answer["weights_equal"] and all(answer["files_equal"].values())
    assert answer["card"]["pipeline_tag"] == "sentence-similarity"
    results = json.loads((published["cross_encoder"] / "results.json").read_text())
    assert answer["card"]["results"]["auc"] == pytest.approx(results["auc"], abs=1e-4)


def test_grsu_cross_encoder_logit_loads_as_a_sequence_classifier(published: dict[str, Any]) -> None:
    import json

    if published["logit_encoder"] is None:
        pytest.skip(f"ReDial data not found: {CATALOG}")
    answer = _answer(published, "cross-encoder-logit@v0.1.0")
    assert answer["weights_equal"] and all(answer["files_equal"].values())
    assert answer["card"]["pipeline_tag"] == "text-classification" and answer["id2label"] == {"0": "accept"}
    results = json.loads((published["logit_encoder"] / "results.json").read_text())
    assert answer["card"]["results"]["auc"] == pytest.approx(results["auc"], abs=1e-4)


@pytest.mark.parametrize("tag", TAGS)
def test_metric_space_loads_with_evaluate_without_crsdata(published: dict[str, Any], tag: str) -> None:
    answer = _answer(published, f"metric@{tag}")
    entry = {"error": None, "cases": answer["cases"], "app": "Blocks"}  # the app is checked in test_export_metric
    assert mismatches(ROOT / "metrics" / "distinct_n", entry) == []
