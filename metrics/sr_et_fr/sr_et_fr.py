"""SR / ET / FR of a simulated user (Interplay): an ``evaluate`` wrapper over :func:`crsdata.metrics.sr_et_fr`."""

import datasets
import evaluate

from crsdata.metrics import MetricError, sr_et_fr
from crsdata.metrics.common import ListReferences

_DESCRIPTION = """\
Success rate (the simulated user accepts the ground-truth item), early termination (it accepts another item before
the ground truth is proposed) and failure rate (it rejects everything, the ground truth included), from the user's
accept/reject decisions on the recommended items of each dialogue. Each dialogue has exactly one target, as in
Interplay's protocol (several are an error). Each dialogue is judged at its first acceptance, so the three rates are
exclusive and sum to 1; the metric card lists how corner cases are classified.
"""

_CITATION = """\
Ramos, Fu, Rahmani, Lipani, Xia, Wang, Chatterjee. Interplay: Training Independent Simulators for Reference-Free
Conversational Recommendation, section 4.3.1.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `dict`): per dialogue, the decisions in order, each
        `{"item": str, "accepted": bool}`.
    references (`list` of `str`): the one target item of each dialogue (a list holding exactly one is accepted;
        a dialogue with several targets raises an error).
    rounds (`list` of `list` of `int`, optional): the round of each decision, shaped like `predictions`;
        decisions with equal rounds were taken together (several items answered in one user turn). Without it
        every decision is its own round.
Returns:
    `sr`, `et`, `fr` (fractions of dialogues), `n_dialogues`, and the counts `n_success`,
    `n_early_termination`, `n_failure`.
Examples:
    >>> metric = evaluate.load("./metrics/sr_et_fr")
    >>> metric.compute(predictions=[[{"item": "t", "accepted": True}]], references=["t"])["sr"]
    1.0
"""

_DECISION = {"item": datasets.Value("string"), "accepted": datasets.Value("bool")}


def _features() -> datasets.Features:
    # evaluate checks each input against every key of a struct, so an optional "round" key inside the decision
    # cannot be declared; rounds come as a separate keyword instead.
    return datasets.Features(
        {"predictions": datasets.List(_DECISION), "references": datasets.List(datasets.Value("string"))}
    )


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SrEtFr(ListReferences, evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_features(),
            reference_urls=["https://github.com/jeromeramos70/interplay-sim"],
        )

    def _compute(self, predictions, references, rounds=None):
        if rounds is not None:
            if len(rounds) != len(predictions) or any(
                len(r) != len(p) for r, p in zip(rounds, predictions, strict=True)
            ):
                raise MetricError("rounds must have one value per decision, shaped like predictions")
            predictions = [
                [(d["item"], d["accepted"], r) for d, r in zip(p, rs, strict=True)]
                for p, rs in zip(predictions, rounds, strict=True)
            ]
        result = sr_et_fr(predictions, references)
        counts = result.pop("counts")
        # Flat keys: evaluate.combine and the Space's JSON view handle flat results best.
        result.update({f"n_{name}": count for name, count in counts.items()})
        return result
