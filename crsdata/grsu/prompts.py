"""The three prompts of GRSU (section 3): the CRS's recommendation (Eq. 1), the user's item score (Eq. 2) and the
user's critique (Eq. 3), and the parser that reads a list of titles back from a CRS reply.

All three share one layout, so that a model sees the same conversation the same way whatever it is asked:

    <task description>                   (scoring and critiquing: first, so all items of a turn share it)

    ## Conversation

    User: ...
    System: ...

    ## Recommendation                     (the list, or the single item being scored, with its attributes)

    1. Title (Year)
      - genre: ...
      - director: ...
      - writer: ...
      - actors: ...

    ## Feedback                           (Eq. 1 with feedback only)

    User: <critique>

    ## Instruction                        (Eq. 1: the CRS's task)

Eq. 2 (scoring) ends with the question ``Accept the recommendation (Yes/No)?`` and the answer the model would give
first is read as the option probabilities of ``Yes`` and ``No`` (:data:`SCORE_OPTIONS`); the score of an item is
P(Yes). A GRSU scorer fine-tuned by crsdata is trained on exactly :func:`scoring_messages` with the completion
``Yes`` or ``No``. Putting the task description before the conversation (GRSU puts it after the list) makes every
(context, item) prompt of a turn share its whole conversation as a prefix, which backends with prefix caching
compute once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from crsdata.grsu.data import EvalTurn, ItemTable

SCORE_OPTIONS = ["Yes", "No"]
SCORE_QUESTION = "Accept the recommendation (Yes/No)?"
ROLE_NAMES = {"user": "User", "recommender": "System"}

USER_TASK = "You are a user looking for a movie recommendation."
SCORING_TASK = (
    f"{USER_TASK} Read the conversation and the movie the system recommends, then say whether you would accept it. "
    f'Answer "{SCORE_QUESTION}" with Yes or No.'
)
CRITIQUE_TASK = (
    f"{USER_TASK} Read the conversation and the movies the system recommends, then give the system negative "
    "feedback on them in one or two sentences: say which genre, actor, writer or director you would like instead, "
    "and which recommended movie is furthest from what you want."
)
RECOMMEND_TASK = (
    "You are the recommender in this conversation. Read the conversation and recommend {k} movies the user would "
    "like to watch, the most suitable first. If the conversation says nothing useful, recommend {k} popular movies."
)
REVISE_TASK = (
    'You are the recommender in this conversation. Revise your recommendation according to the user\'s "Feedback" '
    'and recommend {k} movies that are not in your previous "Recommendation", the most suitable first.'
)
LIST_FORMAT = 'Write one movie per line as "1. Title (Year)", with no description.'


def conversation_text(turn: EvalTurn) -> str:
    """``User: ...`` / ``System: ...`` lines, oldest first (the turn's context is already cut to its most recent
    part when the evaluation set is loaded, see :func:`crsdata.grsu.data.load_eval_set`)."""
    return "\n".join(f"{ROLE_NAMES.get(role, role.title())}: {text}" for role, text in turn.context)


def numbered(items: ItemTable, item_ids: Sequence[str], *, attributes: bool) -> str:
    """``1. Title (Year)`` lines, each with its attribute lines when ``attributes``."""
    describe = items.describe if attributes else items.title
    return "\n".join(f"{i}. {describe(item_id)}" for i, item_id in enumerate(item_ids, start=1))


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body}"


def recommendation_messages(
    turn: EvalTurn,
    items: ItemTable,
    k: int,
    previous: Sequence[str] = (),
    feedback: str = "",
) -> list[dict[str, str]]:
    """Eq. 1: the CRS prompt, with the previous list and the user's feedback when revising."""
    parts = [_section("Conversation", conversation_text(turn))]
    if feedback:
        parts.append(_section("Recommendation", "System:\n" + numbered(items, previous, attributes=False)))
        parts.append(_section("Feedback", f"User: {feedback}"))
        task = REVISE_TASK.format(k=k)
    else:
        task = RECOMMEND_TASK.format(k=k)
    parts.append(_section("Instruction", f"{task} {LIST_FORMAT}"))
    return [{"role": "user", "content": "\n\n".join(parts)}]


def scoring_context(turn: EvalTurn) -> str:
    """The part of every Eq. 2 prompt of ``turn`` that comes before the item: task and conversation."""
    return "\n\n".join([SCORING_TASK, _section("Conversation", conversation_text(turn)), "## Recommendation\n\n"])


def scoring_messages(turn: EvalTurn, items: ItemTable, item_id: str) -> list[dict[str, str]]:
    """Eq. 2 for one item: the answer's first token is ``Yes`` or ``No``."""
    item = numbered(items, [item_id], attributes=True)
    return [{"role": "user", "content": f"{scoring_context(turn)}{item}\n\n{SCORE_QUESTION} Answer Yes or No."}]


def critique_messages(turn: EvalTurn, items: ItemTable, item_ids: Sequence[str]) -> list[dict[str, str]]:
    """Eq. 3: the user's attribute-based critique of a recommended list."""
    body = "\n\n".join(
        [
            CRITIQUE_TASK,
            _section("Conversation", conversation_text(turn)),
            _section("Recommendation", numbered(items, item_ids, attributes=True)),
        ]
    )
    return [{"role": "user", "content": body}]


_LIST_LINE = re.compile(r"^\s*(?:\d{1,3}\s*[.):]|[-*•])\s*(.+?)\s*$")
_YEAR_END = re.compile(r"^(.*?\(\d{4}\))")
_DECORATION = re.compile(r"[*_`\"“”]+")


def parse_titles(text: str, limit: int | None = None) -> list[str]:
    """Titles from a CRS reply: numbered or bulleted lines, markdown and quotes removed, anything after a
    "(Year)" or after " - " / ": " dropped (a description). Small models often ignore the format, so a reply
    without list lines is read line by line."""
    lines = text.splitlines()
    listed = [m.group(1) for m in map(_LIST_LINE.match, lines) if m]
    candidates = listed or [line for line in lines if line.strip()]
    titles: list[str] = []
    for raw in candidates:
        title = _DECORATION.sub("", raw).strip()
        year = _YEAR_END.match(title)
        if year:
            title = year.group(1)
        else:
            title = re.split(r"\s+[-–—]\s+|:\s", title, maxsplit=1)[0]
        title = title.strip(" .,;")
        if 1 < len(title) <= 120 and title not in titles:
            titles.append(title)
        if limit is not None and len(titles) >= limit:
            break
    return titles
