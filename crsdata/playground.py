"""What the Gradio Space does, without Gradio: corpora, chats with and between the simulators, saving.

The page (:mod:`crsdata.playground_ui`) is a thin layer over this module, so everything it shows can be
tested without a browser.

Three chats, one :class:`Chat` object (an :class:`~crsdata.simulate.interplay.InterplaySimulation` and its
:class:`~crsdata.simulate.base.DialogueState`, exactly as ``crsdata simulate`` runs them):

- ``mode="recommender"``: the person is the recommender, the user simulator answers. Its persona comes from a
  built corpus (or a Hub dataset) or is written on the page; the simulated user knows the target's attributes,
  never its title (the leak guard checks every prompt), and the page reveals the target when the chat ends.
- ``mode="user"``: the person is the user, the recommender simulator answers; titles it names are linked to the
  catalog and shown with their year, genres and plot.
- ``mode="watch"``: both simulators, turn by turn, ending with the outcome, whether the target was reached and
  the leak check; the dialogue can be appended to a local folder in the crsdata schema.

Limits for a public Space: a message longer than ``max_input_chars`` is refused with a message, a chat has at most
``max_turns`` turns, a generation that takes longer than ``timeout_s`` (waiting included) fails with a message,
and a backend failure becomes a message while the chat stays open (the person can send again). The page's
concurrency limit is the Gradio queue's ``default_concurrency_limit``; requests that arrive together are decoded
together by :class:`SharedBackend`. Every message meant for the page passes :meth:`Playground.public`, which
removes tokens and local paths.

Speed: a chat's prompts extend each other (the conversation only grows, and the human side speaks first in the
two person chats), so the local backend's store of key/value states serves all but the new text of every turn;
:meth:`Playground.warm_up` runs the instructions shared by every chat once at start.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import itertools
import os
import random
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.backends.base import DEFAULT_PREFIX_CACHE_MB, Backend, ChatRequest, SamplingParams
from crsdata.backends.shared import SharedBackend
from crsdata.catalog import Catalog
from crsdata.errors import BadInputError
from crsdata.schema import Action, Role, item_ref, new_dialogue
from crsdata.simulate.actions import INTERPLAY_ACTIONS, format_turn, parse_turn
from crsdata.simulate.base import DialogueState
from crsdata.simulate.interplay import InterplaySimulation
from crsdata.simulate.leak import find_leaks, fuzzy_title_match
from crsdata.simulate.persona import Persona, build_persona, catalog_row, display_title
from crsdata.simulate.prompts import finetuned_prompt, instruct_messages

MODES = ("recommender", "user", "watch")  # whom the person plays: tab 1, tab 2, nobody (tab 3)
DEFAULT_SAVE_DIR = "out/space-saved"
# A Hub dataset id: "org/name". Anything else that is not a configured folder is refused, so a visitor cannot
# make the Space read arbitrary local paths.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_TOKEN = re.compile(r"\b(?:hf|sk|api)_[A-Za-z0-9]{16,}\b")
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])(?:~|/)(?:[\w.@+-]+/)+[\w.@+-]*")
_SECRET_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY", "CRSDATA_API_KEY")
PERSONA_CHOICES = 300  # personas offered per corpus in the dropdown (a random one can come from all)
SNIPPET_CHARS = 220


def _esc(text: str) -> str:
    """Text for a Markdown component: markup characters escaped, quotes left readable."""
    return html.escape(text, quote=False)


class PlaygroundError(Exception):
    """A problem the page shows as it is: the message never holds a token or a local path."""


@dataclass
class PlaygroundConfig:
    """Everything ``crsdata space`` and the Space's ``app.py`` can set (see :meth:`from_env`)."""

    data: list[str] = field(default_factory=list)  # built folders or Hub dataset ids offered on the page
    backend: str = "local"  # "local" or the base URL of an OpenAI-compatible server
    # The shipped fine-tuned pair, as `crsdata simulate interplay` (the zero-shot base where this install lacks it).
    user_model: str = field(default_factory=lambda: InterplaySimulation.default_model("user"))
    recommender_model: str = field(default_factory=lambda: InterplaySimulation.default_model("recommender"))
    save_dir: str = DEFAULT_SAVE_DIR
    max_input_chars: int = 500
    max_turns: int = 12  # per chat, both sides together
    timeout_s: float = 60.0  # per generation, waiting in line included
    concurrency: int = 2  # generations at once (the Gradio queue's default_concurrency_limit)
    max_new_tokens: int = 64
    temperature: float = 0.7
    top_p: float = 0.95
    kv_cache_mb: int = DEFAULT_PREFIX_CACHE_MB
    max_model_len: int | None = None  # the models' context in tokens (None: the server's, or the model's own)
    seed: int | None = None  # None: each chat draws a seed; N: chats get N, N+1, ... in the order they start

    def __post_init__(self) -> None:
        for name in ("max_input_chars", "max_turns", "concurrency", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, not {self.timeout_s}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PlaygroundConfig:
        """The configuration of a deployed Space, from its variables: ``CRSDATA_SPACE_DATA`` (folders or Hub ids,
        separated by commas or spaces), ``CRSDATA_BACKEND``, ``CRSDATA_USER_MODEL``, ``CRSDATA_RECOMMENDER_MODEL``,
        ``CRSDATA_SPACE_SAVE_DIR``, ``CRSDATA_SPACE_MAX_TURNS``, ``CRSDATA_SPACE_TIMEOUT``,
        ``CRSDATA_SPACE_CONCURRENCY``, ``CRSDATA_SPACE_MAX_INPUT_CHARS``, ``CRSDATA_SPACE_MAX_NEW_TOKENS``,
        ``CRSDATA_SPACE_SEED``; defaults for what is unset."""
        env = os.environ if env is None else env
        config = cls(data=[d for d in re.split(r"[,\s]+", env.get("CRSDATA_SPACE_DATA", "")) if d])
        text = {
            "backend": "CRSDATA_BACKEND",
            "user_model": "CRSDATA_USER_MODEL",
            "recommender_model": "CRSDATA_RECOMMENDER_MODEL",
            "save_dir": "CRSDATA_SPACE_SAVE_DIR",
        }
        numbers = {
            "max_turns": "CRSDATA_SPACE_MAX_TURNS",
            "timeout_s": "CRSDATA_SPACE_TIMEOUT",
            "concurrency": "CRSDATA_SPACE_CONCURRENCY",
            "max_input_chars": "CRSDATA_SPACE_MAX_INPUT_CHARS",
            "max_new_tokens": "CRSDATA_SPACE_MAX_NEW_TOKENS",
            "seed": "CRSDATA_SPACE_SEED",
        }
        changes: dict[str, Any] = {k: env[v] for k, v in text.items() if env.get(v)}
        kinds = {"timeout_s": float}
        changes.update({k: kinds.get(k, int)(float(env[v])) for k, v in numbers.items() if env.get(v)})
        return dataclasses.replace(config, **changes)


# ---------------------------------------------------------------------------------------------------------
# Corpora


@dataclass
class Corpus:
    """The dialogues of a built folder or Hub dataset (every split), its catalog and its statistics."""

    name: str  # as shown on the page: a folder's name or the Hub id
    records: list[dict[str, Any]]
    catalog: Catalog
    stats: dict[str, Any]
    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_id = {r["dialogue_id"]: r for r in self.records}


def _load_corpus(name: str, location: str, revision: str | None) -> Corpus:
    """Reads ``location`` (a folder or a Hub id) the way every consumer does: ``load_dataset(location, config)``."""
    import datasets
    import polars as pl

    from crsdata.stats import dialogue_stats

    dialogues = datasets.load_dataset(location, "dialogues", revision=revision)
    records = [row for split in dialogues.values() for row in split.to_list()]
    table = pl.concat([pl.from_arrow(split.data.table) for split in dialogues.values()], how="vertical_relaxed")
    catalog = Catalog()
    try:
        items = datasets.load_dataset(location, "items", split="train", revision=revision)
    except (ValueError, FileNotFoundError):  # a corpus without an items configuration links nothing
        items = []
    catalog.add_rows(items)
    return Corpus(name, records, catalog, dialogue_stats(table))


def is_built_folder(path: str | Path) -> bool:
    path = Path(path)
    return (path / "README.md").is_file() and any(path.glob("dialogues/*.parquet"))


def default_data_folders(root: str | Path = "out") -> list[str]:
    """The built or simulated folders under ``root`` (what ``scripts/quickstart.sh`` writes), sorted."""
    root = Path(root)
    return sorted(str(p) for p in root.iterdir() if p.is_dir() and is_built_folder(p)) if root.is_dir() else []


# ---------------------------------------------------------------------------------------------------------
# Chats


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
        raise PlaygroundError("A written persona needs target attributes: what kind of movie the user wants now.")
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


# The person in tab 2 is the user: the recommender sees no profile, so the persona only satisfies the simulation.
_PERSON_PERSONA = "(the person chatting on the page)"


def _person_record() -> dict[str, Any]:
    return new_dialogue(
        f"chat-{uuid.uuid4().hex[:8]}",
        "space",
        "train",
        [],
        user_profile={"general_preferences": _PERSON_PERSONA, "target_attributes": _PERSON_PERSONA},
        target_items=[item_ref()],
    )


class Playground:
    """The Space's state shared by every visitor: configuration, loaded corpora and backends, the save folder.

    ``backends`` maps model names to ready backends (tests inject tiny or failing ones); other names are loaded
    with :func:`crsdata.backends.make_backend` on first use. Either way each is wrapped in a
    :class:`SharedBackend`.
    """

    def __init__(self, config: PlaygroundConfig, backends: Mapping[str, Backend] | None = None) -> None:
        self.config = config
        self._injected = dict(backends or {})
        self._backends: dict[str, SharedBackend] = {}
        self._corpora: dict[tuple[str, str], Corpus] = {}
        self._merged: Catalog | None = None
        self._chats_started = itertools.count()
        self._load_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self.save_dir = Path(config.save_dir)
        # Local folders by the name the page shows; Hub ids stand for themselves.
        self._folders: dict[str, str] = {}
        self._hub_ids: list[str] = []
        for spec in config.data:
            if Path(spec).is_dir():
                self._folders.setdefault(Path(spec).resolve().name, spec)
            elif HUB_ID.match(spec):
                self._hub_ids.append(spec)
            else:
                raise BadInputError(spec, "", "--data", "neither a folder nor a Hub dataset id (org/name)", "not-found")
        self._secrets = [v for v in (os.environ.get(k, "") for k in _SECRET_VARIABLES) if len(v) >= 6]
        self._paths = self._known_paths()

    # -- what the page may show ----------------------------------------------------------------------------

    def _known_paths(self) -> list[tuple[str, str]]:
        pairs = [(str(Path(p).resolve()), name) for name, p in self._folders.items()]
        pairs += [(p, name) for name, p in self._folders.items()]
        pairs.append((str(self.save_dir.resolve()), self.save_dir.name))
        for model in {self.config.user_model, self.config.recommender_model}:
            if Path(model).expanduser().exists():
                pairs.append((str(Path(model).expanduser().resolve()), self.model_label(model)))
        # Last, the places everything else lives under.
        pairs += [(str(Path.cwd()), "."), (tempfile.gettempdir(), "<tmp>"), (str(Path.home()), "~")]
        return sorted({p: n for p, n in pairs if len(p) > 1}.items(), key=lambda pair: -len(pair[0]))

    def public(self, text: str) -> str:
        """``text`` with tokens and local paths taken out: every message for the page goes through here."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        text = _TOKEN.sub("***", text)
        for path, name in self._paths:
            text = text.replace(path, name)
        return _ABSOLUTE_PATH.sub(lambda m: "<" + (Path(m.group()).name or "path") + ">", text)

    # -- models ----------------------------------------------------------------------------------------------

    @staticmethod
    def model_label(model: str) -> str:
        """What the page calls a model: its name, or a folder's name (never the path)."""
        path = Path(model).expanduser()
        return path.resolve().name if path.exists() else model

    def models(self) -> list[str]:
        """The model names a visitor may choose (only configured ones: a public page loads nothing else)."""
        names = [self.config.user_model, self.config.recommender_model, *self._injected]
        return list(dict.fromkeys(self.model_label(n) for n in names))

    def style_of(self, label: str) -> str:
        """The prompt layout a configured model reads: ``finetuned`` for crsdata's simulators, else ``instruct``."""
        from crsdata.backends.embedded import prompt_style_of

        try:
            spec = self._model_spec(label)
        except PlaygroundError:
            spec = label
        return prompt_style_of(spec) or "instruct"

    def _model_spec(self, label: str) -> str:
        for name in [self.config.user_model, self.config.recommender_model, *self._injected]:
            if self.model_label(name) == label:
                return name
        raise PlaygroundError(f"Unknown model {label!r}; choose one of {', '.join(self.models())}.")

    def backend(self, label: str) -> SharedBackend:
        spec = self._model_spec(label)
        with self._load_lock:
            if spec not in self._backends:
                if spec in self._injected:
                    inner = self._injected[spec]
                else:
                    from crsdata.backends import make_backend

                    options: dict[str, Any] = {"max_concurrency": self.config.concurrency}
                    if self.config.backend == "local":
                        options = {
                            "max_batch_size": self.config.concurrency,
                            "prefix_cache_mb": self.config.kv_cache_mb,
                        }
                    try:
                        inner = make_backend(
                            self.config.backend, spec, max_model_len=self.config.max_model_len, **options
                        )
                    except Exception as exc:
                        raise PlaygroundError(self.public(f"Cannot load model {label}: {exc}")) from None
                self._backends[spec] = SharedBackend(inner, self.config.timeout_s)
            return self._backends[spec]

    def params(self) -> SamplingParams:
        c = self.config
        return SamplingParams(max_new_tokens=c.max_new_tokens, temperature=c.temperature, top_p=c.top_p)

    def warm_up(self) -> float:
        """Loads the default models and runs the instructions every chat starts with through them, so that the
        first reply of the first chat pays only for its own persona. Returns the seconds it took."""
        started = time.perf_counter()
        persona = Persona("I like many kinds of movies.", [], "A movie.")
        for role, label in (("user", self.config.user_model), ("recommender", self.config.recommender_model)):
            backend = self.backend(self.model_label(label))
            if self.style_of(label) == "finetuned":
                request = ChatRequest(prompt=finetuned_prompt(role, persona, []))
            else:
                request = ChatRequest(messages=instruct_messages(role, persona, []))
            backend.generate([request], SamplingParams(max_new_tokens=1, temperature=0))
        return time.perf_counter() - started

    # -- corpora ---------------------------------------------------------------------------------------------

    def corpus_names(self) -> list[str]:
        """Configured folders, the save folder once it exists, and configured Hub ids."""
        names = list(self._folders)
        if is_built_folder(self.save_dir) and self.save_dir.resolve().name not in names:
            names.append(self.save_dir.resolve().name)
        return names + [h for h in self._hub_ids if h not in names]

    def corpus(self, name: str, revision: str = "") -> Corpus:
        """A corpus by the name the page shows, or any Hub dataset id (optionally at a revision)."""
        name, revision = name.strip(), revision.strip()
        if not name:
            raise PlaygroundError("Choose a dataset first.")
        if name in self._folders:
            location, revision = self._folders[name], ""
        elif name == self.save_dir.resolve().name and is_built_folder(self.save_dir):
            location, revision = str(self.save_dir), ""
        elif HUB_ID.match(name):
            location = name
        else:
            raise PlaygroundError(
                f"Unknown dataset {name!r}: choose one of the list or give a Hub dataset id such as org/name."
            )
        key = (name, revision)
        with self._load_lock:
            if key not in self._corpora:
                try:
                    self._corpora[key] = _load_corpus(name, location, revision or None)
                except Exception as exc:  # datasets raises many types; each means "cannot open this"
                    at = f" at revision {revision}" if revision else ""
                    raise PlaygroundError(self.public(f"Cannot open {name}{at}: {type(exc).__name__}: {exc}")) from None
            return self._corpora[key]

    def persona_choices(self, corpus: Corpus, limit: int = PERSONA_CHOICES) -> list[str]:
        """Dialogue ids of records with a usable persona (their labels name no target)."""
        out = []
        for record in corpus.records:
            if record.get("target_items") and self._usable(record, corpus.catalog):
                out.append(record["dialogue_id"])
                if len(out) >= limit:
                    break
        return out

    @staticmethod
    def _usable(record: dict[str, Any], catalog: Catalog) -> bool:
        try:
            build_persona(record, catalog)
        except BadInputError:
            return False
        return True

    def random_persona(self, corpus: Corpus, rng: random.Random | None = None) -> str:
        rng = rng or random.Random()
        candidates = [r for r in corpus.records if r.get("target_items")]
        rng.shuffle(candidates)
        for record in candidates[:200]:
            if self._usable(record, corpus.catalog):
                return record["dialogue_id"]
        raise PlaygroundError(f"{corpus.name} has no record with a usable persona (target items and some history).")

    def persona_preview(self, chat: Chat | None = None, persona: Persona | None = None) -> str:
        """The persona as the page shows it before the end: preferences and watched movies, never the target."""
        persona = persona or (chat.sim.persona(chat.state) if chat else None)
        if persona is None:
            return ""
        watched = "\n".join(f"- **{_esc(w.title)}**: {_esc(w.review)}" for w in persona.watched)
        return (
            f"**Taste:** {_esc(persona.general_preferences or '(not given)')}\n\n"
            f"**Watched:**\n{watched or '- (none given)'}\n\n"
            "**What they want now:** hidden until the chat ends (the simulated user knows the attributes, never "
            "the title)."
        )

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
        random one) or ``written`` (the fields of :func:`written_record`)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        catalog = Catalog()
        source = ""
        if mode == "user":
            record = _person_record()
            catalog = self._merged_catalog()
        elif written is not None:
            catalog = self._merged_catalog()
            record = written_record(
                written.get("general_preferences", ""),
                written.get("watched", ""),
                written.get("target_attributes", ""),
                written.get("target_title", ""),
                catalog,
            )
            source = "written"
        else:
            chosen = self.corpus(corpus, revision)
            dialogue_id = dialogue_id.strip() or self.random_persona(chosen)
            if dialogue_id not in chosen.by_id:
                raise PlaygroundError(f"{chosen.name} has no dialogue {dialogue_id!r}.")
            record, catalog, source = chosen.by_id[dialogue_id], chosen.catalog, f"{chosen.name} / {dialogue_id}"
        labels = {
            "user": user_model or self.model_label(self.config.user_model),
            "recommender": recommender_model or self.model_label(self.config.recommender_model),
        }
        backends = {role: self.backend(label) for role, label in labels.items()}
        styles = {role: self.style_of(label) for role, label in labels.items()}
        params = self.params()
        # The person speaks first in both person chats, so every prompt of the simulator extends its last one. When
        # two simulators talk, a fine-tuned user opens: they were trained on ReDial, where the seeker does.
        opens_user = mode == "user" or (mode == "watch" and styles["user"] == "finetuned")
        sim = InterplaySimulation(
            backends,
            {"user": params, "recommender": params},
            self.config.max_turns,
            catalog=catalog,
            style=styles,
            first_speaker="user" if opens_user else "recommender",
            infer_actions=True,
        )
        if seed is None:
            started = next(self._chats_started)
            seed = random.randrange(2**31) if self.config.seed is None else self.config.seed + started
        chat_id = f"space-{mode}-{uuid.uuid4().hex[:10]}"
        try:
            state = sim.start(record, chat_id, seed)
        except BadInputError as exc:
            raise PlaygroundError(self.public(f"This persona cannot be used: {exc.message}")) from None
        return Chat(mode, sim, state, catalog, source)

    def _merged_catalog(self) -> Catalog:
        """Every configured folder's items, for linking titles outside a corpus (tab 2, written personas)."""
        if self._merged is None:
            merged = Catalog()
            for name in self._folders:
                merged.add_rows(self.corpus(name).catalog.rows())
            self._merged = merged
        return self._merged

    def human_turn(self, chat: Chat, text: str, action: str = "auto") -> None:
        """Appends the person's turn; ``action`` is one of the Interplay actions or ``auto`` (read from the text)."""
        role = chat.human_role
        if role is None:
            raise PlaygroundError("In this tab the simulators talk to each other.")
        if chat.finished:
            raise PlaygroundError("This chat has ended. Start a new one.")
        text = " ".join((text or "").split())
        if not text and action != Action.ACCEPT:
            raise PlaygroundError("Type a message first.")
        if len(text) > self.config.max_input_chars:
            raise PlaygroundError(
                f"Your message has {len(text)} characters; the limit is {self.config.max_input_chars}. "
                "Shorten it and send again."
            )
        if action not in ("auto", "", *INTERPLAY_ACTIONS):
            raise PlaygroundError(f"Unknown action {action!r}.")
        raw = text if action in ("auto", "") else format_turn(action, text)
        parsed = parse_turn(raw, role, infer_action=True)
        if not parsed.ok:
            raise PlaygroundError(self.public(f"Could not read that turn: {parsed.error}."))
        if parsed.action == Action.ACCEPT and not parsed.response:
            parsed = dataclasses.replace(parsed, response="I'll take it.")
        chat.sim.append_turn(chat.state, role, parsed)

    def simulator_turn(self, chat: Chat) -> None:
        """The next simulator turn: request, generate, apply (a parse failure retries with a new seed, as in
        ``crsdata simulate``). A backend failure or timeout raises :class:`PlaygroundError` and leaves the chat
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
                raise PlaygroundError(self.public(f"The {role} simulator failed: {generation.error}"))
            sim.apply(state, role, generation)
        chat.seconds.append(time.perf_counter() - started)

    def reply(self, chat: Chat, text: str, action: str = "auto") -> None:
        """The person's turn, then the simulator's answer (tabs 1 and 2). When the answer fails, the person's turn
        is taken back so that sending again does not repeat it."""
        turns = len(chat.state.turns)
        self.human_turn(chat, text, action)
        try:
            self.simulator_turn(chat)
        except PlaygroundError:
            del chat.state.turns[turns:]
            chat.state.finished, chat.state.end_reason = False, ""
            raise

    def watch(self, chat: Chat) -> Iterator[Chat]:
        """Both simulators until the chat ends; yields after every turn (tab 3)."""
        if chat.mode != "watch":
            raise PlaygroundError("Only a watched chat runs by itself.")
        while not chat.finished:
            self.simulator_turn(chat)
            yield chat

    def end_chat(self, chat: Chat) -> None:
        """The person ends the chat (no accept): it ends like a chat that ran out of turns."""
        if not chat.finished:
            chat.state.finished, chat.state.end_reason = True, "max_turns"
            chat.state.counters["ended_by_person"] = 1

    # -- results ---------------------------------------------------------------------------------------------

    def outcome(self, chat: Chat) -> dict[str, Any]:
        """What the page shows when a chat ends: target, outcome, turns, whether the target was reached, leaks."""
        record = chat.record()
        targets = chat.target_items
        ids = {t["item_id"] for t in targets if t["item_id"]}

        def names_target(turn: dict[str, Any]) -> bool:
            if any(i["item_id"] in ids for i in turn["items"] if i["item_id"]):
                return True
            return any(t["title"] and fuzzy_title_match(turn["text"], t["title"]) for t in targets)

        accepted = record["outcome"]["accepted_item"]
        return {
            "end_reason": record["outcome"]["end_reason"],
            "accepted": record["outcome"]["end_reason"] == "accept",
            "accepted_item": accepted,
            "accepted_target": bool(accepted["item_id"]) and accepted["item_id"] in ids,
            "turns": len(record["turns"]),
            "targets": [self.item_text(chat.catalog, t) for t in targets],
            "target_attributes": record["user_profile"]["target_attributes"],
            "target_reached": any(t["role"] == "recommender" and names_target(t) for t in record["turns"]),
            "leaks": [dataclasses.asdict(leak) for leak in find_leaks(record)],
            "seconds": list(chat.seconds),
        }

    @staticmethod
    def item_text(catalog: Catalog | None, item: Mapping[str, str]) -> str:
        return display_title(catalog_row(catalog, item.get("item_id", "")), item.get("title", ""))

    def item_card(self, catalog: Catalog | None, item: Mapping[str, str]) -> str:
        """Markdown for a recommended item: its title linked to its catalog entry, year, genres and plot."""
        row = catalog_row(catalog, item.get("item_id", ""))
        title = _esc(display_title(row, item.get("title", "")))
        if row is None:
            return f"**{title}** (not in the catalog)"
        link = f"https://www.imdb.com/title/{row['imdb_id']}/" if row.get("imdb_id") else ""
        head = f"[**{title}**]({link})" if link else f"**{title}**"
        genres = ", ".join(row.get("genres") or [])
        plot = " ".join(str(row.get("plot") or "").split())
        if len(plot) > SNIPPET_CHARS:
            plot = plot[: SNIPPET_CHARS - 3].rsplit(" ", 1)[0] + "..."
        parts = [head] + [p for p in (genres and _esc(genres), plot and _esc(plot)) if p]
        return " · ".join(parts)

    def messages(self, chat: Chat) -> list[dict[str, str]]:
        """The chat as Chatbot messages: the person (or, when watching, the user simulator) on the right. Each turn
        shows its action; recommended titles come with their catalog card."""
        right = chat.human_role or Role.USER.value
        out = []
        for turn in chat.state.turns:
            out.append(
                {
                    "role": "user" if turn["role"] == right else "assistant",
                    "content": self.turn_markdown(turn, chat.catalog, show_role=chat.mode == "watch"),
                }
            )
        return out

    def turn_markdown(self, turn: Mapping[str, Any], catalog: Catalog | None, show_role: bool = True) -> str:
        who = f"**{turn['role']}** " if show_role else ""
        # Corpora without act labels (ReDial) say "none": nothing worth a badge.
        action = f"`{turn['action']}` " if turn["action"] not in ("", "none") else ""
        text = f"{who}{action}{_esc(turn['text'])}"
        if turn["items"]:  # a film named by either side shows its catalog facts
            text += "\n\n" + "\n\n".join(f"Catalog: {self.item_card(catalog, i)}" for i in turn["items"])
        return text

    def outcome_markdown(self, chat: Chat) -> str:
        o = self.outcome(chat)
        lines = ["### The chat has ended"]
        if chat.mode != "user":
            targets = ", ".join(f"**{_esc(t)}**" for t in o["targets"]) or "(no title was given)"
            lines.append(f"**Target:** {targets}")
            lines.append(f"**What the simulated user was looking for:** {_esc(o['target_attributes'])}")
        why = {
            "accept": "accepted",
            "max_turns": "not accepted: the turn limit was reached or the chat was ended",
            "parse_error": "not accepted: a simulator could not write a readable turn",
            "empty": "not accepted: a simulator wrote an empty turn",
        }.get(o["end_reason"], o["end_reason"])
        lines.append(f"**Outcome:** {why} (`{o['end_reason']}`) after {o['turns']} turns")
        if o["accepted"]:
            accepted = self.item_text(chat.catalog, o["accepted_item"]) or "(a recommendation without a title)"
            same = " (the target)" if o["accepted_target"] else ""
            lines.append(f"**Accepted:** {_esc(accepted)}{same}")
        if chat.mode != "user":
            lines.append(f"**Target reached** (named by the recommender): {'yes' if o['target_reached'] else 'no'}")
            leaks = o["leaks"]
            lines.append(
                "**Leak check:** "
                + (
                    "passed, no user turn named the target before the recommender did"
                    if not leaks
                    else f"{len(leaks)} user turn(s) named the target first: turns "
                    + ", ".join(str(leak["turn_index"]) for leak in leaks)
                )
            )
        if o["seconds"]:
            lines.append(
                f"**Simulator time:** {sum(o['seconds']):.1f} s over {len(o['seconds'])} turns "
                f"(first {o['seconds'][0]:.1f} s)"
            )
        return "\n\n".join(lines)

    # -- saving ----------------------------------------------------------------------------------------------

    def save(self, chat: Chat) -> str:
        """Appends the chat's dialogue to the save folder (a crsdata folder: ``load_dataset(folder, "dialogues")``
        reads it) and returns a message for the page. Saving the same chat twice keeps one copy."""
        from crsdata.build import BuildResult, InputFile
        from crsdata.export import export_folder
        from crsdata.simulate.leak import leak_report

        if not chat.finished:
            raise PlaygroundError("Run the chat to its end before saving it.")
        record = chat.record()
        with self._save_lock:
            existing, items = [], []
            if is_built_folder(self.save_dir):
                import datasets

                loaded = datasets.load_dataset(str(self.save_dir), "dialogues")
                existing = [row for split in loaded.values() for row in split.to_list()]
                if any(self.save_dir.glob("items/*.parquet")):
                    items = datasets.load_dataset(str(self.save_dir), "items", split="train").to_list()
            records = [r for r in existing if r["dialogue_id"] != record["dialogue_id"]] + [record]
            known = {row["item_id"] for row in items}
            mentioned = [i["item_id"] for t in record["turns"] for i in t["items"] if i["item_id"]]
            mentioned += [t["item_id"] for t in record["target_items"] if t["item_id"]]
            items += [row for row in chat.catalog.rows(dict.fromkeys(mentioned)) if row["item_id"] not in known]
            report = leak_report(records)
            result = BuildResult(
                source="interplay-sim",
                splits={"train": records},
                items=items,
                inputs=[InputFile(path="crsdata space", sha256="", records=len(records))],
                info={
                    "name": "crsdata space",
                    "pretty_name": "Dialogues saved from the crsdata playground",
                    "description": "Interplay dialogues between the user and recommender simulators, run one at a "
                    "time on the crsdata playground Space and saved by the person watching.",
                    "license": "generated text is subject to the licences of the models named in provenance",
                },
            )
            sections = {
                "Target leak": f"{report['leaked_dialogues']} of {report['dialogues']} dialogues with targets have "
                "a user turn naming a target before the recommender did (`crsdata.simulate.leak`)."
            }
            export_folder(result, self.save_dir, card_sections=sections)
            self._corpora.pop((self.save_dir.resolve().name, ""), None)
        chat.saved = True
        return f"Saved to `{self.save_dir.resolve().name}`: it now holds {len(records)} dialogue(s)."

    # -- browsing --------------------------------------------------------------------------------------------

    @staticmethod
    def filter_dialogues(
        corpus: Corpus, split: str = "", end_reason: str = "", action: str = "", text: str = ""
    ) -> list[dict[str, Any]]:
        """Dialogues of ``corpus`` matching every filter given (empty = any); ``text`` is a case-insensitive
        substring of any turn."""
        needle = text.strip().lower()
        out = []
        for record in corpus.records:
            if split and record["split"] != split:
                continue
            if end_reason and record["outcome"]["end_reason"] != end_reason:
                continue
            if action and not any(t["action"] == action for t in record["turns"]):
                continue
            if needle and not any(needle in t["text"].lower() for t in record["turns"]):
                continue
            out.append(record)
        return out

    def dialogue_markdown(self, corpus: Corpus, record: Mapping[str, Any]) -> str:
        """A header for a browsed dialogue: its split, outcome, targets and persona fields."""
        profile = record["user_profile"]
        targets = ", ".join(self.item_text(corpus.catalog, t) for t in record["target_items"]) or "none"
        lines = [
            f"**{_esc(record['dialogue_id'])}** · split `{record['split']}` · {len(record['turns'])} turns · "
            f"end reason `{record['outcome']['end_reason']}`",
            f"**Targets:** {_esc(targets)}",
        ]
        if profile.get("general_preferences"):
            lines.append(f"**Taste:** {_esc(profile['general_preferences'])}")
        if profile.get("target_attributes"):
            lines.append(f"**Target attributes:** {_esc(profile['target_attributes'])}")
        return "\n\n".join(lines)

    def browse_messages(self, corpus: Corpus, record: Mapping[str, Any]) -> list[dict[str, str]]:
        return [
            {
                "role": "user" if t["role"] == Role.USER.value else "assistant",
                "content": self.turn_markdown(t, corpus.catalog),
            }
            for t in record["turns"]
        ]

    @staticmethod
    def stats_markdown(corpus: Corpus) -> str:
        """The card's statistics of a corpus as a markdown table."""
        s = corpus.stats
        if not s.get("dialogues"):
            return "No dialogues."
        link = "n/a" if s["link_rate"] is None else f"{s['link_rate']:.1%}"
        rows = [
            ("dialogues", f"{s['dialogues']:,}"),
            ("splits", ", ".join(f"{k} {v:,}" for k, v in s["splits"].items())),
            ("turns", f"{s['turns']:,}"),
            ("mean turns per dialogue", f"{s['mean_turns_per_dialogue']:.2f}"),
            ("mean words per turn", f"{s['mean_words_per_turn']:.2f}"),
            ("item mentions linked", f"{s['linked_mentions']:,} of {s['item_mentions']:,} ({link})"),
            ("actions", ", ".join(f"{k} {v:,}" for k, v in list(s["actions"].items())[:8])),
            ("end reasons", ", ".join(f"{k} {v:,}" for k, v in s["end_reasons"].items())),
        ]
        return "| statistic | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)

    @staticmethod
    def plot_html(corpus: Corpus) -> str:
        """The card's turns-per-dialogue histogram as an inline image (no file URL, so no path in the page)."""
        from crsdata.export import plot_turn_counts

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "plot.png"
            plot_turn_counts(corpus.stats.get("turns_per_dialogue", []), path, corpus.name)
            data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'<img alt="turns per dialogue" style="max-width:100%" src="data:image/png;base64,{data}">'
