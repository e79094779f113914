"""Dist-n: lexical diversity as distinct n-grams, in the two conventions found in CRS papers.

**Ratio (default, ``normalize_by="ngrams"``)**: distinct n-grams over all n-grams, counted across the whole
corpus (Interplay's Dist-4: "the fraction of unique 4-grams in the generated responses, computed over the whole
test set"). It lies in [0, 1]; n-grams never span two utterances.

**Per utterance (``normalize_by="utterances"``)**: distinct n-grams of the corpus divided by the number of
utterances, the convention of CRSLab-style toolkits. It is a count per utterance, not a fraction, and exceeds 1
on any corpus with a few varied sentences; it is reported under a different key (``dist_4_per_utterance``) so
the two are never mixed up in a table.

Tokenisation, identical in both: the text is lower-cased and NFKC-normalised (so "²" is "2" and "ﬁ" is "fi"),
the typographic apostrophe (’) becomes ``'``, emoji variation selectors (U+FE00-FE0F) are dropped, and tokens are
the matches of :data:`TOKEN_PATTERN` (``\\w+(?:'\\w+)*``) with Unicode word characters: runs of letters, marks,
digits and underscores, with inner apostrophes kept ("don't" and "don’t" are the same one token). Punctuation
and white space separate tokens and are not tokens. Scripts written without spaces (Chinese) come out as one
token per run; no word segmentation is attempted.

The regex runs in polars (Rust's ``regex``, whose ``\\w`` follows Unicode's definition). Python's ``re`` gives
the same tokens on all 26,594 ReDial and RecLLMSim utterances we checked (English and Chinese) but splits words
at the combining marks of scripts such as Devanagari or Thai, so :func:`tokenize` runs the same polars
expression rather than ``re``.

The regex runs once per distinct space-separated piece of the corpus (a word with its punctuation), which gives
the same tokens as running it over each text (see :func:`_pieces`); the pieces are cut and coded in a streaming
polars query on every core. Counting is numpy and polars over dense integer token ids (n ids packed into one
int64 when the vocabulary allows, an exact column-wise unique otherwise).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa

from crsdata.metrics.common import MetricError

TOKEN_PATTERN = r"\w+(?:'\w+)*"
# Variation selectors turn an emoji into its coloured form; they are marks, so they would glue onto a word.
_VARIATION_SELECTORS = "[\ufe00-\ufe0f]"

NormalizeBy = Literal["ngrams", "utterances"]


def _normalised(texts: pl.Series) -> pl.Series:
    """Lower case, then for texts with any non-ASCII character: NFKC, lower case again (NFKC can make capitals),
    ’ as ', variation selectors dropped. ASCII text is unchanged by those steps, and skipping them for it keeps
    the corpus pass fast (NFKC costs as much as the tokenising regex)."""
    lowered = texts.str.to_lowercase()
    # UTF-8 text is all ASCII exactly when it has as many bytes as characters: two length scans, a tenth of the
    # cost of a regex test for a non-ASCII character.
    rows = (texts.str.len_bytes() != texts.str.len_chars()).fill_null(False).arg_true()
    if len(rows) == 0:
        return lowered
    special = (
        lowered.gather(rows)
        .str.normalize("NFKC")
        .str.to_lowercase()
        .str.replace_all("’", "'", literal=True)
        .str.replace_all(_VARIATION_SELECTORS, "")
    )
    return lowered.scatter(rows, special)


def _pieces(texts: pl.Series) -> pl.Series:
    """Each normalised text cut at its spaces (a list of pieces per text).

    No token contains a space (it is neither a word character nor an apostrophe), and a match of
    :data:`TOKEN_PATTERN` can start exactly where a word character is and stops at the first character that cannot
    extend it, with no look-around: so a text's tokens are its pieces' tokens, in order. Corpora repeat their
    words, so the regex runs once per distinct piece: 48 thousand of them for the 25 million pieces of the
    1M-utterance benchmark corpus.
    """
    # The streaming engine cuts the column into morsels and runs them on every core; the in-memory engine runs a
    # string function on one thread, lazy or not. Row order is kept either way.
    return (
        pl.LazyFrame({"text": _normalised(texts)})
        .select(pl.col("text").str.split(" "))
        .collect(engine="streaming")
        .to_series()
    )


def _piece_tokens(pieces: pl.Series) -> pl.Series:
    return pieces.str.extract_all(TOKEN_PATTERN)


def tokenize(text: str) -> list[str]:
    """The tokens of one utterance, by exactly the code used on whole corpora."""
    pieces = _pieces(pl.Series([text], dtype=pl.String)).explode()
    return _piece_tokens(pieces).explode(empty_as_null=False, keep_nulls=False).to_list()


@dataclass
class NgramStats:
    """Counts behind Dist-n. ``distinct[n]`` and ``total[n]`` are over the whole corpus."""

    n_utterances: int
    n_tokens: int
    distinct: dict[int, int] = field(default_factory=dict)
    total: dict[int, int] = field(default_factory=dict)

    def ratio(self, n: int) -> float:
        if self.total[n] == 0:
            raise MetricError(
                f"no {n}-grams: all {self.n_utterances} utterances have fewer than {n} tokens, Dist-{n} is undefined"
            )
        return self.distinct[n] / self.total[n]

    def per_utterance(self, n: int) -> float:
        return self.distinct[n] / self.n_utterances


def _as_series(texts: list[str]) -> pl.Series:
    try:
        series = pl.Series(texts, dtype=pl.String, strict=True)
    except TypeError:
        series = None
    if series is None or series.null_count():
        # Only on bad input: find the first non-string to name it (a scan that valid corpora never pay for).
        bad = next(i for i, t in enumerate(texts) if not isinstance(t, str))
        raise MetricError(f"utterance {bad} is {type(texts[bad]).__name__}, not a string")
    return series


def _token_ids(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (0 to the vocabulary size - 1) in corpus order, and the token count of each utterance."""
    pieces = _pieces(_as_series(texts))
    # Exploding and casting in a streaming query runs on every core. Without nulls for empty lists it leaves one
    # code per piece, in order.
    codes = (
        pl.LazyFrame({"piece": pieces})
        .select(pl.col("piece").explode(empty_as_null=False, keep_nulls=False).cast(pl.Categorical))
        .collect(engine="streaming")
        .to_series()
    )
    distinct = codes.unique()
    tokens = _piece_tokens(distinct.cast(pl.String))
    # Dense ids of the tokens: the vocabulary size decides whether n-grams pack into one int64. Categorical codes
    # are shared by every string the process has cast, so they are neither dense nor a function of this corpus.
    flat = tokens.explode(empty_as_null=False, keep_nulls=False)
    offsets = np.concatenate([[0], np.cumsum(tokens.list.len().to_numpy(), dtype=np.int64)])
    token_lists = pl.from_arrow(
        pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat.rank("dense").to_numpy() - 1))
    )
    # The token ids of every piece, through its row in `distinct`; gathers of polars lists, which reuse polars'
    # memory: fresh numpy arrays of this size cost more in page faults than the work.
    code_values = distinct.to_physical().to_numpy()
    row_of_code = np.zeros(int(code_values.max()) + 1, dtype=np.uint32)
    row_of_code[code_values] = np.arange(len(code_values), dtype=np.uint32)
    per_piece = token_lists.gather(pl.Series(row_of_code).gather(codes.to_physical()))
    ids = per_piece.explode(empty_as_null=False, keep_nulls=False).to_numpy()
    # Tokens per utterance: its pieces' token counts summed, segment by segment (every text has a piece:
    # splitting "" gives [""], so no segment is empty).
    first_piece = np.cumsum(pieces.list.len().to_numpy(), dtype=np.int64)
    first_piece[1:] = first_piece[:-1]
    first_piece[0] = 0
    lengths = np.add.reduceat(per_piece.list.len().to_numpy(), first_piece).astype(np.int64)
    return ids, lengths


def _count_distinct_ngrams(ids: np.ndarray, lengths: np.ndarray, n: int) -> tuple[int, int]:
    total = int(np.maximum(lengths - n + 1, 0).sum())
    if total == 0:
        return 0, 0
    starts = len(ids) - n + 1  # flat positions where an n-gram could start
    # An n-gram starting in the last n - 1 positions of an utterance would run into the next one: those few
    # positions (at most n - 1 per utterance) are marked instead of testing every position.
    ends = np.cumsum(lengths)
    tails = ends[:, None] - np.arange(1, n, dtype=np.int64)[None, :]
    tails = tails[(tails >= (ends - lengths)[:, None]) & (tails < starts)]
    vocab = int(ids.max()) + 1
    if vocab**n < 2**63:
        # Exact packing of the n token ids into one int64 (base = vocabulary size), built in place: at a million
        # utterances every extra array of this size costs more in page faults than the arithmetic.
        key = ids[:starts].astype(np.int64)
        for i in range(1, n):
            key *= vocab
            key += ids[i : starts + i]
        key[tails] = -1  # keys are >= 0, so -1 marks the n-grams that cross utterances: one extra distinct value
        return int(pl.Series(key).n_unique()) - int(len(tails) > 0), total
    valid = np.ones(starts, dtype=bool)
    valid[tails] = False
    columns = {f"w{i}": ids[i : starts + i][valid] for i in range(n)}
    return int(pl.DataFrame(columns).unique().height), total


def ngram_stats(texts: Iterable[str], ns: Sequence[int] = (4,)) -> NgramStats:
    """Distinct and total n-grams of the corpus for each ``n`` in ``ns`` (tokenised once)."""
    texts = list(texts)
    if not texts:
        raise MetricError("empty corpus: Dist-n needs at least one utterance")
    ns = [int(n) for n in ns]
    if not ns or min(ns) < 1:
        raise MetricError(f"n must be positive integers, got {ns}")
    ids, lengths = _token_ids(texts)
    stats = NgramStats(n_utterances=len(texts), n_tokens=int(lengths.sum()))
    for n in ns:
        stats.distinct[n], stats.total[n] = _count_distinct_ngrams(ids, lengths, n) if len(ids) else (0, 0)
    return stats


def distinct_n(texts: Iterable[str], n: int = 4, *, normalize_by: NormalizeBy = "ngrams") -> float:
    """Dist-n of a corpus: distinct n-grams / all n-grams (default), or / utterances with ``normalize_by``.

    >>> distinct_n(["the cat sat", "the cat ran"], n=2)
    0.75
    >>> distinct_n(["the cat sat", "the cat ran"], n=2, normalize_by="utterances")
    1.5
    """
    stats = ngram_stats(texts, (n,))
    return _score(stats, n, normalize_by)


def _score(stats: NgramStats, n: int, normalize_by: str) -> float:
    if normalize_by == "ngrams":
        return stats.ratio(n)
    if normalize_by == "utterances":
        return stats.per_utterance(n)
    raise MetricError(f"normalize_by must be 'ngrams' or 'utterances', got {normalize_by!r}")


def score_key(n: int, normalize_by: str) -> str:
    """The result key: ``dist_4`` for the ratio, ``dist_4_per_utterance`` for the per-utterance count."""
    return f"dist_{n}" if normalize_by == "ngrams" else f"dist_{n}_per_utterance"


def distinct_n_scores(
    texts: Iterable[str], ns: Sequence[int] = (1, 2, 3, 4), *, normalize_by: NormalizeBy = "ngrams"
) -> dict[str, float]:
    """Dist-n for several ``n`` at once, keyed by :func:`score_key`."""
    stats = ngram_stats(texts, ns)
    return {score_key(n, normalize_by): _score(stats, n, normalize_by) for n in stats.distinct}
