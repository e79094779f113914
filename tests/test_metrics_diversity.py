"""Dist-n: hand counts, both conventions, tokenisation, edge cases, and a plain-Python recount on real turns."""

from __future__ import annotations

import glob
import json
import os
import re
import unicodedata
from pathlib import Path

import pytest

from crsdata.metrics import TOKEN_PATTERN, MetricError, distinct_n, distinct_n_scores, ngram_stats, tokenize
from crsdata.metrics.diversity import _count_distinct_ngrams

DATA = Path(os.environ.get("CRSDATA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def test_hand_counted_corpus() -> None:
    corpus = ["I loved Heat, what else is like it?", "Something like Heat, please.", "I loved it!"]
    # 8 + 4 + 3 = 15 tokens, 10 distinct; 12 bigrams, 11 distinct ("i loved" twice); 4-grams: 5 + 1 + 0, all distinct
    stats = ngram_stats(corpus, (1, 2, 4))
    assert (stats.n_utterances, stats.n_tokens) == (3, 15)
    assert (stats.distinct[1], stats.total[1]) == (10, 15)
    assert (stats.distinct[2], stats.total[2]) == (11, 12)
    assert (stats.distinct[4], stats.total[4]) == (6, 6)
    assert distinct_n(corpus, 2) == pytest.approx(11 / 12)
    assert distinct_n(corpus, 2, normalize_by="utterances") == pytest.approx(11 / 3)


def test_the_two_conventions_have_different_names_and_ranges() -> None:
    corpus = ["the cat sat on the mat", "a dog ran in the park", "the cat ran"]
    ratio = distinct_n_scores(corpus, (2,))
    per_utterance = distinct_n_scores(corpus, (2,), normalize_by="utterances")
    assert list(ratio) == ["dist_2"] and list(per_utterance) == ["dist_2_per_utterance"]
    assert 0 < ratio["dist_2"] <= 1
    assert per_utterance["dist_2_per_utterance"] > 1  # the CRSLab count exceeds 1; the ratio never does


def test_repeats_lower_the_ratio_but_not_the_distinct_count() -> None:
    once = ngram_stats(["a b c d"], (4,))
    thrice = ngram_stats(["a b c d"] * 3, (4,))
    assert once.ratio(4) == 1.0 and thrice.ratio(4) == pytest.approx(1 / 3)
    assert thrice.per_utterance(4) == pytest.approx(1 / 3)


def test_tokenisation() -> None:
    assert tokenize("Don’t STOP, me now!! 3.5 stars_ok") == ["don't", "stop", "me", "now", "3", "5", "stars_ok"]
    assert tokenize("  ...  ") == []
    assert tokenize("Héros café") == ["héros", "café"]
    assert tokenize("x² ﬁne") == ["x2", "fine"]  # NFKC
    assert tokenize("great 👍️ film") == ["great", "film"]  # the variation selector is not glued to a word
    assert tokenize("नमस्ते दोस्त") == ["नमस्ते", "दोस्त"]  # combining marks stay inside the word
    assert ngram_stats(["Don't stop", "don’t STOP!"], (2,)).distinct[2] == 1


def test_ngrams_do_not_cross_utterances() -> None:
    stats = ngram_stats(["a b", "c d"], (2, 3, 4))
    assert stats.total == {2: 2, 3: 0, 4: 0}
    assert stats.distinct[2] == 2


def test_empty_and_short_corpora() -> None:
    with pytest.raises(MetricError, match="empty corpus"):
        distinct_n([])
    with pytest.raises(MetricError, match="no 4-grams: all 2 utterances have fewer than 4 tokens"):
        distinct_n(["hi there", ""], 4)
    assert distinct_n(["hi there", ""], 4, normalize_by="utterances") == 0.0
    assert ngram_stats(["", "  "], (1,)).total[1] == 0
    with pytest.raises(MetricError, match="not a string"):
        distinct_n(["fine", None])  # type: ignore[list-item]
    with pytest.raises(MetricError, match="normalize_by"):
        distinct_n(["a b c d"], 4, normalize_by="turns")  # type: ignore[arg-type]
    with pytest.raises(MetricError, match="positive"):
        ngram_stats(["a"], (0,))


def test_wide_vocabulary_falls_back_to_exact_column_unique() -> None:
    import numpy as np

    # With 3 million distinct ids, vocab**4 overflows int64: the column-wise path must give the same counts.
    ids = np.array([0, 1, 2, 3, 0, 1, 2, 3, 2_999_999, 5, 6, 7], dtype=np.int64)
    lengths = np.array([4, 4, 4], dtype=np.int64)
    assert _count_distinct_ngrams(ids, lengths, 4) == (2, 3)
    assert _count_distinct_ngrams(ids, lengths, 2) == (6, 9)


_RE = re.compile(TOKEN_PATTERN)
_SELECTORS = re.compile("[\ufe00-\ufe0f]")


def _clean(text: str) -> str:
    return _SELECTORS.sub("", unicodedata.normalize("NFKC", text.lower()).lower().replace("’", "'"))


def _python_dist(texts: list[str], n: int) -> tuple[int, int]:
    """An independent count: Python's re and unicodedata instead of polars, sets of tuples instead of numpy."""
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        tokens = _RE.findall(_clean(text))
        for i in range(len(tokens) - n + 1):
            seen.add(tuple(tokens[i : i + n]))
            total += 1
    return len(seen), total


def test_agrees_with_plain_python_on_recllmsim_user_turns() -> None:
    files = sorted(glob.glob(str(DATA / "recllmsim" / "LLM_agent_user" / "*" / "*.json")))
    if not files:
        pytest.skip("shared RecLLMSim data not available")
    texts = []
    for path in files:
        with open(path, encoding="utf-8") as handle:
            texts += [h["content"] for h in json.load(handle)["history"] if h["role"] == "user"]
    assert len(texts) == 7096
    stats = ngram_stats(texts, (1, 4))
    for n in (1, 4):
        assert (stats.distinct[n], stats.total[n]) == _python_dist(texts, n)


def test_repeated_and_mixed_utterances_agree_with_plain_python() -> None:
    # Many exact repeats (tokenised once), case variants of one utterance (not repeats, same tokens), empty and
    # punctuation-only utterances, and non-ASCII rows that take the NFKC path next to ASCII ones.
    import random

    rng = random.Random(5)
    pieces = ["The cat", "sat on", "the MAT", "don’t", "don't", "Café", "ﬁne", "x²", "", "  ", "!!", "a b c d", "3.5"]
    texts = [" ".join(rng.choices(pieces, k=rng.randint(0, 3))) for _ in range(3000)]
    assert len(set(texts)) < len(texts) // 2
    stats = ngram_stats(texts, (1, 2, 3, 4))
    assert stats.n_utterances == 3000
    assert stats.n_tokens == sum(len(_RE.findall(_clean(t))) for t in texts)
    for n in (1, 2, 3, 4):
        assert (stats.distinct[n], stats.total[n]) == _python_dist(texts, n)
