"""Wall time, CPU time and peak memory of each `crsdata train intent-classifier` kind on the whole RecLLMSim data.

Each kind runs as its own `crsdata train` process (what a user types), with the recipe's default config.yaml,
so the figures include start-up, reading the data folder, training, test scoring and writing the model folder.
Baseline: the `tfidf-svm` kind, the paper's own classical model; every other kind prints its ratio to it. The
test scores are printed next to the timings so a slow run that learned nothing shows up.

    python benchmarks/intents.py [--data out/recllmsim] [--kinds tfidf-svm zero-shot encoder] [--out DIR]

The encoder kind fine-tunes MiniLM until validation stops improving: about an hour on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASELINE = "tfidf-svm"
ROOT = Path(__file__).resolve().parents[1]


# The child reports its own peak memory and CPU time (all threads), so each kind is measured alone.
CHILD = r"""
import json, resource, sys
from crsdata.cli import main
code = main(sys.argv[1:])
usage = resource.getrusage(resource.RUSAGE_SELF)
print("USAGE " + json.dumps({"cpu": usage.ru_utime + usage.ru_stime, "peak_mib": usage.ru_maxrss / 1024}))
sys.exit(code)
"""


def run_kind(kind: str, data: Path, out: Path) -> dict[str, float]:
    """Runs one kind in a child process: wall time, the child's CPU time and peak resident memory, its scores."""
    argv = ["train", "intent-classifier", "--kind", kind, "--data", str(data), "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    usage = json.loads(done.stdout.split("USAGE ", 1)[1].splitlines()[0])
    results = json.loads((out / "results.json").read_text())
    return {"wall": wall, **usage, "accuracy": results["accuracy"], "macro_f1": results["macro_f1"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT / "out" / "recllmsim", help="built RecLLMSim folder")
    parser.add_argument("--kinds", nargs="+", default=["tfidf-svm", "zero-shot"], help="kinds to time, in order")
    parser.add_argument("--out", type=Path, default=None, help="where the model folders go (default: a temp dir)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="crsdata-intents-"))
    if not args.data.is_dir():
        source = ROOT.parent / "shared" / "data" / "recllmsim"
        build = ["build", "recllmsim", "--input", str(source), "--out", str(args.data)]
        subprocess.run([sys.executable, "-c", CHILD, *build], check=True, capture_output=True)
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.1f}")
    figures = {kind: run_kind(kind, args.data, out / kind) for kind in args.kinds}
    base = figures.get(BASELINE)
    for kind, f in figures.items():
        ratio = f" = {f['wall'] / base['wall']:.1f}x {BASELINE}" if base and kind != BASELINE else ""
        print(
            f"{kind:<10} wall {f['wall']:7.1f} s{ratio}  cpu {f['cpu']:7.1f} s  peak {f['peak_mib']:6.0f} MiB  "
            f"test accuracy {f['accuracy']:.4f}  macro-F1 {f['macro_f1']:.4f}"
        )
    print(f"load average after {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
