"""The Hub-layout exporter: what `load_dataset(folder, config)` returns is what was built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from datasets import load_dataset

from crsdata.build import BuildResult, InputFile
from crsdata.errors import SkipLog
from crsdata.export import export_folder, read_metadata
from crsdata.schema import DIALOGUE_FEATURES, ITEM_FEATURES, item_ref, new_dialogue, new_turn

ITEM = {
    "item_id": "7",
    "title": "It",
    "year": 2017,
    "genres": ["horror"],
    "plot": "A clown.",
    "people": [{"name": "Andy Muschietti", "role": "director"}],
    "imdb_id": "tt1396484",
    "keywords": ["clown"],
    "sources": ["redial"],
}


def dialogues(n: int, split: str) -> list[dict]:
    return [
        new_dialogue(
            f"{split}-{i}",
            "redial",
            split,
            [
                new_turn(0, "user", "I love scary clowns", "disclose-goal"),
                new_turn(1, "recommender", "Then watch It (2017)", "recommend", [item_ref("7", "It (2017)")]),
                new_turn(2, "user", "and Clownhouse?", items=[item_ref("", "Clownhouse")], intents=["ask"]),
            ][: 1 + i % 3],
            target_items=[item_ref("7", "It")],
            outcome={"rating": 4.5 if i % 2 else None},
        )
        for i in range(n)
    ]


def result_with(splits: dict[str, list[dict]], items: list[dict] | None = None) -> BuildResult:
    read = sum(len(v) for v in splits.values())
    skip = SkipLog(skip_bad=True)
    result = BuildResult(
        source="redial", splits=splits, items=items or [], skipped=skip, inputs=[InputFile("in.jsonl", "ab" * 32, read)]
    )
    result.info = {"name": "redial", "license": "CC BY 4.0", "license_id": "cc-by-4.0", "description": "Test."}
    return result


def test_roundtrip_features_and_rows(tmp_path: Path) -> None:
    splits = {"test": dialogues(7, "test"), "train": dialogues(11, "train")}
    out = export_folder(result_with(splits, [ITEM]), tmp_path / "ds", version="2.3.4")
    loaded = load_dataset(str(out), "dialogues")
    assert list(loaded) == ["train", "test"]  # train, validation, test order whatever the build order
    for split, rows in splits.items():
        assert loaded[split].features == DIALOGUE_FEATURES
        assert loaded[split].to_list() == rows
    items = load_dataset(str(out), "items")["train"]
    assert items.features == ITEM_FEATURES and items.to_list() == [ITEM]
    assert load_dataset(str(out))["train"].num_rows == 11  # "dialogues" is the default config


def test_card_yaml_is_generated_from_the_written_splits(tmp_path: Path) -> None:
    out = export_folder(result_with({"validation": dialogues(5, "validation")}), tmp_path / "ds", version="0.2.0")
    front = (out / "README.md").read_text().split("---\n")[1]
    meta = yaml.safe_load(front)
    (config,) = meta["configs"]
    assert config == {
        "config_name": "dialogues",
        "data_files": [{"split": "validation", "path": "dialogues/validation-*"}],
        "default": True,
    }
    # datasets writes a single config's info as a mapping, several as a list
    info = meta["dataset_info"]
    assert info["config_name"] == "dialogues"
    assert [(s["name"], s["num_examples"]) for s in info["splits"]] == [("validation", 5)]
    assert meta["license"] == "cc-by-4.0"
    body = (out / "README.md").read_text()
    assert "Dataset version 0.2.0" in body and "| dialogues | 5 |" in body
    assert "`turns[].action`" in body  # field documentation comes from the schema
    assert (out / "turns_per_dialogue.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_metadata(out)["dataset_version"] == "0.2.0"


def test_sharding_and_reexport_replace_old_shards(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    export_folder(result_with({"train": dialogues(10, "train")}), out, shard_rows=3)
    names = sorted(p.name for p in (out / "dialogues").iterdir())
    assert names == [f"train-{i:05d}-of-00004.parquet" for i in range(4)]
    assert load_dataset(str(out), "dialogues")["train"]["dialogue_id"] == [f"train-{i}" for i in range(10)]
    export_folder(result_with({"train": dialogues(2, "train")}), out, shard_rows=3)
    assert sorted(p.name for p in (out / "dialogues").iterdir()) == ["train-00000-of-00001.parquet"]
    assert not list(out.rglob("*.tmp"))


def test_accounting_is_in_the_card_and_metadata(tmp_path: Path) -> None:
    result = result_with({"train": dialogues(3, "train")})
    result.inputs[0].records = 6
    result.skipped.counts.update({"invalid-json": 2})
    result.skipped.examples.append("in.jsonl, line 4: invalid JSON")
    result.dropped["duplicate-id"] = 1
    out = export_folder(result, tmp_path / "ds")
    meta = json.loads((out / "crsdata.json").read_text())
    assert meta["accounting"] == {"read": 6, "kept": 3, "skipped": 2, "dropped": 1, "balanced": True}
    body = (out / "README.md").read_text()
    assert "| 6 | 3 | 2 | 1 | yes |" in body
    assert "`invalid-json` 2" in body and "`duplicate-id` 1" in body


def test_nothing_to_export_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no dialogues"):
        export_folder(result_with({"train": []}), tmp_path / "ds")
