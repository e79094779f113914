"""What the run engine needs from a kind of conversation (Interplay, RecLLMSim tasks).

A :class:`Simulation` starts a :class:`DialogueState` from a source record, says which role speaks next,
builds that role's request, and applies the backend's answer. The engine (``crsdata.simulate.engine``)
batches the requests of many dialogues for one role into one backend call; it knows nothing of prompts.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from crsdata.backends.base import Backend, ChatRequest, Generation, SamplingParams


@dataclass
class DialogueState:
    dialogue_id: str
    record: dict[str, Any]  # the source record (schema dialogue) the persona or task came from
    seed: int
    turns: list[dict[str, Any]] = field(default_factory=list)  # schema turns produced so far
    finished: bool = False
    end_reason: str = ""
    accepted_item: dict[str, str] = field(default_factory=lambda: {"item_id": "", "title": ""})
    counters: dict[str, int] = field(default_factory=dict)  # parse repairs, failures, filter hits
    context: dict[str, Any] = field(default_factory=dict)  # persona, task text: whatever prompts need


class Simulation(ABC):
    """One kind of conversation between a user backend and a recommender (assistant) backend."""

    name: str
    roles: tuple[str, str] = ("user", "recommender")

    def __init__(self, backends: dict[str, Backend], params: dict[str, SamplingParams], max_turns: int) -> None:
        self.backends = backends
        self.params = params
        self.max_turns = max_turns

    @abstractmethod
    def start(self, record: dict[str, Any], dialogue_id: str, seed: int) -> DialogueState:
        """A fresh state; raises BadInputError naming the record and field if the record cannot be used."""

    @abstractmethod
    def next_role(self, state: DialogueState) -> str:
        """Which role speaks next (only called while ``not state.finished``)."""

    @abstractmethod
    def request(self, state: DialogueState, role: str) -> ChatRequest:
        """The request for ``role``'s next turn; the request's seed must derive from state.seed and the turn."""

    @abstractmethod
    def apply(self, state: DialogueState, role: str, generation: Generation) -> None:
        """Parses the generation, appends the turn, and finishes the state when the dialogue ends."""

    @abstractmethod
    def to_record(self, state: DialogueState) -> dict[str, Any]:
        """The finished dialogue in the shared schema (crsdata.schema.new_dialogue), provenance filled."""

    @abstractmethod
    def prompt_hashes(self) -> dict[str, str]:
        """Prompt template name -> SHA-256, recorded in provenance and in the run manifest."""
