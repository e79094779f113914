"""Training throughput of the Interplay recipes: which CPU setting to train the simulators with.

    python benchmarks/train.py --data out/redial-train-test --grounding catalog    # user role, ~10 min on 2 cores
    python benchmarks/train.py --data out/redial-train-test --variants lora-r8,full --steps 6

Every variant trains the embedded SmolLM2-135M with the recipe's own code (:mod:`crsdata.training.interplay`:
same sequences, TRL SFTTrainer) for ``--steps`` optimizer steps from the same seed, in a process of its own, so
that each has its own CPU time and peak memory (``os.wait4``). The first step (allocator and kernel warm-up) is
timed but not counted. Variants (:data:`VARIANTS`) change one thing at a time from ``lora-r8``: the LoRA rank,
a full fine-tune, LoRA on the top layers only, one thread against two, fp32 against bf16 autocast, random
batches against length-bucketed ones. Reported per variant: seconds per step,
real tokens per second (padding excluded, counted per step from the attention masks), the share of padding,
CPU seconds, peak RSS, trainable parameters and the loss of the first and last timed steps; then the ratio of
each variant's tokens/s to the baseline, the full fine-tune (``full``). Whether a setting *learns* is
decided by the training run's held-out scores, not by a few steps here. The load average is printed before and
after: other jobs on the machine change every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

# name -> overrides of InterplayTrainConfig over BASE; each changes one thing from lora-r8.
BASE: dict[str, Any] = {"lora": True, "lora_r": 8, "lora_alpha": 16, "threads": 2, "bf16": True, "bucketing": True}
VARIANTS: dict[str, dict[str, Any]] = {
    "lora-r8": {},
    "lora-r64": {"lora_r": 64, "lora_alpha": 128},
    "full": {"lora": False},
    "lora-r8-top8": {"lora_layers": 8},
    "lora-r8-1-thread": {"threads": 1},
    "lora-r8-fp32": {"bf16": False},
    "lora-r8-random-batches": {"bucketing": False},
}
BASELINE = "full"


def run_variant(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Trains one variant in this process and returns its step figures."""
    from transformers import TrainerCallback

    from crsdata.training.data import load_data_folder
    from crsdata.training.interplay import (
        InterplayTrainConfig,
        base_model,
        folders_catalog,
        load_tokenizer_and_model,
        prepare_sequences,
        simulation_options,
        train_sequences,
        training_records,
    )

    class StepClock(TrainerCallback):
        """Wall time and real tokens of every optimizer step after the first. Tokens are counted from each
        forward's attention mask: bucketed batches come longest first, so a mean length would misstate them."""

        def __init__(self) -> None:
            self.started = 0.0
            self.seconds: list[float] = []
            self.tokens: list[int] = []
            self.padded: list[int] = []
            self.step_tokens = self.step_padded = 0

        def count(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
            mask = kwargs.get("attention_mask")
            ids = kwargs.get("input_ids")
            if module.training and ids is not None:
                self.step_tokens += int(mask.sum()) if mask is not None else ids.numel()
                self.step_padded += ids.numel()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.perf_counter()
            self.step_tokens = self.step_padded = 0

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step > 1:
                self.seconds.append(time.perf_counter() - self.started)
                self.tokens.append(self.step_tokens)
                self.padded.append(self.step_padded)

    settings = {**BASE, **VARIANTS[name]}
    folder = load_data_folder(args.data)
    catalog = folders_catalog([folder])
    path, hub_id = base_model("embedded")
    tokenizer, model = load_tokenizer_and_model(path, "embedded")
    options = InterplayTrainConfig(grounding=args.grounding, tags=args.tags)
    grounded = simulation_options(options, args.role, catalog)
    records = training_records([folder], "train")
    if args.role == "recommender":
        records = records[: args.batch_size * (args.steps + 2) * 4]  # retrieval for every turn is slow
    data = prepare_sequences(records, args.role, tokenizer, catalog, max_length=args.max_length, seed=42, **grounded)
    mean_tokens = sum(min(len(ids), args.max_length) for ids in data.input_ids) / max(data.n, 1)
    with tempfile.TemporaryDirectory(prefix="crsdata-bench-train-") as out:
        config = InterplayTrainConfig(
            out=out,
            max_steps=args.steps,
            batch_size=args.batch_size,
            max_length=args.max_length,
            learning_rate=3e-4 if settings["lora"] else 5e-5,
            logging_steps=1,
            save_steps=0,
            **settings,
        )
        clock = StepClock()
        # On the decoder: peft calls the outer model's forward directly, which skips hooks on it.
        hook = model.get_decoder().register_forward_pre_hook(clock.count, with_kwargs=True)
        _, run = train_sequences(config, data, tokenizer, model, hub_id=hub_id, callbacks=[clock])
    hook.remove()
    step = sum(clock.seconds) / max(len(clock.seconds), 1)
    losses = [h["loss"] for h in run.loss_history]
    return {
        "variant": name,
        "settings": settings,
        "seconds_per_step": step,
        "tokens_per_second": sum(clock.tokens) / sum(clock.seconds) if clock.seconds else 0.0,
        "padding_share": 1 - sum(clock.tokens) / max(sum(clock.padded), 1),
        "mean_sequence_tokens": mean_tokens,
        "trainable_parameters": run.trainable_parameters,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "timed_steps": len(clock.seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="built folder with a train split (crsdata build redial ...)")
    parser.add_argument("--role", default="user", choices=("user", "recommender"))
    parser.add_argument("--grounding", default="catalog", choices=("catalog", "none"))
    parser.add_argument("--tags", default="", help="MovieLens tags.csv for the user's cues (grounding catalog)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per variant (first one not counted)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    parser.add_argument("--one", default="", help=argparse.SUPPRESS)  # a child process: one variant, JSON out
    args = parser.parse_args(argv)
    if args.one:
        print("BENCH-RESULT " + json.dumps(run_variant(args.one, args)), flush=True)
        return 0
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    print(f"load average before: {os.getloadavg()}", flush=True)
    rows = []
    for name in names:
        child = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--one", name]
        with tempfile.TemporaryFile(mode="w+") as log:
            started = time.perf_counter()
            process = subprocess.Popen(child, stdout=log, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            log.seek(0)
            text = log.read()
        found = [line for line in text.splitlines() if line.startswith("BENCH-RESULT ")]
        if status or not found:
            print(f"{name}: failed (status {status})\n{text[-2000:]}", flush=True)
            continue
        row = json.loads(found[-1].removeprefix("BENCH-RESULT "))
        row.update(cpu_seconds=usage.ru_utime + usage.ru_stime, wall_seconds=wall, peak_rss_mb=usage.ru_maxrss / 1024)
        rows.append(row)
        print(
            f"{name:24s} {row['seconds_per_step']:6.1f} s/step {row['tokens_per_second']:6.0f} tokens/s  "
            f"cpu {row['cpu_seconds']:5.0f}s / wall {wall:5.0f}s  peak {row['peak_rss_mb']:6.0f} MB  "
            f"trainable {row['trainable_parameters']:,}  loss {row['loss_first']:.3f} -> {row['loss_last']:.3f}",
            flush=True,
        )
    base = next((r["tokens_per_second"] for r in rows if r["variant"] == BASELINE), 0.0)
    if base:
        for row in rows:
            row["ratio_to_full"] = row["tokens_per_second"] / base
        print(
            "ratio to the full fine-tune (tokens/s): "
            + ", ".join(f"{r['variant']} {r['ratio_to_full']:.2f}" for r in rows)
        )
    print(f"load average after: {os.getloadavg()}", flush=True)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"role": args.role, "grounding": args.grounding, "baseline": BASELINE, "rows": rows}, handle, indent=1
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
