"""Interplay: a user simulator and a recommender simulator talking without knowing the target item.

The two roles are independent: each has its own backend and model (``backends["user"]``,
``backends["recommender"]``) and its own prompt. The user's prompt holds the persona (general preferences,
three watched movies with reviews, target attributes without the title; see :mod:`crsdata.simulate.persona`);
the recommender's prompt holds only the conversation, plus, with ``show_profile=True`` as in the paper's
zero-shot baseline, the user's general preferences and watched movies (never the target attributes). Every
request passes :func:`crsdata.simulate.leak.assert_no_target_leak` before it is returned.

The loop
- The recommender speaks first (``first_speaker="recommender"``), as in INSPIRED and in the PEARL-style
  dialogues Interplay trains on, where the recommender opens by greeting and asking; pass ``"user"`` for the
  ReDial habit of the seeker opening. The roles then alternate. ``crsdata simulate`` opens with the user when
  the user model is a fine-tuned simulator (``--first-speaker``): crsdata's are trained on ReDial, where the
  recommender never opens, and its recommender simulator cannot write an opening turn.
- Each turn is parsed with :func:`crsdata.simulate.actions.parse_turn`. Recommended titles are linked to the
  catalog (``items`` of the turn; ``item_id`` empty when the catalog does not know the title).
- With ``infer_actions=True`` a turn in plain text (no action markup) gets an action from its content instead of
  failing (``action_inferred`` repair; never ``accept``; a user's first such statement is ``disclose-goal``).
  Off by default; instruction models that small (SmolLM2-135M) rarely write the tags and need it.
- An unparseable turn is not appended: the same role tries again with a new seed. After
  ``max_parse_failures`` consecutive failures of one role the dialogue ends with ``parse_error``.
- An empty generation, or a parsed turn with an empty response (other than an accept), ends it with ``empty``.
- With ``max_resamples`` (``--max-resamples``, 3 by default in ``crsdata simulate``), a parsed turn is not
  appended when it repeats an earlier turn of either speaker (similarity >= 0.9 with titles left out,
  :func:`crsdata.simulate.filters.repeats_earlier`), is a role's second greeting, or (a catalog-grounded
  recommender) names a title the catalog does not know: the role tries again with the next seed, at most that
  many times; then the try naming the fewest titles the catalog does not know is kept, the last among equals
  (counters ``resampled``, ``resampled.<why>``, ``resample_exhausted``).
  After a rejected turn that only greets, the next tries may not use its words (the request's ``banned_words``).
  Rejection sampling, not an edit: every kept text is the model's own.
- A user ``accept`` ends it with ``accept``; the accepted item is the last item a recommender turn named. An
  accept before any recommender turn has named an item has nothing to accept (a turn labelled ``recommend``
  without a title does not count): it is kept as ``feedback`` (counted as ``accept_without_recommendation``)
  and the dialogue goes on.
- A backend error ends it with ``error`` (the error is kept in ``extra``; the run engine retries failed
  generations itself and only then ends the dialogue, also with ``error``).
- Otherwise it ends with ``max_turns`` once ``max_turns`` turns (both roles together) are written.

Counters (``state.counters``, copied to the record's ``extra``): ``turns``, ``parse_failures`` and
``parse_failures.<role>``, ``repairs`` (turns with at least one repair) and ``repair.<kind>`` per kind,
``recommend_without_title``, ``unlinked_titles``, ``accept_without_recommendation``, ``role_action_mismatch``
(a user recommending or a recommender accepting; kept as written), ``backend_errors``.

Seeds: the request for turn ``i``, attempt ``a`` (parse retries), has seed :func:`request_seed` ``(state.seed, i,
a)``, a hash, so a resumed run asks exactly what an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crsdata.backends.base import Backend, ChatRequest, Generation, SamplingParams
from crsdata.backends.embedded import DEFAULT_PAIR
from crsdata.catalog import load_catalog
from crsdata.errors import BadInputError
from crsdata.schema import Action, EndReason, Role, item_ref, load_extra, new_dialogue, new_turn
from crsdata.seeds import derive_seed
from crsdata.simulate.actions import ParsedTurn, format_turn, parse_turn
from crsdata.simulate.base import DialogueState, Simulation, SimulationOptions, option
from crsdata.simulate.decision import (
    DECLINE_BANS,
    NO_SCORER,
    DecisionScorer,
    accept_opening,
    load_decision_scorer,
    proposed_films,
)
from crsdata.simulate.filters import greeting_words, is_greeting_turn, repeats_earlier
from crsdata.simulate.grounding import (
    GROUNDING,
    CatalogRetriever,
    candidate_lines,
    cue_request,
    inference_candidates,
    record_cues,
    target_ids,
    user_facts,
)
from crsdata.simulate.leak import assert_no_target_leak, target_titles
from crsdata.simulate.persona import CatalogLike, Persona, all_target_titles, build_persona, catalog_row
from crsdata.simulate.prompts import (
    FINETUNED_BODY,
    FINETUNED_STOP,
    PERSONA_QUOTES,
    STYLES,
    Grounding,
    finetuned_answer_opening,
    finetuned_prompt_and_turn_starts,
    instruct_messages,
    template_hashes,
)

if TYPE_CHECKING:
    from crsdata.simulate.source import SimulationSource

SOURCE = "interplay-sim"
BUILDER = "interplay"
ROLES = (Role.USER.value, Role.RECOMMENDER.value)
_USER_ACTIONS = {"greeting", "disclose-goal", "inquire", "feedback", "accept"}
_RECOMMENDER_ACTIONS = {"greeting", "inquire", "recommend", "feedback"}


def request_seed(seed: int, turn_index: int, attempt: int = 0) -> int:
    """Deterministic 63-bit seed of one request, from the dialogue seed, the turn index and the retry number."""
    return derive_seed("interplay", seed, turn_index, attempt)


# Catalog fields that say what a film is like; a row with none of them (a folder built without --catalog) gives
# a target described by its decade alone.
FACT_FIELDS = ("genres", "plot", "keywords", "people")


def has_facts(row: Mapping[str, Any] | None) -> bool:
    """Whether a catalog row says anything about the film beyond its title and year."""
    return bool(row) and any(row.get(name) for name in FACT_FIELDS)  # type: ignore[union-attr]


def require_described_targets(source: SimulationSource, catalog: CatalogLike | None) -> None:
    """Refuses (BadInputError naming ``--catalog``) a source none of whose records can get real target
    attributes: no ``user_profile.target_attributes`` and no catalog facts for any target film. That is a folder
    built without ``--catalog`` and run without ``--catalog``, whose personas would all want "A movie from the
    2000s." and nothing else. Without any catalog each persona fails on its own (build_persona names the missing
    catalog), and those records are skipped and counted as usual."""
    if catalog is None:
        return
    needing = [r for r in source.records if not ((r.get("user_profile") or {}).get("target_attributes") or "").strip()]
    if not needing:
        return
    described = sum(
        1
        for record in needing
        if any(has_facts(catalog_row(catalog, t.get("item_id", ""))) for t in record.get("target_items") or [])
    )
    if described:
        return
    raise BadInputError(
        source.name,
        f"split {source.split}",
        "--catalog",
        f"none of the {len(needing)} records has target attributes, and the catalog has no genres, plot, keywords or "
        'people for their target films, so every persona would want only a decade ("A movie from the 2000s."). '
        "Rebuild the source with `crsdata build ... --catalog ../shared/data/redial/redial__id2info.json` (and "
        "the MovieLens keywords), or pass --catalog to this command",
        "no-catalog",
    )


def _with_stops(params: SamplingParams, stops: tuple[str, ...]) -> SamplingParams:
    missing = tuple(s for s in stops if s not in params.stop)
    return dataclasses.replace(params, stop=params.stop + missing) if missing else params


# What the persona knows it has watched (``--persona-history``): Interplay's three films (the persona's default,
# chosen among every film the seeker reported or talked about, liked and talked-about ones first), or all of them.
PERSONA_HISTORIES = {"interplay": 3, "reported": None}
# How often a repeated turn or a second greeting is sampled again, unless told otherwise (--max-resamples; the Space).
DEFAULT_MAX_RESAMPLES = 3
# The persona history of a user model that does not say which it was trained with (the base, older folders).
DEFAULT_PERSONA_HISTORY = "interplay"


# What the user simulator writes where its answer's action is ``accept`` (the finetuned layout): a bias on this
# text's last token moves the accept decision and nothing else (SamplingParams.sequence_bias).
ACCEPT_PREFIX = FINETUNED_BODY.format(turn=format_turn(Action.ACCEPT.value, "")).split("></action>")[0]


def trained_accept_bias(user_model: str) -> float:
    """The accept bias ``user_model`` was calibrated with (:func:`crsdata.backends.embedded.accept_bias_of`), 0 when
    it was not: ``--accept-bias``'s default, and a Space chat's."""
    from crsdata.backends.embedded import accept_bias_of

    return accept_bias_of(user_model) or 0.0


def trained_persona_history(user_model: str) -> str:
    """The persona history ``user_model`` was trained with (:func:`crsdata.backends.embedded.persona_history_of`),
    :data:`DEFAULT_PERSONA_HISTORY` when it does not say: ``--persona-history``'s default, and a Space chat's."""
    from crsdata.backends.embedded import persona_history_of

    history = persona_history_of(user_model)
    return history if history in PERSONA_HISTORIES else DEFAULT_PERSONA_HISTORY


@dataclass
class InterplayOptions(SimulationOptions):
    """``crsdata simulate interplay`` options."""

    # None until the models are known: then the style each model was made for (complete_options); a str for
    # both roles, or role -> style when they differ.
    prompt_style: str | dict[str, str] | None = option(
        None,
        "instruct: chat prompts for instruction-tuned models; finetuned: the bare turn format of simulators "
        "fine-tuned on it (default: the style each model was made for, instruct when unknown)",
        choices=STYLES,
        type=str,
    )
    infer_actions: bool = option(
        False,
        "when a turn has no recognisable <action> tag, infer the act from its text (never `accept`) instead of "
        "counting a parse failure; small instruction models such as the embedded SmolLM2 rarely write the tags. "
        "Inferred acts are counted as repairs in the card",
    )
    first_speaker: str | None = option(
        None,
        "who opens the dialogue (default: the user when the user model is a fine-tuned simulator, trained on ReDial "
        "where the seeker opens and the recommender never does; else the recommender)",
        choices=ROLES,
        type=str,
    )
    catalog: list[Path] = option(
        help="item catalog to link recommended titles and describe targets: catalog files (id2info.json, "
        "movies.csv...) or a built folder with an items configuration; repeat for several (default: the source "
        "folder's items, when it has them)",
        type=Path,
        repeat=True,
    )
    # None until the models are known: then the grounding they were trained on (complete_options).
    grounding: str | None = option(
        None,
        "catalog: the user wants preference cues (kinds, era, themes, its own words; never people or titles) and "
        "hears the catalog facts of each film the recommender names; the recommender sees the catalog films most "
        "similar to what the user said (MiniLM retrieval) before each turn. none: Interplay's layout. Default: "
        "the grounding the models were trained on (a `crsdata train` folder's config, the embedded simulators' "
        "registry entry; none for the base and for models that do not say)",
        choices=GROUNDING,
        type=str,
    )
    candidates: int = option(5, "films in the recommender's list under --grounding catalog (default 5)")
    free_titles: bool = option(
        False,
        "under --grounding catalog, let the recommender write any title inside <movie_title> (as before round 9). "
        "By default the local backend holds a title it has started to the films of its list and the catalog films "
        "named earlier, each as the catalog names it (a 135M model copies a listed title imperfectly: "
        '"The Shining (1976)"); a server ignores the constraint',
    )
    tags: Path | None = option(
        None,
        "MovieLens tags.csv whose tags join the catalog keywords as themes of the user's cues (--grounding catalog)",
        type=Path,
    )
    max_resamples: int = option(
        DEFAULT_MAX_RESAMPLES,
        "a turn that repeats an earlier turn of either speaker (similarity >= 0.9, titles left out), greets a "
        "second time, or (a catalog-grounded recommender) names a film the catalog does not know is sampled again "
        "with a new seed, at most this many times; then the try naming the fewest unknown titles is kept (the "
        "last among equals) and counted (resample_exhausted). 0 keeps every parsed turn (default 3)",
    )
    # None until the models are known: then the history the user model was trained with (complete_options).
    persona_history: str | None = option(
        None,
        "the films the persona lists as watched: interplay (as in Interplay: three of the films the seeker reported "
        "seeing or talked about, liked and talked-about ones first) or reported (every one of them; in ReDial the "
        "questionnaire marks films the recommender proposes later, so the persona knows which proposals it has "
        "seen). The rule baselines decline the same films. Default: the history the user model was trained with "
        "(its crsdata.json), interplay when it does not say",
        choices=tuple(PERSONA_HISTORIES),
        type=str,
    )

    # None until the models are known: then the user model's calibrated bias (complete_options).
    accept_bias: float | None = option(
        None,
        "added to the logit of `accept` as the action of the fine-tuned user simulator's answer, so that it accepts "
        "more (> 0) or less (< 0) often; nothing else it writes changes. Default: the bias the user model was "
        "calibrated with on held-out dialogues (its crsdata.json, `python -m crsdata.training.decisions "
        "--calibrate`), 0 when it was not. The local backend applies it; a server ignores it",
        type=float,
    )

    # None until the models are known: then the user model's own scorer, or "none" (complete_options).
    decision_scorer: str | None = option(
        None,
        "take the user's accept decision with a learned film scorer (a folder written by `crsdata train "
        "user-decision-scorer`): at a recommender turn naming catalog films the user declines the films its persona "
        "has seen and accepts the first other one whose cosine with its preference cues reaches the scorer's "
        "threshold, and the language model writes the turn around that decision. none: the language model decides. "
        "Default: the scorer in the user model folder's decision/ subfolder (the shipped user has one), else none. "
        "Fine-tuned user layout only; a server ignores a decided decline",
        type=str,
    )

    disclose_cues: bool = option(
        True,
        "under --grounding catalog, the fine-tuned user's first turn opens with the request its cues make (\"I'm "
        'looking for something funny, from the 80s era.", written for it as a disclose-goal turn; the language '
        "model goes on from there). The recommender retrieves with the user's words, and a 135M user left alone "
        'opens with "something good to watch". false: the language model writes the whole turn',
    )

    def check(self) -> None:
        for name, least in {"candidates": 1, "max_resamples": 0}.items():
            value = getattr(self, name)
            if value < least:
                flag = "--" + name.replace("_", "-")
                raise BadInputError("", "", flag, f"must be at least {least}, got {value}", "bad-option")


def _draft_turn(parsed: ParsedTurn) -> dict[str, Any]:
    """A parsed turn as the turn filters read it, before it is linked and appended."""
    return {"action": parsed.action, "text": parsed.response, "items": parsed.titles}


class InterplaySimulation(Simulation):
    """Reference-free user and recommender simulators (see the module doc for the loop and end reasons)."""

    name = "interplay"
    roles = ROLES
    summary = "movie recommendation after Interplay: the user knows the target's attributes, never its title"
    description = """\
Movie recommendation after Interplay: the user simulator knows a persona (general preferences, watched movies
with reviews) and the target's attributes but not its title; the recommender knows only the conversation.
Every turn is `<action><ACT></action><response>...</response>`. The card reports outcomes, the target-leak rate
and parse repairs.

--source is a folder built by `crsdata build` whose records have target items (PEARL, ReDial, INSPIRED).

Models: by default the catalog-grounded simulators shipped with crsdata (smollm2-135m-interplay-user-catalog
and smollm2-135m-interplay-recommender-catalog: LoRA adapters of `crsdata train ... --grounding catalog` over the
wheel's SmolLM2-135M, in the finetuned prompt layout), so --grounding defaults to catalog and --source needs
catalog facts (a folder built with --catalog); docs/simulators.md compares them with the base. The ungrounded
pair stays available as smollm2-135m-interplay-user and smollm2-135m-interplay-recommender (--grounding none).
`base` (or `embedded`) names the zero-shot SmolLM2-135M-Instruct, which reads the instruct prompts and rarely
writes the action tags (--infer-actions). A folder written by `crsdata train` runs as it is (its adapter merged
into the base)."""
    examples = """\
crsdata build redial --input ../shared/data/redial/redial__valid_data.jsonl --out out/redial \\
    --catalog ../shared/data/redial/redial__id2info.json
crsdata simulate interplay --source out/redial --n 20 --out out/interplay-sim
crsdata simulate interplay --source out/redial --n 20 --out out/interplay-ungrounded \\
    --user-model smollm2-135m-interplay-user --recommender-model smollm2-135m-interplay-recommender
crsdata simulate interplay --source out/redial --n 20 --out out/interplay-base \\
    --user-model base --recommender-model base --infer-actions
crsdata simulate interplay --source out/pearl --split test --n 100 --out out/interplay-sim \\
    --user-model out/user-simulator --recommender-model out/recommender-simulator"""
    default_max_turns = 12
    # The fine-tuned simulators shipped with crsdata (LoRA adapters over the wheel's SmolLM2-135M, trained by
    # `crsdata train user-simulator|recommender-simulator`), chosen in crsdata.backends.embedded.DEFAULT_PAIR; the
    # zero-shot base stays available as `base`.
    default_models = {Role.USER.value: DEFAULT_PAIR["user"], Role.RECOMMENDER.value: DEFAULT_PAIR["recommender"]}
    output_source = SOURCE
    card_info = {
        "name": "crsdata simulate interplay",
        "pretty_name": "Interplay-style simulated movie recommendation dialogues (crsdata)",
        "description": "Movie recommendation dialogues simulated after Interplay: a user simulator that knows its "
        "persona and target attributes (never the target title) talks to a recommender simulator that knows "
        "only the conversation.",
        "license": "derived from the source dataset's personas (see its licence) and the models in provenance",
        "license_id": "other",
        "homepage": "",
        "citation": "",
    }
    options_class = InterplayOptions
    options: InterplayOptions

    def __init__(
        self,
        backends: dict[str, Backend],
        params: dict[str, SamplingParams] | None = None,
        max_turns: int = 20,
        *,
        catalog: CatalogLike | None = None,
        style: str | Mapping[str, str] = "instruct",
        show_profile: bool = False,
        first_speaker: str = Role.RECOMMENDER.value,
        max_parse_failures: int = 3,
        n_watched: int | None = 3,
        infer_actions: bool = False,
        grounding: str = "none",
        candidates: int = 5,
        tags: Mapping[str, list[str]] | None = None,
        retriever: CatalogRetriever | None = None,
        max_resamples: int = 0,
        accept_bias: float = 0.0,
        free_titles: bool = False,
        decision_scorer: DecisionScorer | None = None,
        disclose_cues: bool = False,
    ) -> None:
        missing = [r for r in ROLES if r not in backends]
        if missing:
            raise ValueError(f"InterplaySimulation needs a backend for each role; missing: {', '.join(missing)}")
        styles = {r: style for r in ROLES} if isinstance(style, str) else dict(style)
        for role in ROLES:
            if styles.get(role) not in STYLES:
                raise ValueError(f"style of {role} must be one of {', '.join(STYLES)}, got {styles.get(role)!r}")
        if first_speaker not in ROLES:
            raise ValueError(f"first_speaker must be one of {', '.join(ROLES)}, got {first_speaker!r}")
        if max_turns < 1 or max_parse_failures < 1:
            raise ValueError("max_turns and max_parse_failures must be at least 1")
        if max_resamples < 0:
            raise ValueError(f"max_resamples must be 0 or more, got {max_resamples}")
        if grounding not in GROUNDING:
            raise ValueError(f"grounding must be one of {', '.join(GROUNDING)}, got {grounding!r}")
        if grounding == "catalog" and catalog is None:
            raise ValueError("--grounding catalog needs a catalog (--catalog, or a source folder with items)")
        params = dict(params or {})
        for role in ROLES:
            base = params.get(role, SamplingParams())
            # A raw continuation runs on into the other party's turn unless stopped at the next speaker label;
            # a chat model may keep writing after its response, and everything after </response> is dropped anyway.
            params[role] = _with_stops(base, FINETUNED_STOP if styles[role] == "finetuned" else ("</response>",))
        # The bias hangs on the finetuned layout's action markup; instruct prompts have none to bias.
        user = Role.USER.value
        accept_bias = float(accept_bias) if styles[user] == "finetuned" else 0.0
        if accept_bias:
            bias = ((ACCEPT_PREFIX, accept_bias),)
            params[user] = dataclasses.replace(params[user], sequence_bias=params[user].sequence_bias + bias)
        super().__init__(backends, params, max_turns)
        self.catalog = catalog
        self.styles = styles
        self.show_profile = show_profile
        self.first_speaker = first_speaker
        self.max_parse_failures = max_parse_failures
        self.n_watched = n_watched
        self.infer_actions = infer_actions
        self.grounding = grounding
        self.candidates_k = candidates
        self.tags = dict(tags or {})
        self._retriever = retriever
        self.max_resamples = max_resamples
        self.accept_bias = accept_bias
        self.free_titles = free_titles
        # The decision is written into the finetuned layout's action markup and needs the films' catalog facts.
        usable = styles[user] == "finetuned" and catalog is not None
        self.decision_scorer = decision_scorer if usable else None
        # The request is written into the finetuned layout's markup and made from catalog cues.
        self.disclose_cues = disclose_cues and grounding == "catalog" and styles[user] == "finetuned"

    @classmethod
    def complete_options(cls, options: SimulationOptions, models: dict[str, str]) -> None:
        """No --prompt-style: each role reads the layout its model was made for (``finetuned`` for the shipped
        simulators and folders written by the Interplay recipes, else ``instruct``)."""
        from crsdata.backends.embedded import prompt_style_of

        assert isinstance(options, InterplayOptions)
        if not options.prompt_style:
            styles = {role: prompt_style_of(models[role]) or "instruct" for role in ROLES}
            options.prompt_style = styles[ROLES[0]] if len(set(styles.values())) == 1 else styles
        if not options.first_speaker:
            user_style = prompt_style_of(models[Role.USER.value])
            options.first_speaker = Role.USER.value if user_style == "finetuned" else Role.RECOMMENDER.value
        if options.grounding is None:
            options.grounding = cls.trained_grounding(models)
        if options.persona_history is None:
            options.persona_history = trained_persona_history(models[Role.USER.value])
        if options.accept_bias is None:
            options.accept_bias = trained_accept_bias(models[Role.USER.value])
        if options.decision_scorer is None:
            from crsdata.simulate.decision import scorer_folder_of

            options.decision_scorer = scorer_folder_of(models[Role.USER.value]) or NO_SCORER

    #: The roles whose models choose the default grounding (replay: the user alone; the recommender is real).
    grounding_roles: tuple[str, ...] = ROLES

    @classmethod
    def trained_grounding(cls, models: dict[str, str], roles: Sequence[str] | None = None) -> str:
        """The grounding the models of ``roles`` (default :attr:`grounding_roles`: the roles a simulator plays)
        were trained on; refused when they disagree, since one run has one grounding. ``--grounding``'s default
        in ``crsdata simulate`` and ``replay``, and the grounding of a Space chat (its simulated roles)."""
        from crsdata.backends.embedded import grounding_of

        found = {role: grounding_of(models[role]) or "none" for role in (roles or cls.grounding_roles)}
        if len(set(found.values())) > 1:
            raise BadInputError(
                "",
                "",
                "--grounding",
                "the models were trained on different groundings ("
                + ", ".join(f"{role}: {models[role]} {grounding}" for role, grounding in found.items())
                + "); give --grounding none or --grounding catalog",
                "bad-option",
            )
        return next(iter(found.values()))

    @classmethod
    def load_source(cls, source: str, split: str | None, options: SimulationOptions) -> SimulationSource:
        """The dataset split, refused when its targets cannot be described (:func:`require_described_targets`)."""
        loaded = super().load_source(source, split, options)
        assert isinstance(options, InterplayOptions)
        loaded.catalog = load_catalog(options.catalog, default_folder=loaded.name)
        require_described_targets(loaded, loaded.catalog)
        return loaded

    @classmethod
    def constructor_options(cls, options: SimulationOptions, source: SimulationSource) -> dict[str, Any]:
        assert isinstance(options, InterplayOptions)
        catalog = source.catalog
        if catalog is None:  # a source made in Python (not by load_source) has not read its catalog yet
            catalog = load_catalog(options.catalog, default_folder=source.name)
        grounded: dict[str, Any] = {}
        if options.grounding == "catalog":
            from crsdata.simulate.grounding import read_tags

            grounded = {
                "grounding": "catalog",
                "candidates": options.candidates,
                "tags": read_tags(options.tags, catalog) if options.tags else None,
                "disclose_cues": options.disclose_cues,
            }
        return {
            "catalog": catalog,
            "style": options.prompt_style or "instruct",
            "infer_actions": options.infer_actions,
            "first_speaker": options.first_speaker or Role.RECOMMENDER.value,
            "n_watched": PERSONA_HISTORIES[options.persona_history or DEFAULT_PERSONA_HISTORY],
            "max_resamples": options.max_resamples,
            "accept_bias": options.accept_bias or 0.0,
            "free_titles": options.free_titles,
            "decision_scorer": load_decision_scorer(options.decision_scorer),
            **grounded,
        }

    def settings(self) -> dict[str, Any]:
        return {
            "styles": dict(self.styles),
            "first_speaker": self.first_speaker,
            "show_profile": self.show_profile,
            "max_parse_failures": self.max_parse_failures,
            **({"max_resamples": self.max_resamples} if self.max_resamples else {}),
            **({"accept_bias": self.accept_bias} if self.accept_bias else {}),
            **({"decision_scorer": self.decision_scorer.describe()} if self.decision_scorer else {}),
            "n_watched": self.n_watched,
            "infer_actions": self.infer_actions,
            "catalog_items": len(self.catalog) if self.catalog is not None else 0,
            **({"grounding": self.grounding, "candidates": self.candidates_k} if self.grounding != "none" else {}),
            **({"free_titles": self.free_titles} if self.grounding != "none" else {}),
            **({"disclose_cues": self.disclose_cues} if self.grounding != "none" else {}),
        }

    # -- contract ------------------------------------------------------------------------------------------

    def start(self, record: dict[str, Any], dialogue_id: str, seed: int) -> DialogueState:
        quotes = PERSONA_QUOTES[self.styles[Role.USER.value]]
        persona = build_persona(record, self.catalog, n_watched=self.n_watched, seed=seed, quote_utterances=quotes)
        titles = all_target_titles(record, self.catalog)
        if self.grounding == "catalog":
            cues = record_cues(record, self.catalog, self.tags, titles)
            persona = dataclasses.replace(persona, target_attributes=cues or persona.target_attributes)
        state = DialogueState(dialogue_id=dialogue_id, record=record, seed=seed)
        state.context = {
            "persona": persona.to_dict(),
            "target_titles": titles,
            "failures": {r: 0 for r in ROLES},
            "resamples": {r: 0 for r in ROLES},
        }
        return state

    # -- grounding -----------------------------------------------------------------------------------------

    @property
    def retriever(self) -> CatalogRetriever:
        """The recommender's retrieval over the catalog, built (and its item vectors read or encoded) on first
        use."""
        if self._retriever is None:
            assert self.catalog is not None
            self._retriever = CatalogRetriever(self.catalog.rows())  # type: ignore[attr-defined]
        return self._retriever

    def grounding_of(self, state: DialogueState, role: str, allowed: list[str]) -> Grounding:
        """What ``role`` is shown from the catalog before its next turn (see crsdata.simulate.prompts); the lines
        that may name a target go to ``allowed`` for the leak guard."""
        if self.grounding == "none":
            return Grounding()
        targets, titles = target_ids(state.record, self.catalog), target_titles(state)
        if role == Role.USER.value:
            seen = [w.item_id for w in self.persona(state).watched]
            return Grounding(facts=user_facts(state.turns, self.catalog, targets, titles, allowed, seen))
        lists: dict[str, list[str]] = state.context.setdefault("candidates", {})
        index = len(state.turns)
        if str(index) not in lists:
            lists[str(index)] = inference_candidates(self.retriever, state.turns, self.candidates_k)
        shown = {int(k): ids for k, ids in lists.items() if int(k) <= index}
        return Grounding(candidates=candidate_lines(shown, self.catalog, targets, titles, allowed))

    # -- the decision scorer (crsdata.simulate.decision) ---------------------------------------------------

    def proposal_items(self, state: DialogueState) -> list[dict[str, Any]]:
        """The films the user's next turn answers: those the last turn named when it is the recommender's."""
        if not state.turns or state.turns[-1].get("role") != Role.RECOMMENDER.value:
            return []
        return list(state.turns[-1].get("items") or [])

    def decision(self, state: DialogueState) -> dict[str, Any] | None:
        """The decision scorer's answer to the films of :meth:`proposal_items` (``{"accept": item id or None,
        "scores"}``), taken once per turn and kept in the state (a resampled turn keeps it); None where the scorer
        does not decide (none loaded, no catalog film proposed)."""
        if self.decision_scorer is None:
            return None
        decisions = state.context.setdefault("decisions", {})
        key = str(len(state.turns))
        if key not in decisions:
            persona = self.persona(state)
            seen = [w.item_id for w in persona.watched]
            films = proposed_films(self.catalog, self.proposal_items(state), seen)
            decided = self.decision_scorer.decide(persona.target_attributes, films) if films else None
            decisions[key] = decided.to_dict() if decided is not None else None
        return decisions[key]

    def answer_opening(self, state: DialogueState, role: str) -> str:
        """The start of ``role``'s answer written for the model (finetuned layout): where the scorer accepted, the
        accept action and the film's name (:func:`crsdata.simulate.decision.accept_opening`); at the user's first
        turn under ``--disclose-cues``, the request its cues make (:meth:`cue_opening`); else ""."""
        if role != Role.USER.value:
            return ""
        item = self._decided_item(state, self.decision(state))
        if item is None:
            return self.cue_opening(state)
        known = self.catalog is not None and item["item_id"] in self.catalog
        return accept_opening(self.catalog.title_with_year(item["item_id"]) if known else item["title"])

    def cue_opening(self, state: DialogueState) -> str:
        """The user's first turn's opening under ``--disclose-cues``: a disclose-goal turn that starts with
        :func:`crsdata.simulate.grounding.cue_request`. Only before the user has said anything and where no film
        is proposed (a replayed dialogue's user always answers one), so every later turn is the model's own."""
        if not self.disclose_cues or self.proposal_items(state):
            return ""
        if any(turn.get("role") == Role.USER.value for turn in state.turns):
            return ""
        request = cue_request(self.persona(state).target_attributes)
        return finetuned_answer_opening(Action.DISCLOSE_GOAL.value) + request if request else ""

    def _decided_item(self, state: DialogueState, decision: dict[str, Any] | None) -> dict[str, str] | None:
        """The proposed film the scorer accepted, as its turn names it."""
        if not decision or not decision["accept"]:
            return None
        return next((dict(i) for i in self.proposal_items(state) if i.get("item_id") == decision["accept"]), None)

    def title_choices(self, state: DialogueState) -> tuple[str, ...]:
        """What a catalog-grounded recommender may write inside a ``<movie_title>`` tag (``--free-titles`` off):
        the films of the list it is shown before this turn and the catalog films named earlier in the dialogue,
        each as the catalog names it, ``Title (Year)``, the form it links back from."""
        if self.free_titles or self.catalog is None:
            return ()
        listed = (state.context.get("candidates") or {}).get(str(len(state.turns))) or []
        named = [item["item_id"] for turn in state.turns for item in turn.get("items") or [] if item.get("item_id")]
        return tuple(dict.fromkeys(self.catalog.title_with_year(i) for i in [*listed, *named] if i in self.catalog))

    def next_role(self, state: DialogueState) -> str:
        if not state.turns:
            return self.first_speaker
        return Role.USER.value if state.turns[-1]["role"] == Role.RECOMMENDER.value else Role.RECOMMENDER.value

    def persona(self, state: DialogueState) -> Persona:
        return Persona.from_dict(state.context["persona"])

    def request(self, state: DialogueState, role: str) -> ChatRequest:
        persona = self.persona(state)
        # The recommender's prompt gets a persona whose target attributes are blanked, so no template can show them.
        shown = persona if role == Role.USER.value else dataclasses.replace(persona, target_attributes="")
        attempt = state.context.get("failures", {}).get(role, 0) + state.context.get("resamples", {}).get(role, 0)
        seed = request_seed(state.seed, len(state.turns), attempt)
        banned = tuple(state.context.get("banned", {}).get(role, ()))
        allowed: list[str] = []
        grounding = self.grounding_of(state, role, allowed)
        choices = self.title_choices(state) if role == Role.RECOMMENDER.value and grounding.candidates else ()
        decision = self.decision(state) if role == Role.USER.value else None
        if self.decision_scorer is not None and role == Role.USER.value and not (decision and decision["accept"]):
            # With a scorer the user accepts where it accepted and nowhere else: not at a declined proposal, and not
            # at a turn that names no film (the language model would take an earlier, declined one).
            banned = (*banned, *DECLINE_BANS)
        if self.styles[role] == "instruct":
            messages = instruct_messages(role, shown, state.turns, show_profile=self.show_profile, grounding=grounding)
            request = ChatRequest(messages=messages, seed=seed, banned_words=banned, title_choices=choices)
        else:
            # Where each turn starts: a backend may drop the oldest turns to fit its context, never the header
            # (crsdata.backends.context).
            prompt, starts = finetuned_prompt_and_turn_starts(
                role, shown, state.turns, show_profile=self.show_profile, grounding=grounding
            )
            # The decided film's name: the recommender named it, so it may be a target (the leak guard's exception).
            opening = self.answer_opening(state, role)
            prompt += opening
            allowed.append(opening)
            request = ChatRequest(
                prompt=prompt, seed=seed, turn_starts=starts, banned_words=banned, title_choices=choices
            )
        assert_no_target_leak(request, state, allowed)
        return request

    def apply(self, state: DialogueState, role: str, generation: Generation) -> None:
        # A decided accept's opening is part of the answer: the model may end its turn right after the film's name.
        # (The decision it comes from is kept in the state since the prompt was built, so this costs nothing more.)
        parsed, failure = self.read_generation(generation, role, self.answer_opening(state, role))
        if failure == "error":
            self._count(state, "backend_errors")
            state.context["error"] = generation.error
            self._finish(state, EndReason.ERROR)
            return
        if failure == "empty":
            self._finish(state, EndReason.EMPTY)
            return
        if parsed is None:
            self._count(state, "parse_failures")
            self._count(state, f"parse_failures.{role}")
            failures = state.context.setdefault("failures", {r: 0 for r in ROLES})
            failures[role] += 1
            if failures[role] >= self.max_parse_failures:
                self._finish(state, EndReason.PARSE_ERROR)
            return
        resamples = state.context.setdefault("resamples", {r: 0 for r in ROLES})
        why = self.resample_reason(state, role, parsed)
        banned = state.context.setdefault("banned", {})
        tries = state.context.setdefault("tries", {})
        if why and resamples[role] < self.max_resamples:
            self._count(state, "resampled")
            self._count(state, f"resampled.{why}")
            resamples[role] += 1
            tries.setdefault(role, []).append(parsed)
            if is_greeting_turn(_draft_turn(parsed)):
                # A rejected greeting (a second one, or a repeat) would come back with the same words: a 135M model
                # writes "Hello." for every seed.
                banned[role] = sorted(set(banned.get(role, ())) | set(greeting_words(parsed.response)))
            return
        if why and self.max_resamples:
            self._count(state, "resample_exhausted")
            parsed = self.best_try([*tries.get(role, []), parsed])
        state.context["failures"][role] = resamples[role] = 0
        banned.pop(role, None)
        tries.pop(role, None)
        self.append_turn(state, role, parsed)

    def best_try(self, tries: list[ParsedTurn]) -> ParsedTurn:
        """The try kept when every one of a turn's tries was rejected: the one naming the fewest titles the catalog
        does not know, the last among equals. An unknown title is an invented film that self-play's catalog share
        counts against the pair; a repeat or a greeting costs the dialogue a turn but invents nothing."""
        return min(reversed(tries), key=lambda parsed: sum(not self._link(t) for t in parsed.titles))

    def resample_reason(self, state: DialogueState, role: str, parsed: ParsedTurn) -> str:
        """Why ``role``'s parsed turn should be sampled again (``repeat``, ``greeting``, ``unknown-title``), or
        ``""``. A 135M pair echoes the other speaker's sentence and trades greetings for whole dialogues
        (docs/simulators.md); a grounded recommender that names a title the catalog does not know has invented it
        (its list holds catalog films only). A new seed usually gives a turn that moves on. An accept is never
        resampled: it ends the dialogue."""
        if not self.max_resamples or parsed.action == Action.ACCEPT:
            return ""
        if repeats_earlier(parsed.response, state.turns, titles=parsed.titles):
            return "repeat"
        if role == Role.RECOMMENDER.value and self.grounding == "catalog" and not all(map(self._link, parsed.titles)):
            return "unknown-title"
        turn = _draft_turn(parsed)
        if is_greeting_turn(turn) and any(t["role"] == role and is_greeting_turn(t) for t in state.turns):
            return "greeting"
        return ""

    def parse_generation(self, generation: Generation, role: str, opening: str = "") -> ParsedTurn | None:
        """The parsed turn of ``role``'s generation (after ``opening``, the part of the answer written for the
        model: :meth:`answer_opening`); None for a backend error, an empty text or an unparseable one."""
        return self.read_generation(generation, role, opening)[0]

    def read_generation(self, generation: Generation, role: str, opening: str = "") -> tuple[ParsedTurn | None, str]:
        """:meth:`parse_generation` with why there is no turn: ``error`` (the backend failed), ``empty`` or
        ``unparsed``; ``""`` with a turn. :meth:`apply` counts and ends dialogues by it."""
        if generation.finish_reason == "error":
            return None, "error"
        if not (opening + generation.text).strip():
            return None, "empty"
        parsed = parse_turn(self._complete(generation, opening), role, infer_action=self.infer_actions)
        return (parsed, "") if parsed.ok else (None, "unparsed")

    @staticmethod
    def _complete(generation: Generation, opening: str = "") -> str:
        text = opening + generation.text
        if generation.finish_reason == "stop" and "<response>" in text.lower() and "</response>" not in text.lower():
            # The backend stopped at the "</response>" stop string and cut it off: the response is complete.
            text += "</response>"
        return text

    def append_turn(self, state: DialogueState, role: str, parsed: ParsedTurn) -> None:
        """Counts the parse, links titles, appends the turn and ends the dialogue when it should end."""
        self._count(state, "turns")
        if parsed.repaired:
            self._count(state, "repairs")
            for kind in parsed.repaired:
                self._count(state, "repair." + kind.split(":")[0])
        action = parsed.action
        if "action_inferred" in parsed.repaired and role == Role.USER.value and action == Action.FEEDBACK:
            # Before the user has said anything but hello, a plain statement is what they are looking for.
            if all(t["action"] == Action.GREETING for t in state.turns if t["role"] == role):
                action = Action.DISCLOSE_GOAL.value
        if (role == Role.USER.value and action not in _USER_ACTIONS) or (
            role == Role.RECOMMENDER.value and action not in _RECOMMENDER_ACTIONS
        ):
            self._count(state, "role_action_mismatch")
        if not parsed.response and action != Action.ACCEPT:
            self._finish(state, EndReason.EMPTY)
            return
        items = [item_ref(self._link(t), t) for t in parsed.titles]
        self._count(state, "unlinked_titles", sum(1 for i in items if not i["item_id"]))
        if action == Action.RECOMMEND and not items:
            self._count(state, "recommend_without_title")
        accepted = None
        extra: dict[str, Any] = {"repaired": parsed.repaired} if parsed.repaired else {}
        decision = self.decision(state) if role == Role.USER.value else None
        if decision is not None:
            extra["decision"] = decision
        if role == Role.USER.value and action == Action.ACCEPT:
            accepted = self._decided_item(state, decision) or self._last_recommended(state)
            if accepted is None:
                self._count(state, "accept_without_recommendation")
                action = Action.FEEDBACK.value
                extra["generated_action"] = Action.ACCEPT.value
        candidates = (state.context.get("candidates") or {}).get(str(len(state.turns)))
        if role == Role.RECOMMENDER.value and candidates is not None:
            extra["candidates"] = list(candidates)
        state.turns.append(new_turn(len(state.turns), role, parsed.response, action, items, extra=extra))
        if accepted is not None:
            state.accepted_item = accepted
            self._finish(state, EndReason.ACCEPT)
        elif len(state.turns) >= self.max_turns:
            self._finish(state, EndReason.MAX_TURNS)

    def to_record(self, state: DialogueState) -> dict[str, Any]:
        record = state.record
        extra: dict[str, Any] = {
            "source_dialogue_id": record.get("dialogue_id", ""),
            "source": record.get("source", ""),
            "counters": dict(sorted(state.counters.items())),
            "style": self.styles,
            "first_speaker": self.first_speaker,
            "show_profile": self.show_profile,
            "infer_actions": self.infer_actions,
        }
        if self.grounding != "none":
            extra["grounding"] = self.grounding
        if state.context.get("error"):
            extra["error"] = state.context["error"]
        return new_dialogue(
            state.dialogue_id,
            SOURCE,
            record.get("split", ""),
            [dict(t) for t in state.turns],
            language=record.get("language", "en") or "en",
            task=record.get("task", "movie recommendation") or "movie recommendation",
            user_profile=self.persona(state).to_profile(),
            target_items=[item_ref(t.get("item_id"), t.get("title")) for t in record.get("target_items", [])],
            outcome={"accepted_item": dict(state.accepted_item), "end_reason": state.end_reason or "unknown"},
            provenance={
                "builder": BUILDER,
                "source_file": (record.get("provenance") or {}).get("source_file", ""),
                "source_sha256": (record.get("provenance") or {}).get("source_sha256", ""),
                "user_model": self.backends[Role.USER.value].model_id,
                "recommender_model": self.backends[Role.RECOMMENDER.value].model_id,
                "prompt_sha256": json.dumps(self.prompt_hashes(), sort_keys=True),
                "seed": state.seed,
            },
            extra=extra,
        )

    def prompt_hashes(self) -> dict[str, str]:
        suffix = "" if self.grounding == "none" else "." + self.grounding
        return template_hashes([f"interplay.{role}.{self.styles[role]}{suffix}" for role in ROLES])

    # -- output --------------------------------------------------------------------------------------------

    def outcome_rows(self, records: list[dict[str, Any]]) -> list[tuple[str, str]]:
        accepted = sum(
            1 for r in records if r["outcome"]["accepted_item"]["title"] or r["outcome"]["accepted_item"]["item_id"]
        )
        return [("dialogues with an accepted item", f"{accepted} ({100 * accepted / max(len(records), 1):.1f}%)")]

    def card_sections(self, records: list[dict[str, Any]], counters: Counter[str]) -> dict[str, str]:
        from crsdata.simulate.leak import leak_report

        report = leak_report(records)
        grounding = {
            "none": "`--grounding none`: Interplay's layout. The user wants target attributes described from the "
            "catalog and the recommender sees only the conversation. The ungrounded pair "
            "(`smollm2-135m-interplay-user`, `smollm2-135m-interplay-recommender`) was trained on it; the default "
            "pair is the catalog-grounded one.",
            "catalog": "`--grounding catalog`: the user wants preference cues (kinds of film, era, themes from "
            "keywords and tags, its own words without titles; never people or title words) and hears the catalog "
            "facts of each film a recommender turn names; before each recommender turn, the "
            f"{self.candidates_k} catalog films most similar to the user's words (MiniLM retrieval, never a "
            "target that retrieval did not find) are listed for it. The shipped default pair was trained on this "
            "layout; a simulator that was not sees it for the first time.",
        }[self.grounding]
        if self.disclose_cues:
            grounding += (
                " The user's first turn opens with the request its cues make (\"I'm looking for ...\", written for "
                "it; `--disclose-cues false` leaves the whole turn to the model)."
            )
        lists = [(t, load_extra(t.get("extra") or "").get("candidates")) for r in records for t in r["turns"]]
        listed = [(t, ids) for t, ids in lists if ids is not None]
        if listed:
            named = [i for t, _ in listed for i in t["items"]]
            in_list = sum(1 for t, ids in listed for i in t["items"] if i["item_id"] in ids)
            grounding += (
                f" Recommender turns with a list: {len(listed)}; titles they named: {len(named)}, "
                f"{in_list} of them from the list."
            )
        return {
            "Grounding": grounding,
            "Target leak": "A leak is a user turn that names a target item before any recommender turn has named it "
            "(`crsdata.simulate.leak`). Leak rate: "
            f"**{100 * report['dialogue_rate']:.1f}%** of {report['dialogues']} dialogues with targets "
            f"({report['leaked_dialogues']} dialogues; {report['leaked_user_turns']} of {report['user_turns']} "
            "user turns).",
        }

    # -- helpers -------------------------------------------------------------------------------------------

    def _link(self, title: str) -> str:
        if self.catalog is None:
            return ""
        return self.catalog.link(title) or ""

    @staticmethod
    def _last_recommended(state: DialogueState) -> dict[str, str] | None:
        """The last item a recommender turn named; None when no recommender turn has named one yet. An accept
        needs an item: small models label greetings and vague promises `recommend` ("Hi.", "I'd recommend") and
        the user model then "accepts" them, which would end the dialogue with nothing accepted."""
        for turn in reversed(state.turns):
            if turn["role"] == Role.RECOMMENDER.value and turn["items"]:
                return dict(turn["items"][-1])
        return None

    @staticmethod
    def _count(state: DialogueState, key: str, n: int = 1) -> None:
        if n:
            state.counters[key] = state.counters.get(key, 0) + n

    @staticmethod
    def _finish(state: DialogueState, reason: EndReason) -> None:
        state.finished = True
        state.end_reason = reason.value
