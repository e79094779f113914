"""Wall time of the default CPU replay sample: ReDial's official test split, the embedded SmolLM2 as the user.

Builds the official test split (once, into ``--work``), then runs ``crsdata replay`` on a fixed sample of it
in a child process (``nice -n 10``: the machine is shared) and prints the wall time, the load average before and
after, the child's peak memory, the engine's own figures from the run manifest, and SR/ET/FR.

Baseline: the batched run engine's self-play throughput in docs/benchmarks.md ("Simulation", run (a): 64.5
generated tokens/s for the same model on the same machine); replay drives the same engine with longer prompts
(a persona and a real conversation) and short answers, so its tokens/s should be of that order.

    python benchmarks/replay.py [--n 50] [--data ../shared/data] [--work /tmp/crsdata-replay-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

BASELINE_TOKENS_PER_SECOND = 64.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50, help="dialogues of the sample (default 50)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/crsdata-replay-bench"))
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    redial = args.data / "redial"
    built = args.work / "redial-test"
    cli = [sys.executable, "-m", "crsdata.cli"]
    if not (built / "README.md").is_file():
        build = ["build", "redial", "--input", str(redial / "official" / "test_data.jsonl"), "--out", str(built)]
        build += ["--catalog", str(redial / "redial__id2info.json")]
        build += ["--catalog", str(redial / "official" / "movies_with_mentions.csv")]
        subprocess.run([*cli, *build], check=True)
    out = args.work / f"replay-n{args.n}"
    command = ["replay", "--source", str(built), "--split", "test", "--n", str(args.n), "--out", str(out)]
    command += ["--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size), "--no-progress"]
    if (out / ".simulate-run").exists():
        raise SystemExit(f"{out} holds a run: delete it for a fresh measurement")
    load_before = os.getloadavg()
    started = time.perf_counter()
    subprocess.run(["nice", "-n", "10", *cli, *command], check=True)
    seconds = time.perf_counter() - started
    load_after = os.getloadavg()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    session = json.loads((out / ".simulate-run" / "manifest.json").read_text())["sessions"][-1]
    results = json.loads((out / "results.json").read_text())
    tokens_per_second = session["tokens_per_second"]
    print(f"command: crsdata {' '.join(command)}")
    print(f"wall time {seconds:.1f} s (process start and model load included), peak memory {peak:.0f} MiB")
    print("load average before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f}".format(*load_before, *load_after))
    print(
        f"engine: {session['dialogues']} dialogues, {session['requests']} requests in {session['calls']} calls, "
        f"{session['completion_tokens']} generated tokens in {session['wall_seconds']:.1f} s "
        f"({session['generate_seconds']:.1f} s generating): {tokens_per_second:.1f} tokens/s, "
        f"{session['dialogues_per_minute']:.2f} dialogues/min"
    )
    print(
        f"ratio to the self-play baseline ({BASELINE_TOKENS_PER_SECOND} tokens/s): "
        f"{tokens_per_second / BASELINE_TOKENS_PER_SECOND:.2f}x"
    )
    rates = ", ".join(f"{k.upper()} {results[k]:.3f} {results['intervals'].get(k)}" for k in ("sr", "et", "fr"))
    print(f"{rates}; n_dialogues {results['n_dialogues']}, n_skipped {results['n_skipped']} {results['skipped']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
