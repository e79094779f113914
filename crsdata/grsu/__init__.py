"""GRSU: a generative-reward-model simulated user that evaluates and improves a CRS by interacting with it.

Wang et al., "Search-Based Interaction For Conversation Recommendation via Generative Reward Model Based
Simulated User" (SIGIR 2025), sections 3 and 4.1. The pieces, each usable alone:

- :mod:`~crsdata.grsu.data`: recommendation turns and the catalog of a built folder;
- :mod:`~crsdata.grsu.prompts`: the CRS (Eq. 1), scoring (Eq. 2) and critique (Eq. 3) prompts;
- :mod:`~crsdata.grsu.crs`: CRS adapters (popularity, MiniLM retrieval, any LLM backend);
- :mod:`~crsdata.grsu.user`: the simulated user: P("Yes") item scoring and attribute critiques;
- :mod:`~crsdata.grsu.search`: beam, greedy and Monte-Carlo search, and the final ranking;
- :mod:`~crsdata.grsu.evaluation`: ``crsdata crs-eval``'s run, resumable, with results and a card.
"""

from crsdata.grsu.data import EvalSet, EvalTurn, ItemTable, evaluation_turns, load_eval_set
from crsdata.grsu.evaluation import CrsEvalConfig, run_crs_eval
from crsdata.grsu.search import Critique, CrsQuery, Node, SearchPlan, final_ranking, run_search

__all__ = [
    "CrsEvalConfig",
    "CrsQuery",
    "Critique",
    "EvalSet",
    "EvalTurn",
    "ItemTable",
    "Node",
    "SearchPlan",
    "evaluation_turns",
    "final_ranking",
    "load_eval_set",
    "run_crs_eval",
    "run_search",
]
