"""The registry of simulation kinds: a new kind is one class and one registry line, and the command runs it
with its own options, source, card hooks and export, without a line of the command changing."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fixtures.fake_backends import FakeBackend
from fixtures.fake_simulation import TalkSimulation

from crsdata.build import BuildResult
from crsdata.cli import main
from crsdata.export import export_folder
from crsdata.schema import new_dialogue
from crsdata.simulate.base import Simulation, SimulationOptions, option
from crsdata.simulate.kinds import SIMULATIONS


@dataclass
class EchoOptions(SimulationOptions):
    greeting: str = option("hello", "what the user says first")
    shout: bool = option(False, "upper-case every turn of the export (changes only the export)", in_run_config=False)


class EchoSimulation(TalkSimulation):
    """A kind that writes its own results file instead of a dataset folder, as a replay job would."""

    name = "echo"
    summary = "a test kind that echoes"
    description = "Echoes. --source is a built folder."
    examples = "crsdata simulate echo --source out/x --n 2 --out out/echo"
    default_max_turns = 4
    output_source = "echo-sim"
    options_class = EchoOptions

    def settings(self) -> dict[str, Any]:
        return {"echo_version": 1}

    def request(self, state, role):
        request = super().request(state, role)
        request.messages[0]["content"] += " " + self.options.greeting
        return request

    def card_sections(self, records: list[dict[str, Any]], counters: Counter[str]) -> dict[str, str]:
        return {"Echo": f"{len(records)} echoes"}

    def export(self, result, source, config):
        from crsdata.simulate.base import Exported

        texts = [[t["text"] for t in r["turns"]] for r in result.records]
        if self.options.shout:
            texts = [[t.upper() for t in turns] for turns in texts]
        config.out.mkdir(parents=True, exist_ok=True)
        (config.out / "results.json").write_text(json.dumps({"split": source.split, "texts": texts}))
        return Exported(config.out / "results.json", len(texts), {}, "results file")


@pytest.fixture
def echo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setitem(SIMULATIONS, "echo", EchoSimulation)
    backend = FakeBackend("echo-model")
    monkeypatch.setattr("crsdata.simulate.job.make_backends", lambda config: {"user": backend, "recommender": backend})
    records = [new_dialogue(f"src-{i}", "fake", "validation", [], task="chat") for i in range(5)]
    return export_folder(BuildResult(source="fake", splits={"validation": records}), tmp_path / "built")


def test_a_registered_kind_gets_its_help_and_options(echo, capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "echo        a test kind that echoes" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["simulate", "echo", "--help"])
    text = capsys.readouterr().out
    assert "--greeting GREETING" in text and "--shout" in text and "Echoes." in text and "--prompt-style" not in text


def test_a_registered_kind_runs_through_the_command_with_its_own_export(echo, tmp_path, capsys):
    out = tmp_path / "echo"
    args = ["simulate", "echo", "--source", str(echo), "--n", "4", "--out", str(out), "--no-progress"]
    assert main([*args, "--greeting", "hi"]) == 0
    assert "into " + str(out / "results.json") + " (results file)" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["split"] == "validation" and len(results["texts"]) == 4
    manifest = json.loads((out / ".simulate-run" / "manifest.json").read_text())
    assert manifest["config"]["options"] == {"greeting": "hi"}  # shout changes no dialogue: not recorded
    assert manifest["config"]["settings"] == {"echo_version": 1} and manifest["config"]["max_turns"] == 4
    # The kind's own option is part of the run configuration: another greeting is refused.
    assert main([*args, "--greeting", "hey"]) == 1
    assert "greeting" in capsys.readouterr().err
    assert main([*args, "--greeting", "hi", "--shout"]) == 0
    assert json.loads((out / "results.json").read_text())["texts"][0][0].isupper()


def test_every_kind_declares_what_the_command_needs():
    for name, kind in SIMULATIONS.items():
        assert issubclass(kind, Simulation) and kind.name == name
        assert kind.summary and kind.description and kind.examples and kind.output_source and kind.card_info
        assert issubclass(kind.options_class, SimulationOptions)
        assert f"crsdata simulate {name}" in kind.examples
