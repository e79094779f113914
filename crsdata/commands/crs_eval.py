"""``crsdata crs-eval --source FOLDER --crs popularity|retrieval|llm --protocol zero-shot|grsu --out OUT``."""

from __future__ import annotations

import argparse

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


# Fields of CrsEvalConfig that are not flags: the metric cut-offs are fixed.
NOT_FLAGS = ("ks",)


def register(subparsers: argparse._SubParsersAction) -> None:
    from crsdata.grsu.evaluation import CrsEvalConfig

    parser = subparsers.add_parser(
        "crs-eval",
        dataclass_types=[CrsEvalConfig],
        exclude=NOT_FLAGS,
        help="evaluate a CRS zero-shot and with GRSU's simulated user (interactive, resumable)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.group("run").add_argument(
        "--quiet", action="store_false", dest="progress", help="no progress bar (--no-progress)"
    )
    parser.set_defaults(func=run_command)


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
    from crsdata.commands.config_file import dataclass_values
    from crsdata.grsu.evaluation import CrsEvalConfig, run_crs_eval
    from crsdata.grsu.report import METRIC_KEYS

    _quiet_libraries()

    config = CrsEvalConfig(**dataclass_values(args, CrsEvalConfig, exclude=NOT_FLAGS))
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
