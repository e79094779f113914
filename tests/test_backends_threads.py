"""Threads of the local backend on a shared machine: waiting threads sleep instead of spinning.

The speed itself is measured by ``benchmarks/simulate.py --competition`` (docs/benchmarks.md), not here.
"""

from __future__ import annotations

import os
import subprocess
import sys


def _policy_in_a_fresh_process(env: dict[str, str]) -> str:
    code = (
        "import os, sys; from crsdata.backends.threads import prefer_passive_waiting; "
        "passive = prefer_passive_waiting(); import torch; "
        "print(passive, os.environ.get('OMP_WAIT_POLICY'))"
    )
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], env=clean | env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_waiting_threads_sleep_unless_the_user_chose_a_policy():
    assert _policy_in_a_fresh_process({}) == "True PASSIVE"
    assert _policy_in_a_fresh_process({"OMP_WAIT_POLICY": "ACTIVE"}) == "False ACTIVE"


def test_the_command_sets_the_policy_before_torch_loads():
    # `crsdata simulate` must not import torch before run_command has set the policy.
    code = "import sys; from crsdata.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_crsdata_simulate_runs_with_sleeping_waits(tmp_path):
    code = (
        "import os, sys; import crsdata.simulate.job as job\n"
        "def stop(config):\n"
        "    print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules); raise SystemExit(0)\n"
        "job.make_backends = stop\n"
        "from crsdata.cli import main\n"
        f"main(['simulate', 'recllmsim', '--source', 'scenarios', '--n', '1', '--out', {str(tmp_path / 'o')!r}])\n"
    )
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "PASSIVE False"  # set, and torch not loaded before the models are
