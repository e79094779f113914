"""Replay's generation speed beside ``crsdata simulate``'s, measured in the same run on the same machine.

Builds ReDial's official test split (once, into ``--work``), then runs, one after the other in child processes
(``nice -n 10``: the machine is shared), ``crsdata replay`` on ``--n`` dialogues and ``crsdata simulate interplay``
on ``--n`` personas of the same split, both with the kind's default models (the shipped fine-tuned simulators),
the same ``--batch-size`` and ``--max-new-tokens``. Prints each run's wall and CPU time, the load average before
it, the engine's generated tokens/s (from the run manifest), and the ratio replay / simulate (issue 18 targets
0.8x or better). Replay's prompts are longer (a persona and a real conversation) and its answers shorter.

    python benchmarks/replay.py [--n 32] [--data ../shared/data] [--work /tmp/crsdata-replay-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


def timed(command: list[str], out: Path) -> dict[str, float]:
    """Runs ``crsdata COMMAND`` niced; returns wall and CPU seconds, load before, and the engine's figures."""
    if out.exists():
        shutil.rmtree(out)
    load = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(["nice", "-n", "10", sys.executable, "-m", "crsdata.cli", *command], check=True)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    session = json.loads((out / ".simulate-run" / "manifest.json").read_text())["sessions"][-1]
    print(
        f"crsdata {' '.join(command)}\n  load {load:.2f} before; wall {wall:.1f} s, CPU {cpu:.1f} s; engine "
        f"{session['completion_tokens']} generated tokens in {session['wall_seconds']:.1f} s: "
        f"{session['tokens_per_second']:.1f} tokens/s, {session['requests']} requests in {session['calls']} calls"
    )
    return {"wall": wall, "cpu": cpu, "tokens_per_second": session["tokens_per_second"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="dialogues of each run (default 32)")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("/tmp/crsdata-replay-bench"))
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    redial = args.data / "redial"
    built = args.work / "redial-test"
    if not (built / "README.md").is_file():
        build = ["build", "redial", "--input", str(redial / "official" / "test_data.jsonl"), "--out", str(built)]
        build += ["--catalog", str(redial / "redial__id2info.json")]
        subprocess.run([sys.executable, "-m", "crsdata.cli", *build], check=True)
    common = ["--source", str(built), "--split", "test", "--n", str(args.n), "--seed", "0"]
    common += ["--max-new-tokens", str(args.max_new_tokens), "--batch-size", str(args.batch_size), "--no-progress"]
    replay = timed(["replay", *common, "--out", str(args.work / "replay")], args.work / "replay")
    simulate = timed(["simulate", "interplay", *common, "--out", str(args.work / "simulate")], args.work / "simulate")
    ratio = replay["tokens_per_second"] / simulate["tokens_per_second"]
    print(
        f"replay {replay['tokens_per_second']:.1f} tokens/s, simulate {simulate['tokens_per_second']:.1f} tokens/s: "
        f"ratio {ratio:.2f}x (target 0.8x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
