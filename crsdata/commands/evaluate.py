"""``crsdata evaluate FOLDER --metrics ...``: score a built or simulated dataset folder.

Metrics and what they need (a metric named explicitly that cannot run is an error that says what is missing;
with the default ``--metrics auto`` it is listed as skipped instead):

=============  ========================================================================================
``dist``       Dist-n of user and recommender turns, ratio and per utterance (any folder).
``sr_et_fr``   simulated user outcomes: ``target_items`` and recommender turns with action ``recommend``.
``recall_at_1``  first item of each recommendation turn vs the dialogue's ``target_items``.
``match_score``  recommendation turns vs ``target_items`` in item-embedding space: the ``items`` config.
``ranking``    Recall/NDCG/MRR@k of ranked lists: ``--predictions FILE`` or ``--baseline popularity``.
``bertscore``  generated vs dataset turn texts: ``--predictions FILE`` with ``text``.
=============  ========================================================================================

Recommendation turns are chosen by ``--turns`` (see :mod:`crsdata.metrics.turns`): recommender turns with
action ``recommend``, or, for corpora without dialogue acts, every recommender turn that names an item.

Ranking ground truth follows iEvaLM's ReDial test turns: for a recommendation turn, the items the recommender
names in it; items named in earlier turns are removed from predictions and ground truth unless
``--keep-mentioned``. The popularity baseline counts, in ``--popularity-split`` (default ``train``), how many
recommendation turns name each item, and recommends the most counted items not yet mentioned.

``--predictions`` is JSON lines, one object per scored turn: ``dialogue_id``, ``index`` (the turn's index),
and ``items`` (ranked item ids) and/or ``text`` (a generated response, scored against that turn's text).
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.errors import BadInputError

METRIC_NAMES = ("dist", "sr_et_fr", "recall_at_1", "match_score", "ranking", "bertscore")
SECTION_TITLE = "## Evaluation"


class Unavailable(Exception):
    """The folder (or the options) lack what a metric needs; the message says what."""


@dataclass
class Row:
    metric: str
    scope: str
    value: float
    n: int

    def as_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "scope": self.scope, "value": self.value, "n": self.n}


@dataclass
class Context:
    folder: Path
    split: str
    records: list[dict[str, Any]]
    all_splits: dict[str, Any]
    args: argparse.Namespace
    predictions: list[dict[str, Any]] | None = None
    _items: list[dict[str, Any]] | None = None
    _items_loaded: bool = False
    _embeddings: Any = None
    details: dict[str, Any] = field(default_factory=dict)

    def items(self) -> list[dict[str, Any]]:
        if not self._items_loaded:
            self._items_loaded = True
            self._items = _load_items(self.folder)
        if not self._items:
            raise Unavailable("the folder has no `items` config (the catalog), which Match Score embeds")
        return self._items

    def embeddings(self) -> Any:
        from crsdata.metrics import ItemEmbeddings

        if self._embeddings is None:
            self._embeddings = ItemEmbeddings(self.items(), cache_dir=self.args.embedding_cache)
        return self._embeddings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a dataset folder with CRS metrics",
        description="Score a dataset folder written by `crsdata build` or `crsdata simulate`: Dist-n, SR/ET/FR, "
        "Recall@1 and Match Score of the recommender turns, Recall/NDCG/MRR@k of ranked predictions or of a "
        "popularity baseline, BERTScore of generated responses. Prints a table; --json writes the numbers, "
        "--update-card writes them into the folder's README.md.\n\n"
        "metrics: " + ", ".join(METRIC_NAMES) + ". 'auto' (default) runs every metric the folder and options "
        "support and lists the others as skipped; 'all' or named metrics stop with an error saying what is missing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, help="dataset folder (`load_dataset(folder, 'dialogues')` reads it)")
    parser.add_argument("--metrics", default="auto", help="comma-separated metric names, 'auto' (default) or 'all'")
    parser.add_argument("--split", help="split to score (default: test, or the only split)")
    parser.add_argument("--n", default="4", help="n-gram lengths for dist, comma-separated (default 4)")
    parser.add_argument("--k", default="1,10,50", help="cut-offs for ranking, comma-separated (default 1,10,50)")
    parser.add_argument(
        "--turns",
        choices=("auto", "recommend", "mentions"),
        default="auto",
        help="recommendation turns: action recommend, recommender turns naming items, or auto (default)",
    )
    parser.add_argument("--baseline", choices=("popularity",), help="score a baseline's ranked lists")
    parser.add_argument("--popularity-split", default="train", help="split the popularity counts come from")
    parser.add_argument("--predictions", type=Path, help="JSON lines with dialogue_id, index, items and/or text")
    parser.add_argument(
        "--keep-mentioned", action="store_true", help="do not remove already-mentioned items in ranking"
    )
    parser.add_argument("--embedding-cache", type=Path, help="folder for the Match Score embedding cache")
    parser.add_argument("--bertscore-model", help="local model folder for BERTScore (default: MiniLM wheel)")
    parser.add_argument("--num-layers", type=int, default=5, help="BERTScore layer (default 5)")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this file")
    parser.add_argument(
        "--update-card", action="store_true", help="append or replace an 'Evaluation' section in README.md"
    )
    parser.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------------------
# Loading


def _load_items(folder: Path) -> list[dict[str, Any]] | None:
    from datasets import get_dataset_config_names, load_dataset

    if "items" not in get_dataset_config_names(str(folder)):
        return None
    items = load_dataset(str(folder), "items")
    return [row for split in items.values() for row in split]


def _load_dialogues(folder: Path) -> dict[str, Any]:
    from datasets import load_dataset

    if not (folder / "README.md").is_file() and not any(folder.glob("**/*.parquet")):
        raise BadInputError(folder, "folder", "", "not a dataset folder (no README.md and no parquet files)")
    try:
        return dict(load_dataset(str(folder), "dialogues"))
    except (ValueError, FileNotFoundError) as err:
        raise BadInputError(folder, "config dialogues", "", f"cannot load: {err}") from None


def _choose_split(folder: Path, splits: dict[str, Any], wanted: str | None) -> str:
    if wanted:
        if wanted not in splits:
            raise BadInputError(folder, "split", "", f"no split {wanted!r}; the folder has {sorted(splits)}")
        return wanted
    if "test" in splits:
        return "test"
    if len(splits) == 1:
        return next(iter(splits))
    raise BadInputError(folder, "split", "", f"several splits and none is 'test': choose one of {sorted(splits)}")


def _read_predictions(path: Path) -> list[dict[str, Any]]:
    from crsdata.errors import SkipLog
    from crsdata.readers import iter_jsonl

    if not path.is_file():
        raise BadInputError(path, "file", "", "no such predictions file")
    out = []
    for line, obj in iter_jsonl(path, SkipLog()):
        if "dialogue_id" not in obj or "index" not in obj:
            raise BadInputError(path, f"line {line}", "dialogue_id", "each line needs dialogue_id and index")
        if "items" not in obj and "text" not in obj:
            raise BadInputError(path, f"line {line}", "items", "each line needs items (ranked ids) or text")
        out.append({**obj, "_line": line})
    if not out:
        raise BadInputError(path, "file", "", "no predictions")
    return out


# ---------------------------------------------------------------------------------------------------------
# Metrics


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadInputError(
            "command line", option, option, f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise BadInputError("command line", option, option, f"expected positive integers, got {text!r}")
    return values


def metric_dist(ctx: Context) -> list[Row]:
    from crsdata.metrics import ngram_stats

    ns = _ints(ctx.args.n, "--n")
    rows: list[Row] = []
    for role in ("user", "recommender"):
        texts = [t["text"] for r in ctx.records for t in r["turns"] if t["role"] == role and t["text"]]
        if not texts:
            continue
        stats = ngram_stats(texts, ns)
        for n in ns:
            if stats.total[n]:
                rows.append(Row(f"dist_{n}", f"{role} turns", stats.ratio(n), len(texts)))
            rows.append(Row(f"dist_{n}_per_utterance", f"{role} turns", stats.per_utterance(n), len(texts)))
    if not rows:
        raise Unavailable("no turn has text")
    return rows


def metric_sr_et_fr(ctx: Context) -> list[Row]:
    from crsdata.metrics import has_recommend_actions, sr_et_fr_from_dialogues
    from crsdata.metrics.outcomes import dialogue_targets

    with_target = [r for r in ctx.records if dialogue_targets(r)]
    if not with_target:
        raise Unavailable("no dialogue has target_items (the ground truth SR/ET/FR is judged against)")
    if not has_recommend_actions(with_target):
        raise Unavailable("no recommender turn has action `recommend` (a corpus without dialogue acts)")
    result = sr_et_fr_from_dialogues(with_target)
    ctx.details["sr_et_fr"] = {**result, "n_without_target": len(ctx.records) - len(with_target)}
    n = result["n_dialogues"]
    return [
        Row("sr", "dialogues", result["sr"], n),
        Row("et", "dialogues", result["et"], n),
        Row("fr", "dialogues", result["fr"], n),
    ]


def _turns(ctx: Context, records: list[dict[str, Any]] | None = None) -> list[Any]:
    from crsdata.metrics import recommendation_turns

    turns = recommendation_turns(records if records is not None else ctx.records, ctx.args.turns)
    if not turns:
        raise Unavailable(f"no recommendation turns (rule {ctx.args.turns!r}): no recommender turn names an item")
    return turns


def metric_recall_at_1(ctx: Context) -> list[Row]:
    from crsdata.metrics import turn_recall_at_1

    turns = [t for t in _turns(ctx) if t.targets]
    if not turns:
        raise Unavailable("no recommendation turn belongs to a dialogue with target_items")
    value = turn_recall_at_1([t.items for t in turns], [t.targets for t in turns])
    return [Row("recall@1", "recommendation turns", value, len(turns))]


def metric_match_score(ctx: Context) -> list[Row]:
    from crsdata.metrics import match_score

    turns = [t for t in _turns(ctx) if t.targets]
    if not turns:
        raise Unavailable("no recommendation turn belongs to a dialogue with target_items")
    result = match_score([t.items for t in turns], [t.targets for t in turns], ctx.embeddings(), on_missing="skip")
    ctx.details["match_score"] = result
    return [Row("match_score", "recommendation turns", result["match_score"], result["n_scored"])]


def _turn_index(ctx: Context) -> dict[tuple[str, int], Any]:
    return {(t.dialogue_id, t.index): t for t in _turns(ctx)}


def _ranking_rows(ctx: Context, scope: str, lists: list[list[str]], turns: list[Any]) -> list[Row]:
    from crsdata.metrics import match_score, ranking_metrics

    ks = _ints(ctx.args.k, "--k")
    mentioned = None if ctx.args.keep_mentioned else [t.mentioned for t in turns]
    result = ranking_metrics(lists, [t.items for t in turns], ks, mentioned=mentioned)
    ctx.details[f"ranking ({scope})"] = result
    rows = [
        Row(f"{name}@{k}", scope, result[f"{name}@{k}"], result["n_evaluated"])
        for name in ("recall", "ndcg", "mrr")
        for k in ks
    ]
    try:
        embeddings = ctx.embeddings()
    except Unavailable:
        return rows
    # Match Score of the top-1 recommendation against the same ground truth the ranking used (mentioned items
    # removed, turns left without ground truth skipped): how near the guess lands when it misses.
    seen = mentioned or [[] for _ in lists]
    top, truth = [], []
    for lst, turn, m in zip(lists, turns, seen, strict=True):
        wanted = [i for i in turn.items if i not in set(m)]
        if wanted:
            top.append([i for i in lst if i not in set(m)][:1])
            truth.append(wanted)
    scored = match_score(top, truth, embeddings, on_missing="skip")
    ctx.details[f"match_score@1 ({scope})"] = scored
    rows.append(Row("match_score@1", scope, scored["match_score"], scored["n_scored"]))
    return rows


def metric_ranking(ctx: Context) -> list[Row]:
    from crsdata.metrics import popularity_counts, popularity_predictions

    rows: list[Row] = []
    if ctx.args.baseline == "popularity":
        source = ctx.args.popularity_split
        if source == ctx.split:
            raise Unavailable(
                f"--popularity-split {source} is the split being scored: popularity must come from another"
            )
        if source not in ctx.all_splits:
            raise Unavailable(f"no split {source!r} to count popularity in; the folder has {sorted(ctx.all_splits)}")
        train_turns = _turns(ctx, list(ctx.all_splits[source]))
        counts = popularity_counts(t.items for t in train_turns)
        turns = _turns(ctx)
        k_max = max(_ints(ctx.args.k, "--k"))
        mentioned = None if ctx.args.keep_mentioned else [t.mentioned for t in turns]
        lists = popularity_predictions(counts, len(turns), k_max, mentioned)
        ctx.details["popularity"] = {"split": source, "turns": len(train_turns), "items": len(counts)}
        rows += _ranking_rows(ctx, f"popularity baseline ({source} counts)", lists, turns)
    if ctx.predictions is not None:
        index = _turn_index(ctx)
        ranked = [p for p in ctx.predictions if "items" in p]
        if ranked:
            turns, lists = [], []
            for p in ranked:
                turn = index.get((str(p["dialogue_id"]), int(p["index"])))
                if turn is None:
                    raise BadInputError(
                        ctx.args.predictions,
                        f"line {p['_line']}",
                        "index",
                        f"dialogue {p['dialogue_id']} turn {p['index']} is not a recommendation turn "
                        f"of split {ctx.split}",
                    )
                turns.append(turn)
                lists.append([str(i) for i in p["items"]])
            rows += _ranking_rows(ctx, "predictions", lists, turns)
    if not rows:
        raise Unavailable("ranking needs ranked lists: --predictions FILE (with items) or --baseline popularity")
    return rows


def metric_bertscore(ctx: Context) -> list[Row]:
    from crsdata.metrics import bertscore

    texts = [p for p in ctx.predictions or [] if "text" in p]
    if not texts:
        raise Unavailable("BERTScore needs generated responses: --predictions FILE with `text` per turn")
    by_id = {r["dialogue_id"]: r for r in ctx.records}
    references = []
    for p in texts:
        record = by_id.get(str(p["dialogue_id"]))
        turn = next((t for t in (record or {}).get("turns", []) if t["index"] == int(p["index"])), None)
        if turn is None:
            raise BadInputError(
                ctx.args.predictions,
                f"line {p['_line']}",
                "index",
                f"no turn {p['index']} in dialogue {p['dialogue_id']} of split {ctx.split}",
            )
        references.append(turn["text"])
    result = bertscore(
        [str(p["text"]) for p in texts], references, model=ctx.args.bertscore_model, num_layers=ctx.args.num_layers
    )
    scope = f"predictions ({result['model']}, layer {result['num_layers']}{', rescaled' if result['rescaled'] else ''})"
    return [
        Row(f"bertscore_{name}", scope, result[f"mean_{name}"], len(texts)) for name in ("precision", "recall", "f1")
    ]


METRICS: dict[str, Callable[[Context], list[Row]]] = {
    "dist": metric_dist,
    "sr_et_fr": metric_sr_et_fr,
    "recall_at_1": metric_recall_at_1,
    "match_score": metric_match_score,
    "ranking": metric_ranking,
    "bertscore": metric_bertscore,
}


# ---------------------------------------------------------------------------------------------------------
# Output


def format_table(rows: list[Row]) -> str:
    header = ("metric", "scope", "value", "n")
    body = [(r.metric, r.scope, f"{r.value:.4f}", f"{r.n:,}") for r in rows]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(4)]
    lines = [
        "  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True)))
    ]
    for line in body:
        lines.append(
            "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
        )
    return "\n".join(lines)


def card_section(
    rows: list[Row], split: str, command: str, skipped: dict[str, str], keep_mentioned: bool = False
) -> str:
    from crsdata import __version__

    lines = [
        SECTION_TITLE,
        "",
        f"Computed with crsdata {__version__} on the `{split}` split by:",
        "",
        "```bash",
        command,
        "```",
        "",
        "| metric | scope | value | n |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {r.metric} | {r.scope} | {r.value:.4f} | {r.n:,} |" for r in rows]
    lines += [
        "",
        "Definitions: Dist-n is distinct n-grams over all n-grams of the corpus (`dist_n`) or per utterance "
        "(`dist_n_per_utterance`, CRSLab's convention); SR/ET/FR, Recall@1 and Match Score follow Interplay "
        "(section 4.3); Recall/NDCG/MRR@k follow GRSU/iEvaLM, "
        + ("with items already mentioned kept. " if keep_mentioned else "with items already mentioned removed. ")
        + "See the metric cards in crsdata's `metrics/` folder.",
    ]
    if skipped:
        lines += ["", "Not computed:", ""] + [f"- `{name}`: {why}" for name, why in skipped.items()]
    return "\n".join(lines) + "\n"


def update_card(readme: Path, section: str) -> None:
    """Replaces the card's ``## Evaluation`` section (up to the next ``## `` heading) or appends one.

    The YAML front matter is split off first and written back untouched, so a heading-like line inside it can
    never be taken for the section.
    """
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    front, body = "", text
    match = re.match(r"---\r?\n.*?\r?\n---\r?\n", text, flags=re.DOTALL)
    if match:
        front, body = text[: match.end()], text[match.end() :]
    lines = body.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION_TITLE), None)
    if start is None:
        new_body = body.rstrip("\n") + ("\n\n" if body.strip() else "") + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new_body = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    readme.write_text(front + new_body, encoding="utf-8")


def _selected(spec: str) -> tuple[list[str], bool]:
    if spec in ("auto", "all"):
        return list(METRIC_NAMES), spec == "all"
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise BadInputError(
            "command line",
            "--metrics",
            "--metrics",
            f"unknown metric(s) {unknown}; choose from {', '.join(METRIC_NAMES)}",
        )
    return names, True


def _quiet_progress_bars() -> None:
    # Loading a folder and a model draws progress bars that would interleave with the table.
    import datasets

    datasets.disable_progress_bars()
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # transformers is an optional extra; only Match Score and BERTScore need it
        pass


def run(args: argparse.Namespace) -> int:
    from crsdata.metrics import MetricError

    _quiet_progress_bars()
    folder: Path = args.folder
    names, explicit = _selected(args.metrics)
    splits = _load_dialogues(folder)
    split = _choose_split(folder, splits, args.split)
    ctx = Context(folder=folder, split=split, records=list(splits[split]), all_splits=splits, args=args)
    if args.predictions:
        ctx.predictions = _read_predictions(args.predictions)
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    for name in names:
        try:
            rows += METRICS[name](ctx)
        except Unavailable as err:
            if explicit:
                raise BadInputError(
                    folder, f"split {split}", name, f"cannot compute {name}: {err}", "metric-unavailable"
                ) from None
            skipped[name] = str(err)
        except MetricError as err:
            if explicit:
                raise BadInputError(folder, f"split {split}", name, str(err), "metric") from None
            skipped[name] = str(err)
    if not rows:
        raise BadInputError(
            folder,
            f"split {split}",
            "",
            "no metric could be computed: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()),
        )

    print(f"{folder} (split {split}, {len(ctx.records):,} dialogues)")
    print(format_table(rows))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    command = command_line(args, split)
    if args.json:
        from crsdata import __version__

        payload = {
            "folder": str(folder),
            "split": split,
            "crsdata_version": __version__,
            "command": command,
            "results": [r.as_dict() for r in rows],
            "details": ctx.details,
            "skipped": skipped,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=float) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    if args.update_card:
        update_card(folder / "README.md", card_section(rows, split, command, skipped, args.keep_mentioned))
        print(f"updated the Evaluation section of {folder / 'README.md'}")
    return 0


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else json.dumps(arg)


def command_line(args: argparse.Namespace, split: str) -> str:
    """The command that reproduces these numbers, rebuilt from the parsed options (not from sys.argv, which is
    someone else's when the command runs inside another program); output options are left out."""
    parts = ["crsdata", "evaluate", str(args.folder), "--metrics", args.metrics, "--split", split]
    options = [
        ("--n", args.n, "4"),
        ("--k", args.k, "1,10,50"),
        ("--turns", args.turns, "auto"),
        ("--baseline", args.baseline, None),
        ("--popularity-split", args.popularity_split if args.baseline else "train", "train"),
        ("--predictions", args.predictions, None),
        ("--bertscore-model", args.bertscore_model, None),
        ("--num-layers", args.num_layers, 5),
    ]
    for flag, value, default in options:
        if value is not None and value != default:
            parts += [flag, str(value)]
    if args.keep_mentioned:
        parts.append("--keep-mentioned")
    return " ".join(_quote(p) for p in parts)
