"""The `crsdata train` framework on real ReDial folders, with a toy recipe: configs from YAML and flags, the
model folder's shared files, and one clear error line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from crsdata.cli import main
from crsdata.training import load_data_folders, resolve_config
from crsdata.training.data import load_data_folder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")


@pytest.fixture(scope="module")
def redial_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "redial"
    code = main(
        [
            "build",
            "redial",
            "--input",
            str(DATA / "redial" / "train_partial" / "kepler_train_subset_500.jsonl"),
            "--input",
            str(DATA / "redial" / "official" / "test_data.jsonl"),
            "--catalog",
            str(DATA / "redial" / "redial__id2info.json"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


@pytest.fixture()
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    from crsdata import models

    monkeypatch.setitem(models.RECIPES, "toy", "fixtures.toy_recipe.recipe")


def test_config_precedence_yaml_file_then_flags(tmp_path: Path, toy: None) -> None:
    from crsdata.models import get_recipe

    recipe = get_recipe("toy")
    override = tmp_path / "mine.yaml"
    override.write_text("smoothing: 2\nmax-steps: 7\nlowercase: 'yes'\n")
    config = resolve_config(
        recipe.config_class, defaults=recipe.default_config, config_file=override, flags={"smoothing": 3.5}
    )
    assert (config.role, config.smoothing, config.max_steps, config.lowercase) == ("recommender", 3.5, 7, True)
    assert isinstance(config.smoothing, float)


def test_options_come_from_a_config_file_and_a_flag_overrides_it(
    tmp_path: Path, toy: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`crsdata train RECIPE --config run.yaml` keeps the promise of the other commands' --config: the keys are the
    flags' names (max-steps or max_steps), a flag on the command line wins over the file, which wins over the
    recipe's config.yaml; an unknown key names the file and the key. Train's own --config (layered over
    config.yaml) is that mechanism, so it is the one tested here."""
    run = tmp_path / "run.yaml"
    run.write_text(f"out: {tmp_path / 'm'}\nmax-steps: 7\nseed: 5\nsmoothing: 2\nrole: user\n")
    assert main(["train", "toy", "--config", str(run), "--seed", "9", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert (printed["out"], printed["max_steps"], printed["smoothing"]) == (str(tmp_path / "m"), 7, 2.0)
    assert (printed["seed"], printed["role"]) == (9, "user")  # the flag over the file; the file over config.yaml
    assert list(tmp_path.iterdir()) == [run]  # --print-config writes nothing
    run.write_text("max_stepz: 7\n")
    assert main(["train", "toy", "--config", str(run), "--print-config"]) == 1
    err = capsys.readouterr().err
    assert str(run) in err and "max_stepz" in err and "unknown config key" in err


def test_train_writes_the_model_folder(redial_folder: Path, tmp_path: Path, toy: None) -> None:
    out = tmp_path / "toy-model"
    assert main(["train", "toy", "--data", str(redial_folder), "--out", str(out), "--seed", "3"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n_train"] == 500 and results["n_test"] == 1342 and results["seed"] == 3
    assert 0.0 < results["accuracy"] < 1.0
    metadata = json.loads((out / "crsdata.json").read_text())
    assert metadata["kind"] == "model" and metadata["version"] == "0.1.0" and metadata["recipe"] == "toy"
    assert metadata["data"][0]["revision"] == "v0.1.0" and len(metadata["data"][0]["sha256"]) == 64
    card = ModelCard.load(out / "README.md")
    assert card.data.license == "cc-by-4.0"
    assert card.data.datasets == ["redial"]
    (entry,) = card.data.eval_results
    assert (entry.metric_type, entry.dataset_split, entry.dataset_revision) == ("accuracy", "test", "v0.1.0")
    assert abs(entry.metric_value - results["accuracy"]) < 1e-4
    guess = json.loads((out / "model.json").read_text())["guess"]
    assert f"It guesses `{guess}`." in card.text
    assert "| ReDial (crsdata) (`redial`) | v0.1.0 | test 1342, train 500 |" in card.text


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--config", "{tmp}/bad.yaml"], "bad.yaml, field 'learning_rate': unknown config key"),
        (["--max-steps", "x"], "invalid int value"),
        (["--data", "{tmp}/nowhere"], "nowhere: no such data folder"),
    ],
)
def test_bad_input_is_one_line(
    redial_folder: Path, tmp_path: Path, toy: None, capsys: pytest.CaptureFixture[str], extra: list[str], expected: str
) -> None:
    (tmp_path / "bad.yaml").write_text("learning_rate: 0.1\n")
    args = ["train", "toy", "--out", str(tmp_path / "m"), *[a.format(tmp=tmp_path) for a in extra]]
    if "--data" not in extra:
        args += ["--data", str(redial_folder)]
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse rejects a mistyped flag itself
        code = exit_.code
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert expected in err[-1]
    assert "Traceback" not in "\n".join(err)


def test_missing_split_and_out_inside_data(redial_folder: Path, tmp_path: Path, toy: None, capsys) -> None:
    with pytest.raises(Exception, match="no split 'validation'"):
        load_data_folders([redial_folder], require_split="validation")
    code = main(["train", "toy", "--data", str(redial_folder), "--out", str(redial_folder / "model")])
    assert code == 1
    assert "must not be inside, or contain, the data folder" in capsys.readouterr().err
    assert load_data_folder(redial_folder).splits == {"test": 1342, "train": 500}


@pytest.mark.parametrize("recipe", ["user-simulator", "recommender-simulator"])
def test_the_a100_config_is_a_full_fine_tune(recipe: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """config.a100.yaml over config.yaml resolves to lora false (config.yaml says true): what --print-config shows
    is what training would use, and printing it writes nothing."""
    from crsdata.models import get_recipe

    a100 = get_recipe(recipe).folder / "config.a100.yaml"
    out = tmp_path / "model"
    code = main(["train", recipe, "--config", str(a100), "--out", str(out), "--max-steps", "3", "--print-config"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["lora"] is False and printed["epochs"] == 2 and printed["max_length"] == 2048
    assert printed["max_steps"] == 3 and printed["out"] == str(out)  # a flag overrides the file
    assert list(tmp_path.iterdir()) == []
    shipped = main(["train", recipe, "--print-config"])
    assert shipped == 0 and json.loads(capsys.readouterr().out)["lora"] is True


@pytest.mark.parametrize("recipe", ["intent-classifier", "user-simulator", "recommender-simulator", "grsu-scorer"])
def test_print_config_resolves_every_recipe_and_writes_nothing(
    recipe: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`crsdata train RECIPE --print-config` prints every field of the recipe's config, resolved from its
    config.yaml and the flags, and creates no file or folder (not even --out) wherever it runs."""
    import dataclasses

    from crsdata.models import get_recipe
    from crsdata.training.config import read_config_file

    monkeypatch.chdir(tmp_path)
    config_class = get_recipe(recipe).config_class
    shipped = read_config_file(get_recipe(recipe).default_config, config_class)
    code = main(["train", recipe, "--out", "model", "--data", "folder", "--seed", "3", "--print-config"])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == [f.name for f in dataclasses.fields(config_class)]
    assert printed["out"] == "model" and printed["data"] == ["folder"] and printed["seed"] == 3
    assert all(printed[key] == value for key, value in shipped.items() if key != "seed")
    assert list(tmp_path.iterdir()) == []


def test_llm_recipes_take_one_set_of_fine_tuning_flags(capsys: pytest.CaptureFixture) -> None:
    """The shared fine-tuning flags have the same names in every LLM recipe (grsu-scorer's former
    --gradient-accumulation is --gradient-accumulation-steps; the short form still parses as its prefix)."""
    for recipe in ("user-simulator", "grsu-scorer"):
        flags = ["--gradient-accumulation-steps", "3", "--warmup-ratio", "0.2", "--save-steps", "2"]
        assert main(["train", recipe, *flags, "--lora-layers", "1", "--print-config"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert (printed["gradient_accumulation_steps"], printed["warmup_ratio"]) == (3, 0.2)
        assert (printed["save_steps"], printed["lora_layers"]) == (2, 1)
    assert main(["train", "grsu-scorer", "--gradient-accumulation", "5", "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["gradient_accumulation_steps"] == 5
