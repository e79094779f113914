"""``crsdata train RECIPE --data FOLDER... --out FOLDER [--config FILE] [--base MODEL] [--max-steps N]``;
``--print-config`` prints the resolved config as JSON and exits."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

DESCRIPTION = """\
Train one of the models crsdata publishes from built dataset folders, and write a Hub-layout model folder:
the model files, `results.json` (held-out metrics, split sizes, seed), `crsdata.json` and a model card whose
YAML names the base model, the datasets with their versions and the measured results. `crsdata publish`
uploads the folder as a model repository.

Every recipe lives in models/<recipe>/ with its default config.yaml and card template. Its settings come from
that config.yaml, then --config FILE, then the flags (each config key is also a flag: max_steps is
--max-steps). `crsdata train RECIPE --help` lists them.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from crsdata.models import RECIPES, get_recipe

    parser = subparsers.add_parser(
        "train",
        help="train a simulator, scorer or classifier recipe into a model folder",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # The recipes' parsers are crsdata's command parser (TRL's TrlParser): a recipe's config fields are its flags.
    recipes = parser.add_subparsers(dest="recipe", metavar="RECIPE", required=True)
    for name in RECIPES:
        recipe = get_recipe(name)
        sub = recipes.add_parser(
            name,
            dataclass_types=[recipe.config_class],
            reads_config=False,  # --config is layered over the recipe's config.yaml below (resolve_config)
            help=recipe.summary,
            description=recipe.description or recipe.summary,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("--config", help="YAML file of config keys (over the recipe's config.yaml)")
        sub.add_argument(
            "--print-config",
            action="store_true",
            help="print the resolved config (config.yaml, then --config, then flags) as JSON and exit; writes nothing",
        )
        from crsdata.training.config import read_config_file

        defaults = (
            read_config_file(recipe.default_config, recipe.config_class) if recipe.default_config.is_file() else {}
        )
        only_typed_flags(sub, recipe.config_class, defaults)
        sub.set_defaults(func=run)


def only_typed_flags(parser: argparse.ArgumentParser, cls: type, defaults: dict[str, Any]) -> None:
    """The config fields' flags leave out what was not typed, so that ``resolve_config`` layers exactly the typed
    flags over the YAML files; their help shows the recipe's default (its config.yaml, else the field's)."""
    from crsdata.training.config import parse_bool

    fields = {f.name: f for f in dataclasses.fields(cls)}
    for action in parser._actions:
        if action.dest not in fields or not action.option_strings:
            continue
        f = fields[action.dest]
        shown = defaults.get(f.name, f.default if f.default is not dataclasses.MISSING else f.default_factory())  # type: ignore[misc]
        negation = all(o.startswith("--no") and o[4:].replace("-", "_") == f.name for o in action.option_strings)
        if action.help and action.help is not argparse.SUPPRESS and not negation:
            flag = "--" + f.name.replace("_", "-")
            switch = f"; {flag} true|false" if isinstance(shown, bool) else ""
            action.help = f"{action.help} (default: {shown}{switch})"
        if action.type is bool:  # a list of booleans: bool("false") would be True
            action.type = parse_bool
        action.default = argparse.SUPPRESS


def run(args: argparse.Namespace) -> int:
    from crsdata.models import get_recipe
    from crsdata.training import resolve_config, run_recipe
    from crsdata.training.config import config_as_dict

    recipe = get_recipe(args.recipe)
    ignored = ("command", "recipe", "config", "print_config", "func", "debug")
    flags = {k: v for k, v in vars(args).items() if k not in ignored}
    config = resolve_config(recipe.config_class, defaults=recipe.default_config, config_file=args.config, flags=flags)
    if args.print_config:
        print(json.dumps(config_as_dict(config), indent=2))
        return 0
    started = time.perf_counter()
    result = run_recipe(recipe, config)
    elapsed = time.perf_counter() - started
    print(f"trained {recipe.name} into {config.out} in {elapsed:.0f}s")
    print(json.dumps({**result.metrics, **result.split_sizes, "seed": config.seed}, indent=2))
    return 0
