"""Training throughput of the Interplay recipes: LoRA against a full fine-tune, one sequence per dialogue.

    python benchmarks/train.py --data out/redial-train-test             # user role, 6 steps each, ~10 min on 2 cores
    python benchmarks/train.py --data out/redial-train-test --role recommender --steps 4

Both variants train the embedded SmolLM2-135M with the recipe's own code (:mod:`crsdata.training.interplay`:
same sequences, TRL SFTTrainer, bf16 autocast, batches of similar length) for ``--steps`` optimizer steps from
the same seed; the first step (warm-up of the allocator and kernels) is timed but not counted. Reported per
variant: seconds per step and tokens per second (real tokens, padding excluded), trainable parameters, and the
ratio LoRA / full (the baseline is the full fine-tune). It also prints how many tokens one example per turn
would process instead (every prefix read again), the layout the recipe avoids. The load average is printed
before and after, since other jobs on the machine change every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from typing import Any

from transformers import TrainerCallback

from crsdata.training.data import load_data_folder
from crsdata.training.interplay import (
    IGNORE_INDEX,
    InterplayTrainConfig,
    base_model,
    folders_catalog,
    load_tokenizer_and_model,
    prepare_sequences,
    train_sequences,
    training_records,
)


class StepClock(TrainerCallback):
    """Wall time of every optimizer step after the first."""

    def __init__(self) -> None:
        self.started: float | None = None
        self.seconds: list[float] = []

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.started is not None and state.global_step > 1:
            self.seconds.append(time.perf_counter() - self.started)


def per_turn_tokens(labels: list[list[int]]) -> int:
    """Tokens that one example per trained turn would process: each turn re-reads everything before it."""
    total = 0
    for row in labels:
        for j in range(len(row)):
            starts_turn = row[j] != IGNORE_INDEX and (j == 0 or row[j - 1] == IGNORE_INDEX)
            if starts_turn:
                end = j
                while end < len(row) and row[end] != IGNORE_INDEX:
                    end += 1
                total += end
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="built folder with a train split (crsdata build redial ...)")
    parser.add_argument("--role", default="user", choices=("user", "recommender"))
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per variant (first one not counted)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--variants", default="lora,full", help="comma-separated: lora, full")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    args = parser.parse_args(argv)

    print(f"load average before: {os.getloadavg()}")
    folder = load_data_folder(args.data)
    catalog = folders_catalog([folder])
    path, hub_id = base_model("embedded")
    tokenizer, _ = load_tokenizer_and_model(path, "embedded")
    records = training_records([folder], "train")
    data = prepare_sequences(records, args.role, tokenizer, catalog, max_length=args.max_length, seed=42)
    cut = [min(len(ids), args.max_length) for ids in data.input_ids]
    mean_tokens = sum(cut) / len(cut)
    per_turn = per_turn_tokens(data.labels)
    print(
        f"{data.n} {args.role} sequences, {sum(cut)} tokens (mean {mean_tokens:.0f}); one example per turn would "
        f"process {per_turn} tokens ({per_turn / sum(cut):.1f}x)"
    )
    results = {}
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        _, model = load_tokenizer_and_model(path, "embedded")
        with tempfile.TemporaryDirectory(prefix="crsdata-bench-train-") as out:
            config = InterplayTrainConfig(
                out=out,
                max_steps=args.steps,
                batch_size=args.batch_size,
                max_length=args.max_length,
                lora=variant == "lora",
                learning_rate=3e-4 if variant == "lora" else 5e-5,
                logging_steps=1,
                threads=args.threads,
            )
            clock = StepClock()
            _, run = train_sequences(config, data, tokenizer, model, hub_id=hub_id, callbacks=[clock])
        step = sum(clock.seconds) / max(len(clock.seconds), 1)
        tokens = mean_tokens * args.batch_size / step if step else 0.0
        results[variant] = tokens
        print(
            f"{variant:5s} {step:6.1f} s/step  {tokens:6.0f} tokens/s  trainable {run.trainable_parameters:,} of "
            f"{run.total_parameters:,}  loss {run.first_loss:.3f} -> {run.last_loss:.3f}  "
            f"({len(clock.seconds)} timed steps, {dataclasses.asdict(run)['seconds']:.0f}s in all)"
        )
    if "lora" in results and "full" in results and results["full"]:
        print(f"ratio lora / full (tokens/s): {results['lora'] / results['full']:.2f}")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
