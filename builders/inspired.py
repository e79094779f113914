"""INSPIRED (Hayati et al., EMNLP 2020): movie recommendation dialogues annotated with sociable strategies.

Input: the release's ``dev.tsv`` / ``test.tsv`` / ``train.tsv`` (``data/dialog_data/``), or folders holding them.
One row is one utterance. The header of the real files differs from the release README: the strategy columns
are ``expert_label`` and ``second_label`` (README: ``first_label``), the outcome is ``fine_label`` with
``coarse_label`` beside it (README: ``case``), and ``movie_id`` is the YouTube id of the trailer the seeker was
shown. Either naming is accepted. ``list_of_dialog_ids_with_movie_id_all.tsv`` (``data/survey_data/``) is read
when it lies in an input folder or next to an input file, or when given as an input: it fills a missing outcome
or trailer id and adds the survey ids.

The release has no licence file: the builder may read it, but the files and folders built from it are for
local use and must not be shipped or published.

Mapping:

- split: ``dev`` -> validation, ``test`` -> test, ``train`` -> train (from the file name; ``split=`` / CLI
  ``--split`` overrides).
- rows are grouped by ``dialog_id`` and ordered by ``utt_id``; ``SEEKER`` -> ``user``, ``RECOMMENDER`` ->
  ``recommender``; each row is one turn (the release splits a speaker's message into sentences, kept apart).
- ``text``: the release writes every double quote as ``QUOTATION_MARK``; it is turned back into ``"``.
- ``movies`` ("Title (Year); Title (Year)", as the release's entity linker wrote them) -> ``turns[].items``,
  linked to the catalog by title and year (:meth:`crsdata.catalog.Catalog.link`); unlinked ones keep an empty id.
- strategies -> ``turns[].extra.strategy`` / ``second_strategy``; ``turns[].action`` from :data:`ACTION_RULES`:
  a recommender turn that names a movie with a persuasive strategy is ``recommend``, preference and experience
  questions are ``inquire``, anything else (and every seeker turn: the release labels only recommenders) ``none``.
- the dialogue's case (``fine_label``): ``accept_*`` -> ``outcome.end_reason`` ``accept``, ``reject`` ->
  ``reject``, none -> ``source``; ``extra.case`` keeps the label, ``extra.coarse_case`` the coarse one.
- recommended movie (``target_items``, and ``outcome.accepted_item`` for ``accept_*``): the release names it only
  by trailer id, and the id -> title table (``movie_database.tsv``) is not part of this input. It is inferred, see
  :func:`infer_recommended`, and ``extra.recommended_movie_rule`` says how each dialogue's was found.
  It is the dialogue's one target, the closest INSPIRED comes to ReDial's rule (a suggestion the seeker wanted):
  replay and the user simulator's accept labels judge against it only where the seeker did not reject it
  (a ``reject`` dialogue is skipped as ``target_rejected``: :func:`crsdata.simulate.replay.replay_target`).

Records (for read = kept + skipped + dropped) are dialogues. A row that is not UTF-8 or has the wrong number of
columns makes its whole dialogue bad (its ``dialog_id`` is read from the bytes before the first tab, or taken
from the row before when those bytes are damaged too), so that a dialogue is never kept with an utterance missing.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.build import (
    MAX_DUPLICATE_EXAMPLES,
    Builder,
    BuildResult,
    InputFile,
    LinkStats,
    input_files,
    resolve_split,
    split_from_name,
)
from crsdata.catalog import Catalog
from crsdata.errors import BadInputError, SkipLog
from crsdata.fileio import sha256_file
from crsdata.readers import read_tsv
from crsdata.schema import (
    Action,
    EndReason,
    Role,
    dump_extra,
    item_ref,
    load_extra,
    new_dialogue,
    new_turn,
    validate_dialogue,
)

SOURCE = "inspired"
SURVEY_FILE = "list_of_dialog_ids_with_movie_id_all.tsv"
DIALOGUE_FILES = ("train.tsv", "dev.tsv", "test.tsv")

SPEAKERS: dict[str, Role] = {"SEEKER": Role.USER, "RECOMMENDER": Role.RECOMMENDER}
# Canonical column -> the names it has in the real files and in the release README.
COLUMNS: dict[str, tuple[str, ...]] = {
    "dialog_id": ("dialog_id",),
    "utt_id": ("utt_id",),
    "speaker": ("speaker",),
    "text": ("text",),
    "movies": ("movies",),
    "strategy": ("expert_label", "first_label"),
    "case": ("fine_label", "case"),
}
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "turn_id": ("turn_id",),
    "text_with_placeholder": ("text_with_placeholder",),
    "genres": ("genres",),
    "people_names": ("people_names",),
    "second_strategy": ("second_label",),
    "coarse_case": ("coarse_label",),
    "trailer_id": ("movie_id",),
    "movie_dict": ("movie_dict",),
    "genre_dict": ("genre_dict",),
    "actor_dict": ("actor_dict",),
    "director_dict": ("director_dict",),
    "others_dict": ("others_dict",),
}
# Empty cells as the release writes them (pandas wrote missing values as "nan").
EMPTY = frozenset({"", "nan", "none", "n/a"})
QUOTE_TOKEN = "QUOTATION_MARK"

# Strategy -> action, as data: (strategy, turn names a movie) -> action. Persuasive strategies about a named movie
# are recommendations (the INSPIRED paper's recommendation strategies); questions about preferences or seen movies
# are inquiries, with or without a movie. Strategies not listed (acknowledgment, offer_help, personal_experience,
# self_modeling, similarity, no_strategy, and the persuasive ones without a movie) are not clearly one act: none.
ACTION_RULES: dict[tuple[str, bool], Action] = {
    ("encouragement", True): Action.RECOMMEND,
    ("credibility", True): Action.RECOMMEND,
    ("personal_opinion", True): Action.RECOMMEND,
    ("preference_confirmation", True): Action.RECOMMEND,
    ("transparency", True): Action.RECOMMEND,
    ("opinion_inquiry", True): Action.INQUIRE,
    ("opinion_inquiry", False): Action.INQUIRE,
    ("experience_inquiry", True): Action.INQUIRE,
    ("experience_inquiry", False): Action.INQUIRE,
    ("preference_confirmation", False): Action.INQUIRE,
    ("rephrase_preference", True): Action.INQUIRE,
    ("rephrase_preference", False): Action.INQUIRE,
}
CASE_END_REASONS: dict[str, EndReason] = {
    "accept_rating_good": EndReason.ACCEPT,
    "accept_rating_mod": EndReason.ACCEPT,
    "accept_uninterested": EndReason.ACCEPT,
    "accept_others": EndReason.ACCEPT,
    "reject": EndReason.REJECT,
}
# Survey trailer ids look like "<id>SPLIT155" or "REC_<id>SPLIT155SEEKER<answer>".
_SURVEY_TRAILER = re.compile(r"^(?:REC_)?(.+?)SPLIT\d+")


@dataclass
class _Dialogue:
    """Rows of one dialogue as read, before conversion."""

    dialog_id: str
    path: Path
    rel: str
    digest: str
    split: str
    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    error: BadInputError | None = None


@dataclass
class _Candidates:
    """What the recommended-movie inference needs from one converted dialogue."""

    record: dict[str, Any]
    trailer_id: str
    # surface title -> (number of recommender turns naming it, index of the last one, item ref)
    movies: dict[str, tuple[int, int, dict[str, str]]]


def infer_recommended(dialogues: list[_Candidates]) -> dict[int, tuple[dict[str, str], str]]:
    """The movie each dialogue recommended: ``id(record) -> (item ref, rule)``; dialogues without one are left out.

    The release names the recommended movie only by the id of its trailer. Rule, checked against the 10 dev
    dialogues whose recommended movie UserSimCRS annotated by hand (8 agree; the other two name it in a turn the
    release's entity linker missed or mislinked):

    1. candidates are the movies named in the dialogue's recommender turns;
    2. dialogues that showed the same trailer recommended the same film, so a candidate named by the recommender
       in more of the dialogues sharing the trailer id wins (rule ``trailer-vote``);
    3. then the candidate the recommender named most often, then the one named last (rule ``recommender-turns``);
    4. a dialogue whose recommender named no movie takes the film most often chosen (by 1-3) for the other
       dialogues with its trailer (rule ``trailer-vote-other-dialogues``); without one, or on a tie, it has none.
    """
    votes: dict[str, Counter[str]] = {}
    for dialogue in dialogues:
        if dialogue.trailer_id:
            votes.setdefault(dialogue.trailer_id, Counter()).update(dialogue.movies.keys())
    chosen: dict[int, tuple[dict[str, str], str]] = {}
    by_trailer: dict[str, Counter[str]] = {}
    refs: dict[str, dict[str, str]] = {}
    for dialogue in dialogues:
        if not dialogue.movies:
            continue
        group = votes.get(dialogue.trailer_id, Counter()) if dialogue.trailer_id else Counter()
        best = max(dialogue.movies, key=lambda t: (group[t], dialogue.movies[t][0], dialogue.movies[t][1]))
        decided_by_vote = any(group[t] < group[best] for t in dialogue.movies)
        ref = dialogue.movies[best][2]
        chosen[id(dialogue.record)] = (ref, "trailer-vote" if decided_by_vote else "recommender-turns")
        if dialogue.trailer_id:
            by_trailer.setdefault(dialogue.trailer_id, Counter())[best] += 1
            refs.setdefault(best, ref)
    for dialogue in dialogues:
        if dialogue.movies or dialogue.trailer_id not in by_trailer:
            continue
        ranked = by_trailer[dialogue.trailer_id].most_common(2)
        # A tie between the other dialogues' choices says nothing about this one.
        if len(ranked) == 1 or ranked[0][1] > ranked[1][1]:
            chosen[id(dialogue.record)] = (refs[ranked[0][0]], "trailer-vote-other-dialogues")
    return chosen


class InspiredBuilder(Builder):
    name = "inspired"
    description = (
        "INSPIRED: 1,001 English movie recommendation dialogues between a seeker and a recommender, collected on "
        "Amazon Mechanical Turk, with the recommender's sociable strategies annotated per utterance and whether "
        "the seeker accepted the recommended movie (after watching its trailer)."
    )
    license = "No licence stated by the release (github.com/sweetpeach/Inspired): local use only, do not ship"
    license_id = "other"
    pretty_name = "INSPIRED (crsdata)"
    citation = """@inproceedings{hayati-etal-2020-inspired,
  title = {{INSPIRED}: Toward Sociable Recommendation Dialog Systems},
  author = {Hayati, Shirley Anugrah and Kang, Dongyeop and Zhu, Qingxiaoyang and Shi, Weiyan and Yu, Zhou},
  booktitle = {Proceedings of the 2020 Conference on Empirical Methods in Natural Language Processing (EMNLP)},
  year = {2020},
  pages = {8142--8152}
}"""
    homepage = "https://github.com/sweetpeach/Inspired"
    input_help = (
        "INSPIRED's dev.tsv / test.tsv / train.tsv or the folder holding them (list_of_dialog_ids_with_movie_id_"
        "all.tsv is read when it lies beside them); --catalog files to link movie titles against"
    )

    NOTES = [
        "The INSPIRED release states no licence: build it for local use; do not publish the built folder.",
        "One row of the release is one turn (the release splits messages into sentences; consecutive turns of "
        "one speaker are kept apart). `QUOTATION_MARK` in the text is turned back into a double quote.",
        "Strategies (`expert_label`, `second_label`) are in `turns[].extra`; `turns[].action` maps them where the "
        "act is clear: a recommender turn naming a movie with encouragement, credibility, personal_opinion, "
        "preference_confirmation or transparency -> recommend; opinion/experience inquiries, preference "
        "confirmation without a movie and rephrase_preference -> inquire; the rest -> none.",
        "`outcome.end_reason`: accept for the accept_* cases, reject for reject (`extra.case` keeps the label).",
        "The recommended movie (`target_items`, and `outcome.accepted_item` when accepted) is inferred: the release "
        "names it only by trailer id. Rule: among movies named by the recommender, the one named in most "
        "dialogues that showed the same trailer, then the most often named, then the last named "
        "(`extra.recommended_movie_rule`); it agrees with 8 of 10 hand-annotated dev dialogues (UserSimCRS).",
        "The `items` config holds the catalog rows of the movies the dialogues name that link to the catalog.",
    ]

    def build(
        self, inputs: list[Path], *, catalogs: list[Path], skip: SkipLog, split: str | None = None
    ) -> BuildResult:
        """Reads INSPIRED files; ``split`` (CLI ``--split``) puts every dialogue file in that split."""
        if split is not None:
            split = resolve_split(split)
        catalog = Catalog.from_paths(catalogs)
        result = BuildResult(source=SOURCE, splits={}, skipped=skip, notes=list(self.NOTES), info=self.info())
        if not catalogs:
            result.notes.append("No catalog was given: no movie is linked (item ids are empty).")
        dialogue_files, survey_files = _classify(inputs)
        survey: dict[str, dict[str, str]] = {}
        for path, rel in survey_files:
            survey.update(_read_survey(path))
            result.inputs.append(InputFile(path=rel, sha256=sha256_file(path), records=0))

        seen: dict[str, str] = {}
        duplicates: list[str] = []
        converted: list[_Candidates] = []
        for path, rel in dialogue_files:
            file_split = split_from_name(path, split)
            digest = sha256_file(path)
            grouped = _read_dialogues(path, rel, digest, file_split)
            result.inputs.append(InputFile(path=rel, sha256=digest, records=len(grouped)))
            for dialogue in grouped:
                stats = LinkStats()
                try:
                    if dialogue.error is not None:
                        raise dialogue.error
                    candidates = self._convert(dialogue, survey.get(dialogue.dialog_id, {}), catalog, stats)
                except BadInputError as error:
                    skip.handle(error)
                    continue
                if dialogue.dialog_id in seen:
                    result.dropped["duplicate-dialog-id"] = result.dropped.get("duplicate-dialog-id", 0) + 1
                    if len(duplicates) < MAX_DUPLICATE_EXAMPLES:
                        duplicates.append(f"{dialogue.dialog_id} ({rel}; kept from {seen[dialogue.dialog_id]})")
                    continue
                seen[dialogue.dialog_id] = rel
                result.link_stats.mentions += stats.mentions
                result.link_stats.linked += stats.linked
                result.splits.setdefault(file_split, []).append(candidates.record)
                converted.append(candidates)

        dropped = result.dropped.get("duplicate-dialog-id", 0)
        if dropped:
            result.notes.append(
                f"{dropped} dialogue(s) dropped because their dialog_id was already read from an earlier file (the "
                f"first one is kept), for example: {'; '.join(duplicates)}."
            )
        chosen = infer_recommended(converted)
        referenced: list[str] = []
        for candidates in converted:
            record = candidates.record
            extra = load_extra(record["extra"])
            ref, rule = chosen.get(id(record), (None, "none"))
            extra["recommended_movie_rule"] = rule
            if ref is not None:
                record["target_items"] = [dict(ref)]
                if record["outcome"]["end_reason"] == EndReason.ACCEPT:
                    record["outcome"]["accepted_item"] = dict(ref)
            record["extra"] = dump_extra(extra)
            referenced.extend(r["item_id"] for t in record["turns"] for r in t["items"] if r["item_id"])
        result.items = catalog.rows(sorted(dict.fromkeys(referenced)))
        return result

    def _convert(self, dialogue: _Dialogue, survey: dict[str, str], catalog: Catalog, stats: LinkStats) -> _Candidates:
        path = dialogue.path
        record_name = f"dialog_id {dialogue.dialog_id}"
        numbered: list[tuple[int, int, dict[str, str]]] = []
        for line, row in dialogue.rows:
            utt = row["utt_id"].strip()
            if not utt.lstrip("-").isdigit():
                raise BadInputError(
                    path, f"line {line} ({record_name})", "utt_id", f"expected an integer, got {utt!r}", "wrong-type"
                )
            numbered.append((int(utt), line, row))
        numbered.sort(key=lambda entry: entry[0])
        for (first, line, _), (second, _, _) in zip(numbered, numbered[1:], strict=False):
            if first == second:
                raise BadInputError(
                    path, f"line {line} ({record_name})", "utt_id", f"utt_id {first} appears twice", "duplicate-id"
                )

        turns = []
        movies: dict[str, tuple[int, int, dict[str, str]]] = {}
        cases: Counter[str] = Counter()
        coarse: Counter[str] = Counter()
        trailers: Counter[str] = Counter()
        for utt_id, line, row in numbered:
            where = f"line {line} ({record_name})"
            speaker = row["speaker"].strip().upper()
            if speaker not in SPEAKERS:
                raise BadInputError(
                    path, where, "speaker", f"expected SEEKER or RECOMMENDER, got {row['speaker']!r}", "wrong-value"
                )
            role = SPEAKERS[speaker]
            # A title the entity linker wrote twice in one utterance is one mention (as in ReDial's turn items).
            items = [item_ref(catalog.link(title), title) for title in dict.fromkeys(_split_list(row["movies"]))]
            for ref in items:
                stats.add(bool(ref["item_id"]))
            strategy = _cell(row.get("strategy"))
            second = _cell(row.get("second_strategy"))
            action = ACTION_RULES.get((strategy, bool(items)), Action.NONE) if role == Role.RECOMMENDER else Action.NONE
            extra: dict[str, Any] = {"utt_id": utt_id}
            if _cell(row.get("turn_id")):
                extra["turn_id"] = int(row["turn_id"]) if row["turn_id"].strip().isdigit() else row["turn_id"]
            for name, value in (("strategy", strategy), ("second_strategy", second)):
                if value:
                    extra[name] = value
            for name, column in (("genres", "genres"), ("people", "people_names")):
                values = _split_list(row.get(column) or "")
                if values:
                    extra[name] = values
            if _cell(row.get("text_with_placeholder")):
                extra["text_with_placeholder"] = _unquote(row["text_with_placeholder"])
            turn = new_turn(len(turns), role, _unquote(row["text"]).strip(), action=action, items=items, extra=extra)
            turns.append(turn)
            if role == Role.RECOMMENDER:
                for ref in items:
                    count = movies.get(ref["title"], (0, 0, ref))[0]
                    movies[ref["title"]] = (count + 1, turn["index"], ref)
            for counter, column in ((cases, "case"), (coarse, "coarse_case"), (trailers, "trailer_id")):
                value = _cell(row.get(column))
                if value:
                    counter[value] += 1

        first_line = numbered[0][1]
        if len(cases) > 1:
            found = ", ".join(sorted(cases))
            raise BadInputError(
                path,
                f"line {first_line} ({record_name})",
                "fine_label",
                f"rows disagree on the case: {found}",
                "wrong-value",
            )
        case = next(iter(cases), "") or survey.get("fine_label", "")
        if case and case not in CASE_END_REASONS:
            raise BadInputError(
                path, f"line {first_line} ({record_name})", "fine_label", f"unknown case {case!r}", "wrong-value"
            )
        trailer = trailers.most_common(1)[0][0] if trailers else survey.get("trailer_id", "")
        extra = {"case": case, "coarse_case": coarse.most_common(1)[0][0] if coarse else survey.get("coarse_label", "")}
        extra["trailer_youtube_id"] = trailer
        for name in ("rec_survey_id", "seek_survey_id"):
            if survey.get(name):
                extra[name] = survey[name]
        first_row = numbered[0][2]
        for name, column in (
            ("movies_in_dialogue", "movie_dict"),
            ("genres_in_dialogue", "genre_dict"),
            ("actors_in_dialogue", "actor_dict"),
            ("directors_in_dialogue", "director_dict"),
            ("others_in_dialogue", "others_dict"),
        ):
            values = _dict_keys(first_row.get(column) or "")
            if values:
                extra[name] = values
        end_reason = CASE_END_REASONS.get(case, EndReason.SOURCE)
        record = new_dialogue(
            dialogue.dialog_id,
            SOURCE,
            dialogue.split,
            turns,
            outcome={"end_reason": str(end_reason)},
            provenance={"builder": self.name, "source_file": dialogue.rel, "source_sha256": dialogue.digest},
            extra=extra,
        )
        validate_dialogue(record, str(path), record_name)
        return _Candidates(record=record, trailer_id=trailer, movies=movies)


def _classify(inputs: list[Path]) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Dialogue files and survey files among the inputs (a folder stands for the release's files in it)."""
    dialogue_files: list[tuple[Path, str]] = []
    survey_files: list[tuple[Path, str]] = []
    for given in inputs:
        given = Path(given)
        if given.is_dir():
            found = [given / name for name in DIALOGUE_FILES if (given / name).is_file()]
            if not found:
                raise BadInputError(
                    given, "folder", "", f"none of {', '.join(DIALOGUE_FILES)} in this folder", "missing-file"
                )
            dialogue_files.extend((path, path.name) for path in found)
            if (given / SURVEY_FILE).is_file():
                survey_files.append((given / SURVEY_FILE, SURVEY_FILE))
            continue
        for path, rel in input_files([given], "*.tsv"):
            if path.name == SURVEY_FILE:
                survey_files.append((path, rel))
            else:
                dialogue_files.append((path, rel))
                beside = path.parent / SURVEY_FILE
                if beside.is_file():
                    survey_files.append((beside, SURVEY_FILE))
    unique_surveys = list({path.resolve(): (path, rel) for path, rel in survey_files}.values())
    return dialogue_files, unique_surveys


def _header(path: Path, line: bytes) -> dict[str, int]:
    """Canonical column -> position, from the header line; a missing required column is an error."""
    try:
        names = [name.strip() for name in line.decode("utf-8").lstrip("\ufeff").rstrip("\r").split("\t")]
    except UnicodeDecodeError as err:
        raise BadInputError(path, "line 1", "", f"header is not UTF-8 (byte {err.start})", "not-utf8") from None
    positions = {}
    for canonical, aliases in {**COLUMNS, **OPTIONAL_COLUMNS}.items():
        for alias in aliases:
            if alias in names:
                positions[canonical] = names.index(alias)
                break
        else:
            if canonical in COLUMNS:
                raise BadInputError(path, "line 1", aliases[0], "missing column in the header", "missing-field")
    positions["_width"] = len(names)
    return positions


def _read_dialogues(path: Path, rel: str, digest: str, split: str) -> list[_Dialogue]:
    """Rows grouped by dialogue in order of first appearance; a row that cannot be read marks its dialogue bad.

    The file is split into lines as bytes (not with :func:`crsdata.readers.read_tsv`) so that a line that is not
    UTF-8 can still be given to its dialogue instead of failing the whole file.
    """
    lines = Path(path).read_bytes().split(b"\n")
    if not lines or not lines[0].strip():
        raise BadInputError(path, "line 1", "", "empty file or missing header", "missing-field")
    columns = _header(path, lines[0])
    width = columns.pop("_width")
    dialogues: dict[str, _Dialogue] = {}
    offset = len(lines[0]) + 1
    previous = ""
    for number, raw in enumerate(lines[1:], start=2):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        try:
            dialog_id = raw.split(b"\t", 1)[0].decode("utf-8").strip() or f"<line {number}>"
        except UnicodeDecodeError:
            # The id itself is damaged: the release writes a dialogue's rows together, so the row belongs to the
            # dialogue of the row before (which is then skipped as a whole rather than kept incomplete).
            dialog_id = previous or raw.split(b"\t", 1)[0].decode("utf-8", errors="replace")
        previous = dialog_id
        dialogue = dialogues.setdefault(dialog_id, _Dialogue(dialog_id, path, rel, digest, split))
        where = f"line {number} (dialog_id {dialog_id})"
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as err:
            message = f"not UTF-8 (byte {start + err.start}: {err.reason})"
            dialogue.error = dialogue.error or BadInputError(path, where, "", message, "not-utf8")
            continue
        cells = text.split("\t")
        if len(cells) != width:
            message = f"expected {width} tab-separated columns, got {len(cells)}"
            dialogue.error = dialogue.error or BadInputError(path, where, "", message, "wrong-columns")
            continue
        dialogue.rows.append((number, {name: cells[position] for name, position in columns.items()}))
    return list(dialogues.values())


def _read_survey(path: Path) -> dict[str, dict[str, str]]:
    """dialog_id -> fine_label, coarse_label, trailer_id, survey ids, from the survey list."""
    out = {}
    for row in read_tsv(path):
        if not row.get("dialog_id"):
            raise BadInputError(path, f"line {row['line']}", "dialog_id", "missing required field", "missing-field")
        raw = (row.get("movie_id") or "").strip()
        match = _SURVEY_TRAILER.match(raw)
        out[row["dialog_id"].strip()] = {
            "fine_label": _cell(row.get("fine_label")),
            "coarse_label": _cell(row.get("coarse_label")),
            "trailer_id": match.group(1) if match else raw,
            "rec_survey_id": _cell(row.get("rec_survey_id")),
            "seek_survey_id": _cell(row.get("seek_survey_id")),
        }
    return out


def _cell(value: str | None) -> str:
    value = (value or "").strip()
    return "" if value.lower() in EMPTY else value


def _unquote(text: str) -> str:
    return text.replace(QUOTE_TOKEN, '"')


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if _cell(part)]


def _dict_keys(value: str) -> list[str]:
    """Keys of a cell holding a Python dict literal (``{'Joker (2019)': 0}``); [] when it is not one."""
    if not _cell(value):
        return []
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return []
    return [str(key) for key in parsed] if isinstance(parsed, dict) else []
