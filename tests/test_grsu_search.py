"""Search bookkeeping of GRSU (crsdata.grsu.search), checked against cases computed by hand.

A fake CRS hands out lists in call order, a fake critic names each critique after its parent, and fixed item
scores stand in for the simulated user, so every kept list, query and final rank below can be worked out on paper.
"""

from __future__ import annotations

import pytest

from crsdata.grsu.data import EvalTurn
from crsdata.grsu.search import Critique, CrsQuery, Node, SearchPlan, derive_seed, final_ranking, run_search
from crsdata.grsu.user import ItemScorer, SimulatedUser


def turn(key: str = "d1#3", mentioned: tuple[str, ...] = ("m",)) -> EvalTurn:
    return EvalTurn(key, key.split("#")[0], (("user", "I like comedies"),), ("t",), mentioned)


class Scripted:
    """A fake CRS returning ``lists`` in the order it is asked, recording every query."""

    def __init__(self, lists: list[list[str]]) -> None:
        self.lists = list(lists)
        self.queries: list[CrsQuery] = []

    def __call__(self, queries: list[CrsQuery]) -> list[list[str]]:
        self.queries.extend(queries)
        return [self.lists.pop(0) for _ in queries]


def critic(parents: list[tuple[EvalTurn, Node]], n: int, seeds: list[int]) -> list[list[Critique]]:
    return [[Critique(f"c{node.id}.{j}") for j in range(n)] for _, node in parents]


SCORES = {"a": 0.9, "b": 0.1, "c": 0.8, "d": 0.6, "e": 0.2, "f": 0.2, "g": 0.7, "h": 0.5}
SCORES.update({"i": 0.95, "j": 0.05, "k": 0.3, "l": 0.4, "n": 0.45, "o": 0.15, "p": 0.35, "q": 0.25})


class TableScorer(ItemScorer):
    name = "table"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def score(self, pairs):  # one call per search step: the batch size is recorded
        self.calls.append(len(pairs))
        return [SCORES[item] for _, item in pairs]


@pytest.mark.parametrize(
    ("plan", "schedule", "total"),
    [
        # The paper's settings: 16 lists from the conversation, then 4 beams x 4 critiques for 4 more steps.
        (SearchPlan("beam", 4, 4, 5), [(16, 4)] + [(4, 4)] * 4, 80),
        (SearchPlan("beam", 2, 2, 2), [(4, 2), (2, 2)], 8),
        # N*N from the root, then B*N per step: 9 + 6 + 6.
        (SearchPlan("beam", 2, 3, 3), [(9, 2), (3, 2), (3, 2)], 21),
        # Beam width 1 is the paper's "greedy (small)": N lists a step.
        (SearchPlan("beam", 1, 4, 5), [(4, 1)] * 5, 20),
        # "greedy (large)": B*N lists a step, beam search's budget when B = N.
        (SearchPlan("greedy", 4, 4, 5), [(16, 1)] * 5, 80),
        # Monte Carlo: beam search's whole budget from the root, no critique.
        (SearchPlan("mc", 4, 4, 5), [(80, 0)], 80),
        (SearchPlan("mc", 2, 2, 2), [(8, 0)], 8),
    ],
)
def test_schedules_and_budgets(plan: SearchPlan, schedule: list[tuple[int, int]], total: int) -> None:
    assert plan.schedule() == schedule
    assert plan.total_lists == total


@pytest.mark.parametrize(
    "kwargs", [{"method": "bfs"}, {"beam_width": 3, "expand_width": 2}, {"depth": 0}, {"beam_width": 0}]
)
def test_bad_plans_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SearchPlan(**kwargs)


def test_beam_search_by_hand() -> None:
    """B = N = 2, D = 2, lists of 2 (rewards are list means):

    depth 1 (root -> 4 lists): [a b] 0.5, [c d] 0.7, [e f] 0.2, [g h] 0.6 -> keep node 1 (0.7) and node 3 (0.6);
    depth 2 (2 critiques each): node 1 -> [i j] 0.5, [k l] 0.35; node 3 -> [n o] 0.3, [p q] 0.3.
    """
    crs = Scripted([["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"], ["i", "j"], ["k", "l"], ["n", "o"], ["p", "q"]])
    scorer = TableScorer()
    user = SimulatedUser(scorer, critic=None)  # type: ignore[arg-type]
    [outcome] = run_search([turn()], SearchPlan("beam", 2, 2, 2), crs, critic, user.score, list_size=2, seed=7)

    assert outcome.crs_calls == 8 == len(crs.queries)
    assert [n.depth for n in outcome.nodes] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert [n.reward for n in outcome.nodes[:4]] == pytest.approx([0.5, 0.7, 0.2, 0.6])
    # The two kept lists are the parents of depth 2, best first; each got two critiques.
    assert [n.parent.id for n in outcome.nodes[4:]] == [1, 1, 3, 3]
    assert [n.critique.text for n in outcome.nodes[4:]] == ["c1.0", "c1.1", "c3.0", "c3.1"]
    # Root queries exclude only the mentioned items; revisions also exclude everything on their path.
    root, revision = crs.queries[0], crs.queries[4]
    assert (root.sample, root.previous, root.critique, root.exclude) == (True, (), None, frozenset({"m"}))
    assert revision.previous == ("c", "d") and revision.exclude == frozenset({"m", "c", "d"})
    assert crs.queries[6].exclude == frozenset({"m", "g", "h"})
    assert len({q.seed for q in crs.queries}) == 8
    # Final ranking: all 16 scored items by score; e and f tie at 0.2 and keep their order of recommendation.
    assert outcome.ranking == ["i", "a", "c", "g", "d", "h", "n", "l", "p", "k", "q", "e", "f", "o", "b", "j"]
    # One scoring call per step (8 pairs each), every item new.
    assert scorer.calls == [8, 8] and user.scoring_passes == 16


def test_greedy_keeps_one_list_and_spends_the_beam_budget() -> None:
    """greedy with B = N = 2: 4 lists a step, only the best one ([c d], 0.7) is critiqued 4 times."""
    lists = [["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"], ["i", "j"], ["k", "l"], ["n", "o"], ["p", "q"]]
    crs = Scripted(lists)
    user = SimulatedUser(TableScorer(), critic=None)  # type: ignore[arg-type]
    [outcome] = run_search([turn()], SearchPlan("greedy", 2, 2, 2), crs, critic, user.score, list_size=2)
    assert outcome.crs_calls == 8 == SearchPlan("greedy", 2, 2, 2).total_lists
    assert [n.parent.id for n in outcome.nodes[4:]] == [1, 1, 1, 1]
    assert [n.critique.text for n in outcome.nodes[4:]] == ["c1.0", "c1.1", "c1.2", "c1.3"]


def test_monte_carlo_samples_the_whole_budget_from_the_root() -> None:
    lists = [["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"], ["i", "j"], ["k", "l"], ["n", "o"], ["p", "q"]]
    crs = Scripted(lists)
    asked: list[int] = []

    def counting_critic(parents, n, seeds):
        asked.append(len(parents))
        return critic(parents, n, seeds)

    user = SimulatedUser(TableScorer(), critic=None)  # type: ignore[arg-type]
    [outcome] = run_search([turn()], SearchPlan("mc", 2, 2, 2), crs, counting_critic, user.score, list_size=2)
    assert outcome.crs_calls == 8 and all(n.depth == 1 and n.critique is None for n in outcome.nodes)
    assert asked == []  # no critique at depth one
    assert outcome.ranking[:3] == ["i", "a", "c"]


def test_turns_in_lockstep_do_not_change_each_other() -> None:
    """Two turns searched together give each the lists and seeds it gets alone."""
    lists = [["a", "b"], ["c", "d"], ["e", "f"], ["g", "h"], ["i", "j"], ["k", "l"], ["n", "o"], ["p", "q"]]
    plan = SearchPlan("beam", 2, 2, 2)
    alone = Scripted(lists)
    run_search([turn("x#1")], plan, alone, critic, SimulatedUser(TableScorer(), None).score, list_size=2)
    # Together: turn x's queries come first at each step, then turn y's (which gets the same lists).
    together = Scripted(lists[:4] + lists[:4] + lists[4:] + lists[4:])
    scorer = TableScorer()
    first, second = run_search(
        [turn("x#1"), turn("y#2")], plan, together, critic, SimulatedUser(scorer, None).score, list_size=2
    )
    assert [q.seed for q in together.queries if q.turn.key == "x#1"] == [q.seed for q in alone.queries]
    assert first.ranking == second.ranking
    assert scorer.calls == [16, 16]  # both turns' pairs in one call per step


def test_final_ranking_means_repeats_and_keeps_first_order_on_ties() -> None:
    x = Node(0, 1, ("x", "y"), scores=(0.2, 0.4))
    y = Node(1, 1, ("x", "z"), scores=(0.6, 0.4))
    ranking, means = final_ranking([x, y])
    assert means == pytest.approx({"x": 0.4, "y": 0.4, "z": 0.4})
    assert ranking == ["x", "y", "z"]


def test_empty_lists_are_never_kept_over_real_ones() -> None:
    crs = Scripted([[], ["c", "d"], [], ["g", "h"], ["i", "j"], ["k", "l"], ["n", "o"], ["p", "q"]])
    user = SimulatedUser(TableScorer(), critic=None)  # type: ignore[arg-type]
    [outcome] = run_search([turn()], SearchPlan("beam", 2, 2, 2), crs, critic, user.score, list_size=2)
    assert [n.parent.id for n in outcome.nodes[4:]] == [1, 1, 3, 3]


def test_user_scores_each_pair_once() -> None:
    scorer = TableScorer()
    user = SimulatedUser(scorer, critic=None)  # type: ignore[arg-type]
    t, u = turn("x#1"), turn("y#1")
    assert user.score([(t, "a"), (t, "a"), (u, "a"), (t, "b")]) == [0.9, 0.9, 0.9, 0.1]
    assert user.score([(t, "a"), (t, "c")]) == [0.9, 0.8]
    assert scorer.calls == [3, 1] and user.scoring_passes == 4
    user.forget([t])
    user.score([(t, "a")])
    assert user.scoring_passes == 5


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(0, "d1#3", "recommend", 1, "root", 0) == derive_seed(0, "d1#3", "recommend", 1, "root", 0)
    assert derive_seed(0, "d1#3", "recommend", 1, "root", 0) != derive_seed(0, "d1#3", "recommend", 1, "root", 1)
    assert 0 <= derive_seed("x") < 2**63
