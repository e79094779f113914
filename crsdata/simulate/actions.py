"""The Interplay turn format and a forgiving parser for what models really write.

Format (Interplay, section 3.5.1)::

    <action><recommend></action><response>You may enjoy <movie_title>Good Will Hunting (1997)</movie_title>.</response>

The action is one of :data:`INTERPLAY_ACTIONS`; movie titles inside the response are wrapped in
``<movie_title>...</movie_title>``.

:func:`parse_turn` accepts much less than that, because small models (SmolLM2-135M here) rarely write the format
exactly. Every deviation it repairs is named in ``ParsedTurn.repaired`` (the simulators count them), and a text
with no recognisable action is a failure (``ok`` False, ``error`` says why). What it repairs:

- ``tag_case``: tags in another case (``<Action><RECOMMEND></Action>``).
- ``action_without_brackets``: ``<action>recommend</action>``.
- ``missing_action_close``: ``<action><recommend>`` with no ``</action>``.
- ``missing_action_wrapper``: a bare ``<recommend>`` (or ``<recommend/>``) with no ``<action>`` around it.
- ``action_label``: ``Action: recommend`` on a line of its own.
- ``synonym:<what>-><action>``: ``ask`` read as inquire, ``suggest`` as recommend, ``goodbye`` as accept...
  (:data:`ACTION_SYNONYMS`), and a hyphenated name led by an action (``feedback-message``).
- ``missing_response_tag``: no ``<response>``; the text after the action is the response.
- ``missing_response_close``: no ``</response>``; the response ends at the next action, speaker label or the end.
- ``response_before_action``: the response block came first.
- ``leading_text`` / ``trailing_text``: text before the action or after the response (often the model going on
  to write the other speaker's turn), dropped.
- ``speaker_prefix``: ``User:`` or ``Recommender:`` at the start of the response, dropped.
- ``stray_tags``: other markup inside the response (``<recommend>``, ``<|im_end|>``), dropped.
- ``missing_title_close``: ``<movie_title>X`` with no closing tag (the title ends at punctuation or the end).
- ``titles_from_quotes`` / ``titles_from_year``: no tagged title, but a quoted name or ``Name (1999)`` pattern.
- ``action_inferred`` (only with ``infer_action=True`` and a ``role``): a turn that carries no action (plain
  text, a bare ``<response>`` block, an empty ``<action><response>...`` or words instead of an action in the
  block) gets one from its content (:func:`infer_plain_action`); it is cut at the first blank line. An unknown
  action tag (``<action><movie></action>``) still fails. Off by default, because then "no action" is a
  failure; small models (SmolLM2-135M wrote no readable action in most of our samples) need it to hold a
  conversation at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from crsdata.schema import Action

INTERPLAY_ACTIONS: tuple[str, ...] = (
    Action.GREETING.value,
    Action.INQUIRE.value,
    Action.DISCLOSE_GOAL.value,
    Action.RECOMMEND.value,
    Action.FEEDBACK.value,
    Action.ACCEPT.value,
)

# Words models use for an action, after lower-casing and turning "_" and spaces into "-". Ending a chat
# ("goodbye") is read as accept: in Interplay the user closes a conversation only by accepting, and the
# simulator refuses an accept that follows no recommendation, so a goodbye in the greeting phase cannot end it.
ACTION_SYNONYMS: dict[str, str] = {
    **{w: "greeting" for w in ("greet", "greetings", "hello", "hi", "hey", "welcome", "introduction", "intro")},
    **{
        w: "inquire"
        for w in ("inquiry", "enquire", "enquiry", "ask", "asking", "question", "query", "clarify", "clarification")
    },
    **{w: "inquire" for w in ("elicit", "ask-question", "ask-preference", "request-information", "inquire-preference")},
    **{
        w: "disclose-goal"
        for w in ("disclose", "disclosure", "disclose-goals", "disclosegoal", "goal", "state-goal", "preference")
    },
    **{w: "disclose-goal" for w in ("disclose-preference", "share-preference", "request", "inform", "describe")},
    **{w: "recommend" for w in ("recommendation", "recommendations", "suggest", "suggestion", "propose", "offer")},
    **{w: "recommend" for w in ("recommend-movie", "recommending")},
    **{w: "feedback" for w in ("reply", "respond", "answer", "comment", "opinion", "react", "reaction", "reject")},
    **{w: "feedback" for w in ("decline", "dislike", "refuse", "chit-chat", "chitchat", "chat", "thanks", "thank")},
    **{w: "feedback" for w in ("acknowledge", "explain", "explanation", "give-feedback")},
    **{w: "accept" for w in ("accepted", "accepting", "acceptance", "agree", "yes", "ok", "okay", "goodbye", "bye")},
    **{w: "accept" for w in ("farewell", "end", "finish", "done", "like-it")},
}

# Tags of the format itself, never an action name.
_FORMAT_TAGS = {"action", "response", "movie-title", "movie", "title", "s", "user", "recommender", "assistant"}

_ACTION_BLOCK = re.compile(r"<\s*action\s*>(?P<inner>.*?)<\s*/\s*action\s*>", re.IGNORECASE | re.DOTALL)
_ACTION_OPEN = re.compile(
    r"<\s*action\s*>\s*(?P<inner><\s*[A-Za-z][\w\- ]*\s*/?\s*>|[A-Za-z][\w\-]*)", re.IGNORECASE | re.DOTALL
)
_ANY_TAG = re.compile(r"<\s*(?P<close>/)?\s*(?P<name>[A-Za-z][\w\- ]{0,30}?)\s*/?\s*>")
_ACTION_LABEL = re.compile(r"(?:^|\n)[ \t*#]*action[ \t*]*[:=][ \t*]*(?P<name>[A-Za-z][\w\-]*)", re.IGNORECASE)
_RESPONSE_OPEN = re.compile(r"<\s*response\s*>", re.IGNORECASE)
_RESPONSE_CLOSE = re.compile(r"<\s*/\s*response\s*>", re.IGNORECASE)
# Where a response that lost its closing tag ends: the next action, or a speaker label at a line start.
_RESPONSE_STOP = re.compile(
    r"<\s*action\s*>|\n\s*(?:user|recommender|seeker|assistant|system)\s*:|<\|im_end\|>|<\|endoftext\|>",
    re.IGNORECASE,
)
_SPECIAL_TOKEN = re.compile(r"<\|[^|>]*\|>|</s>")
_SPEAKER_PREFIX = re.compile(r"^\s*(?:user|recommender|seeker|assistant)\s*:\s*", re.IGNORECASE)
_TITLE_TAG = re.compile(
    r"<\s*movie[_\- ]?title\s*>(?P<title>.*?)<\s*/\s*movie[_\- ]?title\s*>", re.IGNORECASE | re.DOTALL
)
_TITLE_OPEN = re.compile(r"<\s*movie[_\- ]?title\s*>(?P<title>[^<.!?\n]*)", re.IGNORECASE)
_ACTION_MARKUP = re.compile(r"<\s*/?\s*action\s*>", re.IGNORECASE)
# A tag that the token limit cut off at the very end ("...><response", "text </resp") is markup too.
_STRAY_TAG = re.compile(r"<\|[^|>]*\|>|</?\s*[A-Za-z][\w\-]*\s*/?>|(?:^|(?<=[\s>]))</?[A-Za-z][\w\-]{2,}$")
_QUOTED = re.compile(r"[\"\u201c\u201d]([A-Z0-9][^\"\u201c\u201d\n]{0,80}?)[\"\u201c\u201d]")
_TITLE_WORD = r"(?:[A-Z0-9][\w'\u2019:&!.\-]*|of|the|a|an|and|in|on|to|for|with|at|from|by|vs\.?|&)"
_YEAR_TITLE = re.compile(rf"(?P<title>[A-Z0-9][\w'\u2019:&!.\-]*(?:[ ,]+{_TITLE_WORD}){{0,9}})\s*\((?P<year>\d{{4}})\)")
# Capitalised words that start a sentence rather than a title ("Watch The Shining (1980)").
_LEAD_WORDS = {
    "i", "you", "we", "watch", "try", "check", "maybe", "perhaps", "also", "then", "like", "recommend", "suggest",
    "have", "did", "do", "how", "what", "about", "or", "and", "see", "so", "yes", "no", "sure", "ok", "okay",
    "great", "hi", "hello", "well", "oh", "loved", "love", "enjoyed", "liked", "but", "if", "my", "movie",
    "film", "title", "recommendation",
}  # fmt: skip


@dataclass(frozen=True)
class ParsedTurn:
    action: str  # one of INTERPLAY_ACTIONS, "" when not ok
    response: str  # user-facing text, title tags removed
    titles: list[str] = field(default_factory=list)  # titles named in the response, in order, no duplicates
    repaired: list[str] = field(default_factory=list)  # deviations from the format that were repaired
    ok: bool = False  # False when no action could be recognised
    error: str = ""  # why not ok


def format_turn(action: str, response: str) -> str:
    """One turn in the Interplay format; ``response`` should already wrap titles (see :func:`mark_titles`)."""
    if action not in INTERPLAY_ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {', '.join(INTERPLAY_ACTIONS)}")
    return f"<action><{action}></action><response>{response}</response>"


def mark_titles(text: str, titles: list[str]) -> str:
    """``text`` with the first whole-word occurrence of each title, outside earlier tags, in ``<movie_title>`` tags."""
    for title in titles:
        tagged = [m.span() for m in _TITLE_TAG.finditer(text)]
        if not title or any(m.group("title").strip().lower() == title.lower() for m in _TITLE_TAG.finditer(text)):
            continue
        for match in re.finditer(rf"(?<!\w){re.escape(title)}(?!\w)", text, re.IGNORECASE):
            if not any(start <= match.start() < end for start, end in tagged):
                text = f"{text[: match.start()]}<movie_title>{match.group()}</movie_title>{text[match.end() :]}"
                break
    return text


def canonical_action(name: str) -> str | None:
    """``name`` as one of :data:`INTERPLAY_ACTIONS` (synonyms resolved), or None.

    A hyphenated name that starts with a known action is read as that action (``feedback-message``).
    """
    key = re.sub(r"[\s_]+", "-", name.strip().strip("<>/").strip().lower()).strip("-.:!")
    if key in INTERPLAY_ACTIONS:
        return key
    if key in ACTION_SYNONYMS:
        return ACTION_SYNONYMS[key]
    parts = key.split("-")
    for n in range(len(parts) - 1, 0, -1):
        prefix = "-".join(parts[:n])
        found = prefix if prefix in INTERPLAY_ACTIONS else ACTION_SYNONYMS.get(prefix)
        if found:
            return found
    return None


def _find_action(text: str, repaired: list[str]) -> tuple[str | None, str, int, int]:
    """(canonical action, name as written, start, end) of the action in ``text``; action None if none found."""
    block = _ACTION_BLOCK.search(text)
    if block:
        inner = block.group("inner").strip()
        tag = _ANY_TAG.fullmatch(inner) or _ANY_TAG.match(inner)
        if tag:
            name = tag.group("name")
        else:
            name = inner.split()[0] if inner.split() else ""
            if name:
                repaired.append("action_without_brackets")
        return canonical_action(name) if name else None, name, block.start(), block.end()
    opened = _ACTION_OPEN.search(text)
    if opened:
        repaired.append("missing_action_close")
        inner = opened.group("inner")
        if not inner.lstrip().startswith("<"):
            repaired.append("action_without_brackets")
        name = inner.strip("<>/ \t\n")
        return canonical_action(name), name, opened.start(), opened.end()
    for tag in _ANY_TAG.finditer(text):
        name = tag.group("name").strip()
        if tag.group("close") or name.lower().replace("_", "-") in _FORMAT_TAGS:
            continue
        action = canonical_action(name)
        if action:
            repaired.append("missing_action_wrapper")
            end = tag.end()
            # A bare action may come with its own closing tag: <recommend></recommend>.
            closing = re.match(rf"\s*<\s*/\s*{re.escape(name)}\s*>", text[end:], re.IGNORECASE)
            return action, name, tag.start(), end + (closing.end() if closing else 0)
    label = _ACTION_LABEL.search(text)
    if label and canonical_action(label.group("name")):
        repaired.append("action_label")
        return canonical_action(label.group("name")), label.group("name"), label.start(), label.end()
    return None, label.group("name") if label else "", -1, -1


def _cut_response(text: str, repaired: list[str], tagged: bool = True) -> str:
    """The response part of ``text``, which starts right after ``<response>`` (``tagged``) or after the action."""
    close = _RESPONSE_CLOSE.search(text)
    stop = _RESPONSE_STOP.search(text)
    if close and (stop is None or close.start() <= stop.start()):
        end, rest = close.start(), text[close.end() :]
    else:
        if tagged:
            repaired.append("missing_response_close")
        end = stop.start() if stop else len(text)
        rest = text[end:]
    # End-of-turn tokens after the response are how chat models stop, not extra text.
    if _SPECIAL_TOKEN.sub("", rest).strip():
        repaired.append("trailing_text")
    return text[:end]


def _titles(response: str, repaired: list[str]) -> tuple[str, list[str]]:
    """(response with title tags removed, titles) — tagged titles first, patterns when none are tagged."""
    titles = [" ".join(m.group("title").split()) for m in _TITLE_TAG.finditer(response)]
    response = _TITLE_TAG.sub(lambda m: m.group("title"), response)
    unclosed = list(_TITLE_OPEN.finditer(response))
    if unclosed:
        repaired.append("missing_title_close")
        titles += [" ".join(m.group("title").split()) for m in unclosed]
        response = _TITLE_OPEN.sub(lambda m: m.group("title"), response)
    if not titles:
        quoted = [" ".join(m.group(1).split()).strip(" ,.") for m in _QUOTED.finditer(response)]
        # A quoted whole sentence is speech, not a title.
        quoted = [q for q in quoted if q and len(q.split()) <= 8 and not q.endswith(("?", "!"))]
        if quoted:
            repaired.append("titles_from_quotes")
            titles += quoted
        dated = []
        for m in _YEAR_TITLE.finditer(response):
            words = m.group("title").replace(",", " ").split()
            while words and words[0].lower().strip(".!:,") in _LEAD_WORDS:
                words.pop(0)
            if words:
                dated.append(f"{' '.join(words)} ({m.group('year')})")
        dated = [d for d in dated if not any(d.startswith(q) or q.startswith(d) for q in quoted)]
        if dated:
            repaired.append("titles_from_year")
            titles += dated
    return response, [t for t in dict.fromkeys(titles) if t]


_GREETING_START = re.compile(r"^\W*(hi|hello|hey|greetings|good (morning|afternoon|evening))\b", re.IGNORECASE)


def infer_plain_action(role: str, response: str, titles: list[str]) -> str:
    """An action for a plain-text turn: a recommender naming a title recommends; a question inquires; a short
    opening hello greets; anything else is feedback. Never ``accept``: ending a dialogue on a guess would
    invent an outcome."""
    if role == "recommender" and titles:
        return "recommend"
    if "?" in response:
        return "inquire"
    if _GREETING_START.match(response) and len(response.split()) <= 12:
        return "greeting"
    return "feedback"


def _parse_plain(text: str, role: str, repaired: list[str]) -> ParsedTurn:
    """The last resort for text without any action (see ``action_inferred`` in the module doc)."""
    # An action block that holds no action (<action><response>..., <action>You may enjoy X</action>) is dropped;
    # the caller only comes here for those and for text without any markup.
    text = _ACTION_MARKUP.sub(" ", text)
    opened = _RESPONSE_OPEN.search(text)
    if opened:
        response = _cut_response(text[opened.end() :], repaired)
    else:
        response = _cut_response(text, repaired, tagged=False)
    # Small models ramble on after a blank line (lists, role notes, a second answer).
    head, _, rest = response.strip().partition("\n\n")
    if rest.strip():
        repaired.append("trailing_text")
    response = head
    response, titles = _clean_response(response, repaired)
    if not re.search(r"[^\W\d_]{2}", response):
        # Emoji runs, numbers, punctuation: nothing a user or recommender says.
        return ParsedTurn("", "", [], repaired, False, "no action found")
    repaired.insert(0, "action_inferred")
    action = infer_plain_action(role, response, titles)
    return ParsedTurn(action, response, titles, list(dict.fromkeys(repaired)), True, "")


def _clean_response(response: str, repaired: list[str]) -> tuple[str, list[str]]:
    """The repairs every parsed response gets: a leading speaker label, titles marked or quoted, stray tags,
    runs of whitespace. Returns the clean text and the titles found."""
    if _SPEAKER_PREFIX.match(response):
        repaired.append("speaker_prefix")
        response = _SPEAKER_PREFIX.sub("", response, count=1)
    response, titles = _titles(response, repaired)
    if _STRAY_TAG.search(response):
        repaired.append("stray_tags")
        response = _STRAY_TAG.sub(" ", response)
    return " ".join(response.split()), titles


def parse_turn(text: str, role: str | None = None, *, infer_action: bool = False) -> ParsedTurn:
    """Parses one generated turn; see the module doc for what is repaired and what fails.

    ``role`` (``user`` or ``recommender``) and ``infer_action=True`` turn on the ``action_inferred`` repair for
    plain text with no action.
    """
    repaired: list[str] = []
    if not text or not text.strip():
        return ParsedTurn("", "", [], [], False, "empty output")
    action, name, start, end = _find_action(text, repaired)
    if action is None:
        # Inference is for turns that carry no action: no markup, an empty block (<action><response>...) or
        # words in the block; an unknown action tag (<action><movie></action>) stays a failure.
        holds_none = not name or name.lower() == "response" or "action_without_brackets" in repaired
        if infer_action and role and holds_none:
            return _parse_plain(text, role, [r for r in repaired if r != "action_without_brackets"])
        why = f"unknown action {name!r}" if name else "no action found"
        return ParsedTurn("", "", [], repaired, False, why)
    key = re.sub(r"[\s_]+", "-", name.strip().strip("<>/").strip().lower())
    if key not in INTERPLAY_ACTIONS:
        repaired.append(f"synonym:{key}->{action}")
    if any(c.isupper() for tag in _ANY_TAG.finditer(text[start:end]) for c in tag.group()):
        repaired.append("tag_case")
    if text[:start].strip():
        repaired.append("leading_text")
    after = text[end:]
    opened = _RESPONSE_OPEN.search(after)
    if opened and not after[: opened.start()].strip():
        response = _cut_response(after[opened.end() :], repaired)
    elif opened:
        # Words between the action and <response> are a response that forgot its tag and kept going.
        repaired.append("missing_response_tag")
        response = _cut_response(after, repaired, tagged=False)
    else:
        before = _RESPONSE_OPEN.search(text[:start])
        if before:
            repaired.append("response_before_action")
            response = _cut_response(text[before.end() : start], repaired)
            repaired[:] = [r for r in repaired if r not in ("leading_text", "trailing_text")]
        else:
            repaired.append("missing_response_tag")
            response = _cut_response(after, repaired, tagged=False)
    response = _RESPONSE_OPEN.sub(" ", response)
    response, titles = _clean_response(response, repaired)
    if len(response) >= 2 and response[0] == response[-1] == '"':
        response = response[1:-1].strip()
    return ParsedTurn(action, response, titles, list(dict.fromkeys(repaired)), True, "")
