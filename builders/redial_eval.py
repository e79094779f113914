"""ReDial recommendation turns as iEvaLM processed them: the test set of LLM-based CRS evaluation (iEvaLM, GRSU).

Input: iEvaLM's ``test_data_processed.jsonl`` / ``valid_data_processed.jsonl`` (``data/redial_eval/`` of
RUCAIBox/iEvaLM-CRS), or folders holding ``*.jsonl`` files. One line is one recommendation turn of a ReDial
dialogue: ``dialog_id``, ``turn_id``, ``context`` (the utterances before the turn, oldest first), ``entity``
(entities linked in the context: "Title (Year)" for movies, bare names for genres and people), ``rec`` (the movies
the recommender names in the turn, "Title (Year)"), ``resp`` (the recommender's utterance) and ``template``.

Mapping (one line -> one dialogue of the crsdata schema, a *turn sample*):

- ``dialogue_id`` = ``<dialog_id>-<turn_id>``; the same pair on a later line or file is dropped and counted.
- split: from the words of the file name (``test`` -> test, ``valid`` -> validation), or ``--split``.
- ``turns``: the ``context`` utterances. The releases' contexts always have an odd length and end with the
  seeker, so position ``i`` is the seeker (``user``) when ``i`` is even and the ``recommender`` when odd; an empty
  utterance (iEvaLM pads a dialogue that the recommender opened with ``""``) is left out but keeps the roles of
  the others. Movie entities ("Title (Year)") that occur in an utterance become its ``turns[].items``, linked to
  the catalog by title and year; other entities (genres, people) go to ``turns[].extra.entities``.
- ``target_items``: the ``rec`` movies, linked to the catalog (an unlinked one keeps an empty id).
- ``extra``: ``sample`` = ``"recommendation-turn"`` (the dialogue *is* the context of one recommendation, and
  ``target_items`` is what was recommended next, which ``crsdata crs-eval`` reads), ``conversation_id``,
  ``turn_id`` and ``response`` (``resp``).

The ``items`` config is the whole catalog given with ``--catalog`` (at least one is required): it is the set of
candidates a CRS ranks, as in iEvaLM and GRSU, not only the movies these turns mention.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from crsdata.build import Builder, BuildResult, LinkStats, read_jsonl_dialogues, resolve_split
from crsdata.catalog import Catalog
from crsdata.errors import BadInputError, SkipLog
from crsdata.readers import require
from crsdata.schema import Role, item_ref, new_dialogue, new_turn, validate_dialogue
from crsdata.titles import collapse_whitespace

SOURCE = "redial-eval"
# dialogue.extra["sample"] of a turn sample: the dialogue is the context of one recommendation, target_items is it.
TURN_SAMPLE = "recommendation-turn"
_MOVIE = re.compile(r"\(\d{4}\)$")


class RedialEvalBuilder(Builder):
    name = "redial-eval"
    pretty_name = "ReDial recommendation turns, iEvaLM processing (crsdata)"
    description = (
        "ReDial recommendation turns as processed by iEvaLM-CRS (and evaluated by GRSU): for each turn in which "
        "the recommender names movies, the conversation before it and the movies it names. The standard test "
        "set of LLM-based conversational recommenders on ReDial (3,341 test turns)."
    )
    license = "ReDial: CC BY 4.0; iEvaLM's processing and catalog: MIT"
    license_id = "cc-by-4.0"
    citation = """@inproceedings{wang-etal-2023-rethinking,
  title = {Rethinking the Evaluation for Conversational Recommendation in the Era of Large Language Models},
  author = {Wang, Xiaolei and Tang, Xinyu and Zhao, Xin and Wang, Jingyuan and Wen, Ji-Rong},
  booktitle = {Proceedings of the 2023 Conference on Empirical Methods in Natural Language Processing},
  year = {2023}
}"""
    homepage = "https://github.com/RUCAIBox/iEvaLM-CRS"
    input_help = (
        "iEvaLM's redial_eval *_data_processed.jsonl files (dialog_id, turn_id, context, entity, rec, resp) or "
        "folders holding them; --catalog redial__id2info.json is required (it is the candidate set)"
    )

    NOTES = [
        "Each dialogue is one recommendation turn (`extra.sample` = `recommendation-turn`): `turns` is the "
        "conversation before it, `target_items` the movies the recommender named in it, `extra.response` its text.",
        "Roles follow position in iEvaLM's context (even: user, odd: recommender); iEvaLM's empty padding "
        "utterance is left out.",
        "The `items` config is the whole catalog given to the build: the candidates a recommender ranks.",
    ]

    def build(
        self, inputs: list[Path], *, catalogs: list[Path], skip: SkipLog, split: str | None = None
    ) -> BuildResult:
        """Reads processed turn files; ``split`` (CLI ``--split``) puts every input in that split."""
        if not catalogs:
            raise BadInputError(
                "--catalog", "", "", "redial-eval needs the item catalog (redial__id2info.json), the candidate set"
            )
        if split is not None:
            split = resolve_split(split)
        catalog = Catalog.from_paths(catalogs)
        result = BuildResult(source=SOURCE, splits={}, skipped=skip, notes=list(self.NOTES), info=self.info())
        duplicates = read_jsonl_dialogues(
            result,
            inputs,
            skip,
            lambda obj, path, rel, digest, file_split, line, stats: self._convert(
                obj, path, rel, digest, file_split, line, catalog, stats
            ),
            split=split,
            duplicate_reason="duplicate-turn",
        )
        if duplicates:
            result.notes.append(
                f"{result.dropped['duplicate-turn']} turn(s) dropped because their (dialog_id, turn_id) was already "
                f"read (the first one is kept), for example: {'; '.join(duplicates)}."
            )
        result.items = catalog.rows()
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
        stats: LinkStats,
    ) -> dict[str, Any]:
        record = f"line {line}"
        dialog_id = str(require(obj, "dialog_id", (str, int), path, record))
        turn_id = require(obj, "turn_id", int, path, record)
        record = f"line {line} (dialog_id {dialog_id}, turn_id {turn_id})"
        context = require(obj, "context", list, path, record)
        recommended = require(obj, "rec", list, path, record)
        entities = obj.get("entity") or []
        for name, values in (("context", context), ("rec", recommended), ("entity", entities)):
            bad = next((i for i, v in enumerate(values) if not isinstance(v, str)), None)
            if bad is not None:
                kind = type(values[bad]).__name__
                raise BadInputError(path, record, f"{name}[{bad}]", f"expected a string, got {kind}", "wrong-type")
        if not recommended:
            raise BadInputError(path, record, "rec", "empty: a recommendation names at least one movie", "no-target")
        if not any(text.strip() for text in context):
            raise BadInputError(path, record, "context", "no utterance before the recommendation", "empty-context")
        movies = [collapse_whitespace(e) for e in dict.fromkeys(entities) if _MOVIE.search(e.strip())]
        others = [e for e in dict.fromkeys(entities) if not _MOVIE.search(e.strip())]

        turns = []
        for position, text in enumerate(context):
            if not text.strip():
                continue
            clean = collapse_whitespace(text)
            role = Role.USER if position % 2 == 0 else Role.RECOMMENDER
            found = sorted((clean.find(m), m) for m in movies if m in clean)
            items = [item_ref(catalog.link(title) or "", title) for _, title in found]
            named = [e for e in others if e in text]
            turns.append(new_turn(len(turns), role, clean, items=items, extra={"entities": named} if named else None))

        targets = []
        for title in dict.fromkeys(collapse_whitespace(t) for t in recommended):
            item_id = catalog.link(title) or ""
            stats.add(bool(item_id))
            targets.append(item_ref(item_id, title))
        dialogue = new_dialogue(
            f"{dialog_id}-{turn_id}",
            SOURCE,
            split,
            turns,
            target_items=targets,
            provenance={"builder": self.name, "source_file": rel, "source_sha256": digest},
            extra={
                "sample": TURN_SAMPLE,
                "conversation_id": dialog_id,
                "turn_id": turn_id,
                "response": obj.get("resp") or "",
            },
        )
        validate_dialogue(dialogue, str(path), record)
        return dialogue
