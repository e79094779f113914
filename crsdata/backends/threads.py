"""CPU threads for the local backend on a machine shared with other jobs.

torch runs each operator on a team of OpenMP threads that meet at a barrier when the operator ends. When another
process holds one of the cores, the thread scheduled behind it arrives late at every barrier, and a decoding step
(hundreds of operators) waits for it each time. With GNU OpenMP's default waiting, the threads that arrived first
spin on their cores before they sleep, burning the time slices the late one needs.

Measured with ``benchmarks/simulate.py --competition`` on 2 cores shared with other jobs (docs/benchmarks.md, engine
tokens/s alone / beside a CPU-bound process): torch's two threads with default waits 1.7 / under 1.6 (no backend
call finished in 120 s); one thread 11.7 / 4.1; the thread count set to the cores other processes leave free
(re-measured every 5 s) 3.1 / 2.4, erratic (a round alone and a round beside the competitor finished no call: with
default waits, two threads on a busy core stall again); two threads whose waits sleep (``OMP_WAIT_POLICY=PASSIVE``)
10.7 / 7.5. So ``crsdata simulate`` lets waiting threads sleep and keeps torch's thread count (one per core);
``--threads N`` still fixes the count, and a policy the user set in the environment is kept. The thread count
changes no token in float32 where we checked (SmolLM2-135M, eight prompts, 64 sampled tokens each, one against two
threads: tests/test_backends_local.py).
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_waiting() -> bool:
    """Sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set a policy or torch is already loaded (libgomp reads the
    variable when it loads, so later it would not matter); returns whether the policy in force is passive."""
    if WAIT_POLICY not in os.environ and "torch" not in sys.modules:
        os.environ[WAIT_POLICY] = "PASSIVE"
    return os.environ.get(WAIT_POLICY, "").upper() == "PASSIVE"
