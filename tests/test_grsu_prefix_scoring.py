"""P("Yes") with the conversation prefix run once per turn (its key/value cache repeated over the items' suffixes)
equals running each whole scoring prompt alone, on real ReDial turns: the tiny random model, and (slow) the
embedded SmolLM2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crsdata.backends import ChatRequest, make_backend
from crsdata.grsu.data import EvalTurn, ItemTable
from crsdata.grsu.prompts import SCORE_OPTIONS, scoring_messages
from crsdata.grsu.user import GenerativeScorer, common_prefix_length, shared_prefix_probabilities

REDIAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "redial"
CATALOG = REDIAL / "redial__id2info.json"
pytestmark = pytest.mark.skipif(not CATALOG.is_file(), reason=f"ReDial catalog not found under {REDIAL}")
ITEMS_TO_SCORE = ("204334", "111776", "77161", "100030", "94688")


@pytest.fixture(scope="module")
def items() -> ItemTable:
    from crsdata.catalog import Catalog

    return ItemTable.from_rows(Catalog.from_paths([CATALOG]).rows())


def real_turns(count: int) -> list[EvalTurn]:
    """The first ``count`` turns of iEvaLM's ReDial test file, their last two utterances (the tiny model reads
    512 positions)."""
    turns = []
    with (REDIAL / "redial_eval__test_data_processed.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            roles = ["user", "recommender"]
            context = tuple((roles[i % 2], t) for i, t in enumerate(record["context"]) if t)[-2:]
            key = f"{record['dialog_id']}-{record['turn_id']}"
            turns.append(EvalTurn(key, str(record["dialog_id"]), context, ("204334",), ()))
            if len(turns) == count:
                return turns
    return turns


def unshared(backend, items: ItemTable, pairs) -> list[float]:
    """Each whole prompt alone, one forward pass each: the reference."""
    option_ids = torch.tensor(backend.option_token_ids(list(SCORE_OPTIONS)))
    scores = []
    with torch.inference_mode():
        for turn, item in pairs:
            ids = backend.encode(ChatRequest(messages=scoring_messages(turn, items, item)))
            logits = backend.model(input_ids=torch.tensor([ids])).logits[0, -1].float()
            probs = logits.softmax(-1)[option_ids]
            scores.append(float(probs[0] / probs.sum()))
    return scores


def check_equal(model_dir: str, items: ItemTable, batch_size: int) -> None:
    pairs = [(turn, item) for turn in real_turns(3) for item in ITEMS_TO_SCORE]
    backend = make_backend("local", model_dir, max_batch_size=batch_size)
    shared = GenerativeScorer(backend, items).score(pairs)
    reference = unshared(backend, items, pairs)
    assert shared == pytest.approx(reference, abs=1e-4)
    assert len({round(s, 6) for s in shared}) > 1  # not one constant


def test_shared_prefix_equals_unshared_with_the_tiny_model(items: ItemTable, tiny_model_dir: Path) -> None:
    # batch size 2: chunks of unequal suffixes, padded between the prefix and the suffix
    check_equal(str(tiny_model_dir), items, batch_size=2)


def test_common_prefix_leaves_every_last_token_to_run() -> None:
    assert common_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert common_prefix_length([[1, 2, 3], [1, 2, 3]]) == 2
    assert common_prefix_length([[7, 8]]) == 1
    assert common_prefix_length([[1, 2], [3, 4]]) == 0


def test_rows_with_nothing_in_common_still_score(tiny_model_dir: Path) -> None:
    backend = make_backend("local", str(tiny_model_dir))
    rows = [backend.encode(ChatRequest(prompt=text)) for text in ("Do you like Alien?", "Heat. Yes or no?")]
    probs = shared_prefix_probabilities(backend.model, rows, [5, 6], backend.pad_token_id)
    assert all(sum(p) == pytest.approx(1.0) for p in probs) and probs[0] != probs[1]


@pytest.mark.slow
def test_shared_prefix_equals_unshared_with_smollm2(items: ItemTable, embedded_model_dir: Path) -> None:
    check_equal(str(embedded_model_dir), items, batch_size=4)


def test_a_prompt_past_the_model_limit_is_a_clear_error(items: ItemTable, tiny_model_dir: Path) -> None:
    from crsdata.backends import BackendError

    turn = EvalTurn("long-1", "long", (("user", "I like films. " * 400),), ("204334",), ())
    backend = make_backend("local", str(tiny_model_dir))
    with pytest.raises(BackendError, match="turn long-1 has .* tokens; .* at most 512"):
        GenerativeScorer(backend, items).score([(turn, "204334")])
