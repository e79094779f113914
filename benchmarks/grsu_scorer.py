"""GRSU scorer training throughput: tokens/s of ``crsdata train grsu-scorer``'s SFT step on this machine.

    python benchmarks/grsu_scorer.py --data out/redial --steps 3 --batch-size 4

Builds the recipe's instruction rows from the train split of a built folder (as ``crsdata train grsu-scorer``
does: scoring pairs with random, popular and similar negatives, and critique examples) and runs
:meth:`GrsuScorerRecipe.fit` for ``--steps`` optimizer steps with each setting of ``--lora-layers`` (adapters on
the top N of SmolLM2-135M's 30 layers; 0 = all, the baseline), on the embedded SmolLM2-135M-Instruct unless
``--base``. Reported per setting: trained tokens (prompt and answer, padding excluded, as TRL counts them), wall
seconds of the training loop and tokens/s, and the ratio to the baseline (all layers). The first step is part
of the time (there is no separate warm-up), so use a few steps. The load average is printed before and after:
other jobs on a shared machine change every figure.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a built folder with train and test splits")
    parser.add_argument("--base", default="embedded")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lora-layers", type=int, nargs="+", default=[0, 8], help="settings to compare (0: all)")
    parser.add_argument("--context-chars", type=int, default=500)
    args = parser.parse_args()

    from crsdata.backends.embedded import resolve_model
    from crsdata.models import get_recipe
    from crsdata.training import load_data_folders, resolve_config

    recipe = get_recipe("grsu-scorer")
    print(f"load average before: {load_average()}")
    results = {}
    for layers in args.lora_layers:
        with tempfile.TemporaryDirectory() as work:
            flags = {
                "data": [args.data],
                "out": str(Path(work) / "out"),
                "max_steps": args.steps,
                "batch_size": args.batch_size,
                "lora_layers": layers,
                "context_chars": args.context_chars,
                "max_train_turns": args.steps * args.batch_size,
            }
            config = resolve_config(recipe.config_class, defaults=recipe.default_config, flags=flags)
            prepared = recipe.prepare(config, load_data_folders(config.data))
            numbers = recipe.fit(config, prepared["rows"], resolve_model(config.base), Path(work))["numbers"]
        results[layers] = numbers
        print(
            f"lora_layers={layers or 'all'}: {numbers['tokens_seen']} tokens in {numbers['train_seconds']:.1f} s = "
            f"{numbers['tokens_per_second']:.1f} tokens/s ({numbers['trainable_parameters']:,} trainable parameters, "
            f"{numbers['optimizer_steps']} steps of {args.batch_size})"
        )
    baseline = results.get(0)
    if baseline:
        for layers, numbers in results.items():
            if layers:
                ratio = numbers["tokens_per_second"] / baseline["tokens_per_second"]
                print(f"lora_layers={layers} vs all layers: {ratio:.2f}x tokens/s")
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
