"""What the Gradio Space does, without Gradio: the state every visitor shares and the chats it runs.

The page (:mod:`crsdata.space.app` and its tabs) is a thin layer over :class:`Space`, so everything it shows can
be tested without a browser.

Three chats, one :class:`~crsdata.space.chat.Chat` object (an
:class:`~crsdata.simulate.interplay.InterplaySimulation` and its :class:`~crsdata.simulate.base.DialogueState`,
exactly as ``crsdata simulate`` runs them):

- ``mode="recommender"``: the person is the recommender, the user simulator answers. Its persona comes from a
  built corpus (or a Hub dataset) or is written on the page; the simulated user knows the target's attributes,
  never its title (the leak guard checks every prompt), and the page reveals the target when the chat ends.
- ``mode="user"``: the person is the user, the recommender simulator answers; titles it names are linked to the
  catalog and shown with their year, genres, director, stars and plot.
- ``mode="watch"``: both simulators, turn by turn, ending with the outcome, whether the target was reached and
  the leak check; the dialogue can be appended to a local folder in the crsdata schema.

Limits for a public Space: a message longer than ``max_input_chars`` is refused with a message, a chat has at most
``max_turns`` turns, a generation that takes longer than ``timeout_s`` (waiting included) fails with a message,
and a backend failure becomes a message while the chat stays open (the person can send again). The page's
concurrency limit is the Gradio queue's ``default_concurrency_limit``; requests that arrive together are decoded
together by :class:`~crsdata.backends.shared.SharedBackend`. Every message meant for the page passes
:meth:`Space.public`, which removes tokens and local paths.

Speed: a chat's prompts extend each other (the conversation only grows, and the human side speaks first in the
two person chats), so the local backend's store of key/value states serves all but the new text of every turn;
:meth:`Space.warm_up` runs the instructions shared by every chat once at start.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from crsdata.backends.base import Backend
from crsdata.backends.shared import SharedBackend
from crsdata.catalog import Catalog
from crsdata.errors import BadInputError
from crsdata.schema import Action
from crsdata.simulate.actions import INTERPLAY_ACTIONS, format_turn, parse_turn
from crsdata.simulate.decision import cached_decision_scorer, scorer_folder_of
from crsdata.simulate.grounding import CatalogRetriever
from crsdata.simulate.interplay import (
    DEFAULT_MAX_RESAMPLES,
    PERSONA_HISTORIES,
    InterplaySimulation,
    trained_accept_bias,
    trained_persona_history,
)
from crsdata.space.chat import Chat, person_record, written_record
from crsdata.space.config import MODES, SpaceConfig, SpaceError
from crsdata.space.corpora import PERSONA_CHOICES, Corpora, Corpus
from crsdata.space.models import Models
from crsdata.space.privacy import Redactor, model_label
from crsdata.space.saving import append_dialogue


class Space:
    """The Space's state shared by every visitor: configuration, corpora, models and the save folder.

    ``backends`` maps model names to ready backends (tests inject tiny or failing ones); see
    :class:`~crsdata.space.models.Models`.
    """

    def __init__(self, config: SpaceConfig, backends: Mapping[str, Backend] | None = None) -> None:
        self.config = config
        self.save_dir = Path(config.save_dir)
        self._chats_started = itertools.count()
        self._save_lock = threading.Lock()
        load_lock = threading.Lock()  # one load at a time, models and corpora alike
        self.corpora = Corpora(config.data, self.save_dir, self.public, load_lock)
        self._redactor = Redactor(self.corpora.folders, self.save_dir, (config.user_model, config.recommender_model))
        self.pool = Models(config, backends, self.public, load_lock)
        self._retrievers: dict[int, tuple[Catalog, CatalogRetriever]] = {}
        self._retriever_lock = threading.Lock()

    def public(self, text: str) -> str:
        """``text`` with tokens and local paths taken out: every message for the page goes through here."""
        return self._redactor.public(text)

    # -- what the page lists ---------------------------------------------------------------------------------

    def models(self) -> list[str]:
        """The model names a visitor may choose (only configured ones: a public page loads nothing else)."""
        return self.pool.labels()

    def backend(self, label: str) -> SharedBackend:
        return self.pool.backend(label)

    def warm_up(self) -> float:
        """See :meth:`~crsdata.space.models.Models.warm_up`; returns the seconds it took."""
        return self.pool.warm_up()

    def corpus_names(self) -> list[str]:
        return self.corpora.names()

    def corpus(self, name: str, revision: str = "") -> Corpus:
        return self.corpora.get(name, revision)

    def persona_choices(self, corpus: Corpus, limit: int = PERSONA_CHOICES) -> list[str]:
        return self.corpora.persona_choices(corpus, limit)

    # -- chats -----------------------------------------------------------------------------------------------

    def start_chat(
        self,
        mode: str,
        *,
        corpus: str = "",
        dialogue_id: str = "",
        written: dict[str, str] | None = None,
        user_model: str = "",
        recommender_model: str = "",
        revision: str = "",
        seed: int | None = None,
    ) -> Chat:
        """A new chat. ``mode="user"`` needs no persona; the others take ``corpus`` + ``dialogue_id`` (empty: a
        random one) or ``written`` (the fields of :func:`~crsdata.space.chat.written_record`)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        record, catalog, source = self._source(mode, corpus, dialogue_id, written, revision)
        labels = {
            "user": user_model or model_label(self.config.user_model),
            "recommender": recommender_model or model_label(self.config.recommender_model),
        }
        backends = {role: self.pool.backend(label) for role, label in labels.items()}
        styles = {role: self.pool.style_of(label) for role, label in labels.items()}
        params = self.pool.params()
        # The person speaks first in both person chats, so every prompt of the simulator extends its last one. When
        # two simulators talk, a fine-tuned user opens: they were trained on ReDial, where the seeker does.
        opens_user = mode == "user" or (mode == "watch" and styles["user"] == "finetuned")
        grounding = self._grounding(mode, labels)
        sim = InterplaySimulation(
            backends,
            {"user": params, "recommender": params},
            self.config.max_turns,
            catalog=catalog,
            style=styles,
            first_speaker="user" if opens_user else "recommender",
            infer_actions=True,
            grounding=grounding,
            max_resamples=DEFAULT_MAX_RESAMPLES,
            # The watched films the user model was trained to see, as `crsdata simulate` lists them by default.
            n_watched=PERSONA_HISTORIES[trained_persona_history(self.pool.spec(labels["user"]))],
            accept_bias=trained_accept_bias(self.pool.spec(labels["user"])),
            # The user model's own decision scorer, as `crsdata simulate` uses it by default; loaded once.
            decision_scorer=cached_decision_scorer(scorer_folder_of(self.pool.spec(labels["user"]))),
            # The user's first turn asks for what its cues want, as in `crsdata simulate` by default.
            disclose_cues=True,
            retriever=self._retriever(catalog) if grounding == "catalog" and mode != "recommender" else None,
        )
        if seed is None:
            started = next(self._chats_started)
            seed = random.randrange(2**31) if self.config.seed is None else self.config.seed + started
        chat_id = f"space-{mode}-{uuid.uuid4().hex[:10]}"
        try:
            state = sim.start(record, chat_id, seed)
        except BadInputError as exc:
            raise SpaceError(self.public(f"This persona cannot be used: {exc.message}")) from None
        return Chat(mode, sim, state, catalog, source)

    def _grounding(self, mode: str, labels: Mapping[str, str]) -> str:
        """The grounding of a chat: what its simulated roles' models were trained on, as ``crsdata simulate``
        chooses ``--grounding`` when it is not given (:meth:`InterplaySimulation.trained_grounding`). Only the
        simulators count: in tab 1 the user simulator's, in tab 2 the recommender simulator's."""
        simulated = {"recommender": ("user",), "user": ("recommender",)}.get(mode, ("user", "recommender"))
        specs = {role: self.pool.spec(label) for role, label in labels.items()}
        try:
            return InterplaySimulation.trained_grounding(specs, simulated)
        except BadInputError as exc:
            raise SpaceError(self.public(f"These two simulators cannot talk: {exc.message}")) from None

    def _retriever(self, catalog: Catalog) -> CatalogRetriever:
        """The recommender simulator's retrieval over ``catalog``, one per catalog for every chat (its item vectors
        are read or encoded once)."""
        with self._retriever_lock:
            kept = self._retrievers.get(id(catalog))
            if kept is None or kept[0] is not catalog:
                try:
                    kept = (catalog, CatalogRetriever(catalog.rows()))
                except BadInputError as exc:
                    raise SpaceError(
                        self.public(f"This dataset cannot ground the recommender: {exc.message}")
                    ) from None
                self._retrievers[id(catalog)] = kept
            return kept[1]

    def _source(
        self, mode: str, corpus: str, dialogue_id: str, written: dict[str, str] | None, revision: str
    ) -> tuple[dict[str, Any], Catalog, str]:
        """The record a chat starts from, the catalog that links its titles, and where its persona came from."""
        if mode == "user":
            return person_record(), self.corpora.merged_catalog(), ""
        if written is not None:
            catalog = self.corpora.merged_catalog()
            fields = ("general_preferences", "watched", "target_attributes", "target_title")
            return written_record(*(written.get(f, "") for f in fields), catalog), catalog, "written"
        chosen = self.corpora.get(corpus, revision)
        dialogue_id = dialogue_id.strip() or self.corpora.random_persona(chosen)
        if dialogue_id not in chosen.by_id:
            raise SpaceError(f"{chosen.name} has no dialogue {dialogue_id!r}.")
        return chosen.by_id[dialogue_id], chosen.catalog, f"{chosen.name} / {dialogue_id}"

    def human_turn(self, chat: Chat, text: str, action: str = "auto") -> None:
        """Appends the person's turn; ``action`` is one of the Interplay actions or ``auto`` (read from the text)."""
        role = chat.human_role
        if role is None:
            raise SpaceError("In this tab the simulators talk to each other.")
        if chat.finished:
            raise SpaceError("This chat has ended. Start a new one.")
        text = " ".join((text or "").split())
        if not text and action != Action.ACCEPT:
            raise SpaceError("Type a message first.")
        if len(text) > self.config.max_input_chars:
            raise SpaceError(
                f"Your message has {len(text)} characters; the limit is {self.config.max_input_chars}. "
                "Shorten it and send again."
            )
        if action not in ("auto", "", *INTERPLAY_ACTIONS):
            raise SpaceError(f"Unknown action {action!r}.")
        raw = text if action in ("auto", "") else format_turn(action, text)
        parsed = parse_turn(raw, role, infer_action=True)
        if not parsed.ok:
            raise SpaceError(self.public(f"Could not read that turn: {parsed.error}."))
        if parsed.action == Action.ACCEPT and not parsed.response:
            parsed = dataclasses.replace(parsed, response="I'll take it.")
        chat.sim.append_turn(chat.state, role, parsed)

    def simulator_turn(self, chat: Chat) -> None:
        """The next simulator turn: request, generate, apply (a parse failure retries with a new seed, as in
        ``crsdata simulate``). A backend failure or timeout raises :class:`SpaceError` and leaves the chat
        as it was, so the person can try again."""
        if chat.finished:
            return
        sim, state = chat.sim, chat.state
        role = sim.next_role(state)
        started = time.perf_counter()
        turns = len(state.turns)
        while not state.finished and len(state.turns) == turns:
            request = sim.request(state, role)
            generation = sim.backends[role].generate([request], sim.params[role])[0]
            if generation.finish_reason == "error":
                raise SpaceError(self.public(f"The {role} simulator failed: {generation.error}"))
            sim.apply(state, role, generation)
        chat.seconds.append(time.perf_counter() - started)

    def reply(self, chat: Chat, text: str, action: str = "auto") -> None:
        """The person's turn, then the simulator's answer (tabs 1 and 2). When the answer fails, the person's turn
        is taken back so that sending again does not repeat it."""
        turns = len(chat.state.turns)
        self.human_turn(chat, text, action)
        try:
            self.simulator_turn(chat)
        except SpaceError:
            del chat.state.turns[turns:]
            chat.state.finished, chat.state.end_reason = False, ""
            raise

    def watch(self, chat: Chat) -> Iterator[Chat]:
        """Both simulators until the chat ends; yields after every turn (tab 3)."""
        if chat.mode != "watch":
            raise SpaceError("Only a watched chat runs by itself.")
        while not chat.finished:
            self.simulator_turn(chat)
            yield chat

    def end_chat(self, chat: Chat) -> None:
        """The person ends the chat (no accept): it ends like a chat that ran out of turns."""
        if not chat.finished:
            chat.state.finished, chat.state.end_reason = True, "max_turns"
            chat.state.counters["ended_by_person"] = 1

    def save(self, chat: Chat) -> str:
        """Appends the chat's dialogue to the save folder (see :func:`~crsdata.space.saving.append_dialogue`) and
        returns a message for the page. Saving the same chat twice keeps one copy."""
        if not chat.finished:
            raise SpaceError("Run the chat to its end before saving it.")
        with self._save_lock:
            count = append_dialogue(chat, self.save_dir)
            self.corpora.forget_saved()
        chat.saved = True
        return f"Saved to `{self.save_dir.resolve().name}`: it now holds {count} dialogue(s)."
