"""Prompts of the Interplay simulators, in two styles.

``instruct`` (zero-shot, for instruction-tuned chat models): a system message explains the role and the exact
output format with one example; the conversation follows as chat messages, the model's own past turns as
``assistant`` and the other party's as ``user``, every turn written in the Interplay format so the model sees
the format it must produce. The persona or profile comes last in the system message, so every dialogue of a run
starts with the same instructions (the local backend keeps their states once). A model that speaks first gets a
one-line kick-off message instead of an empty chat.
The example recommendation uses an invented title so that no real movie is planted in every prompt.

``finetuned`` (raw continuation, what a model trained by the crsdata TRL recipe sees). The exact layout::

    [ROLE] user
    [PERSONA]
    General preferences: <general preferences>
    Watched movies:
    - <Title (Year)>: <review>
    - ...
    Target attributes: <target attributes>
    [CONVERSATION]
    recommender: <action><greeting></action><response>Hi! What are you in the mood for?</response>
    user: <action><disclose-goal></action><response>Something scary.</response>
    user:

- Lines end with ``\\n``; the prompt ends with ``<role>:`` (no trailing space) and the completion is
  `` <action><ACT></action><response>...</response>`` followed by ``\\n`` (the newline ends the turn; inference
  stops at :data:`FINETUNED_STOP`, the end of the response or the next speaker label).
- The recommender's view starts ``[ROLE] recommender``; its header is ``[USER PROFILE]`` with the general
  preferences and watched movies only when the simulation shows it the profile (Interplay's zero-shot baseline
  does), and is left out otherwise. It never holds target attributes.
- Titles in turns are wrapped in ``<movie_title>`` tags. Real corpus turns without an Interplay action get one
  from :func:`infer_actions`.
- The persona's watched-movie reviews do not quote the user's utterances (:data:`PERSONA_QUOTES`): in training
  they would come from the very dialogue being learned, and the model would learn to copy them.
- Training reads a whole dialogue as one sequence, :func:`finetuned_pieces`: the header and every speaker label
  are context, the trained role's turns (newline included) are what the loss sees. That is the role-specific
  loss masking of Interplay section 3.5.2, each model learning only its own turns while seeing the whole
  conversation, at the cost of one pass over the dialogue instead of one per turn.

Catalog grounding (``--grounding catalog``, :mod:`crsdata.simulate.grounding`) adds two blocks, and nothing
else changes (``none`` is the layout above, byte for byte). In the user's view, a recommender turn that named
catalog films is followed by one ``[FACTS] <facts>`` line per film; in the recommender's view, each of its turns
(and the one it is about to write) is preceded by ``[CANDIDATES]`` and one ``- <compact film>`` line per
retrieved film. In the instruct style the facts are appended to the recommender's message and the candidates to
the message before the recommender's turn. The grounded templates have their own names and hashes
(``interplay.<role>.<style>.catalog``).

Every template below is hashed into ``provenance.prompt_sha256`` (:func:`template_hashes`); change a template
and the hash changes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from crsdata.simulate.actions import INTERPLAY_ACTIONS, format_turn, mark_titles
from crsdata.simulate.persona import Persona

STYLES = ("instruct", "finetuned")

USER_INSTRUCT = """You are a movie fan chatting with a movie recommender to find a movie to watch. You are the \
user: you never recommend movies, you say what you like and react to suggestions.

Write only your next turn, in exactly this format:
<action><ACTION></action><response>what you say</response>
ACTION is one of:
greeting: say hello
disclose-goal: say what kind of movie you want
inquire: ask about a suggested movie
feedback: say whether a suggested movie fits you and why
accept: take a suggested movie that fits what you want (this ends the chat)
You do not know the title of the movie you want, only what it is like.
Example:
<action><disclose-goal></action><response>Hi! I want a funny movie with a lot of heart.</response>

{persona}"""

RECOMMENDER_INSTRUCT = """You are a movie recommender chatting with a user. Find out what the user likes, then \
recommend one movie at a time and say why it fits.

Write only your next turn, in exactly this format:
<action><ACTION></action><response>what you say</response>
ACTION is one of:
greeting: say hello
inquire: ask about the user's taste
recommend: suggest one movie
feedback: answer a question or comment on what the user said
Put the movie title and year inside <movie_title></movie_title>.
Example:
<action><recommend></action><response>You may enjoy <movie_title>The Quiet Harbor (2003)</movie_title>, a warm \
drama about two brothers.</response>{profile}"""

PERSONA_INSTRUCT = """Your taste: {general_preferences}
Movies you have watched:
{watched}
What you want now: {target_attributes}"""

PROFILE_INSTRUCT = """What you know about the user:
Taste: {general_preferences}
Movies they have watched:
{watched}
"""

WATCHED_LINE = "- {title}: {review}"
KICKOFF = "Start the conversation."

FINETUNED_USER_HEADER = """[ROLE] user
[PERSONA]
General preferences: {general_preferences}
Watched movies:
{watched}
Target attributes: {target_attributes}
[CONVERSATION]
"""

FINETUNED_RECOMMENDER_HEADER = """[ROLE] recommender
{profile}[CONVERSATION]
"""

FINETUNED_PROFILE = """[USER PROFILE]
General preferences: {general_preferences}
Watched movies:
{watched}
"""

FINETUNED_LABEL = "{role}:"
FINETUNED_BODY = " {turn}\n"
FINETUNED_TURN = FINETUNED_LABEL + FINETUNED_BODY


def finetuned_answer_opening(action: str) -> str:
    """The start of a turn with ``action`` in the finetuned layout, up to where its response's words begin: what a
    simulation writes for the model before it goes on (a decided accept, the user's cue request)."""
    return FINETUNED_BODY.format(turn=format_turn(action, "")).split("</response>")[0]


FINETUNED_STOP: tuple[str, ...] = ("</response>", "\nuser:", "\nrecommender:", "\n[")
# Catalog grounding (see the module doc).
FINETUNED_FACTS = "[FACTS] {facts}\n"
FINETUNED_CANDIDATES = "[CANDIDATES]\n{candidates}\n"
CANDIDATE_LINE = "- {film}"
INSTRUCT_FACTS = "\n\nAbout the films named:\n{facts}"
INSTRUCT_CANDIDATES = "\n\nCatalog films that may fit; recommend from these:\n{candidates}"
_CUE_RULE = "target attributes: preference cues, no people, title words or shown fields"
# A facts line of a film the persona has watched ends with this (crsdata.simulate.grounding.user_facts); said here
# so that the grounded user's template hash covers it.
SEEN_NOTE = "; you have seen it"

# Whether the persona's reviews quote the user's own words about a movie (see the module doc), per style. The
# finetuned user template's hash covers the choice (_PERSONA_RULE), since it changes every prompt.
PERSONA_QUOTES: dict[str, bool] = {"instruct": True, "finetuned": False}
_PERSONA_RULE = "reviews quote the user: no"

_TEMPLATES: dict[str, tuple[str, ...]] = {
    "interplay.user.instruct": (USER_INSTRUCT, PERSONA_INSTRUCT, WATCHED_LINE, KICKOFF),
    "interplay.recommender.instruct": (RECOMMENDER_INSTRUCT, PROFILE_INSTRUCT, WATCHED_LINE, KICKOFF),
    "interplay.user.finetuned": (FINETUNED_USER_HEADER, WATCHED_LINE, FINETUNED_TURN, _PERSONA_RULE),
    "interplay.recommender.finetuned": (FINETUNED_RECOMMENDER_HEADER, FINETUNED_PROFILE, WATCHED_LINE, FINETUNED_TURN),
}
for _name, _extra in (
    ("interplay.user.instruct", (INSTRUCT_FACTS, _CUE_RULE, SEEN_NOTE)),
    ("interplay.recommender.instruct", (INSTRUCT_CANDIDATES, CANDIDATE_LINE)),
    ("interplay.user.finetuned", (FINETUNED_FACTS, _CUE_RULE, SEEN_NOTE)),
    ("interplay.recommender.finetuned", (FINETUNED_CANDIDATES, CANDIDATE_LINE)),
):
    _TEMPLATES[_name + ".catalog"] = _TEMPLATES[_name] + _extra


@dataclass(frozen=True)
class Grounding:
    """What catalog grounding adds to one role's view: ``facts`` turn index -> the facts of the films that
    recommender turn named (the user's view); ``candidates`` turn index -> the compact films shown before that
    recommender turn, the next turn's included (the recommender's view). Empty: the ungrounded layout."""

    facts: Mapping[int, Sequence[str]] = field(default_factory=dict)
    candidates: Mapping[int, Sequence[str]] = field(default_factory=dict)


NO_GROUNDING = Grounding()


def _candidate_block(films: Sequence[str], template: str) -> str:
    return template.format(candidates="\n".join(CANDIDATE_LINE.format(film=f) for f in films))


def template_hashes(names: Sequence[str] | None = None) -> dict[str, str]:
    """Template name -> SHA-256 of its texts (all templates, or those in ``names``)."""
    out = {}
    for name, texts in _TEMPLATES.items():
        if names is None or name in names:
            out[name] = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    return out


def static_template_parts() -> list[str]:
    """The fixed text of every template (split at placeholders): what the leak guard may discount."""
    parts = []
    for texts in _TEMPLATES.values():
        for text in texts:
            parts += [p for p in re.split(r"\{[a-z_]+\}", text) if p.strip()]
    return list(dict.fromkeys(parts))


# ---------------------------------------------------------------------------------------------------------
# Rendering.

_GREETING = re.compile(r"^\W*(hi|hello|hey|good (morning|afternoon|evening)|greetings)\b", re.IGNORECASE)


def infer_actions(turns: Sequence[Mapping[str, Any]]) -> list[str]:
    """The Interplay action of each turn, for rendering; a turn's own label when it is an Interplay one.

    Unlabelled turns (ReDial) get a heuristic one: a short hello before the speaker's first real turn is a
    greeting, a recommender turn naming items is a recommendation, a question is an inquiry, the user's first
    other turn discloses the goal, anything else is feedback. Non-Interplay labels (reject, chit-chat...) are
    feedback.
    """
    actions: list[str] = []
    spoke: set[str] = set()  # roles that have said more than hello
    for turn in turns:
        role, text, action = turn.get("role", ""), turn.get("text", ""), turn.get("action", "")
        if action in INTERPLAY_ACTIONS:
            pass
        elif action not in ("", "none"):
            action = "feedback"
        elif role not in spoke and _GREETING.match(text) and len(text.split()) <= 8:
            action = "greeting"
        elif role == "recommender" and turn.get("items"):
            action = "recommend"
        elif "?" in text:
            action = "inquire"
        elif role == "user" and role not in spoke:
            action = "disclose-goal"
        else:
            action = "feedback"
        if action != "greeting":
            spoke.add(role)
        actions.append(action)
    return actions


def _render(turn: Mapping[str, Any], action: str) -> str:
    titles = [i.get("title", "") for i in turn.get("items", [])]
    # One line a turn: corpus texts carry line breaks ("\r\n" in ReDial) that would split the layout.
    return format_turn(action, mark_titles(" ".join(turn.get("text", "").split()), titles))


def render_turns(turns: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each schema turn in the Interplay format on one line (runs of white space made one space), titles of its
    items tagged."""
    return [_render(t, a) for t, a in zip(turns, infer_actions(turns), strict=True)]


def _watched_lines(persona: Persona) -> str:
    lines = [WATCHED_LINE.format(title=w.title, review=w.review) for w in persona.watched]
    return "\n".join(lines) if lines else "- (none given)"


def render_persona(persona: Persona) -> str:
    """The user's persona block of the instruct style."""
    return PERSONA_INSTRUCT.format(
        general_preferences=persona.general_preferences or "(not given)",
        watched=_watched_lines(persona),
        target_attributes=persona.target_attributes,
    )


def instruct_messages(
    role: str,
    persona: Persona,
    turns: Sequence[Mapping[str, Any]],
    *,
    show_profile: bool = False,
    grounding: Grounding = NO_GROUNDING,
) -> list[dict[str, str]]:
    """Chat messages for ``role``'s next turn in the instruct style (``grounding``: see the module doc)."""
    if role == "user":
        system = USER_INSTRUCT.format(persona=render_persona(persona))
    else:
        profile = ""
        if show_profile:
            profile = "\n\n" + PROFILE_INSTRUCT.format(
                general_preferences=persona.general_preferences or "(not given)", watched=_watched_lines(persona)
            )
        system = RECOMMENDER_INSTRUCT.format(profile=profile)
    messages = [{"role": "system", "content": system}]
    if not turns:
        messages.append({"role": "user", "content": KICKOFF})
    for i, (turn, text) in enumerate(zip(turns, render_turns(turns), strict=True)):
        if i in grounding.candidates and messages[-1]["role"] == "user":
            messages[-1]["content"] += _candidate_block(grounding.candidates[i], INSTRUCT_CANDIDATES)
        if grounding.facts.get(i):
            text += INSTRUCT_FACTS.format(facts="\n".join(grounding.facts[i]))
        messages.append({"role": "assistant" if turn["role"] == role else "user", "content": text})
    if messages[-1]["role"] == "assistant":
        # Two turns of one party in a row happen in real corpora; chat templates want a user message last.
        messages.append({"role": "user", "content": KICKOFF})
    if len(turns) in grounding.candidates:
        messages[-1]["content"] += _candidate_block(grounding.candidates[len(turns)], INSTRUCT_CANDIDATES)
    return messages


def finetuned_header(role: str, persona: Persona, *, show_profile: bool = False) -> str:
    """The header of the finetuned layout for ``role`` (see the module doc)."""
    if role == "user":
        return FINETUNED_USER_HEADER.format(
            general_preferences=persona.general_preferences,
            watched=_watched_lines(persona),
            target_attributes=persona.target_attributes,
        )
    profile = ""
    if show_profile:
        profile = FINETUNED_PROFILE.format(
            general_preferences=persona.general_preferences, watched=_watched_lines(persona)
        )
    return FINETUNED_RECOMMENDER_HEADER.format(profile=profile)


def finetuned_prompt(
    role: str,
    persona: Persona,
    turns: Sequence[Mapping[str, Any]],
    *,
    show_profile: bool = False,
    grounding: Grounding = NO_GROUNDING,
) -> str:
    """The raw prompt for ``role``'s next turn in the finetuned layout; ends with ``<role>:``."""
    return finetuned_prompt_and_turn_starts(role, persona, turns, show_profile=show_profile, grounding=grounding)[0]


def finetuned_prompt_and_turn_starts(
    role: str,
    persona: Persona,
    turns: Sequence[Mapping[str, Any]],
    *,
    show_profile: bool = False,
    grounding: Grounding = NO_GROUNDING,
) -> tuple[str, tuple[int, ...]]:
    """:func:`finetuned_prompt` and where each of its turns starts (its candidate block, else its speaker label):
    a backend that must fit its context drops the oldest turns at these offsets, never the header
    (:mod:`crsdata.backends.context`). A turn's facts line follows its body and goes with it."""
    pieces = finetuned_pieces(role, persona, turns, show_profile=show_profile, grounding=grounding)
    starts, offset, k = [], len(pieces[0][0]), 1
    for i in range(len(turns)):
        starts.append(offset)
        n = 2 + (i in grounding.candidates) + bool(grounding.facts.get(i))
        offset += sum(len(text) for text, _ in pieces[k : k + n])
        k += n
    tail = (
        _candidate_block(grounding.candidates[len(turns)], FINETUNED_CANDIDATES)
        if len(turns) in grounding.candidates
        else ""
    )
    return "".join(text for text, _ in pieces) + tail + f"{role}:", tuple(starts)


def finetuned_pieces(
    role: str,
    persona: Persona,
    turns: Sequence[Mapping[str, Any]],
    *,
    show_profile: bool = False,
    untrained: frozenset[int] = frozenset(),
    grounding: Grounding = NO_GROUNDING,
) -> list[tuple[str, bool]]:
    """One whole dialogue in the finetuned layout for ``role``'s model, as ``(text, trained)`` pieces.

    The header and each speaker label ``<who>:`` are context (False); each turn of ``role``, `` <action>...
    </response>\\n`` with the newline that ends it, is trained (True) unless its index is in ``untrained``.
    Joining the texts of the pieces before turn ``i`` and appending ``<role>:`` gives exactly
    ``finetuned_prompt(role, persona, turns[:i])``: the model learns each turn from the prompt it will see.
    ``grounding``'s candidate blocks and facts lines are context too.
    """
    pieces = [(finetuned_header(role, persona, show_profile=show_profile), False)]
    for i, (turn, rendered) in enumerate(zip(turns, render_turns(turns), strict=True)):
        if i in grounding.candidates:
            pieces.append((_candidate_block(grounding.candidates[i], FINETUNED_CANDIDATES), False))
        pieces.append((FINETUNED_LABEL.format(role=turn["role"]), False))
        pieces.append((FINETUNED_BODY.format(turn=rendered), turn["role"] == role and i not in untrained))
        if grounding.facts.get(i):
            pieces.append(("".join(FINETUNED_FACTS.format(facts=f) for f in grounding.facts[i]), False))
    return pieces
