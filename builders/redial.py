"""ReDial (Li et al., NeurIPS 2018): movie recommendation dialogues between a seeker and a recommender.

Input: the release's JSON-lines files (``train_data.jsonl``, ``test_data.jsonl``, or copies such as iEvaLM's
``valid_data.jsonl`` with extra per-message annotations), or folders holding ``*.jsonl`` files (not searched
recursively). One line is one dialogue: ``conversationId``, ``initiatorWorkerId``, ``respondentWorkerId``,
``movieMentions`` (id -> "Title (Year)"), ``messages`` (``senderWorkerId``, ``text`` with ``@movieId``
placeholders, ...), ``initiatorQuestions`` / ``respondentQuestions`` (id -> suggested/seen/liked).

Mapping:

- split: from the words of the file name: ``train`` -> train, ``valid``/``validation``/``val``/``dev`` ->
  validation, ``test`` -> test; a name with none (or several) of them is an error unless ``split=`` (CLI
  ``--split``) names the split of every input.
- ``conversationId`` -> ``dialogue_id``. The same id in a later line or file is dropped and counted in
  ``BuildResult.dropped["duplicate-conversation-id"]`` (the first one read is kept; the card lists examples).
- the initiator (seeker) -> role ``user``, the respondent -> ``recommender``. Consecutive messages of one
  worker stay separate turns, as released (one message, one turn), so turns line up with the release's
  message ids and iEvaLM's per-message annotations.
- ``@movieId`` in a message -> the title from ``movieMentions`` with its year and white space normalised
  ("The Shining  (1980)" -> "The Shining (1980)"); an id missing from ``movieMentions`` takes the catalog's
  "Title (Year)"; an id in neither is bad input (``messages[i].text``). Each distinct id of a turn goes into
  ``turns[].items`` with the ReDial id as ``item_id``. An ``@`` followed by words ("@Seven", typed by hand)
  is not a placeholder and stays as written.
- message fields other than ``text`` and ``senderWorkerId`` go to ``turns[].extra`` (``messageId``,
  ``timeOffset``; iEvaLM's ``entity``, ``word``, ``masked_text``), except iEvaLM's ``item``, ``thread`` and
  ``turn_id``, which repeat ``turns[].items`` and ``turns[].index``.
- ``initiatorQuestions`` -> ``item_feedback`` with reporter ``user``, ``respondentQuestions`` -> reporter
  ``recommender``: answers 0/1 -> False/True, 2 ("did not say") -> None. A questionnaire can be an object keyed
  by movie id, an empty list (not filled in), or a list of objects with ``movieId``.
- ``target_items``: **one film**, the target of replay, of the user simulator's accept labels and of the
  persona's target attributes: the first film named in a recommender message that the seeker's questionnaire
  marks ``suggested=1, seen=0, liked=1`` (a suggestion it liked and had not seen: one it would go and watch).
  The seeker's own questionnaire (``initiatorQuestions``) decides; the recommender's (``respondentQuestions``)
  stands in only when the seeker's is empty. ``extra.target_items_from`` says which questionnaire was used.
  A dialogue without such a film is kept with no target, and ``extra.target_rule_miss`` says why
  (:data:`NO_QUESTIONNAIRE`, :data:`NO_WANTED_FILM`, :data:`WANTED_NOT_RECOMMENDED`): replay skips it and
  counts it by that reason. On the official test split 822 of the 1,342 dialogues have a target.
- ``user_profile.watched_items``: the movies the seeker had seen (``seen == 1``, same questionnaire), with
  review "liked" / "did not like" / "" (no answer).
- ``outcome.end_reason`` is ``source``: ReDial records no explicit acceptance.

Catalog of the built folder (the ``items`` config): every item the kept dialogues refer to (turn items,
questionnaire items, targets), with the metadata of the given catalogs merged (see :mod:`crsdata.catalog`).
An id the catalogs do not know gets a row from its ``movieMentions`` title and year (source
``redial_mentions``). Link statistics count turn mentions whose ReDial id the catalogs know (or whose title and
year match a catalog film).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crsdata.build import (
    Builder,
    BuildResult,
    LinkStats,
    read_jsonl_dialogues,
    resolve_split,
)
from crsdata.catalog import Catalog
from crsdata.errors import BadInputError, SkipLog
from crsdata.readers import require
from crsdata.schema import Role, item_ref, new_dialogue, new_turn, validate_dialogue
from crsdata.titles import collapse_whitespace

SOURCE = "redial"

PLACEHOLDER = re.compile(r"@(\d+)")
# Questionnaire answers as released: 0 = no, 1 = yes, 2 = did not say.
ANSWERS: dict[int, bool | None] = {0: False, 1: True, 2: None}
QUESTIONS = ("suggested", "seen", "liked")
QUESTIONNAIRES = (("initiatorQuestions", Role.USER), ("respondentQuestions", Role.RECOMMENDER))
# Message fields that repeat what the turn already holds (iEvaLM's copies of items and positions).
REPEATED_MESSAGE_FIELDS = frozenset({"text", "senderWorkerId", "item", "thread", "turn_id"})
# Why a dialogue has no target (extra.target_rule_miss; replay counts its skips by these reasons).
NO_QUESTIONNAIRE = "no-questionnaire"
NO_WANTED_FILM = "no-suggested-unseen-liked-film"
WANTED_NOT_RECOMMENDED = "wanted-film-not-named-by-recommender"
TOP_LEVEL_FIELDS = frozenset(
    {"conversationId", "messages", "movieMentions", "initiatorWorkerId", "respondentWorkerId", *dict(QUESTIONNAIRES)}
)


class RedialBuilder(Builder):
    name = "redial"
    description = (
        "ReDial: over 10,000 English dialogues collected on Amazon Mechanical Turk in which a seeker asks for "
        "movie suggestions and a recommender gives them, with the movies mentioned marked and a questionnaire "
        "per movie (suggested, seen, liked) filled in by both workers."
    )
    license = "CC BY 4.0"
    license_id = "cc-by-4.0"
    pretty_name = "ReDial (crsdata)"
    citation = """@inproceedings{li2018conversational,
  title = {Towards Deep Conversational Recommendations},
  author = {Li, Raymond and Kahou, Samira Ebrahimi and Schulz, Hannes and Michalski, Vincent and Charlin, Laurent
            and Pal, Chris},
  booktitle = {Advances in Neural Information Processing Systems 31 (NeurIPS 2018)},
  year = {2018}
}"""
    homepage = "https://redialdata.github.io/website/"
    input_help = (
        "ReDial release .jsonl files (train_data.jsonl, test_data.jsonl, iEvaLM's valid_data.jsonl) or folders "
        "holding them; the split comes from the file name (train, valid/dev, test) unless --split is given; "
        "--catalog redial__id2info.json and/or movies_with_mentions.csv for item metadata"
    )

    NOTES = [
        "Roles: the initiator (seeker) is `user`, the respondent is `recommender`. Consecutive messages of one "
        "worker are kept as separate turns, as released; merge them if a model needs strict alternation.",
        '`@movieId` placeholders are replaced by the title from the dialogue\'s `movieMentions` ("Title (Year)", '
        "spaces normalised), or from the catalog for ids missing there; `turns[].items` holds the ReDial id. An "
        "`@` followed by words (a title typed by hand) is not a placeholder and is kept as written.",
        "`item_feedback`: `initiatorQuestions` (reporter `user`) and `respondentQuestions` (reporter "
        "`recommender`); answers 0/1 -> false/true, 2 (did not say) -> null.",
        "`target_items`: one film, the first named in a recommender message that the seeker's questionnaire marks "
        "suggested, not seen and liked (the recommender's questionnaire when the seeker filled none in; "
        "`extra.target_items_from`). Without one, `target_items` is empty and `extra.target_rule_miss` says why.",
        "`user_profile.watched_items`: movies the seeker had seen, with review liked / did not like / empty.",
        "The `items` config holds every movie the dialogues refer to, with metadata from the catalogs given to "
        "the build; ids unknown to them get a row from the dialogue's own title (source `redial_mentions`).",
    ]

    def build(
        self, inputs: list[Path], *, catalogs: list[Path], skip: SkipLog, split: str | None = None
    ) -> BuildResult:
        """Reads ReDial files; ``split`` (CLI ``--split``) puts every input in that split."""
        if split is not None:
            split = resolve_split(split)
        catalog = Catalog.from_paths(catalogs)
        result = BuildResult(source=SOURCE, splits={}, skipped=skip, notes=list(self.NOTES), info=self.info())
        if not catalogs:
            result.notes.append("No catalog was given: items carry only the titles found in the dialogues.")
        # ReDial id -> whether the catalogs know it, decided at its first mention: an unknown id gets a row from
        # its title then, and must not count as linked when later dialogues mention it again.
        known: dict[str, bool] = {}
        duplicates = read_jsonl_dialogues(
            result,
            inputs,
            skip,
            lambda obj, path, rel, digest, file_split, line, stats: self._convert(
                obj, path, rel, digest, file_split, line, catalog, known, stats
            ),
            split=split,
            duplicate_reason="duplicate-conversation-id",
        )
        referenced = [item_id for records in result.splits.values() for r in records for item_id in _item_ids(r)]
        dropped = result.dropped.get("duplicate-conversation-id", 0)
        if dropped:
            result.notes.append(
                f"{dropped} dialogue(s) dropped because their conversationId was already read from an earlier line "
                f"or file (the first one is kept), for example: {'; '.join(duplicates)}."
            )
        result.items = sorted(catalog.rows(dict.fromkeys(referenced)), key=lambda row: _id_order(row["item_id"]))
        return result

    def _convert(
        self,
        obj: dict[str, Any],
        path: Path,
        rel: str,
        digest: str,
        split: str,
        line: int,
        catalog: Catalog,
        known: dict[str, bool],
        stats: LinkStats,
    ) -> dict[str, Any]:
        record = f"line {line}"
        conversation_id = str(require(obj, "conversationId", (str, int), path, record))
        record = f"line {line} (conversationId {conversation_id})"
        messages = require(obj, "messages", list, path, record)
        initiator = require(obj, "initiatorWorkerId", int, path, record)
        respondent = require(obj, "respondentWorkerId", int, path, record)
        mentions = _mentions(obj.get("movieMentions"), path, record)

        def title_of(movie_id: str) -> str:
            return mentions.get(movie_id) or catalog.title_with_year(movie_id)

        turns = []
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(message, dict):
                raise BadInputError(
                    path, record, where, f"expected an object, got {type(message).__name__}", "wrong-type"
                )
            text = message.get("text")
            if not isinstance(text, str):
                problem = "missing required field" if text is None else f"expected a string, got {type(text).__name__}"
                reason = "missing-field" if text is None else "wrong-type"
                raise BadInputError(path, record, f"{where}.text", problem, reason)
            sender = message.get("senderWorkerId")
            if sender == initiator:
                role = Role.USER
            elif sender == respondent:
                role = Role.RECOMMENDER
            else:
                raise BadInputError(
                    path,
                    record,
                    f"{where}.senderWorkerId",
                    f"{sender!r} is neither the initiator ({initiator}) nor the respondent ({respondent})",
                    "unknown-speaker",
                )
            items: dict[str, str] = {}
            for movie_id in PLACEHOLDER.findall(text):
                title = title_of(movie_id)
                if not title:
                    raise BadInputError(
                        path,
                        record,
                        f"{where}.text",
                        f"placeholder @{movie_id} is neither in movieMentions nor in the catalog",
                        "unknown-placeholder",
                    )
                items.setdefault(movie_id, title)
            resolved = PLACEHOLDER.sub(lambda m: title_of(m.group(1)), text)
            for movie_id, title in items.items():
                if movie_id not in known:
                    known[movie_id] = _link(catalog, movie_id, title)
                stats.add(known[movie_id])
            extra = {k: v for k, v in message.items() if k not in REPEATED_MESSAGE_FIELDS}
            turns.append(
                new_turn(
                    len(turns),
                    role,
                    resolved,
                    items=[item_ref(movie_id, title) for movie_id, title in items.items()],
                    extra=extra,
                )
            )

        feedback: dict[Role, list[dict[str, Any]]] = {}
        for key, reporter in QUESTIONNAIRES:
            feedback[reporter] = []
            for movie_id, answers in _questionnaire(obj.get(key), key, path, record):
                row = {"item_id": movie_id, "title": title_of(movie_id), "reporter": str(reporter)}
                row.update(answers)
                feedback[reporter].append(row)
                if movie_id not in known and row["title"]:
                    known[movie_id] = _link(catalog, movie_id, row["title"])

        # The seeker's own answers are the better evidence of what the seeker liked; the recommender's answers
        # (about the seeker) stand in when the seeker left the questionnaire empty.
        chosen, chosen_from = feedback[Role.USER], "initiatorQuestions"
        if not chosen:
            chosen, chosen_from = feedback[Role.RECOMMENDER], "respondentQuestions"
        if not chosen:
            chosen_from = ""
        target, miss = target_film(chosen, turns)
        reviews = {True: "liked", False: "did not like", None: ""}
        watched = [{**item_ref(r["item_id"], r["title"]), "review": reviews[r["liked"]]} for r in chosen if r["seen"]]

        extra = {k: v for k, v in obj.items() if k not in TOP_LEVEL_FIELDS}
        extra.update({"initiatorWorkerId": initiator, "respondentWorkerId": respondent})
        extra["target_items_from"] = chosen_from
        if miss:
            extra["target_rule_miss"] = miss
        dialogue = new_dialogue(
            conversation_id,
            SOURCE,
            split,
            turns,
            user_profile={"watched_items": watched},
            target_items=[item_ref(target["item_id"], target["title"])] if target else [],
            item_feedback=feedback[Role.USER] + feedback[Role.RECOMMENDER],
            provenance={"builder": self.name, "source_file": rel, "source_sha256": digest},
            extra=extra,
        )
        validate_dialogue(dialogue, str(path), record)
        return dialogue


def target_film(questionnaire: list[dict[str, Any]], turns: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The dialogue's one target (a questionnaire row) and, when there is none, why.

    The target is the first film named in a recommender turn (turns in order, films in the order the text names
    them) that ``questionnaire`` marks suggested, not seen and liked. Unanswered questions (2, "did not say",
    read as None) do not qualify: the rule asks for a film the seeker said it would want.
    """
    if not questionnaire:
        return None, NO_QUESTIONNAIRE
    wanted = {
        row["item_id"]: row
        for row in questionnaire
        if row["suggested"] is True and row["seen"] is False and row["liked"] is True
    }
    if not wanted:
        return None, NO_WANTED_FILM
    for turn in turns:
        if turn["role"] == Role.RECOMMENDER:
            for ref in turn["items"]:
                if ref["item_id"] in wanted:
                    return wanted[ref["item_id"]], ""
    return None, WANTED_NOT_RECOMMENDED


def _mentions(value: Any, path: Path, record: str) -> dict[str, str]:
    """``movieMentions`` as id -> "Title (Year)" with spaces normalised; an empty list counts as no mentions."""
    if value is None or value == []:
        return {}
    if not isinstance(value, dict):
        raise BadInputError(
            path, record, "movieMentions", f"expected an object, got {type(value).__name__}", "wrong-type"
        )
    out = {}
    for movie_id, title in value.items():
        if title is not None and not isinstance(title, str):
            raise BadInputError(
                path,
                record,
                f"movieMentions.{movie_id}",
                f"expected a string, got {type(title).__name__}",
                "wrong-type",
            )
        out[str(movie_id)] = collapse_whitespace(title or "")
    return out


def _questionnaire(value: Any, key: str, path: Path, record: str) -> Iterator[tuple[str, dict[str, bool | None]]]:
    """``(movie id, {suggested, seen, liked})`` from an object keyed by id or a list of objects with ``movieId``."""
    if value is None or value == [] or value == {}:
        return
    if isinstance(value, dict):
        pairs = [(str(movie_id), answers) for movie_id, answers in value.items()]
    elif isinstance(value, list):
        pairs = []
        for i, answers in enumerate(value):
            if not isinstance(answers, dict) or "movieId" not in answers:
                raise BadInputError(path, record, f"{key}[{i}]", "expected an object with movieId", "wrong-type")
            pairs.append((str(answers["movieId"]), answers))
    else:
        raise BadInputError(
            path, record, key, f"expected an object or a list, got {type(value).__name__}", "wrong-type"
        )
    for movie_id, answers in pairs:
        if not isinstance(answers, dict):
            raise BadInputError(
                path, record, f"{key}.{movie_id}", f"expected an object, got {type(answers).__name__}", "wrong-type"
            )
        parsed: dict[str, bool | None] = {}
        for question in QUESTIONS:
            answer = answers.get(question, 2)
            # bool is an int in Python: a JSON true is not one of the release's codes.
            if isinstance(answer, bool) or answer not in ANSWERS:
                raise BadInputError(
                    path, record, f"{key}.{movie_id}.{question}", f"expected 0, 1 or 2, got {answer!r}", "wrong-value"
                )
            parsed[question] = ANSWERS[answer]
        yield movie_id, parsed


def _link(catalog: Catalog, movie_id: str, title: str) -> bool:
    """Whether the catalog knows the film; an unknown id is added from its title so the folder catalog has it.

    Adding merges the id into a catalog film of the same normalised title and year when there is one (a film
    the catalogs list under other ids), which counts as linked.
    """
    if movie_id in catalog:
        return True
    before = len(catalog)
    catalog.add(movie_id, title, source="redial_mentions")
    return len(catalog) == before


def _item_ids(dialogue: dict[str, Any]) -> Iterator[str]:
    for turn in dialogue["turns"]:
        for ref in turn["items"]:
            yield ref["item_id"]
    for row in dialogue["item_feedback"]:
        yield row["item_id"]
    for ref in dialogue["target_items"]:
        yield ref["item_id"]


def _id_order(item_id: str) -> tuple[int, int, str]:
    # ReDial ids numerically, then prefixed ids (ml:...) by prefix and number.
    prefix, _, number = item_id.rpartition(":")
    return (1 if prefix else 0, int(number) if number.isdigit() else 0, item_id)
