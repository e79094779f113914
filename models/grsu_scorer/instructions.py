"""Instruction data of the GRSU simulated user (Wang et al. 2025, section 3.2.2), synthesised from the
recommendation turns of built folders, in the prompts of :mod:`crsdata.grsu.prompts` (shared with ``crs-eval``).

Both behaviours see the same conversation and differ in the task, as in GRSU:

- **Generative item scoring** (Eq. 2): one example per (turn, candidate): the prompt is
  :func:`~crsdata.grsu.prompts.scoring_messages` (the conversation, then the candidate with its catalog attributes:
  genre, actors, writer, director, then "Accept the recommendation (Yes/No)?"), the completion ``Yes`` when the
  candidate is one of the turn's ground-truth items and ``No`` otherwise. Every ground-truth item is a positive.
  Per positive, negatives of three kinds (:data:`NEGATIVE_KINDS`), none of them a target or a mentioned item:
  ``random`` (GRSU's one sampled negative per ground-truth item), ``popular`` (one of the :data:`POPULAR_POOL`
  items recommended most often in the training turns) and ``similar`` (one of the :data:`SIMILAR_POOL` catalog
  items nearest to the target in the MiniLM item space: the confusable items a retrieval CRS ranks beside it).
- **Attribute-based item critiquing** (Eq. 3): a list of ``list_size`` items, half the time holding 1 to
  ``list_size - 1`` of the turn's ground-truth items among negatives, otherwise negatives only (GRSU's two list
  constructions). GRSU has a 70B LLM write the critique from the user's preference (the ground-truth items and
  their attributes); here it comes from the catalog: an attribute value of a ground-truth item, preferably one
  that no negative in the list has, said in the sentences of :class:`crsdata.grsu.user.AttributeCritic` (the
  critic ``crs-eval`` uses, so training and inference critiques read alike), rejecting one negative of the list.

The completion alone is trained (TRL's default for prompt/completion data), so the scorer's answer is the first
assistant token, whose probability ``crs-eval``'s :class:`~crsdata.grsu.user.GenerativeScorer` reads.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from crsdata.errors import BadInputError
from crsdata.grsu.data import CRITIQUE_ATTRIBUTES, EvalTurn, ItemTable, evaluation_turns
from crsdata.grsu.prompts import SCORE_OPTIONS, critique_messages, scoring_messages
from crsdata.grsu.search import Critique
from crsdata.grsu.user import AttributeCritic
from crsdata.training.data import DataFolder

NEGATIVE_KINDS = ("random", "popular", "similar")
POPULAR_POOL = 100  # popular negatives come from this many most-recommended training items
SIMILAR_POOL = 20  # similar negatives come from this many nearest neighbours of the target
ATTRIBUTE_VALUES = 3  # values per attribute of a target that a critique may name (the ones the prompt shows)


@dataclass(frozen=True)
class ScoringPair:
    """A (turn, candidate) example of Eq. 2; ``kind`` is ``target`` or the negative's kind."""

    turn: EvalTurn
    item_id: str
    label: bool
    kind: str


@dataclass(frozen=True)
class CritiqueExample:
    """A recommended list of one turn and the critique the user gives it (Eq. 3)."""

    turn: EvalTurn
    items: tuple[str, ...]
    critique: Critique
    with_targets: bool


def catalog_of(folders: Sequence[DataFolder]) -> ItemTable:
    """The union of the folders' catalogs (a later folder's row wins for a shared id); bad input without one."""
    rows: list[dict[str, Any]] = []
    for folder in folders:
        found = folder.items()
        if not found:
            raise BadInputError(
                folder.path,
                "config items",
                "",
                "no item catalog: the scorer describes each candidate by its catalog attributes",
                "no-items",
            )
        rows.extend(found)
    return ItemTable.from_rows(rows)


def split_turns(
    folders: Sequence[DataFolder], split: str, items: ItemTable, context_chars: int
) -> tuple[list[EvalTurn], Counter[str]]:
    """The recommendation turns of ``split`` in every folder that has it (keys prefixed with the folder's source,
    so two folders never share one), and the turns skipped by reason."""
    turns: list[EvalTurn] = []
    skipped: Counter[str] = Counter()
    for folder in folders:
        if not folder.has_split(split):
            continue
        found, why, _ = evaluation_turns(folder.records(split), items, context_chars)
        skipped.update(why)
        turns.extend(replace(t, key=f"{folder.source}/{t.key}", group=f"{folder.source}/{t.group}") for t in found)
    return turns, skipped


def require_turns(folders: Sequence[DataFolder], split: str, turns: list[EvalTurn], skipped: Counter[str]) -> None:
    """Bad input naming the folders when ``split`` gave no turn with a ground-truth item to learn or test on."""
    if turns:
        return
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items())) or "no recommendation turn"
    names = ", ".join(str(f.path) for f in folders if f.has_split(split)) or ", ".join(str(f.path) for f in folders)
    raise BadInputError(
        names,
        f"split {split}",
        "target_items",
        f"no recommendation turn with a ground-truth (target) item in the catalog ({reasons}); the scorer learns "
        "Yes from target items",
        "no-targets",
    )


def hold_out(turns: list[EvalTurn], fraction: float, seed: int) -> tuple[list[EvalTurn], list[EvalTurn]]:
    """``(kept, held_out)``: a seeded ``fraction`` of the conversations (all their turns) held out."""
    groups = sorted({t.group for t in turns})
    count = max(1, round(len(groups) * fraction)) if len(groups) > 1 else 0
    chosen = set(random.Random(seed).sample(groups, count))
    return [t for t in turns if t.group not in chosen], [t for t in turns if t.group in chosen]


def sample_turns(turns: list[EvalTurn], n: int | None, seed: int) -> list[EvalTurn]:
    """A seeded sample of ``n`` turns spread over the list (all when ``n`` is None or large enough)."""
    if n is None or n <= 0 or n >= len(turns):
        return list(turns)
    return [turns[i] for i in sorted(random.Random(seed).sample(range(len(turns)), n))]


def popularity(turns: Sequence[EvalTurn]) -> Counter[str]:
    """Item -> number of turns that recommend it."""
    return Counter(item for turn in turns for item in turn.targets)


class NegativeSampler:
    """Draws negatives of each kind of :data:`NEGATIVE_KINDS` for a target (see the module doc).

    ``neighbours(item_id)`` gives the catalog items nearest to an item, best first; without it ``similar``
    negatives are the catalog items sharing the most attribute values with the target.
    """

    def __init__(
        self,
        items: ItemTable,
        counts: Mapping[str, int],
        neighbours: Callable[[str], list[str]] | None = None,
    ) -> None:
        self.items = items
        self.ids = items.ids()
        ranked = sorted((i for i in counts if i in items), key=lambda i: (-counts[i], i))
        self.popular = ranked[:POPULAR_POOL] or self.ids[:POPULAR_POOL]
        self.neighbours = neighbours or self._shared_attributes
        self._near: dict[str, list[str]] = {}
        self._by_value: dict[tuple[str, str], list[str]] | None = None

    def _shared_attributes(self, item_id: str) -> list[str]:
        if self._by_value is None:
            self._by_value = {}
            for other in self.ids:
                for attribute, values in self.items.attributes(other).items():
                    for value in values[:ATTRIBUTE_VALUES]:
                        self._by_value.setdefault((attribute, value), []).append(other)
        shared: Counter[str] = Counter()
        for attribute, values in self.items.attributes(item_id).items():
            for value in values[:ATTRIBUTE_VALUES]:
                shared.update(self._by_value.get((attribute, value), []))
        shared.pop(item_id, None)
        return [i for i, _ in sorted(shared.items(), key=lambda kv: (-kv[1], kv[0]))[: SIMILAR_POOL * 2]]

    def near(self, item_id: str) -> list[str]:
        if item_id not in self._near:
            self._near[item_id] = [i for i in self.neighbours(item_id) if i != item_id][: SIMILAR_POOL * 2]
        return self._near[item_id]

    def draw(self, kind: str, target: str, rng: random.Random, avoid: set[str]) -> str | None:
        """One item of ``kind`` not in ``avoid``; a ``random`` one when the kind's pool is used up."""
        pool = {"popular": self.popular, "similar": self.near(target)[:SIMILAR_POOL]}.get(kind)
        if pool is not None:
            free = [i for i in pool if i not in avoid]
            if free:
                return rng.choice(free)
        for _ in range(100):  # the catalog is much larger than any turn's avoid set
            item = rng.choice(self.ids)
            if item not in avoid:
                return item
        return None


def embedding_neighbours(matrix: np.ndarray, ids: list[str]) -> Callable[[str], list[str]]:
    """``item_id -> nearest items`` by cosine between the rows of ``matrix`` (unit vectors in ``ids`` order)."""
    index = {item_id: i for i, item_id in enumerate(ids)}

    def neighbours(item_id: str) -> list[str]:
        if item_id not in index:
            return []
        sims = matrix @ matrix[index[item_id]]
        best = np.argpartition(-sims, min(SIMILAR_POOL * 2, len(ids) - 1))[: SIMILAR_POOL * 2 + 1]
        return [ids[i] for i in sorted(best.tolist(), key=lambda i: (-sims[i], i))]

    return neighbours


def scoring_pairs(
    turns: Sequence[EvalTurn], sampler: NegativeSampler, negatives: Mapping[str, int], seed: int
) -> list[ScoringPair]:
    """Every ground-truth item of every turn as a positive, and ``negatives[kind]`` negatives of each kind per
    positive; no item twice in one turn."""
    rng = random.Random(seed)
    pairs: list[ScoringPair] = []
    for turn in turns:
        avoid = set(turn.targets) | set(turn.mentioned)
        for target in turn.targets:
            pairs.append(ScoringPair(turn, target, True, "target"))
            for kind in NEGATIVE_KINDS:
                for _ in range(negatives.get(kind, 0)):
                    item = sampler.draw(kind, target, rng, avoid)
                    if item is not None:
                        avoid.add(item)
                        pairs.append(ScoringPair(turn, item, False, kind))
    return pairs


def preferred_attribute(
    items: ItemTable, targets: Sequence[str], negatives: Sequence[str], rng: random.Random
) -> tuple[str, str] | None:
    """An ``(attribute, value)`` of a ground-truth item, drawn among those no negative has when there are any."""
    wanted = sorted(
        {
            (attribute, value)
            for target in targets
            for attribute, values in items.attributes(target).items()
            if attribute in CRITIQUE_ATTRIBUTES
            for value in values[:ATTRIBUTE_VALUES]
        }
    )
    if not wanted:
        return None
    present = {
        (attribute, value)
        for item in negatives
        for attribute, values in items.attributes(item).items()
        for value in values
    }
    distinctive = [pair for pair in wanted if pair not in present]
    return rng.choice(distinctive or wanted)


def critique_examples(
    turns: Sequence[EvalTurn],
    sampler: NegativeSampler,
    critic: AttributeCritic,
    *,
    list_size: int,
    fraction: float,
    seed: int,
) -> tuple[list[CritiqueExample], Counter[str]]:
    """A critique example for a seeded ``fraction`` of the turns (see the module doc), and the turns that could
    not get one by reason."""
    rng = random.Random(seed)
    examples: list[CritiqueExample] = []
    skipped: Counter[str] = Counter()
    for turn in turns:
        if rng.random() >= fraction:
            continue
        with_targets = list_size > 1 and rng.random() < 0.5
        positives = (
            rng.sample(list(turn.targets), rng.randint(1, min(len(turn.targets), list_size - 1)))
            if (with_targets)
            else []
        )
        avoid = set(turn.targets) | set(turn.mentioned)
        negatives: list[str] = []
        for slot in range(list_size - len(positives)):
            item = sampler.draw(NEGATIVE_KINDS[slot % len(NEGATIVE_KINDS)], rng.choice(turn.targets), rng, avoid)
            if item is not None:
                avoid.add(item)
                negatives.append(item)
        chosen = preferred_attribute(sampler.items, turn.targets, negatives, rng)
        if chosen is None or not negatives:
            skipped["targets-without-attributes" if chosen is None else "no-negatives"] += 1
            continue
        listed = positives + negatives
        rng.shuffle(listed)
        critique = critic.say(turn, chosen[0], chosen[1], (rng.choice(negatives),))
        examples.append(CritiqueExample(turn, tuple(listed), critique, bool(positives)))
    return examples, skipped


def scoring_row(pair: ScoringPair, items: ItemTable) -> dict[str, Any]:
    """A TRL prompt/completion row (conversational) of Eq. 2."""
    answer = SCORE_OPTIONS[0] if pair.label else SCORE_OPTIONS[1]
    return {
        "prompt": scoring_messages(pair.turn, items, pair.item_id),
        "completion": [{"role": "assistant", "content": answer}],
        "task": "scoring",
    }


def critique_row(example: CritiqueExample, items: ItemTable) -> dict[str, Any]:
    """A TRL prompt/completion row (conversational) of Eq. 3."""
    return {
        "prompt": critique_messages(example.turn, items, example.items),
        "completion": [{"role": "assistant", "content": example.critique.text}],
        "task": "critique",
    }
