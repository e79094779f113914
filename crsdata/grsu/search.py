"""Search-based interaction between a CRS and the simulated user (GRSU section 3.3), and the final ranking.

A *state* is an item list the CRS recommended; an *action* is a critique of it by the simulated user; the
transition is the CRS revising the list with that critique (Eq. 1); the reward of a state is the mean of the
user's scores of its items (Eq. 2). The search methods differ only in their schedule (:class:`SearchPlan`):

============  =========================================================================================
``beam``      GRSU's search: the root (the conversation alone) is expanded into N² lists (N when B = 1);
              each of D steps keeps the B best lists, and each kept list gets N critiques, each revised
              into one new list. Lists: N² + (D - 1)·B·N (B = N = 4, D = 5: 80, as in the paper).
              ``--beam-width 1`` is the paper's "greedy search (small)".
``greedy``    the paper's "greedy search (large)": beam width 1 and B·N lists at every step, so that its
              budget, D·B·N lists, equals beam search's when B = N.
``mc``        the paper's "Monte Carlo search": depth one, all of beam search's budget sampled from the root
              (no critique ever).
============  =========================================================================================

The final ranking (GRSU's "efficient candidate ranking") is every item scored during the search, sorted by its
score (the mean when scored more than once); ties keep the order in which items were first recommended.

The search runs many turns in lockstep: each step makes one batched CRS call, one batched critique call and one
batched scoring call for all turns, which is what keeps a 2-core CPU busy. Everything that depends on chance
takes a seed derived from the run seed and the node's place in the tree (:func:`derive_seed`), so a turn's search
does not depend on which turns share its batch, and a resumed run gives the same lists.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from crsdata.grsu.data import EvalTurn

SEARCH_METHODS = ("beam", "greedy", "mc")


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (run seed, turn key, node id...): stable across runs and machines."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass(frozen=True)
class Critique:
    """The user's feedback on a list: ``text`` as said, and, when built from a catalog attribute, which one
    (``attribute`` genre/actor/writer/director, ``value``) and the items it rejects (``avoid``)."""

    text: str
    attribute: str = ""
    value: str = ""
    avoid: tuple[str, ...] = ()


@dataclass(frozen=True)
class CrsQuery:
    """One call of the CRS: recommend ``k`` items for ``turn``.

    ``sample``: draw one list from the CRS's distribution (search) instead of its single best list (zero-shot).
    ``previous`` and ``critique``: the list being revised and the user's critique of it (Eq. 1 with feedback).
    ``exclude``: items not to recommend (mentioned in the conversation; recommended earlier on this path).
    """

    turn: EvalTurn
    k: int
    seed: int
    sample: bool = False
    previous: tuple[str, ...] = ()
    critique: Critique | None = None
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SearchPlan:
    """A search method and its widths: B (``beam_width``), N (``expand_width``), D (``depth``)."""

    method: str = "beam"
    beam_width: int = 2
    expand_width: int = 2
    depth: int = 2

    def __post_init__(self) -> None:
        if self.method not in SEARCH_METHODS:
            raise ValueError(f"search method must be one of {', '.join(SEARCH_METHODS)}, not {self.method!r}")
        for name in ("beam_width", "expand_width", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.expand_width < self.beam_width:
            raise ValueError(
                f"the expansion width N ({self.expand_width}) must be at least the beam width B ({self.beam_width})"
            )

    def schedule(self) -> list[tuple[int, int]]:
        """One ``(children per kept list, lists kept)`` pair per step; the first step expands the root."""
        b, n, d = self.beam_width, self.expand_width, self.depth
        if self.method == "mc":
            return [(SearchPlan("beam", b, n, d).total_lists, 0)]
        if self.method == "greedy":
            return [(b * n, 1)] * d
        return [(n * n if b > 1 else n, b)] + [(n, b)] * (d - 1)

    @property
    def total_lists(self) -> int:
        """Item lists the CRS recommends per turn (its calls; the zero-shot list is not counted)."""
        total, frontier = 0, 1
        for children, kept in self.schedule():
            total += frontier * children
            frontier = kept
        return total


@dataclass
class Node:
    """A state of the search: the list ``items`` the CRS recommended after ``critique`` of ``parent``'s list."""

    id: int
    depth: int
    items: tuple[str, ...]
    parent: Node | None = None
    critique: Critique | None = None
    scores: tuple[float, ...] = ()
    path_items: frozenset[str] = frozenset()  # everything recommended from the root down to this list

    @property
    def reward(self) -> float:
        """Mean score of the items (Eq. 2's list score); -inf for a list with no item, so it is kept last."""
        return sum(self.scores) / len(self.scores) if self.scores else -math.inf


@dataclass
class SearchOutcome:
    """A turn's search: every node in creation order, and the final ranking."""

    turn: EvalTurn
    nodes: list[Node] = field(default_factory=list)
    ranking: list[str] = field(default_factory=list)
    item_scores: dict[str, float] = field(default_factory=dict)

    @property
    def crs_calls(self) -> int:
        return len(self.nodes)


Recommend = Callable[[list[CrsQuery]], list[list[str]]]
CritiqueFn = Callable[[list[tuple[EvalTurn, Node]], int, list[int]], list[list[Critique]]]
Score = Callable[[list[tuple[EvalTurn, str]]], list[float]]


def final_ranking(nodes: Sequence[Node]) -> tuple[list[str], dict[str, float]]:
    """Every scored item of ``nodes``, best mean score first; ties in order of first recommendation."""
    totals: dict[str, list[float]] = {}
    for node in nodes:
        for item, score in zip(node.items, node.scores, strict=True):
            totals.setdefault(item, []).append(score)
    means = {item: sum(s) / len(s) for item, s in totals.items()}
    order = {item: i for i, item in enumerate(totals)}
    ranking = sorted(means, key=lambda item: (-means[item], order[item]))
    return ranking, means


def run_search(
    turns: Sequence[EvalTurn],
    plan: SearchPlan,
    recommend: Recommend,
    critique: CritiqueFn,
    score: Score,
    *,
    list_size: int = 10,
    seed: int = 0,
) -> list[SearchOutcome]:
    """Searches all ``turns`` in lockstep (see the module doc) and returns one outcome per turn, in order.

    ``recommend`` answers a batch of :class:`CrsQuery`; ``critique`` gives ``n`` critiques for each
    ``(turn, node)`` with the given seeds; ``score`` gives the user's score of each ``(turn, item)``.
    """
    outcomes = [SearchOutcome(turn) for turn in turns]
    next_id = [0] * len(turns)
    frontiers: list[list[Node | None]] = [[None] for _ in turns]  # None is the root: the conversation alone
    for depth, (children, kept) in enumerate(plan.schedule(), start=1):
        # The critiques of every kept list of every turn, in one call.
        parents = [(t, node) for t, frontier in enumerate(frontiers) for node in frontier if node is not None]
        critique_seeds = [derive_seed(seed, turns[t].key, "critique", node.id) for t, node in parents]
        critiques = critique([(turns[t], node) for t, node in parents], children, critique_seeds) if parents else []
        by_parent = {(t, node.id): found for (t, node), found in zip(parents, critiques, strict=True)}
        queries: list[CrsQuery] = []
        origins: list[tuple[int, Node | None, Critique | None]] = []
        for t, frontier in enumerate(frontiers):
            turn = turns[t]
            mentioned = frozenset(turn.mentioned)
            for node in frontier:
                feedback: Sequence[Critique | None] = [None] * children if node is None else by_parent[(t, node.id)]
                for child, found in enumerate(feedback):
                    parent_id = "root" if node is None else node.id
                    query_seed = derive_seed(seed, turn.key, "recommend", depth, parent_id, child)
                    if node is None:
                        query = CrsQuery(turn, list_size, query_seed, sample=True, exclude=mentioned)
                    else:
                        query = CrsQuery(
                            turn,
                            list_size,
                            query_seed,
                            sample=True,
                            previous=node.items,
                            critique=found,
                            exclude=mentioned | node.path_items,
                        )
                    queries.append(query)
                    origins.append((t, node, found))
        lists = recommend(queries) if queries else []
        new_nodes: list[tuple[int, Node]] = []
        for (t, parent, found), items in zip(origins, lists, strict=True):
            path = (parent.path_items if parent is not None else frozenset()) | frozenset(items)
            node = Node(next_id[t], depth, tuple(items), parent, found, path_items=path)
            next_id[t] += 1
            outcomes[t].nodes.append(node)
            new_nodes.append((t, node))
        # Every new (turn, item) pair scored in one call; the user caches repeats.
        pairs = [(turns[t], item) for t, node in new_nodes for item in node.items]
        scores = iter(score(pairs)) if pairs else iter(())
        for _, node in new_nodes:
            node.scores = tuple(next(scores) for _ in node.items)
        for t in range(len(turns)):
            mine = [node for u, node in new_nodes if u == t]
            # Stable sort: among equal rewards the earlier list wins, so the choice never depends on the batch.
            frontiers[t] = sorted(mine, key=lambda node: -node.reward)[:kept]
    for outcome in outcomes:
        outcome.ranking, outcome.item_scores = final_ranking(outcome.nodes)
    return outcomes
