"""Where the tasks of a distributed run go and which server answers them: :class:`ScaleOutConfig`.

Nothing here changes a dialogue: the same run on 1 task or 64, on a laptop, Slurm or Ray, writes the same records
(against a server that answers a request the same way each time, see the package doc).
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

from crsdata.errors import BadInputError
from crsdata.simulate.job import EXECUTORS, SERVERS  # named with the job's options, which offer them

__all__ = ["EXECUTORS", "SERVERS", "ScaleOutConfig", "parse_key_values"]


@dataclass
class ScaleOutConfig:
    """How a distributed run is executed.

    ``executor``: ``local`` (processes on this machine), ``slurm`` (a job array, submitted with ``sbatch``) or
    ``ray`` (tasks on a Ray cluster: ``ray_address``, else ``RAY_ADDRESS``, else a local cluster started for the
    run). ``tasks``: how many shards the dialogues are split into; each task is one datatrove rank with its own
    output files, checkpoints and completion marker. ``workers``: tasks running at once (-1: all).
    ``logging_dir``: datatrove's logs, per-task stats and completion markers (default ``<run dir>/scaleout/logs``).

    Exactly one of ``endpoint`` (the base URL of a running OpenAI-compatible server: vLLM, TGI, ``transformers
    serve``, Ollama) and ``server`` (``"vllm"``: each task starts its own vLLM on its GPU with datatrove's
    ``VLLMServer``; both roles must then use one model). ``concurrency``: dialogues in flight per task, each with at
    most one request at the server. ``request_timeout_s``: per request. ``api_key_env``: environment variable
    holding the endpoint's key, read inside each task (never written to the run files). ``request_cache``: keep
    datatrove's per-request answer cache (sqlite), so that dialogues cut by a kill replay their answers instead of
    asking again; off by default, since it cost a task most of its request rate (docs/benchmarks.md) and seeded
    requests get the same answers from a server that honours seeds.

    vLLM: ``model_max_context`` (``--max-model-len``), ``tensor_parallel``, and ``server_args`` passed to
    ``vllm serve`` as ``--KEY=VALUE``. Slurm: ``slurm_partition`` (required), ``slurm_time``, ``slurm_args`` (more
    ``#SBATCH`` lines), ``env_command`` (how a job activates the environment; default: source the virtual
    environment this process runs in). Slurm and Ray: ``cpus_per_task``, ``mem_per_cpu_gb``, ``gpus_per_task``
    (default 1 with ``server="vllm"``, else 0).
    """

    executor: str
    tasks: int = 1
    workers: int = -1
    logging_dir: str | None = None
    endpoint: str | None = None
    server: str | None = None
    concurrency: int = 32
    request_timeout_s: float = 600.0
    api_key_env: str = "OPENAI_API_KEY"
    request_cache: bool = False
    model_max_context: int = 8192
    # --max-model-len: prompts are trimmed to this context (oldest turns first) before they are sent; None: no
    # trimming against an endpoint, ``model_max_context`` against the tasks' own vLLM
    max_model_len: int | None = None
    tensor_parallel: int = 1
    server_args: dict[str, Any] = field(default_factory=dict)
    slurm_partition: str = ""
    slurm_time: str = "24:00:00"
    slurm_args: dict[str, Any] = field(default_factory=dict)
    env_command: str | None = None
    job_name: str = "crsdata-simulate"
    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 2.0
    gpus_per_task: int | None = None
    ray_address: str | None = None

    def check(self) -> None:
        """Raises BadInputError naming the option for anything that cannot run."""

        def bad(option: str, message: str) -> BadInputError:
            return BadInputError("", "", option, message, "bad-option")

        if self.executor not in EXECUTORS:
            raise bad("--executor", f"must be one of {', '.join(EXECUTORS)}, not {self.executor!r}")
        if self.tasks < 1:
            raise bad("--tasks", "must be at least 1")
        if self.workers != -1 and self.workers < 1:
            raise bad("--workers", "must be at least 1 (or -1 for all tasks at once)")
        if self.concurrency < 1:
            raise bad("--batch-size", "must be at least 1")
        if (self.endpoint is None) == (self.server is None):
            raise bad(
                "--backend",
                f"--executor {self.executor} needs the URL of an OpenAI-compatible server (--backend http://HOST:PORT) "
                "or --server vllm (each task starts its own), not both or neither",
            )
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise bad("--backend", f"with --executor the backend is a server URL, not {self.endpoint!r}")
        if self.server is not None and self.server not in SERVERS:
            raise bad("--server", f"must be one of {', '.join(SERVERS)}, not {self.server!r}")
        if self.executor == "slurm" and not self.slurm_partition:
            raise bad("--slurm-partition", "--executor slurm needs the partition to submit to")

    @property
    def workers_at_once(self) -> int:
        return self.tasks if self.workers == -1 else min(self.workers, self.tasks)

    @property
    def task_gpus(self) -> int:
        if self.gpus_per_task is not None:
            return self.gpus_per_task
        return self.tensor_parallel if self.server == "vllm" else 0

    def activate_command(self) -> str:
        """The shell line a Slurm job runs first: ``env_command``, else sourcing this virtual environment."""
        if self.env_command is not None:
            return self.env_command
        activate = os.path.join(sys.prefix, "bin", "activate")
        return f"source {activate}" if sys.prefix != sys.base_prefix and os.path.isfile(activate) else ""

    def describe(self) -> dict[str, Any]:
        """What the run's provenance records: everything but secrets (there are none here: keys stay in the
        environment)."""
        from importlib.metadata import version

        data = asdict(self)
        data["workers"] = self.workers_at_once
        data["datatrove_version"] = version("datatrove")
        return data


def parse_key_values(items: list[str], option: str, flag: Any = "") -> dict[str, Any]:
    """``["gpu-memory-utilization=0.9", "enforce-eager"]`` -> ``{"gpu-memory-utilization": "0.9", "enforce-eager":
    flag}``: an option without ``=`` is a flag (``True`` for ``vllm serve``, ``""`` for a bare ``#SBATCH --KEY``)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not key:
            raise BadInputError("", "", option, f"expected KEY=VALUE or KEY, got {item!r}", "bad-option")
        out[key] = value.strip() if sep else flag
    return out
