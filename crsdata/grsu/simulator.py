"""The Interplay recommender simulator as GRSU's CRS (``crsdata crs-eval --crs llm --crs-model M``).

A model trained by ``crsdata train recommender-simulator`` (the shipped ``smollm2-135m-interplay-recommender``, a
train folder, a catalog-grounded one) has only ever seen the ``finetuned`` layout of
:mod:`crsdata.simulate.prompts`: ``[ROLE] recommender``, ``[CONVERSATION]``, one ``<who>: <action>...</response>``
line per turn, and, when trained with ``--grounding catalog``, a ``[CANDIDATES]`` block before each of its turns.
GRSU's Eq. 1 prompt (an instruction asking for a numbered list) is text it was never trained on, so such a model is
asked in its own layout instead. :func:`simulator_layout` tells which models these are, the way ``crsdata simulate``
does (:func:`crsdata.backends.embedded.prompt_style_of`,
:meth:`crsdata.simulate.interplay.InterplaySimulation.trained_grounding`).

One CRS call for one query:

1. The conversation of the turn becomes the recommender's view: each utterance a turn, the catalog titles of the
   movies mentioned before tagged where the text names them. Revising (a query with a critique), GRSU's contract is
   the one :class:`crsdata.grsu.crs.LLMCRS` keeps: the list being revised and the user's critique follow the
   conversation. Here they are two more turns, a recommender turn naming the previous list
   (``recommend``) and a user turn saying the critique (``feedback``).
2. With catalog grounding, every recommender turn of the conversation gets the candidate list training gave such
   turns (:func:`crsdata.simulate.grounding.training_candidates`), and the turn to write gets the
   :data:`CANDIDATES` films that :class:`crsdata.simulate.grounding.CatalogRetriever` finds for the user's words, as
   in ``crsdata simulate`` (films that may not be recommended left out).
3. The prompt ends with ``recommender:`` followed by :data:`RECOMMEND_PREFIX`: GRSU asks for a recommendation at
   this turn, so the act is given and the model writes the response (greedy for zero-shot lists, sampled with the
   query's seed in the search).
4. The ranking: the catalog films the turn names (``<movie_title>`` tags, linked with the project's title linking,
   :meth:`crsdata.catalog.Catalog.link`), in the order named; with grounding, then the films of its candidate list
   in retrieval order; then the retrieval CRS's list for the same query (:class:`crsdata.grsu.crs.RetrievalCRS`:
   the seeker's words with the critique, and the mentioned movies, over the whole catalog; sampled in the search
   with the retrieval CRS's own temperature), each film once, mentioned and excluded films never, cut at ``k``. A
   turn names one or two films, so @10 and @50 are mostly the retrieval CRS's; what the simulator adds is the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crsdata.backends.base import Backend, ChatRequest, SamplingParams
from crsdata.errors import BadInputError
from crsdata.grsu.crs import Recommender
from crsdata.grsu.data import ItemTable
from crsdata.grsu.search import CrsQuery

# The start of the completion: the act is given, the model writes what it says (see the module doc).
RECOMMEND_PREFIX = " <action><recommend></action><response>"
# Films in the grounded recommender's list: what `crsdata simulate --candidates` and training use by default.
CANDIDATES = 5
# A recommender turn is one or two sentences; ReDial's longest recommendations fit in this budget.
RESPONSE_TOKENS = 64
ROLE = "recommender"
EXAMPLE_REPLIES = 3  # replies kept in crs_details, so a reader sees what the model wrote


@dataclass(frozen=True)
class SimulatorLayout:
    """How a model reads its prompt: the ``finetuned`` layout, with the grounding it was trained on."""

    style: str
    grounding: str


def simulator_layout(model: str) -> SimulatorLayout | None:
    """The layout of an Interplay recommender simulator (a registry entry or a ``crsdata train`` folder), None for
    any other model (it gets GRSU's Eq. 1 prompt). A user simulator is refused: it writes the seeker's turns."""
    from crsdata.backends.embedded import prompt_style_of, simulator_recipe
    from crsdata.simulate.interplay import InterplaySimulation

    if prompt_style_of(model) != "finetuned":
        return None
    if simulator_recipe(model) == "user-simulator":
        raise BadInputError(
            model,
            "",
            "--crs-model",
            "is an Interplay user simulator, trained to write the seeker's turns; a CRS needs a recommender "
            "(smollm2-135m-interplay-recommender, a `crsdata train recommender-simulator` folder, or an "
            "instruction model)",
            "bad-option",
        )
    return SimulatorLayout("finetuned", InterplaySimulation.trained_grounding({ROLE: model}, [ROLE]))


def conversation_turns(
    context: Sequence[tuple[str, str]], mentioned: Sequence[str], items: ItemTable
) -> list[dict[str, Any]]:
    """The conversation as schema-like turns for :func:`crsdata.simulate.prompts.finetuned_prompt`: each mentioned
    movie an item of every turn whose text names it ("Title (Year)" or the bare title), so its title is tagged."""
    known = [m for m in mentioned if m in items]
    turns = []
    for role, text in context:
        lowered = text.lower()
        named = []
        for item_id in known:
            full, bare = items.title(item_id), str(items.rows[item_id]["title"])
            for title in (full, bare):
                if title and title.lower() in lowered:
                    named.append({"item_id": item_id, "title": title})
                    break
        turns.append({"role": role, "text": text, "action": "", "items": named})
    return turns


def revision_turns(items: ItemTable, previous: Sequence[str], critique: str) -> list[dict[str, Any]]:
    """The two turns that follow the conversation when revising: the list being revised, said by the recommender,
    and the user's critique of it."""
    named = [{"item_id": i, "title": items.title(i)} for i in previous if i in items]
    turns = []
    if named:
        text = "You might like " + ", ".join(n["title"] for n in named) + "."
        turns.append({"role": ROLE, "text": text, "action": "recommend", "items": named})
    turns.append({"role": "user", "text": critique, "action": "feedback", "items": []})
    return turns


class SimulatorCRS(Recommender):
    """An Interplay recommender simulator asked in its own layout (see the module doc).

    ``fill``: the CRS whose lists complete each ranking (the retrieval CRS); ``grounding``: ``none`` or ``catalog``
    (:func:`simulator_layout`); ``model``: the ``--crs-model`` given, for results and cards.
    """

    name = "llm"

    def __init__(
        self,
        backend: Backend,
        items: ItemTable,
        fill: Recommender,
        *,
        grounding: str = "none",
        temperature: float = 1.0,
        model: str = "",
        candidates: int = CANDIDATES,
        retriever: Any = None,
    ) -> None:
        from crsdata.catalog import Catalog

        self.backend = backend
        self.items = items
        self.fill = fill
        self.grounding = grounding
        self.temperature = temperature
        self.model = model
        self.candidates_k = candidates
        self.catalog = Catalog().add_rows(items.rows.values())
        self._retriever = retriever
        self.replies = 0
        self.named = 0  # replies that named at least one catalog film that could be recommended
        self.unparsed = 0  # replies with an error or no readable response
        self.last_prompts: list[str] = []  # the prompts of the last call, in query order, to read and to test
        self.example_replies: list[str] = []  # the first few replies of the run, for its card

    @property
    def retriever(self) -> Any:
        """The grounded recommender's :class:`~crsdata.simulate.grounding.CatalogRetriever`, built on first use."""
        if self._retriever is None:
            from crsdata.simulate.grounding import CatalogRetriever

            self._retriever = CatalogRetriever(self.catalog.rows())
        return self._retriever

    def prompt(self, query: CrsQuery) -> tuple[str, tuple[int, ...], list[str]]:
        """The finetuned prompt of ``query`` (ending with :data:`RECOMMEND_PREFIX`), where its turns start (a
        backend that must fit its context drops the oldest), and the candidate ids shown for the turn to write."""
        from crsdata.simulate.persona import Persona
        from crsdata.simulate.prompts import Grounding, finetuned_prompt_and_turn_starts

        turn = query.turn
        turns = conversation_turns(turn.context, turn.mentioned, self.items)
        if query.critique is not None:
            turns += revision_turns(self.items, query.previous, query.critique.text)
        shown: list[str] = []
        grounding = Grounding()
        if self.grounding == "catalog":
            shown, grounding = self._grounding(query, turns)
        prompt, starts = finetuned_prompt_and_turn_starts(ROLE, Persona(""), turns, grounding=grounding)
        return prompt + RECOMMEND_PREFIX, starts, shown

    def _grounding(self, query: CrsQuery, turns: list[dict[str, Any]]) -> tuple[list[str], Any]:
        from crsdata.seeds import derive_seed
        from crsdata.simulate.grounding import (
            candidate_lines,
            named_ids,
            training_candidates,
            training_queries,
            user_query,
        )
        from crsdata.simulate.prompts import Grounding

        # The search asks about the same conversation dozens of times: its queries are encoded once, in a batch.
        self.retriever.encode_queries(
            [*training_queries(self.retriever, [turns], self.candidates_k), user_query(turns)]
        )
        # Each earlier recommender turn gets the list training gave such turns (what it named plus retrieved
        # negatives, shuffled); the turn to write gets pure retrieval, as in a simulation.
        seed = derive_seed("grsu-candidates", query.turn.group)
        lists = {
            i: training_candidates(self.retriever, turns, i, self.candidates_k, seed)
            for i, turn in enumerate(turns)
            if turn["role"] == ROLE
        }
        banned = [*named_ids(turns), *query.exclude, *(query.critique.avoid if query.critique else ())]
        shown = self.retriever.search(user_query(turns), self.candidates_k, exclude=banned)
        lists[len(turns)] = shown
        return shown, Grounding(candidates=candidate_lines(lists, self.catalog, set(), [], []))

    def recommend(self, queries: list[CrsQuery]) -> list[list[str]]:
        from crsdata.simulate.prompts import FINETUNED_STOP

        out: list[list[str]] = [[] for _ in queries]
        if not queries:
            return out
        fills = self.fill.recommend(queries)
        prompts = [self.prompt(query) for query in queries]
        self.last_prompts = [prompt for prompt, _, _ in prompts]
        # One generate call per sampling mode: the sampling parameters are per call.
        groups: dict[bool, list[int]] = {}
        for i, query in enumerate(queries):
            groups.setdefault(query.sample, []).append(i)
        for sample, members in groups.items():
            params = SamplingParams(
                max_new_tokens=RESPONSE_TOKENS,
                temperature=self.temperature if sample else 0.0,
                top_p=1.0,
                stop=FINETUNED_STOP,
            )
            requests = [
                ChatRequest(prompt=prompts[i][0], seed=queries[i].seed, turn_starts=prompts[i][1]) for i in members
            ]
            for i, reply in zip(members, self.backend.generate(requests, params), strict=True):
                if len(self.example_replies) < EXAMPLE_REPLIES:
                    self.example_replies.append(reply.text.strip()[:300])
                named = self._named(reply.text) if reply.finish_reason != "error" else None
                self.replies += 1
                self.unparsed += named is None
                named = self._allowed(named or [], queries[i])
                self.named += bool(named)
                ranking = dict.fromkeys([*named, *self._allowed(prompts[i][2], queries[i]), *fills[i]])
                out[i] = list(ranking)[: queries[i].k]
        return out

    def _named(self, text: str) -> list[str] | None:
        """Catalog ids of the films the reply names, in order; None when the reply cannot be read as a turn."""
        from crsdata.simulate.actions import parse_turn

        body = RECOMMEND_PREFIX + text
        if "</response>" not in body.lower():  # stopped at the stop string, which the backend cuts off
            body += "</response>"
        parsed = parse_turn(body, ROLE)
        if not parsed.ok or not parsed.response.strip():
            return None
        linked = (self.catalog.link(title) for title in parsed.titles)
        return list(dict.fromkeys(i for i in linked if i and i in self.items))

    @staticmethod
    def _allowed(ids: Sequence[str], query: CrsQuery) -> list[str]:
        banned = set(query.exclude) | set(query.critique.avoid if query.critique else ())
        return [i for i in ids if i not in banned]

    def describe(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "name": self.name,
            "model": self.model or self.backend.model_id,
            "model_id": self.backend.model_id,
            "prompt_layout": "finetuned (Interplay recommender simulator; act recommend given)",
            "grounding": self.grounding,
        }
        if self.grounding == "catalog":
            details["candidates"] = self.candidates_k
        details["ranking"] = (
            "films the turn names first, "
            + ("then its candidate list, " if self.grounding == "catalog" else "")
            + "then the retrieval CRS's order"
        )
        details["fill"] = self.fill.describe()
        details.update(
            temperature=self.temperature,
            replies=self.replies,
            replies_naming_a_film=self.named,
            replies_unparsed=self.unparsed,
            example_replies=list(self.example_replies),
        )
        return details
