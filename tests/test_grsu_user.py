"""GRSU's simulated user and prompts on real ReDial turns: P("Yes") scoring (local tiny model, and a server's
logprobs read GRSU's way), attribute critiques from the real catalog, and the CRS reply parser and grounding."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from fixtures.fake_server import FakeServer, Reply, backend_for, completion

from crsdata.backends import BackendError, ChatRequest, make_backend
from crsdata.grsu.crs import PopularityCRS, TitleGrounder, top_k
from crsdata.grsu.data import EvalTurn, ItemTable
from crsdata.grsu.prompts import (
    SCORE_OPTIONS,
    SCORE_QUESTION,
    parse_titles,
    recommendation_messages,
    scoring_context,
    scoring_messages,
)
from crsdata.grsu.search import Critique, CrsQuery, Node
from crsdata.grsu.user import AttributeCritic, AttributeIndex, GenerativeScorer

REDIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "redial"
CATALOG = REDIAL / "redial__id2info.json"
pytestmark = pytest.mark.skipif(not CATALOG.is_file(), reason=f"ReDial catalog not found under {REDIAL}")


@pytest.fixture(scope="module")
def items() -> ItemTable:
    from crsdata.catalog import Catalog

    return ItemTable.from_rows(Catalog.from_paths([CATALOG]).rows())


def real_turn() -> EvalTurn:
    """Test turn 20041-4 of iEvaLM's file, as crs-eval reads it (the rec is Happy Death Day (2017))."""
    line = next(
        json.loads(line)
        for line in (REDIAL / "redial_eval__test_data_processed.jsonl").open(encoding="utf-8")
        if '"dialog_id": "20041", "turn_id": 4' in line
    )
    roles = ["user", "recommender"]
    context = tuple((roles[i % 2], text) for i, text in enumerate(line["context"]) if text)
    # A Nightmare on Elm Street (1984), mentioned by the seeker.
    return EvalTurn("20041-4", "20041", context, ("204334",), ("77161",))


def test_prompt_layout_shares_the_conversation(items: ItemTable) -> None:
    turn = real_turn()
    prompts = [scoring_messages(turn, items, i)[0]["content"] for i in ("204334", "111776")]
    prefix = scoring_context(turn)
    assert all(p.startswith(prefix) for p in prompts)
    assert "User: I am looking for a movie recommendation. When I was younger" in prefix
    assert prompts[0][len(prefix) :].startswith("1. Happy Death Day (2017)\n  - genre: ")
    assert prompts[0].endswith(f"{SCORE_QUESTION} Answer Yes or No.")
    revise = recommendation_messages(turn, items, 10, ("204334",), "More comedy, please.")[0]["content"]
    assert "## Recommendation\n\nSystem:\n1. Happy Death Day (2017)" in revise
    assert "## Feedback\n\nUser: More comedy, please." in revise and "recommend 10 movies" in revise


def test_local_scoring_is_option_probabilities_and_context_sharing_changes_nothing(
    items: ItemTable, tiny_model_dir: Path
) -> None:
    turn = real_turn()
    pairs = [(turn, i) for i in ("204334", "111776", "77161", "100030")]
    backend = make_backend("local", str(tiny_model_dir))
    shared = GenerativeScorer(backend, items).score(pairs)  # the conversation run once (test_grsu_prefix_scoring)
    plain_backend = make_backend("local", str(tiny_model_dir))
    plain = GenerativeScorer(plain_backend, items, share_context=False).score(pairs)
    assert plain_backend.prompt_stats.reused_tokens == 0
    assert shared == pytest.approx(plain, abs=1e-5)
    direct = plain_backend.option_probabilities(
        [ChatRequest(messages=scoring_messages(turn, items, "204334"))], SCORE_OPTIONS
    )
    assert shared[0] == pytest.approx(direct[0]["Yes"], abs=1e-5)
    assert all(0.0 < s < 1.0 for s in shared) and len(set(shared)) > 1


def greedy_only(token: str, probability: float) -> Any:
    """A server that returns the chosen token's logprob and no alternatives (GRSU's vLLM reading)."""

    def reply(path: str, payload: dict[str, Any], attempt: int) -> Reply:
        status, body, delay, headers = completion(payload, token)
        first = {"token": token, "logprob": math.log(probability), "top_logprobs": []}
        body["choices"][0]["logprobs"] = {"content": [first]}
        return status, body, delay, headers

    return reply


@pytest.mark.parametrize(("token", "probability", "p_yes"), [("Yes", 0.8, 0.8), ("No", 0.7, 0.3), (" No", 0.9, 0.1)])
def test_server_score_is_p_or_one_minus_p_of_the_greedy_token(
    items: ItemTable, token: str, probability: float, p_yes: float
) -> None:
    server = FakeServer(greedy_only(token, probability))
    try:
        scorer = GenerativeScorer(backend_for(server), items)
        assert scorer.score([(real_turn(), "204334")]) == [pytest.approx(p_yes)]
        # The shared context went first as a one-token generation; the scoring request asked for logprobs.
        assert [p.get("logprobs") for _, p, _ in server.requests] == [None, True]
    finally:
        server.stop()


def test_server_without_logprobs_is_a_clear_error(items: ItemTable) -> None:
    server = FakeServer()  # answers like `transformers serve`: text, no logprobs
    try:
        with pytest.raises(BackendError, match="returned no logprobs.*transformers serve"):
            GenerativeScorer(backend_for(server), items).score([(real_turn(), "204334")])
    finally:
        server.stop()


def test_attribute_critique_names_what_the_seeker_said(items: ItemTable) -> None:
    turn = EvalTurn("k", "g", (("user", "I love horror and anything with Bill Murray"),), ("1",), ("77161",))
    index = AttributeIndex(items)
    assert index.find(turn.user_text()) == [("genre", "horror"), ("actor", "Bill Murray")]
    critic = AttributeCritic(items, index)
    node = Node(0, 1, ("111776", "151656"), scores=(0.8, 0.2))
    weights = critic.candidates(turn, node)
    assert max(weights, key=weights.get) == ("genre", "horror")  # said (3) + Nightmare on Elm Street's genre (1)
    first, second = critic.critique([(turn, node)], 2, [5])[0]
    assert first != second and {first.attribute, second.attribute} <= {"genre", "actor", "writer", "director"}
    assert first.avoid == ("151656",) and "Nothing like Police Academy (1984)." in first.text
    again = critic.critique([(turn, node)], 2, [5])[0]
    assert again == [first, second]  # same seed, same critiques


def test_popularity_crs_follows_a_genre_critique(items: ItemTable) -> None:
    counts = {"151656": 50, "111776": 40, "204334": 5}  # Police Academy, Super Troopers, Happy Death Day
    crs = PopularityCRS(items, counts)
    turn = real_turn()
    plain = crs.recommend([CrsQuery(turn, 2, 0)])[0]
    assert plain == ["151656", "111776"]
    horror = Critique("More horror.", "genre", "horror")
    revised = crs.recommend([CrsQuery(turn, 2, 0, critique=horror, exclude=frozenset({"77161"}))])[0]
    assert revised[0] == "204334" and "horror" in items.attributes(revised[1])["genre"]


def test_top_k_samples_within_the_pool() -> None:
    import numpy as np

    scores = np.arange(100, dtype=float)
    allowed = np.ones(100, dtype=bool)
    allowed[99] = False
    assert top_k(scores, 3, allowed, seed=None, temperature=1.0) == [98, 97, 96]
    draws = {tuple(top_k(scores, 3, allowed, seed=s, temperature=100.0, pool=10)) for s in range(30)}
    assert len(draws) > 1 and all(min(d) >= 89 and 99 not in d for d in draws)


def test_parse_and_ground_a_reply(items: ItemTable) -> None:
    reply = (
        "Sure! Here are some movies:\n1. **Happy Death Day (2017)** - a fun slasher\n2. Police Academy: great\n"
        "3. The Shining (1980)\n4. Happy Death Day (2017)"
    )
    titles = parse_titles(reply)
    assert titles == ["Happy Death Day (2017)", "Police Academy", "The Shining (1980)"]
    grounder = TitleGrounder(items)
    grounded = grounder.ground(titles)
    assert [items.title(i)[:14] for i in grounded] == ["Happy Death Da", "Police Academy", "The Shining (1"]
    # A mentioned (excluded) match is dropped, not replaced by the next closest title.
    assert grounder.ground(titles, exclude=frozenset({grounded[1]})) == [grounded[0], grounded[2]]
