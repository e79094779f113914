"""Match Score (Interplay): an ``evaluate`` wrapper over :func:`crsdata.metrics.match_score`."""

import datasets
import evaluate

from crsdata.metrics import ItemEmbeddings, MetricError, StaticEmbeddings, match_score
from crsdata.metrics.common import ListReferences

_DESCRIPTION = """\
Match Score: mean cosine similarity between the recommended items and the ground-truth item in an item-embedding
space. By default items are embedded from their catalog text (title, genres, plot or keywords, people) with
all-MiniLM-L6-v2 (mean pooling, normalised), cached on disk per catalog and model; your own item vectors can be given
instead. Interplay's embedding model (TinyBERT trained with BPR on MovieLens-32M) is not bundled: scores from the
default embedder compare systems with each other, not with the paper's numbers.
"""

_CITATION = """\
Ramos, Fu, Rahmani, Lipani, Xia, Wang, Chatterjee. Interplay: Training Independent Simulators for Reference-Free
Conversational Recommendation, section 4.3.3.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): per example, the recommended item ids in rank order.
    references (`list` of `str`, or `list` of `list` of `str`): the ground-truth item id(s); with several, each
        recommended item is scored against the closest one.
    items (`list` of `dict` or `dict`): the catalog, as rows with `item_id` and the text fields (title, year,
        genres, plot, keywords, people), or a mapping item id -> text. May be given to `evaluate.load` instead.
    item_vectors (`dict` of `str` to `list` of `float`): item id -> vector, used instead of encoding `items`.
    k (`int`, `list` of `int` or `None`, defaults to 1): score the top-k recommended items (`None`: all);
        a list gives `match_score@k` for each k.
    mentioned (`list` of `list` of `str`, optional): items already mentioned, removed from the predictions first
        (the same option as the ranking metric, so the two combine).
    on_missing (`str`, defaults to `"error"`): `"skip"` drops item ids the catalog lacks and counts them.
    cache_dir (`str`, optional): where embeddings are cached (default `~/.cache/crsdata/embeddings` or
        `$CRSDATA_CACHE/embeddings`).
Returns:
    `match_score` (or `match_score@k` per k), `n_scored`, `n_empty`, `n_without_known_target`, `n_missing_items`.
Examples:
    >>> match = evaluate.load("./metrics/match_score")
    >>> vectors = {"a": [1.0, 0.0], "b": [0.0, 1.0]}
    >>> match.compute(predictions=[["a"], ["b"]], references=["a", "a"], item_vectors=vectors)["match_score"]
    0.5
"""


def _features() -> datasets.Features:
    ranked = datasets.List(datasets.Value("string"))
    return datasets.Features({"predictions": ranked, "references": ranked})


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MatchScore(ListReferences, evaluate.Metric):
    def __init__(self, *args, items=None, item_vectors=None, embedder=None, cache_dir=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Given at load time, the catalog (and its embedding cache) serves every compute call.
        self._default_vectors = None
        if item_vectors is not None:
            self._default_vectors = StaticEmbeddings(item_vectors)
        elif items is not None:
            self._default_vectors = ItemEmbeddings(items, embedder, cache_dir)

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_features(),
            reference_urls=["https://github.com/jeromeramos70/interplay-sim"],
        )

    def _compute(
        self,
        predictions,
        references,
        items=None,
        item_vectors=None,
        k=1,
        mentioned=None,
        on_missing="error",
        cache_dir=None,
    ):
        if item_vectors is not None:
            vectors = StaticEmbeddings(item_vectors)
        elif items is not None:
            vectors = ItemEmbeddings(items, cache_dir=cache_dir)
        elif self._default_vectors is not None:
            vectors = self._default_vectors
        else:
            raise MetricError("Match Score needs the catalog: pass items=... or item_vectors=... (here or to load)")
        if mentioned is not None:
            if len(mentioned) != len(predictions):
                raise MetricError(f"{len(predictions)} predictions but {len(mentioned)} lists of mentioned items")
            predictions = [[i for i in p if i not in set(m)] for p, m in zip(predictions, mentioned, strict=True)]
        ks = [k] if k is None or isinstance(k, int) else sorted(int(x) for x in k)
        if len(ks) == 1:
            top = [p if ks[0] is None else p[: ks[0]] for p in predictions]
            return match_score(top, references, vectors, on_missing=on_missing)
        result, counts = {}, {}
        for cut in ks:
            top = [p if cut is None else p[:cut] for p in predictions]
            scores = match_score(top, references, vectors, on_missing=on_missing)
            result[f"match_score@{cut}"] = scores.pop("match_score")
            counts = scores  # counts of the last (largest) k: it covers every item any smaller k scored
        return {**result, **counts}
