"""Dist-n lexical diversity as an ``evaluate`` measurement, over :func:`crsdata.metrics.distinct_n_scores`."""

import datasets
import evaluate

from crsdata.metrics import distinct_n_scores

_DESCRIPTION = """\
Dist-n: distinct n-grams over all n-grams of the whole corpus (Interplay's Dist-4), in [0, 1]. With
`normalize_by="utterances"` it is instead distinct n-grams per utterance (the CRSLab convention, not a fraction,
often above 1), reported under `dist_n_per_utterance` so the two are never confused. Text is NFKC-normalised,
lower-cased and tokenised with the regex `\\w+(?:'\\w+)*` (’ read as '); n-grams do not cross utterances.
"""

_CITATION = """\
Ramos et al. Interplay: Training Independent Simulators for Reference-Free Conversational Recommendation, 4.3.2.
Li, Galley, Brockett, Gao, Dolan. 2016. A Diversity-Promoting Objective Function for Neural Conversation Models.
"""

_KWARGS_DESCRIPTION = """
Args:
    data (`list` of `str`): the utterances of the corpus.
    n (`int` or `list` of `int`, defaults to 4): n-gram length(s).
    normalize_by (`str`, defaults to `"ngrams"`): `"ngrams"` for the ratio, `"utterances"` for per utterance.
Returns:
    `dist_<n>` (ratio) or `dist_<n>_per_utterance` for each n.
Examples:
    >>> distinct = evaluate.load("./metrics/distinct_n")
    >>> distinct.compute(data=["the cat sat", "the cat ran"], n=2)
    {'dist_2': 0.75}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DistinctN(evaluate.Measurement):
    def _info(self):
        return evaluate.MeasurementInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"data": datasets.Value("string")}),
        )

    def _compute(self, data, n=4, normalize_by="ngrams"):
        ns = [n] if isinstance(n, int) else list(n)
        return distinct_n_scores(data, ns, normalize_by=normalize_by)
