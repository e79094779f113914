"""Wall time and peak memory to build the three real sample corpora (ReDial, INSPIRED, RecLLMSim).

Baseline: the budget the project set for this job on a 2-core machine, 60 s and 2 GB peak for the three
together. The builds run in one child process (as a user's `crsdata build` calls would, back to back) so its
peak resident memory is measured alone; each build's time is reported too.

    python benchmarks/build.py [--data ../shared/data] [--out /tmp/crsdata-bench]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUDGET_SECONDS = 60.0
BUDGET_BYTES = 2 * 1024**3

CHILD = r"""
import json, sys, time
from crsdata.cli import main
jobs = json.loads(sys.argv[1])
times = {}
for name, argv in jobs:
    started = time.perf_counter()
    assert main(argv) == 0, name
    times[name] = time.perf_counter() - started
print("TIMES " + json.dumps(times))
"""


def jobs(data: Path, out: Path) -> list[tuple[str, list[str]]]:
    redial = data / "redial"
    return [
        (
            "redial",
            [
                "build",
                "redial",
                "--input",
                str(redial / "redial__valid_data.jsonl"),
                "--catalog",
                str(redial / "redial__id2info.json"),
                "--out",
                str(out / "redial"),
            ],
        ),
        (
            "inspired",
            [
                "build",
                "inspired",
                "--input",
                str(data / "inspired" / "dev.tsv"),
                "--input",
                str(data / "inspired" / "test.tsv"),
                "--catalog",
                str(redial / "redial__id2info.json"),
                "--catalog",
                str(data / "movielens-sample" / "movies_w_keywords.csv"),
                "--out",
                str(out / "inspired"),
            ],
        ),
        ("recllmsim", ["build", "recllmsim", "--input", str(data / "recllmsim"), "--out", str(out / "recllmsim")]),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="crsdata-bench-"))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(jobs(args.data, out))], capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        return done.returncode
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # Linux reports KiB
    times = json.loads(done.stdout.split("TIMES ", 1)[1].splitlines()[0])
    for name, seconds in times.items():
        print(f"{name:<10} {seconds:6.1f} s")
    print(
        f"total wall time (process start included): {wall:.1f} s  "
        f"= {wall / BUDGET_SECONDS:.2f}x the {BUDGET_SECONDS:.0f} s budget"
    )
    print(f"peak resident memory: {peak / 1024**2:.0f} MiB  = {peak / BUDGET_BYTES:.2f}x the 2 GiB budget")
    return 0 if wall <= BUDGET_SECONDS and peak <= BUDGET_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
