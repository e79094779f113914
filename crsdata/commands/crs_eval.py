"""``crsdata crs-eval --source FOLDER --crs popularity|retrieval|llm --protocol zero-shot|grsu --out OUT``."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from crsdata.backends.factory import MAX_MODEL_LEN_OPTION

DESCRIPTION = """\
Evaluate a conversational recommender (CRS) on the recommendation turns of a built folder, zero-shot and with
GRSU's simulated user (Wang et al., SIGIR 2025): the user scores each recommended item by P("Yes") to "Accept
the recommendation (Yes/No)?" and critiques lists by genre, actor, writer or director; the CRS revises its list
with each critique; beam search keeps the best-scored lists; the final ranking is every scored item by its
score. Writes OUT/results.json (Recall/NDCG/MRR@10/50 with bootstrap intervals, CRS calls, scoring passes),
OUT/README.md (a card with an example interaction) and OUT/turns.jsonl (every list, critique and score).

--source: a folder written by `crsdata build`: `redial-eval` (iEvaLM's ReDial test turns) or a corpus of whole
dialogues (`inspired`, `redial`), whose recommender turns that name items are the turns evaluated. Its `items`
config is the catalog the CRS ranks. As GRSU's evaluation does, a turn whose ground truth was mentioned earlier
is skipped, the whole conversation is the context, and items mentioned earlier are removed from every ranking.

CRS (--crs): `popularity` (most recommended items on the training side: --popularity-source/--popularity-split),
`retrieval` (all-MiniLM-L6-v2 between the conversation, plus the critique, and each item's catalog text),
`llm` (GRSU's Eq. 1 prompt on --crs-model through --crs-backend; titles grounded to the catalog by rapidfuzz).

Simulated user (--scorer-model): `minilm` (default: a label-free embedding user, cosine between the user and the
item in all-MiniLM-L6-v2's space; fast on a CPU), `embedded` (SmolLM2-135M-Instruct, P("Yes") from one forward
pass), or any model folder or served model (with --scorer-backend URL; the server must return logprobs, as vLLM
does; `transformers serve` does not). A fine-tuned GRSU scorer is just another model folder.

Search (--search): `beam` (GRSU: N*N lists from the conversation, then the B best lists get N critiques each,
D steps), `greedy` (beam width 1 with B*N lists a step: the same budget when B = N), `mc` (depth one, beam
search's budget sampled from the conversation). The defaults are the paper's, B = N = 4, D = 5 with lists of 10
(80 lists a turn); on 50 turns with the default scorer they take under a minute on a 2-core CPU once the
catalog's item vectors are cached (the first run on a catalog embeds it).

Resumable: a killed run resumes from OUT/turns.jsonl with the same command; other settings in the same OUT are
refused.
"""

EPILOG = """\
examples:
  crsdata build redial-eval --input ../shared/data/redial/redial_eval__test_data_processed.jsonl \\
      --catalog ../shared/data/redial/redial__id2info.json --out out/redial-eval
  crsdata crs-eval --source out/redial-eval --split test --crs retrieval --protocol grsu --out out/eval-retrieval
  crsdata crs-eval --source out/redial-eval --crs llm --protocol zero-shot --n 200 --out out/eval-llm-zs
  crsdata crs-eval --source out/inspired --crs llm --crs-backend http://127.0.0.1:8000 --crs-model phi-4 \\
      --scorer-backend http://127.0.0.1:8001 --scorer-model grsu-user --protocol grsu --n all \\
      --beam-width 4 --expand-width 4 --depth 5 --out out/inspired-grsu

What interaction gains on a 2-core CPU (ReDial and INSPIRED test turns, settings chosen on validation turns,
bootstrap intervals, the paper's figures beside them): docs/grsu.md.
"""


def _turns(value: str) -> int | None:
    if value == "all":
        return None
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of turns or 'all', not {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 turn, not {number}")
    return number


def register(subparsers: argparse._SubParsersAction) -> None:
    from crsdata.commands.config_file import add_config_option
    from crsdata.grsu.evaluation import CRITICS, CRS_NAMES, DEFAULT_TEMPERATURES, PROTOCOLS
    from crsdata.grsu.search import SEARCH_METHODS

    d = _defaults()

    parser = subparsers.add_parser(
        "crs-eval",
        help="evaluate a CRS zero-shot and with GRSU's simulated user (interactive, resumable)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--source", type=Path, required=True, help="built dataset folder (`crsdata build`)")
    parser.add_argument("--split", default=d["split"], help=f"split to evaluate (default {d['split']})")
    parser.add_argument("--crs", choices=CRS_NAMES, required=True, help="the CRS to evaluate")
    parser.add_argument("--protocol", choices=PROTOCOLS, required=True, help="zero-shot alone, or with GRSU")
    parser.add_argument("--out", "-o", type=Path, required=True, help="run folder (results.json, README.md, turns)")
    parser.add_argument(
        "--n",
        type=_turns,
        default=d["n"],
        help=f"turns to evaluate, a seeded sample; `all` for the whole split ({d['n']})",
    )
    parser.add_argument(
        "--seed", type=int, default=d["seed"], help=f"seed of the sample and of every sampled list ({d['seed']})"
    )
    parser.add_argument(
        "--context-chars",
        type=int,
        default=d["context_chars"],
        help="characters of conversation the CRS and the user see, the most recent utterances (default "
        f"{d['context_chars']}: all, "
        "as GRSU)",
    )
    search = parser.add_argument_group("search")
    search.add_argument(
        "--search", choices=SEARCH_METHODS, default=d["search"], help=f"search method (default {d['search']})"
    )
    search.add_argument(
        "--beam-width",
        type=int,
        default=d["beam_width"],
        help=f"B: lists kept a step (default {d['beam_width']}, as the paper)",
    )
    search.add_argument(
        "--expand-width",
        type=int,
        default=d["expand_width"],
        help=f"N: critiques per kept list (default {d['expand_width']}, as the paper)",
    )
    search.add_argument(
        "--depth", type=int, default=d["depth"], help=f"D: search steps (default {d['depth']}, as the paper)"
    )
    search.add_argument(
        "--list-size", type=int, default=d["list_size"], help=f"items in each searched list (default {d['list_size']})"
    )
    parser.add_argument(
        "--zero-shot-size",
        type=int,
        help="items in the zero-shot list (default 50, the largest k; fewer make an LLM CRS cheaper, and cap @50)",
    )
    user = parser.add_argument_group("simulated user")
    user.add_argument(
        "--scorer-model",
        default=d["scorer_model"],
        help=f"`{d['scorer_model']}` (default), `embedded` (SmolLM2), a folder or a served model",
    )
    user.add_argument(
        "--scorer-backend", default=d["scorer_backend"], help="`local` or an OpenAI-compatible server URL"
    )
    user.add_argument(
        "--critic",
        choices=CRITICS,
        default=d["critic"],
        help="critiques from catalog attributes (default), or generated by the scorer model (Eq. 3)",
    )
    crs = parser.add_argument_group("CRS")
    crs.add_argument("--crs-model", default=d["crs_model"], help=f"model of the llm CRS (default {d['crs_model']})")
    crs.add_argument("--crs-backend", default=d["crs_backend"], help="`local` or an OpenAI-compatible server URL")
    crs.add_argument(
        "--crs-temperature",
        type=float,
        help="sampling temperature of searched lists (default: "
        + ", ".join(f"{k} {v}" for k, v in DEFAULT_TEMPERATURES.items())
        + ")",
    )
    crs.add_argument(
        "--popularity-source", type=Path, help="folder whose recommendations the popularity CRS counts (--source)"
    )
    crs.add_argument("--popularity-split", help="its split (default train, else validation; never the evaluated one)")
    run = parser.add_argument_group("run")
    run.add_argument(
        "--batch-turns",
        type=int,
        default=d["batch_turns"],
        help=f"turns searched together, in lockstep (default {d['batch_turns']})",
    )
    run.add_argument(
        "--max-batch-size",
        type=int,
        default=d["max_batch_size"],
        help=f"rows per forward pass of local models ({d['max_batch_size']})",
    )
    run.add_argument("--max-model-len", **MAX_MODEL_LEN_OPTION)
    run.add_argument(
        "--bootstrap",
        type=int,
        default=d["bootstrap"],
        help=f"bootstrap resamples for intervals ({d['bootstrap']}; 0: none)",
    )
    run.add_argument("--update-card", action="store_true", help="also write the results into the --source card")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_option(parser)
    parser.set_defaults(func=run_command)


def _defaults() -> dict[str, object]:
    """Each option's default, read from :class:`~crsdata.grsu.evaluation.CrsEvalConfig` so that it is written once."""
    from crsdata.grsu.evaluation import CrsEvalConfig

    return {f.name: f.default for f in dataclasses.fields(CrsEvalConfig) if f.default is not dataclasses.MISSING}


def _quiet_libraries() -> None:
    # Loading folders and models draws progress bars of their own, which would bury the run's bar and table.
    import datasets

    datasets.disable_progress_bars()
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # transformers is an optional extra; the popularity CRS with no model runs without it
        pass


def run_command(args: argparse.Namespace) -> int:
    from crsdata.grsu.evaluation import CrsEvalConfig, run_crs_eval
    from crsdata.grsu.report import METRIC_KEYS

    _quiet_libraries()

    # The options have the names of CrsEvalConfig's fields (ks is not an option; --quiet turns progress off).
    names = {f.name for f in dataclasses.fields(CrsEvalConfig)} - {"ks", "progress"}
    config = CrsEvalConfig(**{name: getattr(args, name) for name in names}, progress=not args.quiet)
    results = run_crs_eval(config)
    zero = results["zero_shot"]
    print(f"{results['n_turns']} turns of {args.source} ({args.split}), {args.crs} CRS")
    header = f"{'metric':<10} {'zero-shot':>10}" + (f" {'grsu':>10} {'diff':>8}" if "grsu" in results else "")
    print(header)
    for key in METRIC_KEYS:
        line = f"{key:<10} {zero[key]:>10.4f}"
        if "grsu" in results:
            line += f" {results['grsu'][key]:>10.4f} {results['difference'][key]['mean']:>+8.4f}"
        print(line)
    print(
        f"crs_calls {results['crs_calls']:,}, scoring_passes {results['scoring_passes']:,}, "
        f"{results['wall_seconds']:.0f} s"
    )
    print(f"wrote {args.out / 'results.json'} and {args.out / 'README.md'}")
    return 0
