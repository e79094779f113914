"""Options from one dataclass per command (crsdata.commands.config_file.CommandParser, TRL's TrlParser): the
flags of `simulate KIND`, `replay`, `crs-eval` and `space` are their config dataclasses' fields, with the fields'
defaults; `--config FILE.yaml` fills the same fields and a flag on the command line overrides it. Parsing only: the
runs themselves are tested in test_simulate_cli.py, test_replay_command.py, test_grsu_eval.py and test_space.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from crsdata.cli import build_parser, main
from crsdata.commands import crs_eval, simulate
from crsdata.grsu.evaluation import CrsEvalConfig
from crsdata.simulate.job import SimulateConfig
from crsdata.simulate.kinds import SIMULATIONS

REQUIRED = {
    "simulate": ["--source", "s", "--n", "2", "--out", "o"],
    "replay": ["--source", "s", "--out", "o"],
    "crs-eval": ["--source", "s", "--crs", "popularity", "--protocol", "grsu", "--out", "o"],
}


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def field_defaults(cls: type, exclude: tuple[str, ...] = ()) -> dict[str, object]:
    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        for f in dataclasses.fields(cls)
        if f.name not in exclude
        and (f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
    }


@pytest.mark.parametrize("kind", sorted(SIMULATIONS))
def test_every_simulate_flag_defaults_to_its_field(kind: str) -> None:
    """Each flag defaults to its field, but where the kind changes it (``flag_defaults``: replay decodes
    greedily); `crsdata replay` and `crsdata simulate replay` agree."""
    args = parse("simulate", kind, *REQUIRED["simulate"])
    changed = {flag: default for flag, (default, _) in SIMULATIONS[kind].flag_defaults.items()}
    expected = {
        **field_defaults(SimulateConfig, simulate.NOT_FLAGS),
        **field_defaults(SIMULATIONS[kind].options_class),
        **changed,
    }
    assert {name: getattr(args, name) for name in expected} == expected
    assert changed == ({"temperature": 0.0} if kind == "replay" else {})
    if kind == "replay":
        assert parse("replay", *REQUIRED["replay"]).temperature == 0.0
    config = simulate.config_from_args(args, "simulate")
    assert (config.kind, config.n, str(config.out), config.source) == (kind, 2, "o", "s")


def test_space_flags_are_the_space_config_and_serving_fields() -> None:
    from crsdata.commands.space import ServeOptions
    from crsdata.space.config import SpaceConfig

    args = parse("space")
    expected = {**field_defaults(SpaceConfig), **field_defaults(ServeOptions)}
    assert {name: getattr(args, name) for name in expected} == expected
    args = parse("space", "--timeout", "5", "--data", "a", "--data", "b", "--no-warm-up", "--port", "9")
    assert (args.timeout_s, args.data, args.no_warm_up, args.port) == (5.0, ["a", "b"], True, 9)


def test_crs_eval_flags_are_the_config_fields() -> None:
    args = parse("crs-eval", *REQUIRED["crs-eval"])
    expected = field_defaults(CrsEvalConfig, crs_eval.NOT_FLAGS)
    assert {name: getattr(args, name) for name in expected} == expected
    args = parse(
        "crs-eval", *REQUIRED["crs-eval"], "--n", "all", "--quiet", "--beam_width", "2", "--zero-shot-size", "9"
    )
    assert (args.n, args.progress, args.beam_width, args.zero_shot_size) == (None, False, 2, 9)


def test_replay_has_no_recommender_model_and_an_optional_n() -> None:
    args = parse("replay", *REQUIRED["replay"])
    assert args.n is None and args.kind == "replay" and not hasattr(args, "recommender_model")
    with pytest.raises(SystemExit):
        parse("replay", *REQUIRED["replay"], "--recommender-model", "x")


def test_both_spellings_switches_and_repeatable_flags() -> None:
    args = parse(
        "simulate", "interplay", *REQUIRED["simulate"], "--max_turns", "4", "--top-p", "0.5", "--no-progress",
        "--catalog", "a.json", "--catalog", "b.json", "--slurm-arg", "mem=1G", "--slurm-arg", "qos=low",
    )  # fmt: skip
    assert (args.max_turns, args.top_p, args.progress) == (4, 0.5, False)
    assert args.catalog == [Path("a.json"), Path("b.json")] and args.slurm_args == ["mem=1G", "qos=low"]


def test_config_file_then_flags(tmp_path: Path) -> None:
    run = tmp_path / "run.yaml"
    run.write_text(
        "source: s\nn: 2\nout: o\nmax-turns: 6\nseed: 3\ncatalog: [a.json, b.json]\nno-progress: true\n"
        "slurm_args: [mem=1G]\n"
    )
    args = parse("simulate", "interplay", "--config", str(run), "--seed", "5", "--catalog", "c.json")
    assert (args.max_turns, args.seed, args.progress, args.n) == (6, 5, False, 2)  # --seed over the file's 3
    assert args.catalog == [Path("c.json")]  # a list flag replaces the file's list
    assert args.slurm_args == ["mem=1G"]
    args = parse("simulate", "interplay", f"--config={run}")
    assert args.catalog == [Path("a.json"), Path("b.json")]


def test_a_bad_config_file_is_one_line_naming_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run.yaml"
    run.write_text("source: s\nout: o\nprotocl: grsu\n")
    assert main(["crs-eval", "--config", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("crsdata crs-eval: error:") and len(err.splitlines()) == 1
    assert str(run) in err and "protocl" in err and "not an option of this command" in err
    assert main(["replay", "--config", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read the config file" in capsys.readouterr().err
    run.write_text("- a list\n")
    assert main(["simulate", "recllmsim", "--config", str(run)]) == 1
    assert "expected a mapping" in capsys.readouterr().err


def test_help_names_each_flag_once_with_its_default(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["simulate", "interplay", "--help"])
    text = capsys.readouterr().out
    assert "--max-turns" in text and "--max_turns" not in text and "--no-progress" in text
    assert "tokens per generated turn (default 128)" in " ".join(text.split())
    assert "interplay options:" in text and "scale-out:" in text
