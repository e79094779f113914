"""The metrics of ``crsdata evaluate``, one entry each (lighteval style: a registry as data).

A :class:`Metric` carries everything about one metric:

- ``name``: what ``--metrics`` takes;
- ``summary``: one line for ``--help``;
- ``needs``: :class:`Need` checks, in order; the first one the folder or the options do not meet is why the
  metric cannot run (an error when the metric was named, a "skipped" line with ``--metrics auto``);
- ``compute``: :class:`Context` -> a JSON-able result, kept in the JSON output's ``details`` under the name;
- ``rows``: the result -> the table rows (:class:`Row`);
- ``note``: a sentence printed under the table and written into the card whenever the metric gives rows.

The evaluator (:func:`crsdata.evaluation.evaluate`) runs entries without knowing any of them: adding a metric
is adding an entry to :data:`METRICS`.

Interplay's SR / ET / FR are not an entry: they are defined by *replay* (section 4.3.1, real recommender
turns fed to the user simulator), which ``crsdata replay`` runs and the ``metrics/sr_et_fr`` module scores.
What a dialogue folder holds about outcomes is who accepted what inside its dialogues; on self-play folders
that is ``self_play_outcomes``, named as the different quantity it is (:data:`NOT_HERE` says so when
``--metrics sr_et_fr`` is asked for).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.metrics.outcomes import dialogue_targets, is_self_play
from crsdata.metrics.turns import RecommendationTurn, has_recommend_actions, recommendation_turns


@dataclass
class EvaluateConfig:
    """Everything ``crsdata evaluate`` takes; the command's flags fill it one to one."""

    folder: Path
    # Comma-separated metric names, "auto" (every metric the folder supports) or "all" (every one, or an error).
    metrics: str = "auto"
    split: str | None = None  # default: test, or the only split
    n: tuple[int, ...] = (4,)  # n-gram lengths for dist
    k: tuple[int, ...] = (1, 10, 50)  # cut-offs for ranking
    turns: str = "auto"  # which turns are recommendation turns: auto, recommend or mentions
    baseline: str | None = None  # "popularity": score a baseline's ranked lists
    popularity_split: str = "train"
    predictions: Path | None = None  # JSON lines with dialogue_id, index, items and/or text
    keep_mentioned: bool = False
    embedding_cache: Path | None = None
    bertscore_model: str | None = None  # default: the MiniLM wheel
    num_layers: int = 5
    json: Path | None = None  # also write the results here
    update_card: bool = False  # append or replace the "Evaluation" section of the folder's README.md


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
    """What the metrics read: the split's dialogues, every split, the options, and lazily loaded extras."""

    folder: Path
    split: str
    records: list[dict[str, Any]]
    all_splits: dict[str, Any]
    config: EvaluateConfig
    predictions: list[dict[str, Any]] | None = None
    _items: list[dict[str, Any]] | None = field(default=None, repr=False)
    _items_loaded: bool = field(default=False, repr=False)
    _embeddings: Any = field(default=None, repr=False)
    _turns: list[RecommendationTurn] | None = field(default=None, repr=False)

    def items(self) -> list[dict[str, Any]]:
        """The folder's ``items`` rows (the catalog); :class:`Unavailable` when it has none."""
        from crsdata.catalog import read_items

        if not self._items_loaded:
            self._items_loaded = True
            self._items = read_items(self.folder)
        if not self._items:
            raise Unavailable(ITEMS.missing)
        return self._items

    def embeddings(self) -> Any:
        from crsdata.metrics.match import ItemEmbeddings

        if self._embeddings is None:
            self._embeddings = ItemEmbeddings(self.items(), cache_dir=self.config.embedding_cache)
        return self._embeddings

    def turns(self, records: list[dict[str, Any]] | None = None) -> list[RecommendationTurn]:
        """Recommendation turns (``--turns`` rule) of the scored split, or of ``records``."""
        if records is not None:
            return recommendation_turns(records, self.config.turns)
        if self._turns is None:
            self._turns = recommendation_turns(self.records, self.config.turns)
        return self._turns

    def ranked_predictions(self) -> list[dict[str, Any]]:
        return [p for p in self.predictions or [] if "items" in p]

    def text_predictions(self) -> list[dict[str, Any]]:
        return [p for p in self.predictions or [] if "text" in p]


@dataclass(frozen=True)
class Need:
    """Something a metric cannot run without: ``name`` for the help, ``missing`` for when it is absent."""

    name: str
    missing: str
    met: Callable[[Context], bool]


@dataclass(frozen=True)
class Metric:
    name: str
    summary: str
    needs: tuple[Need, ...]
    compute: Callable[[Context], dict[str, Any]]
    rows: Callable[[dict[str, Any], Context], list[Row]]
    note: str = ""

    def missing(self, ctx: Context) -> str | None:
        """Why the metric cannot run on ``ctx`` (the first need not met), or None."""
        return next((need.missing for need in self.needs if not need.met(ctx)), None)


# ---------------------------------------------------------------------------------------------------------
# Needs


def _with_targets(ctx: Context) -> list[RecommendationTurn]:
    return [t for t in ctx.turns() if t.targets]


TURN_TEXT = Need("turn text", "no turn has text", lambda ctx: any(t["text"] for r in ctx.records for t in r["turns"]))
SELF_PLAY = Need(
    "self-play dialogues",
    "no self-play dialogue (provenance naming a user and a recommender model): the accepts in other dialogues "
    "are not a user simulator's; SR/ET/FR of a user simulator come from replay (`crsdata replay`)",
    lambda ctx: any(is_self_play(r) for r in ctx.records),
)
TARGETS = Need(
    "target_items",
    "no dialogue has target_items (the ground truth outcomes are judged against)",
    lambda ctx: any(dialogue_targets(r) for r in ctx.records),
)
RECOMMEND_ACTIONS = Need(
    "recommend actions",
    "no recommender turn has action `recommend` (a corpus without dialogue acts)",
    lambda ctx: has_recommend_actions(ctx.records),
)
RECOMMENDATION_TURNS = Need(
    "recommendation turns",
    "no recommendation turns: no recommender turn names an item (under the --turns rule)",
    lambda ctx: bool(ctx.turns()),
)
TURNS_WITH_TARGETS = Need(
    "target_items",
    "no recommendation turn belongs to a dialogue with target_items",
    lambda ctx: bool(_with_targets(ctx)),
)
ITEMS = Need(
    "items config",
    "the folder has no `items` config (the catalog), which Match Score embeds",
    lambda ctx: _has_items(ctx),
)
RANKED_LISTS = Need(
    "ranked lists",
    "ranking needs ranked lists: --predictions FILE (with items) or --baseline popularity",
    lambda ctx: ctx.config.baseline is not None or bool(ctx.ranked_predictions()),
)
GENERATED_TEXT = Need(
    "generated responses",
    "BERTScore needs generated responses: --predictions FILE with `text` per turn",
    lambda ctx: bool(ctx.text_predictions()),
)


def _has_items(ctx: Context) -> bool:
    try:
        return bool(ctx.items())
    except Unavailable:
        return False


# ---------------------------------------------------------------------------------------------------------
# Dist-n


def _dist(ctx: Context) -> dict[str, Any]:
    from crsdata.metrics.diversity import ngram_stats

    result: dict[str, Any] = {}
    for role in ("user", "recommender"):
        texts = [t["text"] for r in ctx.records for t in r["turns"] if t["role"] == role and t["text"]]
        if not texts:
            continue
        stats = ngram_stats(texts, ctx.config.n)
        scores: dict[str, Any] = {"n_utterances": len(texts)}
        for n in ctx.config.n:
            scores[f"dist_{n}"] = stats.ratio(n) if stats.total[n] else None
            scores[f"dist_{n}_per_utterance"] = stats.per_utterance(n)
        result[f"{role} turns"] = scores
    return result


def _dist_rows(result: dict[str, Any], ctx: Context) -> list[Row]:
    rows = []
    for scope, scores in result.items():
        for n in ctx.config.n:
            if scores[f"dist_{n}"] is not None:
                rows.append(Row(f"dist_{n}", scope, scores[f"dist_{n}"], scores["n_utterances"]))
            rows.append(
                Row(f"dist_{n}_per_utterance", scope, scores[f"dist_{n}_per_utterance"], scores["n_utterances"])
            )
    return rows


# ---------------------------------------------------------------------------------------------------------
# Outcomes inside self-play dialogues

SELF_PLAY_RATES = ("accept_rate", "target_accept_rate", "early_accept_rate", "failure_rate")


def _self_play(ctx: Context) -> dict[str, Any]:
    from crsdata.metrics.outcomes import dialogue_outcomes

    self_play = [r for r in ctx.records if is_self_play(r)]
    judged = [r for r in self_play if dialogue_targets(r)]
    if not judged:
        raise Unavailable("no self-play dialogue has target_items (the ground truth outcomes are judged against)")
    result = dialogue_outcomes(judged)
    result["n_without_target"] = len(self_play) - len(judged)
    result["n_not_self_play"] = len(ctx.records) - len(self_play)
    return result


def _self_play_rows(result: dict[str, Any], ctx: Context) -> list[Row]:
    return [
        Row(f"self_play_{name}", "self-play dialogues", result[name], result["n_dialogues"]) for name in SELF_PLAY_RATES
    ]


# ---------------------------------------------------------------------------------------------------------
# Recall@1 and Match Score of recommendation turns


def _recall_at_1(ctx: Context) -> dict[str, Any]:
    from crsdata.metrics.ranking import turn_recall_at_1

    turns = _with_targets(ctx)
    return {"recall@1": turn_recall_at_1([t.items for t in turns], [t.targets for t in turns]), "n_turns": len(turns)}


def _recall_at_1_rows(result: dict[str, Any], ctx: Context) -> list[Row]:
    return [Row("recall@1", "recommendation turns", result["recall@1"], result["n_turns"])]


def _match_score(ctx: Context) -> dict[str, Any]:
    from crsdata.metrics.match import match_score

    turns = _with_targets(ctx)
    return match_score([t.items for t in turns], [t.targets for t in turns], ctx.embeddings(), on_missing="skip")


def _match_score_rows(result: dict[str, Any], ctx: Context) -> list[Row]:
    return [Row("match_score", "recommendation turns", result["match_score"], result["n_scored"])]


# ---------------------------------------------------------------------------------------------------------
# Ranking of a baseline's or a model's lists


def _ranked(ctx: Context, lists: list[list[str]], turns: list[RecommendationTurn]) -> dict[str, Any]:
    """Recall/NDCG/MRR@k of ``lists`` against ``turns``, and the Match Score of their top items when the folder
    has a catalog."""
    from crsdata.metrics.match import match_score
    from crsdata.metrics.ranking import ranking_metrics

    mentioned = None if ctx.config.keep_mentioned else [t.mentioned for t in turns]
    out: dict[str, Any] = {
        "ranking": ranking_metrics(lists, [t.items for t in turns], ctx.config.k, mentioned=mentioned)
    }
    try:
        embeddings = ctx.embeddings()
    except Unavailable:
        return out
    # Match Score of the top-1 recommendation against the same ground truth the ranking used (mentioned items
    # removed, turns left without ground truth skipped): how near the guess lands when it misses.
    seen = mentioned or [[] for _ in lists]
    top, truth = [], []
    for lst, turn, m in zip(lists, turns, seen, strict=True):
        wanted = [i for i in turn.items if i not in set(m)]
        if wanted:
            top.append([i for i in lst if i not in set(m)][:1])
            truth.append(wanted)
    out["match_score@1"] = match_score(top, truth, embeddings, on_missing="skip")
    return out


def _ranking(ctx: Context) -> dict[str, Any]:
    from crsdata.errors import BadInputError
    from crsdata.metrics.baselines import popularity_counts, popularity_predictions

    config = ctx.config
    result: dict[str, Any] = {"lists": {}}
    if config.baseline == "popularity":
        source = config.popularity_split
        if source == ctx.split:
            raise Unavailable(
                f"--popularity-split {source} is the split being scored: popularity must come from another"
            )
        if source not in ctx.all_splits:
            raise Unavailable(f"no split {source!r} to count popularity in; the folder has {sorted(ctx.all_splits)}")
        train_turns = ctx.turns(list(ctx.all_splits[source]))
        if not train_turns:
            raise Unavailable(f"no recommendation turns in split {source!r} to count popularity in")
        counts = popularity_counts(t.items for t in train_turns)
        turns = ctx.turns()
        mentioned = None if config.keep_mentioned else [t.mentioned for t in turns]
        lists = popularity_predictions(counts, len(turns), max(config.k), mentioned)
        result["popularity"] = {"split": source, "turns": len(train_turns), "items": len(counts)}
        result["lists"][f"popularity baseline ({source} counts)"] = _ranked(ctx, lists, turns)
    ranked = ctx.ranked_predictions()
    if ranked:
        index = {(t.dialogue_id, t.index): t for t in ctx.turns()}
        turns, lists = [], []
        for p in ranked:
            turn = index.get((str(p["dialogue_id"]), int(p["index"])))
            if turn is None:
                raise BadInputError(
                    config.predictions,
                    f"line {p['_line']}",
                    "index",
                    f"dialogue {p['dialogue_id']} turn {p['index']} is not a recommendation turn of split {ctx.split}",
                )
            turns.append(turn)
            lists.append([str(i) for i in p["items"]])
        result["lists"]["predictions"] = _ranked(ctx, lists, turns)
    return result


def _ranking_rows(result: dict[str, Any], ctx: Context) -> list[Row]:
    rows = []
    for scope, scores in result["lists"].items():
        ranking = scores["ranking"]
        rows += [
            Row(f"{name}@{k}", scope, ranking[f"{name}@{k}"], ranking["n_evaluated"])
            for name in ("recall", "ndcg", "mrr")
            for k in ctx.config.k
        ]
        if "match_score@1" in scores:
            scored = scores["match_score@1"]
            rows.append(Row("match_score@1", scope, scored["match_score"], scored["n_scored"]))
    return rows


# ---------------------------------------------------------------------------------------------------------
# BERTScore of generated responses


def _bertscore(ctx: Context) -> dict[str, Any]:
    from crsdata.errors import BadInputError
    from crsdata.metrics.bertscore import bertscore

    texts = ctx.text_predictions()
    by_id = {r["dialogue_id"]: r for r in ctx.records}
    references = []
    for p in texts:
        record = by_id.get(str(p["dialogue_id"]))
        turn = next((t for t in (record or {}).get("turns", []) if t["index"] == int(p["index"])), None)
        if turn is None:
            raise BadInputError(
                ctx.config.predictions,
                f"line {p['_line']}",
                "index",
                f"no turn {p['index']} in dialogue {p['dialogue_id']} of split {ctx.split}",
            )
        references.append(turn["text"])
    config = ctx.config
    scores = bertscore(
        [str(p["text"]) for p in texts], references, model=config.bertscore_model, num_layers=config.num_layers
    )
    # The per-response lists stay out of the details: the means and the model are what the numbers mean.
    return {**{k: v for k, v in scores.items() if k not in ("precision", "recall", "f1")}, "n": len(texts)}


def _bertscore_rows(result: dict[str, Any], ctx: Context) -> list[Row]:
    rescaled = ", rescaled" if result["rescaled"] else ""
    scope = f"predictions ({result['model']}, layer {result['num_layers']}{rescaled})"
    return [
        Row(f"bertscore_{name}", scope, result[f"mean_{name}"], result["n"]) for name in ("precision", "recall", "f1")
    ]


# ---------------------------------------------------------------------------------------------------------
# The registry

METRICS: tuple[Metric, ...] = (
    Metric(
        "dist",
        "Dist-n of user and recommender turns, over the corpus and per utterance (any folder)",
        (TURN_TEXT,),
        _dist,
        _dist_rows,
    ),
    Metric(
        "self_play_outcomes",
        "who accepted what inside self-play dialogues: self_play_accept_rate and the shares whose first "
        "acceptance is the target, another item before the target came up, or neither",
        (SELF_PLAY, TARGETS, RECOMMEND_ACTIONS),
        _self_play,
        _self_play_rows,
        note="self_play_* are read from the self-play dialogues themselves (the simulated user answering the "
        "simulated recommender); they are not Interplay's SR/ET/FR, which replay real recommender turns to the "
        "user simulator (section 4.3.1): run `crsdata replay` for those.",
    ),
    Metric(
        "recall_at_1",
        "first item of each recommendation turn vs the dialogue's target_items (Interplay 4.3.3)",
        (RECOMMENDATION_TURNS, TURNS_WITH_TARGETS),
        _recall_at_1,
        _recall_at_1_rows,
    ),
    Metric(
        "match_score",
        "recommendation turns vs target_items in item-embedding space (Interplay 4.3.3)",
        (ITEMS, RECOMMENDATION_TURNS, TURNS_WITH_TARGETS),
        _match_score,
        _match_score_rows,
    ),
    Metric(
        "ranking",
        "Recall/NDCG/MRR@k of ranked lists (GRSU/iEvaLM), and Match Score of their top item with a catalog",
        (RANKED_LISTS, RECOMMENDATION_TURNS),
        _ranking,
        _ranking_rows,
    ),
    Metric(
        "bertscore",
        "generated vs dataset turn texts, BERTScore with a local model",
        (GENERATED_TEXT,),
        _bertscore,
        _bertscore_rows,
    ),
)
METRICS_BY_NAME: dict[str, Metric] = {metric.name: metric for metric in METRICS}

# Names people ask for that this command does not compute, and where that quantity comes from.
NOT_HERE: dict[str, str] = {
    "sr_et_fr": "SR/ET/FR are defined by replay (Interplay section 4.3.1: real recommender turns fed to the user "
    "simulator), not by the accepts inside a folder's dialogues: run `crsdata replay` and score its decisions "
    "with the sr_et_fr module (metrics/sr_et_fr); for self-play folders, `self_play_outcomes` reports "
    "self_play_accept_rate and the related self_play_* shares",
}
