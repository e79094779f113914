"""Metrics for conversational recommendation data, as plain functions (numpy/polars, no ``evaluate``).

One module per family; the ``evaluate`` modules in the repository's ``metrics/`` folder wrap these.

- :mod:`~crsdata.metrics.outcomes`: SR / ET / FR of a replayed user simulator (Interplay), and the outcome
  shares read from dialogues as written (self-play).
- :mod:`~crsdata.metrics.diversity`: Dist-n, ratio (Interplay) or per utterance (CRSLab convention).
- :mod:`~crsdata.metrics.ranking`: Recall@k, NDCG@k, MRR@k; Recall@1 on recommender turns.
- :mod:`~crsdata.metrics.match`: Match Score in an item-embedding space.
- :mod:`~crsdata.metrics.bertscore`: BERTScore with a local model (imports torch only when called).
- :mod:`~crsdata.metrics.turns`, :mod:`~crsdata.metrics.baselines`: recommendation turns of a dataset, and a
  popularity baseline.
- :mod:`~crsdata.metrics.registry`: the metrics of ``crsdata evaluate``, one entry each.

``python -m crsdata.metrics.report`` prints reference figures on the shared real corpora; ``crsdata evaluate``
scores a dataset folder (:mod:`crsdata.evaluation`).
"""

from crsdata.metrics.baselines import popularity_counts, popularity_predictions, popularity_ranking
from crsdata.metrics.bertscore import bertscore
from crsdata.metrics.common import MetricError, item_key
from crsdata.metrics.diversity import TOKEN_PATTERN, NgramStats, distinct_n, distinct_n_scores, ngram_stats, tokenize
from crsdata.metrics.match import (
    Embedder,
    ItemEmbeddings,
    StaticEmbeddings,
    TransformerMeanEmbedder,
    item_text,
    match_score,
    match_scores,
)
from crsdata.metrics.outcomes import (
    Decision,
    classify_outcomes,
    decisions_from_dialogue,
    dialogue_outcomes,
    is_self_play,
    sr_et_fr,
)
from crsdata.metrics.ranking import RankingScores, ranking_metrics, ranking_scores, turn_recall_at_1
from crsdata.metrics.turns import RecommendationTurn, has_recommend_actions, recommendation_turns

__all__ = [
    "TOKEN_PATTERN",
    "Decision",
    "Embedder",
    "ItemEmbeddings",
    "MetricError",
    "NgramStats",
    "RankingScores",
    "RecommendationTurn",
    "StaticEmbeddings",
    "TransformerMeanEmbedder",
    "bertscore",
    "classify_outcomes",
    "decisions_from_dialogue",
    "dialogue_outcomes",
    "distinct_n",
    "distinct_n_scores",
    "has_recommend_actions",
    "is_self_play",
    "item_key",
    "item_text",
    "match_score",
    "match_scores",
    "ngram_stats",
    "popularity_counts",
    "popularity_predictions",
    "popularity_ranking",
    "ranking_metrics",
    "ranking_scores",
    "recommendation_turns",
    "sr_et_fr",
    "tokenize",
    "turn_recall_at_1",
]
