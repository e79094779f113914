"""Consumer round trip of intent-classifier model folders, as tests/test_hub_roundtrip.py does for the simulators:
train a TF-IDF + SVM and an encoder on a few RecLLMSim utterances (tiny settings), ``crsdata publish`` each as a
model into LocalHub, serve it read-only with olah and load it back in a process without crsdata, by repo id and
tag only:

- the card's YAML (base model, datasets with revisions, licence, model-index results) equals what the folder has;
- the SVM's ``model.skops`` downloads and loads with skops (only scikit-learn, numpy and scipy types) and
  predicts what the local folder predicts;
- the encoder loads with ``AutoModelForSequenceClassification`` with the local weights and its labels; its
  tokenizer files arrive byte for byte. ``AutoTokenizer.from_pretrained`` through olah 0.5.4 fails (a known
  limit of this test server, not of the folder: it loads locally), so the tokenizer is compared as files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fixtures import olah_server
from fixtures.local_hub import LocalHub
from fixtures.tiny_models import build_tiny_encoder
from huggingface_hub import ModelCard

from crsdata.cli import main
from crsdata.models.intent_classifier.intents import load_intent_classifier
from crsdata.publish import publish

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
TEXTS = [
    "Can you recommend a few gifts for my dad who likes fishing?",
    "What is the opening time of the Louvre on Sundays?",
    "Please make me a three-day plan for Kyoto.",
    "Thanks, that is all I needed!",
]
ENCODER_FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "results.json"]
SVM_FILES = ["config.json", "model.skops", "intent_classifier.json", "results.json"]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("intent-roundtrip")
    data = work / "recllmsim"
    assert main(["build", "recllmsim", "--input", str(DATA / "recllmsim"), "--out", str(data)]) == 0
    train = ["train", "intent-classifier", "--data", str(data), "--limit", "200"]
    folders = {"svm": work / "svm", "encoder": work / "encoder"}
    assert main([*train, "--out", str(folders["svm"]), "--kind", "tfidf-svm", "--svm-c", "1", "--end-words", "0"]) == 0
    encoder = build_tiny_encoder(work / "tiny-encoder")
    tiny = ["--base", str(encoder), "--max-length", "32", "--batch-size", "16", "--epochs", "2"]
    assert main([*train, "--out", str(folders["encoder"]), "--kind", "encoder", *tiny]) == 0

    hub = LocalHub(work / "mirrors")
    for name, folder in folders.items():
        assert main(["publish", str(folder), "--repo-id", f"crs/intent-{name}", "--dry-run"]) == 0
        publish(folder, f"crs/intent-{name}", tag="v0.1.0", client=hub)
    requests = [
        {
            "classifier": "crs/intent-svm",
            "revision": "v0.1.0",
            "local": str(folders["svm"]),
            "files": SVM_FILES,
            "texts": TEXTS,
        },
        {
            "classifier": "crs/intent-encoder",
            "revision": "v0.1.0",
            "local": str(folders["encoder"]),
            "files": ENCODER_FILES,
        },
    ]
    svm, encoder_answer = olah_server.consume(work / "mirrors", work, requests)
    return {"folders": folders, "svm": svm, "encoder": encoder_answer}


def _answer(published: dict[str, Any], name: str) -> dict[str, Any]:
    answer = published[name]
    assert "error" not in answer, f"{name}:\n{answer.get('error')}"
    return answer


@pytest.mark.parametrize("name", ["svm", "encoder"])
def test_the_card_metadata_arrives_as_written(published: dict[str, Any], name: str) -> None:
    answer = _answer(published, name)
    local = ModelCard.load(published["folders"][name] / "README.md").data
    results = json.loads((published["folders"][name] / "results.json").read_text())
    assert answer["card"]["license"] == local.license == "apache-2.0"
    assert answer["card"]["datasets"] == local.datasets and answer["card"]["datasets"]
    assert answer["card"]["base_model"] == local.base_model
    assert answer["card"]["pipeline_tag"] == "text-classification"
    # The card's model-index gives four decimals.
    assert answer["card"]["results"] == {"accuracy": round(results["accuracy"], 4), "f1": round(results["macro_f1"], 4)}


def test_the_svm_loads_with_skops_and_predicts_as_the_local_folder(published: dict[str, Any]) -> None:
    answer = _answer(published, "svm")
    assert all(answer["files_equal"].values()) and set(answer["files_equal"]) == set(SVM_FILES)
    assert answer["predictions"] == load_intent_classifier(published["folders"]["svm"])(TEXTS)


def test_the_encoder_loads_with_its_weights_labels_and_tokenizer_files(published: dict[str, Any]) -> None:
    answer = _answer(published, "encoder")
    assert all(answer["files_equal"].values()) and set(answer["files_equal"]) == set(ENCODER_FILES)
    assert answer["weights_equal"]
    labels = json.loads((published["folders"]["encoder"] / "results.json").read_text())["details"]["labels"]
    assert answer["id2label"] == {str(i): label for i, label in enumerate(labels)}
