"""Real records and scripted backends for the simulator tests.

ReDial and INSPIRED validation dialogues built by the source builders.

Built once per test session (a few seconds) from the shared data beside the checkout, with the shared catalog
files, exactly as ``crsdata build`` would build them.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crsdata.backends.base import Backend, ChatRequest, Generation, SamplingParams
from crsdata.builders.inspired import InspiredBuilder
from crsdata.builders.redial import RedialBuilder
from crsdata.catalog import Catalog
from crsdata.errors import SkipLog

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REDIAL_VALID = DATA / "redial" / "redial__valid_data.jsonl"
INSPIRED_DEV = DATA / "inspired" / "dev.tsv"
CATALOG_FILES = [
    DATA / "redial" / "redial__id2info.json",
    DATA / "movielens-sample" / "movies_w_keywords.csv",
    DATA / "movielens-latest-small" / "movies.csv",
]


@functools.cache
def catalog() -> Catalog:
    """The ReDial catalog merged with the MovieLens lists (the shared catalog files)."""
    return Catalog.from_paths(CATALOG_FILES)


@functools.cache
def _built(source: str) -> tuple[dict[str, Any], ...]:
    builder, path = {"redial": (RedialBuilder, REDIAL_VALID), "inspired": (InspiredBuilder, INSPIRED_DEV)}[source]
    result = builder().build([path], catalogs=CATALOG_FILES, skip=SkipLog())
    return tuple(result.splits["validation"])


def _records(source: str, limit: int | None, with_targets: bool) -> list[dict[str, Any]]:
    out = []
    for record in _built(source):
        if with_targets and not record["target_items"]:
            continue
        out.append(copy.deepcopy(record))  # tests may edit records; the cache must stay as built
        if limit is not None and len(out) >= limit:
            break
    return out


def redial_records(limit: int | None = None, with_targets: bool = True) -> list[dict[str, Any]]:
    """ReDial validation dialogues (iEvaLM's copy), in file order; those with target items by default."""
    return _records("redial", limit, with_targets)


def inspired_records(limit: int | None = None, with_targets: bool = True) -> list[dict[str, Any]]:
    """INSPIRED dev dialogues, in file order; those with a recommended (target) movie by default."""
    return _records("inspired", limit, with_targets)


# The simulation tests' favourite dialogues have no film their seekers marked suggested, unseen and liked, so the
# builder's target rule gives them none. For the mechanics tests they keep the target they had before that rule:
# the first suggestion the seeker liked (The Shining, Pan's Labyrinth, Hide and Seek).
MECHANICS_TARGETS = {"16162": "202190", "4362": "117515", "15266": "197388"}


def redial_record(dialogue_id: str, *, builder_targets: bool = False) -> dict[str, Any]:
    """A built ReDial validation dialogue; without ``builder_targets`` a dialogue of :data:`MECHANICS_TARGETS`
    that the builder's rule left without a target gets that one."""
    record = next(copy.deepcopy(r) for r in _built("redial") if r["dialogue_id"] == dialogue_id)
    if not builder_targets and not record["target_items"] and dialogue_id in MECHANICS_TARGETS:
        wanted = MECHANICS_TARGETS[dialogue_id]
        row = next(r for r in record["item_feedback"] if r["item_id"] == wanted)
        record["target_items"] = [{"item_id": wanted, "title": row["title"]}]
    return record


# ---------------------------------------------------------------------------------------------------------
# A scripted backend and simple policies for the user and the recommender.


class ScriptedBackend(Backend):
    """Answers each request with ``policy(own turns so far, last message of the other party)``."""

    def __init__(self, model_id: str, policy: Callable[[int, str], str]) -> None:
        self.model_id = model_id
        self.policy = policy
        self.requests: list[ChatRequest] = []
        self.calls = 0

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        self.calls += 1
        out = []
        for request in requests:
            self.requests.append(request)
            own, last = _conversation(request)
            text = self.policy(own, last)
            out.append(Generation(text, "stop", len(text.split())))
        return out

    def option_probabilities(self, requests: list[ChatRequest], options: list[str]) -> list[dict[str, float]]:
        return [{o: 1 / len(options) for o in options} for _ in requests]


def _conversation(request: ChatRequest) -> tuple[int, str]:
    """(number of the speaker's own turns, text of the other party's last turn) from either prompt style."""
    if request.prompt is not None:
        role = request.prompt.rsplit("\n", 1)[-1].rstrip(":")
        lines = request.prompt.split("[CONVERSATION]\n", 1)[1].splitlines()[:-1]
        own = sum(1 for line in lines if line.startswith(f"{role}:"))
        others = [line for line in lines if not line.startswith(f"{role}:")]
        return own, others[-1] if others else ""
    own = sum(1 for m in request.messages if m["role"] == "assistant")
    others = [m["content"] for m in request.messages[1:] if m["role"] == "user"]
    return own, others[-1] if others else ""


def recommender(title: str = "The Shining (1980)", inquiries: int = 1) -> Callable[[int, str], str]:
    def policy(own: int, last: str) -> str:
        if own == 0:
            return "<action><greeting></action><response>Hi! What kind of movie are you after?</response>"
        if own <= inquiries:
            return "<action><inquire></action><response>Do you prefer old or new films?</response>"
        return f"<action><recommend></action><response>Try <movie_title>{title}</movie_title>.</response>"

    return policy


def user(accept: bool = True) -> Callable[[int, str], str]:
    def policy(own: int, last: str) -> str:
        if accept and "<recommend>" in last:
            return "<action><accept></action><response>Perfect, I will watch it!</response>"
        if own == 0:
            return "<action><disclose-goal></action><response>Something scary and clever.</response>"
        return "<action><feedback></action><response>Hmm, maybe something else.</response>"

    return policy
