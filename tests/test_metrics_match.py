"""Match Score: hand-computed cosines, the per-catalog embedding cache, item text, errors, and the default
MiniLM embedder against a direct transformers computation."""

from __future__ import annotations

import numpy as np
import pytest

from crsdata.metrics import ItemEmbeddings, MetricError, StaticEmbeddings, item_text, match_score, match_scores

SQRT_HALF = 2**-0.5


def test_hand_computed_with_static_vectors() -> None:
    vectors = StaticEmbeddings({"a": [1, 0], "b": [0, 1], "c": [1, 1]})
    # a vs a = 1; c vs a = 0.7071; [a, b] vs {a, c}: a -> 1, b -> max(0, 0.7071); an empty turn is not scored.
    result = match_score([["a"], ["c"], ["a", "b"], []], ["a", "a", ["a", "c"], "b"], vectors)
    expected = (1 + SQRT_HALF + (1 + SQRT_HALF) / 2) / 3
    assert result["match_score"] == pytest.approx(expected)
    assert (result["n_scored"], result["n_empty"]) == (3, 1)
    scores, _ = match_scores([["a"], []], ["b", "b"], vectors)
    assert scores[0] == pytest.approx(0.0) and np.isnan(scores[1])


def test_vectors_are_normalised_and_validated() -> None:
    assert match_score([["a"]], ["c"], StaticEmbeddings({"a": [3, 0], "c": [2, 2]}))["match_score"] == pytest.approx(
        SQRT_HALF
    )
    with pytest.raises(MetricError, match="zero vector"):
        StaticEmbeddings({"a": [0, 0]})
    with pytest.raises(MetricError, match="same length"):
        StaticEmbeddings({"a": [1, 0], "b": [1]})


def test_unknown_items_error_or_skip() -> None:
    vectors = StaticEmbeddings({"a": [1, 0], "b": [0, 1]})
    with pytest.raises(MetricError, match=r"1 item\(s\) without a vector"):
        match_score([["a", "zzz"]], ["a"], vectors)
    skipped = match_score([["a", "zzz"], ["b"]], ["a", "qqq"], vectors, on_missing="skip")
    assert skipped["match_score"] == 1.0
    assert (skipped["n_missing_items"], skipped["n_without_known_target"], skipped["n_scored"]) == (2, 1, 1)


def test_errors_on_empty_input() -> None:
    vectors = StaticEmbeddings({"a": [1, 0]})
    with pytest.raises(MetricError, match="no examples"):
        match_score([], [], vectors)
    with pytest.raises(MetricError, match="no example recommends an item"):
        match_score([[], []], ["a", "a"], vectors)
    with pytest.raises(MetricError, match="no ground-truth item"):
        match_score([["a"]], [[]], vectors)
    with pytest.raises(MetricError, match="catalog is empty"):
        ItemEmbeddings([], embedder=CountingEmbedder(), cache_dir=False)


def test_item_text() -> None:
    row = {
        "item_id": "1",
        "title": "Heat",
        "year": 1995,
        "genres": ["crime", "thriller"],
        "plot": "Robbers and a cop.",
        "people": [{"name": "Michael Mann", "role": "director"}, {"name": "Michael Mann", "role": "writer"}],
        "keywords": ["heist"],
    }
    assert item_text(row) == "Heat. crime, thriller. Robbers and a cop. Michael Mann."
    assert (
        item_text({"title": "Heat", "keywords": ["heist", "la"]}) == "Heat. heist, la."
    )  # keywords stand in for a plot


class CountingEmbedder:
    """A deterministic embedder: the vector of a text is its letter histogram. Counts what it encodes."""

    def __init__(self, name: str = "letters") -> None:
        self.name = name
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), 26))
        for row, text in enumerate(texts):
            for char in text.lower():
                if "a" <= char <= "z":
                    out[row, ord(char) - 97] += 1
        return out


CATALOG = [
    {"item_id": "1", "title": "aaa", "genres": [], "plot": ""},
    {"item_id": "2", "title": "aab", "genres": [], "plot": ""},
    {"item_id": "3", "title": "zzz", "genres": [], "plot": ""},
]


def test_cache_is_per_catalog_and_model_and_lazy(tmp_path) -> None:
    first = CountingEmbedder()
    emb = ItemEmbeddings(CATALOG, embedder=first, cache_dir=tmp_path)
    result = match_score([["2"]], ["1"], emb)
    # "aab." vs "aaa.": letter vectors (2,1) and (3,0) -> cos = 6 / (sqrt(5) * 3)
    assert result["match_score"] == pytest.approx(6 / (5**0.5 * 3))
    assert first.calls == [["aaa.", "aab."]]  # only the two items the call needed
    assert emb.cache_path is not None and emb.cache_path.is_file()

    again = CountingEmbedder()
    reread = ItemEmbeddings(CATALOG, embedder=again, cache_dir=tmp_path)
    assert match_score([["3"], ["2"]], ["1", "1"], reread)["n_scored"] == 2
    assert again.calls == [["zzz."]]  # 1 and 2 came from the cache file, 3 was added to it
    assert reread.cache_path == emb.cache_path

    edited = [dict(CATALOG[0], title="abc"), *CATALOG[1:]]
    assert ItemEmbeddings(edited, embedder=CountingEmbedder(), cache_dir=tmp_path).cache_path != emb.cache_path
    other_model = ItemEmbeddings(CATALOG, embedder=CountingEmbedder("other"), cache_dir=tmp_path)
    assert other_model.cache_path != emb.cache_path
    assert len(list(tmp_path.glob("*.npz"))) == 1  # nothing written until something is encoded


def test_text_mapping_and_no_cache() -> None:
    embedder = CountingEmbedder()
    emb = ItemEmbeddings({"x": "ab", "y": "ab"}, embedder=embedder, cache_dir=False)
    assert match_score([["x"]], ["y"], emb)["match_score"] == pytest.approx(1.0)
    assert emb.cache_path is None


def test_default_minilm_embedder_matches_direct_transformers(tmp_path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from crsdata.metrics.match import TransformerMeanEmbedder, default_model_dir

    catalog = [
        {"item_id": "1", "title": "Toy Story", "genres": ["animation"], "plot": "Toys come alive when nobody looks."},
        {"item_id": "2", "title": "Toy Story 2", "genres": ["animation"], "plot": "A toy collector steals Woody."},
        {"item_id": "3", "title": "Heat", "genres": ["crime"], "plot": "A detective hunts a crew of bank robbers."},
    ]
    embedder = TransformerMeanEmbedder(batch_size=2)
    emb = ItemEmbeddings(catalog, embedder=embedder, cache_dir=tmp_path)
    ours = emb.vectors(["1", "2", "3"])
    # Independent computation: one text at a time (no padding), mean of the token vectors, unit length.
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir())
    model = AutoModel.from_pretrained(default_model_dir()).eval()
    with torch.inference_mode():
        direct = []
        for row in catalog:
            hidden = model(**tokenizer(item_text(row), return_tensors="pt")).last_hidden_state[0]
            vector = hidden.mean(dim=0).numpy()
            direct.append(vector / np.linalg.norm(vector))
    np.testing.assert_allclose(ours, np.stack(direct), atol=1e-5)
    sequel = match_score([["2"]], ["1"], emb)["match_score"]
    other = match_score([["3"]], ["1"], emb)["match_score"]
    assert sequel > other
