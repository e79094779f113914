"""How fast the Space answers in tab 1 (the person recommends, the user simulator replies).

    python benchmarks/space.py                          # embedded model, out/redial, 3 chats of 4 turns
    python benchmarks/space.py --chats 5 --threads 1

A person's turns are scripted (a greeting question, a recommendation with a catalog title, a question, another
recommendation) and sent through the page's API with ``gradio_client``, against the app launched on 127.0.0.1
exactly as ``crsdata space`` serves it, so each figure includes the Gradio queue and HTTP. Two settings, same
personas, seeds and messages:

(a) served      the local backend keeps conversation states between turns and the instructions every chat shares
                were run once at start (``Space.warm_up``), as ``crsdata space`` does.
(b) baseline    no stored states (``--kv-cache-mb 0``) and no warm-up: every prompt runs through the model whole.

Reported per setting: time to the first simulator reply of a chat (from pressing Send), time per later reply,
the CPU time this process spent on each (the app runs in this process; with ``--threads 1`` that is about what
the reply takes on a free core, whatever else the machine runs), generated tokens, prompt tokens and the share
of them served from stored states; then the ratios (b)/(a). The load average is printed before and after, since
other jobs on the machine change every wall-clock figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

from crsdata.backends.base import Backend, ChatRequest, Generation, SamplingParams

MESSAGES = (
    "Hi! What kind of movie are you in the mood for tonight?",
    'Have you seen "The Shining (1980)"? It is a scary classic set in an empty hotel.',
    "What did you like about the movies you watched recently?",
    'Then try "Toy Story (1995)": funny, warm and clever.',
)


class Counting(Backend):
    """Passes calls through and counts generated tokens."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.completion_tokens = 0

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        out = self.inner.generate(requests, params)
        self.completion_tokens += sum(g.completion_tokens for g in out)
        return out

    def option_probabilities(self, requests: list[ChatRequest], options: list[str]) -> list[dict[str, float]]:
        return self.inner.option_probabilities(requests, options)


def measure(args: argparse.Namespace, personas: list[str], *, keep_states: bool) -> dict[str, Any]:
    from gradio_client import Client

    from crsdata.backends import make_backend
    from crsdata.space.app import build_app
    from crsdata.space.config import SpaceConfig
    from crsdata.space.session import Space

    local = make_backend("local", args.model, prefix_cache_mb=args.kv_cache_mb if keep_states else 0)
    counting = Counting(local)
    config = SpaceConfig(
        data=[args.source],
        user_model="embedded",
        recommender_model="embedded",
        max_new_tokens=args.max_new_tokens,
        max_turns=2 * len(MESSAGES),
        timeout_s=600,
        save_dir=args.save_dir,
        seed=args.seed,  # chats get seeds seed, seed+1, ... in order: both settings generate from the same seeds
    )
    space = Space(config, backends={"embedded": counting})
    warm = space.warm_up() if keep_states else 0.0
    local.prompt_stats.prompt_tokens = local.prompt_stats.reused_tokens = 0
    counting.completion_tokens = 0
    demo = build_app(space)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    first, later, first_cpu, later_cpu = [], [], [], []
    try:
        for persona in personas:
            client = Client(demo.local_url, verbose=False)
            client.predict(space.corpus_names()[0], persona, api_name="/start_recommender_chat")
            for i, message in enumerate(MESSAGES):
                started, cpu = time.perf_counter(), time.process_time()
                chat, _, outcome = client.predict(message, "auto", api_name="/send_as_recommender")
                (first if i == 0 else later).append(time.perf_counter() - started)
                (first_cpu if i == 0 else later_cpu).append(time.process_time() - cpu)
                if outcome:  # the simulated user accepted: the chat is over
                    break
    finally:
        demo.close()
    stats = local.prompt_stats
    return {
        "warm_up_s": warm,
        "first": first,
        "later": later,
        "first_cpu": first_cpu,
        "later_cpu": later_cpu,
        "generated": counting.completion_tokens,
        "prompt_tokens": stats.prompt_tokens,
        "reused": stats.reused_fraction,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="out/redial", help="built folder for personas (default out/redial)")
    parser.add_argument("--model", default="embedded", help="model of the user simulator (default embedded)")
    parser.add_argument("--chats", type=int, default=3, help="chats per setting (default 3)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens per simulator turn (default 64)")
    parser.add_argument("--kv-cache-mb", type=int, default=2048, help="state store of setting (a) (default 2048)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first chat; the next get seed+1, ... (0)")
    parser.add_argument("--save-dir", default="out/space-benchmark-saved", help="the app's save folder (unused)")
    args = parser.parse_args(argv)
    import torch

    from crsdata.space.config import SpaceConfig
    from crsdata.space.session import Space

    if args.threads:
        torch.set_num_threads(args.threads)
    if not os.path.isdir(args.source):
        print(
            f"benchmarks/space.py: {args.source} is not a folder; build it first (see docs/space.md)", file=sys.stderr
        )
        return 1
    probe = Space(SpaceConfig(data=[args.source], save_dir=args.save_dir))
    personas = probe.persona_choices(probe.corpus(probe.corpus_names()[0]), limit=args.chats)
    print(
        f"load average before: {os.getloadavg()[0]:.2f} (1 min); torch threads {torch.get_num_threads()}; "
        f"{len(personas)} chats x {len(MESSAGES)} person turns; personas {', '.join(personas)}"
    )
    settings = (("served", True), ("baseline", False))
    results = {name: measure(args, personas, keep_states=keep) for name, keep in settings}
    print(f"load average after: {os.getloadavg()[0]:.2f}\n")
    print(
        "| setting | first reply median (max) | later replies mean | CPU time: first reply median, later mean "
        "| generated tokens | tokens/s over all replies | prompt tokens (reused) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, label in (("served", "(a) served: states kept, warmed up"), ("baseline", "(b) baseline: no states")):
        r = results[name]
        rate = r["generated"] / (sum(r["first"]) + sum(r["later"]))
        print(
            f"| {label} | {statistics.median(r['first']):.2f} s ({max(r['first']):.2f} s) | "
            f"{statistics.mean(r['later']):.2f} s | {statistics.median(r['first_cpu']):.2f} s, "
            f"{statistics.mean(r['later_cpu']):.2f} s | {r['generated']:,} | {rate:.1f} | {r['prompt_tokens']:,} "
            f"({100 * r['reused']:.0f}%) |"
        )
    a, b = results["served"], results["baseline"]
    print(
        f"\nwarm-up at start: {a['warm_up_s']:.1f} s. Ratios (b)/(a): first reply "
        f"{statistics.median(b['first']) / statistics.median(a['first']):.2f}x, later replies "
        f"{statistics.mean(b['later']) / statistics.mean(a['later']):.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
