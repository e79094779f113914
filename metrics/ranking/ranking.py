"""Recall@k, NDCG@k and MRR@k for ranked recommendation lists, at any k: an ``evaluate`` wrapper over
:func:`crsdata.metrics.ranking_metrics` (definitions and conventions in the metric card)."""

import datasets
import evaluate

from crsdata.metrics import ranking_metrics
from crsdata.metrics.common import ListReferences

_DESCRIPTION = """\
Recall@k, NDCG@k and MRR@k of ranked recommendation lists against ground-truth item sets, for any set of k in one
call, each value computed from the list cut at that k. Items already mentioned in the conversation can be removed
from both the lists and the ground truth, as GRSU and iEvaLM evaluate.
"""

_CITATION = """\
GRSU, a Generative Reward model based Simulated User for conversational recommendation, section 4.1
(Recall/NDCG/MRR at 10 and 50 on ReDial and INSPIRED): https://github.com/RUCAIBox/GRSU
iEvaLM-CRS (evaluation protocol and the ReDial test turns): https://github.com/RUCAIBox/iEvaLM-CRS
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): one ranked list of item ids per example, best first.
    references (`list` of `list` of `str`, or `list` of `str`): the ground-truth item id(s) of each example.
    k (`int` or `list` of `int`, defaults to `[1, 10, 50]`): cut-offs; every k gets its own value.
    mentioned (`list` of `list` of `str`, optional): per example, items already mentioned in the conversation;
        removed from the prediction list (which closes up) and from the ground truth.
Returns:
    `recall@k`, `ndcg@k`, `mrr@k` for each k (means over examples), `n_evaluated`, and `n_skipped` (examples
    whose ground truth was all mentioned).
Examples:
    >>> ranking = evaluate.load("./metrics/ranking")
    >>> ranking.compute(predictions=[["a", "b", "c"]], references=[["c"]], k=[1, 3])["ndcg@3"]
    0.5
"""


def _features(item: str) -> datasets.Features:
    ranked = datasets.List(datasets.Value(item))
    return datasets.Features({"predictions": ranked, "references": ranked})


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Ranking(ListReferences, evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # String ids first; integer ids (ReDial movie ids as numbers) also work.
            features=[_features("string"), _features("int64")],
            reference_urls=["https://github.com/RUCAIBox/iEvaLM-CRS"],
        )

    def _compute(self, predictions, references, k=(1, 10, 50), mentioned=None):
        return ranking_metrics(predictions, references, k, mentioned=mentioned)
