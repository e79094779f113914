"""One conversation on the page (:class:`Chat`) and the source records a chat starts from when its persona does
not come from a corpus: one written on the page (tab 1) or the person chatting (tab 2)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from crsdata.catalog import Catalog
from crsdata.schema import Role, item_ref, new_dialogue
from crsdata.simulate.base import DialogueState
from crsdata.simulate.interplay import InterplaySimulation
from crsdata.space.config import SpaceError

# The person in tab 2 is the user: the recommender sees no profile, so the persona only satisfies the simulation.
_PERSON_PERSONA = "(the person chatting on the page)"


@dataclass
class Chat:
    """One conversation on the page: the simulation, its state, and who the person plays."""

    mode: str
    sim: InterplaySimulation
    state: DialogueState
    catalog: Catalog
    persona_source: str  # "<corpus> / <dialogue id>", "written" or "" (tab 2)
    seconds: list[float] = field(default_factory=list)  # per simulator turn, in order
    saved: bool = False

    @property
    def human_role(self) -> str | None:
        return {"recommender": Role.RECOMMENDER.value, "user": Role.USER.value}.get(self.mode)

    @property
    def finished(self) -> bool:
        return self.state.finished

    @property
    def target_items(self) -> list[dict[str, str]]:
        return [t for t in self.state.record.get("target_items", []) if t.get("item_id") or t.get("title")]

    def record(self) -> dict[str, Any]:
        """The dialogue in the crsdata schema, as ``crsdata simulate`` writes it."""
        record = self.sim.to_record(self.state)
        record["target_items"] = [t for t in record["target_items"] if t["item_id"] or t["title"]]
        return record


def written_record(
    general_preferences: str, watched: str, target_attributes: str, target_title: str, catalog: Catalog | None
) -> dict[str, Any]:
    """A source record for a persona written on the page. ``watched`` holds one movie a line,
    ``Title (Year): what you thought``; the target title is optional (it is only revealed at the end)."""
    if not target_attributes.strip():
        raise SpaceError("A written persona needs target attributes: what kind of movie the user wants now.")
    items = []
    for line in watched.splitlines():
        title, _, review = line.partition(":")
        if title.strip():
            title = title.strip().lstrip("-* ").strip()
            items.append({"item_id": _link(catalog, title), "title": title, "review": review.strip()})
    target = item_ref(_link(catalog, target_title.strip()), target_title.strip())
    return new_dialogue(
        f"written-{uuid.uuid4().hex[:8]}",
        "space",
        "train",
        [],
        user_profile={
            "general_preferences": general_preferences.strip(),
            "watched_items": items,
            "target_attributes": target_attributes.strip(),
        },
        # An empty reference keeps build_persona's "a persona has a target" rule; it is dropped from the record.
        target_items=[target],
    )


def _link(catalog: Catalog | None, title: str) -> str:
    return (catalog.link(title) or "") if catalog is not None and title else ""


def person_record() -> dict[str, Any]:
    """The source record of a tab 2 chat, where the person is the user."""
    return new_dialogue(
        f"chat-{uuid.uuid4().hex[:8]}",
        "space",
        "train",
        [],
        user_profile={"general_preferences": _PERSON_PERSONA, "target_attributes": _PERSON_PERSONA},
        target_items=[item_ref()],
    )
