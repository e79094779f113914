"""The simulated user of GRSU (section 3.2): it scores recommended items and critiques recommended lists.

Scoring (Eq. 2) has two implementations behind :class:`ItemScorer`:

- :class:`GenerativeScorer`: any crsdata backend (the embedded SmolLM2, a fine-tuned GRSU scorer, a server). The
  score of an item is P("Yes") to "Accept the recommendation (Yes/No)?", read from the next-token distribution,
  no generation. On a local model (:func:`shared_prefix_probabilities`) each turn's conversation prefix runs once
  and every item's suffix runs on top of its key/value states, many items per forward pass; on a server, from
  the backend's option probabilities (the server's own prefix caching shares the conversation).
- :class:`EmbeddingScorer`: a label-free stand-in with no language model, for CPUs: the cosine, mapped to [0, 1],
  between an item's catalog text and the user (what the seeker said plus the movies mentioned), in
  all-MiniLM-L6-v2's space. It ranks but is not a probability.

Critiques (Eq. 3) name a catalog attribute, genre, actor, writer or director, that the user wants more of:

- :class:`AttributeCritic` builds them from the catalog without a model: the attribute values the seeker named
  (genres and people found in the conversation), those of the movies mentioned, and those of the list's
  best-scored items are candidates, weighted in that order; each critique draws one without replacement (seeded),
  says it in a sentence, and rejects the list's worst-scored item.
- :class:`ModelCritic` asks a backend model with the Eq. 3 prompt (sampled, temperature 1 as in GRSU) and finds
  the attribute its text names, so that a popularity CRS can use it too.

:class:`SimulatedUser` caches scores per (turn, item), as GRSU does at temperature 0, and counts the scoring
passes it really ran.
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crsdata.backends.base import Backend, ChatRequest, SamplingParams
from crsdata.grsu.data import CRITIQUE_ATTRIBUTES, EvalTurn, ItemTable
from crsdata.grsu.prompts import SCORE_OPTIONS, critique_messages, scoring_context, scoring_messages
from crsdata.grsu.search import Critique, Node
from crsdata.grsu.vectors import ItemVectors

_WORD = re.compile(r"[\w'’.-]+")
MAX_NGRAM = 4  # words in the longest attribute value looked up in text ("Samuel L. Jackson": 3)
# Candidate weights of AttributeCritic: a value the seeker said outweighs one inferred from a movie.
SAID_WEIGHT, MENTIONED_WEIGHT, LIST_WEIGHT = 3.0, 1.0, 0.5
CRITIQUE_TEMPLATES = {
    "genre": "I would like more {value} movies",
    "actor": "I would like a movie with {value}",
    "writer": "I would like a movie written by {value}",
    "director": "I would like a movie directed by {value}",
}
CRITIQUE_OPENING = "Thanks, but these are not quite what I am looking for."
FALLBACK_CRITIQUE = "Thanks, but these are not quite what I am looking for. Could you suggest something different?"


class ItemScorer(ABC):
    """Scores (turn, item) pairs; higher means the user is more likely to accept the item."""

    name: str

    @abstractmethod
    def score(self, pairs: Sequence[tuple[EvalTurn, str]]) -> list[float]: ...

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class GenerativeScorer(ItemScorer):
    """P("Yes") from a backend's option probabilities over :data:`~crsdata.grsu.prompts.SCORE_OPTIONS`.

    All pairs of a call go to the backend in one ``option_probabilities`` call. With ``share_context`` (default),
    the part that every prompt of a turn shares (task and conversation, :func:`~crsdata.grsu.prompts.
    scoring_context`) is first sent once per new turn as a one-token generation: backends that keep key/value
    states of earlier prompts (the local backend's prefix store, vLLM's prefix caching) then compute the
    conversation once per turn instead of once per item. It changes no score.
    """

    name = "generative"

    def __init__(self, backend: Backend, items: ItemTable, share_context: bool = True) -> None:
        self.backend = backend
        self.items = items
        self.share_context = share_context
        self._shared: set[str] = set()

    def requests(self, pairs: Sequence[tuple[EvalTurn, str]]) -> list[ChatRequest]:
        return [ChatRequest(messages=scoring_messages(turn, self.items, item)) for turn, item in pairs]

    def score(self, pairs: Sequence[tuple[EvalTurn, str]]) -> list[float]:
        if not pairs:
            return []
        if self.share_context and hasattr(self.backend, "tokenizer") and hasattr(self.backend, "model"):
            return self._score_shared(pairs)
        if self.share_context:
            new = list({turn.key: turn for turn, _ in pairs if turn.key not in self._shared}.values())
            if new:
                contexts = [ChatRequest(messages=[{"role": "user", "content": scoring_context(t)}]) for t in new]
                self.backend.generate(contexts, SamplingParams(max_new_tokens=1, temperature=0.0))
                self._shared.update(t.key for t in new)
        options = self.backend.option_probabilities(self.requests(pairs), SCORE_OPTIONS)
        return [float(p[SCORE_OPTIONS[0]]) for p in options]

    def _score_shared(self, pairs: Sequence[tuple[EvalTurn, str]]) -> list[float]:
        backend: Any = self.backend
        option_ids = backend.option_token_ids(list(SCORE_OPTIONS))
        groups: dict[str, list[int]] = {}
        for i, (turn, _) in enumerate(pairs):
            groups.setdefault(turn.key, []).append(i)
        prompts = [backend.encode(request) for request in self.requests(pairs)]
        too_long = [(turn.key, len(ids)) for (turn, _), ids in zip(pairs, prompts, strict=True)]
        too_long = [(key, n) for key, n in too_long if n >= backend.max_positions]
        if too_long:
            from crsdata.backends.base import BackendError

            key, n = too_long[0]
            raise BackendError(
                f"the scoring prompt of turn {key} has {n} tokens; model {backend.model_id} takes at most "
                f"{backend.max_positions} ({len(too_long)} prompts too long; --context-chars N shortens them)"
            )
        scores = [0.0] * len(pairs)
        for members in groups.values():
            rows = [prompts[i] for i in members]
            probs = shared_prefix_probabilities(
                backend.model, rows, option_ids, backend.pad_token_id, backend.max_batch_size
            )
            for i, p in zip(members, probs, strict=True):
                scores[i] = p[0]
        return scores

    def forget(self, turns: Sequence[EvalTurn]) -> None:
        self._shared.difference_update(t.key for t in turns)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.backend.model_id, "options": SCORE_OPTIONS}


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Tokens that every row starts with, leaving at least one token of each row outside (its last token must
    run, since its logits are the answer)."""
    if not rows:
        return 0
    limit = min(len(r) for r in rows) - 1
    first = rows[0]
    n = 0
    while n < limit and all(r[n] == first[n] for r in rows):
        n += 1
    return n


def shared_prefix_probabilities(
    model: Any, rows: Sequence[Sequence[int]], option_ids: Sequence[int], pad_token_id: int, batch_size: int = 16
) -> list[list[float]]:
    """The next-token probabilities of ``option_ids`` (renormalised over them) after each prompt of ``rows``,
    with the prompts' common prefix run once.

    The prefix (one turn's task and conversation: nearly all of a scoring prompt) runs in one forward pass and
    its key/value cache is kept; each batch of suffixes (the item and the question) then runs on a copy of that
    cache repeated along the batch. Suffixes are left-padded *between* the prefix and the suffix, masked, with
    explicit positions, so every row's last token is the batch's last position and only its logits are built.
    The result equals running each whole prompt alone, to float rounding (a test checks 1e-4).
    """
    import copy

    import torch

    from crsdata.backends.kv_cache import cache_argument

    keyword = cache_argument(model)
    n_prefix = common_prefix_length(rows)
    device = next(model.parameters()).device
    index = torch.tensor(list(option_ids), device=device)
    out: list[list[float]] = []
    with torch.inference_mode():
        prefix_cache = None
        if n_prefix:
            prefix = torch.tensor([list(rows[0][:n_prefix])], dtype=torch.long, device=device)
            prefix_cache = model(input_ids=prefix, use_cache=True, logits_to_keep=1).past_key_values
        for start in range(0, len(rows), batch_size):
            chunk = [list(r[n_prefix:]) for r in rows[start : start + batch_size]]
            width = max(map(len, chunk))
            input_ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
            attention = torch.zeros((len(chunk), n_prefix + width), dtype=torch.long)
            positions = torch.zeros((len(chunk), width), dtype=torch.long)
            attention[:, :n_prefix] = 1
            for j, suffix in enumerate(chunk):
                input_ids[j, width - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
                attention[j, n_prefix + width - len(suffix) :] = 1
                positions[j, width - len(suffix) :] = torch.arange(n_prefix, n_prefix + len(suffix))
            options: dict[str, Any] = {}
            if prefix_cache is not None:
                cache = copy.deepcopy(prefix_cache)
                cache.batch_repeat_interleave(len(chunk))
                options[keyword] = cache
            logits = model(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                position_ids=positions.to(device),
                use_cache=prefix_cache is not None,
                logits_to_keep=1,
                **options,
            ).logits[:, -1, :]
            probs = logits.float().softmax(dim=-1).index_select(-1, index)
            out.extend((probs / probs.sum(dim=-1, keepdim=True)).tolist())
    return out


class EmbeddingScorer(ItemScorer):
    """``(1 + cos(user, item)) / 2`` in an :class:`~crsdata.grsu.vectors.ItemVectors` (default all-MiniLM-L6-v2):
    the user is the turn's preference vector (the seeker's words and the movies mentioned)."""

    name = "embedding"

    def __init__(self, vectors: ItemVectors) -> None:
        self.vectors = vectors
        self._users: dict[str, np.ndarray] = {}

    def score(self, pairs: Sequence[tuple[EvalTurn, str]]) -> list[float]:
        if not pairs:
            return []
        missing = list({turn.key: turn for turn, _ in pairs if turn.key not in self._users}.values())
        if missing:
            self._users.update(zip([t.key for t in missing], self.vectors.preferences(missing), strict=True))
        items = self.vectors.matrix[[self.vectors.index[item] for _, item in pairs]].astype(np.float64)
        users = np.stack([self._users[turn.key] for turn, _ in pairs])
        return ((1.0 + np.einsum("ij,ij->i", users, items)) / 2.0).tolist()

    def forget(self, turns: Sequence[EvalTurn]) -> None:
        for turn in turns:
            self._users.pop(turn.key, None)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "embedder": self.vectors.name}


SEEKER_CHARS = 400  # the seeker's most recent words a MiniLM scorer reads (its pair fits 128 word pieces)
MENTIONED_FILMS = 5  # the most recently mentioned films a MiniLM scorer reads, with their genres


def cross_encoder_texts(turn: EvalTurn, items: ItemTable, item_id: str) -> tuple[str, str]:
    """The (conversation, item facts) pair a MiniLM scorer reads. The conversation side is the seeker's side of
    it: what the seeker said (the last :data:`SEEKER_CHARS` characters) and one ``Title (Year): genres`` line per
    film mentioned (the last :data:`MENTIONED_FILMS`); the recommender's lines are left out. On ReDial this gives
    the zero-shot MiniLM cosine a higher validation AUC than the raw ``User:``/``System:`` lines (0.664 against
    0.638, docs/grsu_scorer.md). The item side is the item as the GRSU prompts describe it (title, genre, actors,
    writer, director)."""
    said = turn.user_text()[-SEEKER_CHARS:]
    films = [m for m in turn.mentioned if m in items][-MENTIONED_FILMS:]
    lines = [f"{items.title(m)}: {', '.join(items.attributes(m)['genre'])}" for m in films]
    return "\n".join([said, *lines]).strip() or " ", items.describe(item_id)


def is_cross_encoder(folder: str) -> bool:
    """Whether ``folder`` holds a cross-encoder scorer: its ``crsdata.json`` says ``kind: cross-encoder``, or its
    ``config.json`` names a sequence-classification architecture (a folder copied without crsdata.json)."""
    import json

    kind = _trained_config(folder).get("kind")
    if kind:
        return kind == "cross-encoder"
    config = Path(folder) / "config.json"
    if config.is_file():
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
        return any(a.endswith("ForSequenceClassification") for a in architectures)
    return False


def _trained_config(folder: str) -> dict[str, Any]:
    """The ``config`` recorded in the folder's ``crsdata.json`` (empty when there is none)."""
    import json

    metadata = Path(folder) / "crsdata.json"
    if not metadata.is_file():
        return {}
    return json.loads(metadata.read_text(encoding="utf-8")).get("config") or {}


def _trained_length(folder: str) -> int | None:
    """The pair length the scorer was trained with (``ce_max_length`` in its crsdata.json), if recorded."""
    return _trained_config(folder).get("ce_max_length")


def minilm_scorer(folder: str, items: ItemTable) -> ItemScorer:
    """The scorer of a ``crsdata train grsu-scorer --kind cross-encoder`` folder: :class:`BiEncoderScorer` when
    its crsdata.json records ``ce_architecture: bi-encoder`` (the recipe's default), else
    :class:`CrossEncoderScorer` (a one-logit sequence classifier, also a folder copied without crsdata.json)."""
    trained = _trained_config(folder)
    if trained.get("ce_architecture") == "bi-encoder":
        return BiEncoderScorer(items, folder, max_length=trained.get("ce_max_length"))
    return CrossEncoderScorer(folder, items)


class BiEncoderScorer(ItemScorer):
    """``(1 + cos) / 2`` of the mean-pooled, normalised embeddings of the two texts of :func:`cross_encoder_texts`,
    each encoded on its own (sentence-transformers' all-MiniLM-L6-v2 recipe). With the wheel's MiniLM it is the
    zero-shot base of the cross-encoder kind; with a folder of ``--ce-architecture bi-encoder`` it is the
    fine-tuned scorer. A text longer than ``max_length`` word pieces loses its oldest words, as in training."""

    name = "bi-encoder"

    def __init__(
        self, items: ItemTable, model_dir: str | Path | None = None, batch_size: int = 64, max_length: int | None = None
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        from crsdata.metrics.match import default_model_dir

        self.folder = str(model_dir or default_model_dir())
        self.items = items
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, truncation_side="left")
        self.model = AutoModel.from_pretrained(self.folder).eval()
        self.max_length = max_length or min(int(self.model.config.max_position_embeddings), 256)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` (mean pooling over real tokens), in their order."""
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                out.append(
                    mean_pooled(self.model, self.tokenizer, texts[start : start + self.batch_size], self.max_length)
                )
        return torch.cat(out).numpy() if out else np.zeros((0, self.model.config.hidden_size), dtype=np.float32)

    def score(self, pairs: Sequence[tuple[EvalTurn, str]]) -> list[float]:
        if not pairs:
            return []
        texts = [cross_encoder_texts(turn, self.items, item) for turn, item in pairs]
        # Each distinct text once: a turn's conversation is shared by all its items, an item by many turns.
        unique = list(dict.fromkeys(text for pair in texts for text in pair))
        vectors = dict(zip(unique, self.encode(unique).astype(np.float64), strict=True))
        return [(1.0 + float(vectors[a] @ vectors[b])) / 2.0 for a, b in texts]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.folder}


def mean_pooled(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int) -> Any:
    """The L2-normalised mean of ``model``'s last hidden states over the real tokens of each text (a torch
    tensor; gradients flow when called outside inference mode, as in training)."""
    import torch

    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    batch = {k: v.to(model.device) for k, v in batch.items()}
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)


class CrossEncoderScorer(ItemScorer):
    """sigmoid of a sequence-classification model's one logit on (conversation, item facts)
    (:func:`cross_encoder_texts`): a fine-tuned MiniLM from ``crsdata train grsu-scorer --kind cross-encoder``.
    A probability like P("Yes") at a fraction of an LLM's cost: one encoder pass per pair."""

    name = "cross-encoder"

    def __init__(self, folder: str, items: ItemTable, batch_size: int = 32, max_length: int | None = None) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.folder = str(folder)
        self.items = items
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.folder, truncation_side="left")
        self.model = AutoModelForSequenceClassification.from_pretrained(self.folder).eval()
        self.max_length = (
            max_length
            or _trained_length(self.folder)
            or min(int(self.tokenizer.model_max_length), int(self.model.config.max_position_embeddings), 512)
        )

    def score(self, pairs: Sequence[tuple[EvalTurn, str]]) -> list[float]:
        import torch

        texts = [cross_encoder_texts(turn, self.items, item) for turn, item in pairs]
        out: list[float] = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                chunk = texts[start : start + self.batch_size]
                batch = self.tokenizer(
                    [a for a, _ in chunk],
                    [b for _, b in chunk],
                    padding=True,
                    truncation="only_first",  # the conversation's oldest words go first; the item stays whole
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                out.extend(torch.sigmoid(self.model(**batch).logits[:, 0]).tolist())
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.folder}


class AttributeIndex:
    """Finds catalog attribute values (genres, people) in free text: word n-grams looked up case-insensitively."""

    def __init__(self, items: ItemTable) -> None:
        self.values: dict[str, tuple[str, str]] = {}
        for item_id in items.ids():
            for attribute, values in items.attributes(item_id).items():
                for value in values:
                    key = value.lower()
                    # Two letters match too much chat ("ok", "tv"); genres and names are longer.
                    if len(key) >= 3:
                        self.values.setdefault(key, (attribute, value))

    def find(self, text: str) -> list[tuple[str, str]]:
        """``(attribute, value)`` pairs named in ``text``, in order of first appearance, longest match first."""
        words = [w.strip(".'’").lower() for w in _WORD.findall(text)]
        found: list[tuple[str, str]] = []
        i = 0
        while i < len(words):
            for size in range(min(MAX_NGRAM, len(words) - i), 0, -1):
                hit = self.values.get(" ".join(words[i : i + size]))
                if hit is not None:
                    if hit not in found:
                        found.append(hit)
                    i += size - 1
                    break
            i += 1
        return found


class Critic(ABC):
    """Critiques of lists: ``n`` per ``(turn, node)``, seeded."""

    name: str

    @abstractmethod
    def critique(
        self, parents: Sequence[tuple[EvalTurn, Node]], n: int, seeds: Sequence[int]
    ) -> list[list[Critique]]: ...

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


class AttributeCritic(Critic):
    """Attribute critiques from the catalog, without a model (see the module doc)."""

    name = "attributes"

    def __init__(self, items: ItemTable, index: AttributeIndex | None = None) -> None:
        self.items = items
        self.index = index or AttributeIndex(items)
        self._said: dict[str, list[tuple[str, str]]] = {}

    def candidates(self, turn: EvalTurn, node: Node) -> dict[tuple[str, str], float]:
        """``(attribute, value) -> weight`` for a critique of ``node``'s list."""
        if turn.key not in self._said:
            self._said[turn.key] = self.index.find(turn.user_text())
        weights: dict[tuple[str, str], float] = {}

        def add(attribute: str, value: str, weight: float) -> None:
            weights[(attribute, value)] = weights.get((attribute, value), 0.0) + weight

        for attribute, value in self._said[turn.key]:
            add(attribute, value, SAID_WEIGHT)
        for item_id in turn.mentioned:
            if item_id in self.items:
                for attribute, values in self.items.attributes(item_id).items():
                    for value in values[:3]:
                        add(attribute, value, MENTIONED_WEIGHT)
        if node.scores:
            mean = sum(node.scores) / len(node.scores)
            for item_id, score in zip(node.items, node.scores, strict=True):
                if score >= mean:
                    for attribute, values in self.items.attributes(item_id).items():
                        for value in values[:3]:
                            add(attribute, value, LIST_WEIGHT * score)
        return weights

    def critique(self, parents: Sequence[tuple[EvalTurn, Node]], n: int, seeds: Sequence[int]) -> list[list[Critique]]:
        out = []
        for (turn, node), seed in zip(parents, seeds, strict=True):
            rng = random.Random(seed)
            weights = self.candidates(turn, node)
            # Weighted draw without replacement (Efraimidis-Spirakis keys), in a fixed order so the seed decides.
            keyed = sorted(((rng.random() ** (1.0 / w), pair) for pair, w in sorted(weights.items())), reverse=True)
            chosen = [pair for _, pair in keyed[:n]]
            avoid = ()
            if node.scores:
                worst = min(range(len(node.items)), key=lambda i: (node.scores[i], i))
                avoid = (node.items[worst],)
            critiques = [self._say(turn, attribute, value, avoid) for attribute, value in chosen]
            while len(critiques) < n:  # too few candidates: repeat them (the CRS samples anew) or ask plainly
                critiques.append(critiques[len(critiques) % len(chosen)] if chosen else Critique(FALLBACK_CRITIQUE))
            out.append(critiques)
        return out

    def say(self, turn: EvalTurn, attribute: str, value: str, avoid: tuple[str, ...] = ()) -> Critique:
        """The critique asking for ``value`` of ``attribute`` and rejecting ``avoid`` (the GRSU scorer recipe
        trains on these same sentences)."""
        return self._say(turn, attribute, value, tuple(avoid))

    def _say(self, turn: EvalTurn, attribute: str, value: str, avoid: tuple[str, ...]) -> Critique:
        like = next(
            (m for m in turn.mentioned if m in self.items and value in self.items.attributes(m)[attribute]), None
        )
        text = f"{CRITIQUE_OPENING} {CRITIQUE_TEMPLATES[attribute].format(value=value)}"
        if like is not None:
            text += f", like {self.items.title(like)}"
        text += "."
        if avoid:
            text += f" Nothing like {self.items.title(avoid[0])}."
        return Critique(text, attribute, value, avoid)


class ModelCritic(Critic):
    """Eq. 3 critiques generated by a backend model (sampled); the first attribute value the text names is kept
    as the critique's attribute."""

    name = "model"

    def __init__(
        self,
        backend: Backend,
        items: ItemTable,
        index: AttributeIndex | None = None,
        temperature: float = 1.0,
        max_new_tokens: int = 64,
    ) -> None:
        self.backend = backend
        self.items = items
        self.index = index or AttributeIndex(items)
        self.params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=1.0)
        self.empty = 0

    def critique(self, parents: Sequence[tuple[EvalTurn, Node]], n: int, seeds: Sequence[int]) -> list[list[Critique]]:
        requests = [
            ChatRequest(messages=critique_messages(turn, self.items, node.items), seed=seed + j)
            for (turn, node), seed in zip(parents, seeds, strict=True)
            for j in range(n)
        ]
        replies = iter(self.backend.generate(requests, self.params))
        out = []
        for _ in parents:
            critiques = []
            for _ in range(n):
                reply = next(replies)
                text = " ".join(reply.text.split()) if reply.finish_reason != "error" else ""
                if not text:
                    self.empty += 1
                    critiques.append(Critique(FALLBACK_CRITIQUE))
                    continue
                found = [(a, v) for a, v in self.index.find(text) if a in CRITIQUE_ATTRIBUTES]
                attribute, value = found[0] if found else ("", "")
                critiques.append(Critique(text, attribute, value))
            out.append(critiques)
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "model": self.backend.model_id, "empty_replies": self.empty}


class SimulatedUser:
    """A scorer and a critic; scores are cached per (turn, item), and ``scoring_passes`` counts those computed."""

    def __init__(self, scorer: ItemScorer, critic: Critic) -> None:
        self.scorer = scorer
        self.critic = critic
        self.cache: dict[tuple[str, str], float] = {}
        self.scoring_passes = 0
        self.critiques = 0

    def score(self, pairs: Sequence[tuple[EvalTurn, str]]) -> list[float]:
        """Scores of the pairs, in order; pairs not seen before are scored together in one scorer call."""
        todo: dict[tuple[str, str], tuple[EvalTurn, str]] = {}
        for turn, item in pairs:
            if (turn.key, item) not in self.cache:
                todo.setdefault((turn.key, item), (turn, item))
        if todo:
            scores = self.scorer.score(list(todo.values()))
            self.cache.update(zip(todo, scores, strict=True))
            self.scoring_passes += len(todo)
        return [self.cache[(turn.key, item)] for turn, item in pairs]

    def critique(self, parents: Sequence[tuple[EvalTurn, Node]], n: int, seeds: Sequence[int]) -> list[list[Critique]]:
        found = self.critic.critique(parents, n, seeds)
        self.critiques += sum(map(len, found))
        return found

    def forget(self, turns: Sequence[EvalTurn]) -> None:
        """Drops the cached scores of finished turns (a long run would otherwise keep them all)."""
        keys = {t.key for t in turns}
        self.cache = {k: v for k, v in self.cache.items() if k[0] not in keys}
        if hasattr(self.scorer, "forget"):
            self.scorer.forget(turns)

    def describe(self) -> dict[str, Any]:
        return {"scorer": self.scorer.describe(), "critic": self.critic.describe()}
