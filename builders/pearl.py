"""PEARL: persona- and knowledge-grounded movie recommendation dialogues (Kim et al., ACL Findings 2024).

PEARL is published only on the Hugging Face Hub (dataset ``DLI-Lab/pearl``, CC BY 4.0, files ``train.json``,
``valid.json``, ``test.json``), which the machines this builder was written on cannot reach. **This builder is
tested only on hand-written records** (``tests/data/pearl/``) that follow the release format as these public
sources describe it:

- the Hub repository listing of ``DLI-Lab/pearl`` (three JSON files; the viewer shows splits train 50k,
  validation 5k, test 2.28k rows; the card's "Dataset Structure" section says only "TBA");
- public code that reads the release files: each file is one JSON array; a record has ``user_persona`` (text),
  ``dialogue`` (a list of strings, each ``"Seeker: ..."`` or ``"Recommender: ..."``, some of them empty),
  ``gt_movie_title`` (the target, ``""`` for a few records) and ``seen_movie_titles`` (the watched movies the
  persona was built from);
- PEARL's generation code (github.com/kkmjkim/PEARL): the persona is the user's reviews of the watched movies
  joined with blank lines, in the order of ``seen_movie_titles``; the target's knowledge text ``gt_abstract``
  reads ``Title: ...`` / ``Genre: ...`` / ``Director: ...`` / ``Cast: ...`` / ``Review: ...``; records carry
  ``data_id`` and ``user_id``; the seeker ends a dialogue with ``[EOD]`` when it accepts the target;
- the Interplay paper (section 3.3, 4.1): persona = general preferences, three watched movies with reviews,
  and target attributes taken from the target's review without naming it.

Fields this builder has not seen in a real file (``data_id``, ``user_id``, ``gt_abstract``, ``gt_genre``,
``gt_director``, ``gt_cast``, ``seen_abstracts``) are used when present and not required. Real PEARL runs happen
where the Hub is reachable; if the real files differ, the errors below name the file, record and field.

Mapping:

- input: ``*.json`` (one JSON array, or JSON lines) and ``*.jsonl`` files, or folders holding them; the split
  comes from the file name: ``train``, ``valid``/``validation``/``dev`` -> ``validation``, ``test`` (the rule
  of the ReDial builder, shared); ``split=`` (CLI ``--split``) overrides it.
- ``dialogue`` lines -> turns: ``Seeker`` -> ``user``, ``Recommender`` -> ``recommender``. Empty lines are left
  out (counted in ``extra.empty_lines``), and so are lines with a prefix and nothing after it; a line with
  neither prefix is bad input naming ``dialogue[i]``.
  ``[EOD]`` is removed from the text and flagged in turn ``extra.eod``.
- ``user_persona`` -> ``user_profile.general_preferences``. Watched items: ``seen_abstracts`` (title + review)
  when the record has it; else ``seen_movie_titles`` paired with the persona's blank-line separated paragraphs
  when their counts agree (the generator's layout); else titles without reviews.
- ``gt_movie_title`` -> ``target_items`` (catalog id when ``--catalog`` is given and the title links): the
  dialogue's one target, as in Interplay's protocol (replay skips a dialogue whose target did not link).
  ``gt_abstract`` (or ``gt_genre``/``gt_director``/``gt_cast``) -> ``user_profile.target_attributes`` without the
  ``Title:`` line; the target's title is replaced by "this movie" in that text.
- a turn that names the target gets it in ``turns[].items``. Titles are matched case-sensitively, with or
  without the year; titles under four characters only with the year, so "Up (2009)" is found but "up" is not.
- ``outcome.end_reason``: ``accept`` when the last seeker line carries ``[EOD]`` (the accepted item is the target
  when the recommender turn before names it), else ``source``.
- ``dialogue_id``: ``data_id`` when present, else ``<file path below the input, no suffix>-<position in file>``
  (``test-0`` for the first record of ``test.json``); a repeated id is dropped
  (``dropped["duplicate-id"]``).
- other record fields go to ``extra``, except the generator's bulky prompt and retrieval logs (``user_sim``,
  ``rec_sim``, ``*_input``, ``prediction``, ``prediction_str``, ``turn_<n>``), which repeat the dialogue.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from crsdata.build import Builder, BuildResult, InputFile, LinkStats, resolve_split, split_from_name
from crsdata.catalog import load_catalog
from crsdata.errors import BadInputError, SkipLog
from crsdata.fileio import sha256_file
from crsdata.readers import iter_jsonl, json_error_message, read_text, require
from crsdata.schema import EndReason, Role, item_ref, new_dialogue, new_turn, validate_dialogue
from crsdata.titles import split_year

SOURCE = "pearl"

SPEAKERS: dict[str, Role] = {"seeker": Role.USER, "recommender": Role.RECOMMENDER}
_LINE = re.compile(r"\s*(seeker|recommender)\s*:\s?(.*)", re.IGNORECASE | re.DOTALL)
EOD = "[EOD]"
_ATTRIBUTE_LINE = re.compile(r"^\s*(title|genres?|directors?|cast|review)\s*:\s*(.*)$", re.IGNORECASE)
_BULKY = re.compile(r"user_sim(_input)?|rec_sim(_input)?|prediction(_str)?|turn_\d+")
MASK = "this movie"
MIN_TITLE_LENGTH = 4


class _Catalog(Protocol):
    def link(self, title: str) -> str | None: ...

    def get(self, item_id: str) -> dict[str, Any] | None: ...


def title_pattern(title: str) -> re.Pattern[str] | None:
    """How a title is found in text: case-sensitive (titles are written capitalised; "Heat" must not match
    "the heat"), with or without its year; a title shorter than :data:`MIN_TITLE_LENGTH` only with its year
    ("Up (2009)", never "up"), and not at all when it has none."""
    name, released = split_year(title)
    year = r"\s*\(\s*\d{4}\s*\)"
    if len(name) >= MIN_TITLE_LENGTH:
        return re.compile(rf"(?<!\w){re.escape(name)}(?:{year})?(?!\w)")
    if name and released is not None:
        return re.compile(rf"(?<!\w){re.escape(name)}{year}")
    return None


def mentions(text: str, title: str) -> bool:
    pattern = title_pattern(title)
    return pattern is not None and pattern.search(text) is not None


def mask_title(text: str, title: str) -> str:
    pattern = title_pattern(title)
    return text if pattern is None else pattern.sub(MASK, text)


def target_attributes(record: dict[str, Any], title: str) -> tuple[str, str]:
    """(attribute text without the target's title, the title the knowledge text names)."""
    raw = record.get("gt_abstract")
    lines: list[str] = []
    named = ""
    if isinstance(raw, dict):  # the generator's input layout: title, abstract, genres, director, cast
        named = str(raw.get("title") or "")
        for label, key in (("Genre", "genres"), ("Director", "director"), ("Cast", "cast")):
            value = raw.get(key)
            if value:
                lines.append(f"{label}: {', '.join(map(str, value)) if isinstance(value, list) else value}")
        if raw.get("abstract"):
            lines.append(f"Review: {str(raw['abstract']).strip()}")
    elif isinstance(raw, str) and raw.strip():
        parsed = [_ATTRIBUTE_LINE.match(line) for line in raw.strip().splitlines()]
        if parsed and parsed[0] is not None:
            # "Key: value" lines; a line without a key continues the previous value (multi-line reviews).
            for match, line in zip(parsed, raw.strip().splitlines(), strict=True):
                if match is not None and match.group(1).lower() == "title":
                    named = match.group(2).strip()
                elif match is not None or not lines:
                    lines.append(line.strip())
                else:
                    lines[-1] += "\n" + line
        else:
            lines.append(raw.strip())
    else:
        for label, key in (("Genre", "gt_genre"), ("Director", "gt_director"), ("Cast", "gt_cast")):
            if isinstance(record.get(key), str) and record[key].strip():
                lines.append(f"{label}: {record[key].strip()}")
    text = "\n".join(lines)
    for name in {title, named} - {""}:
        text = mask_title(text, name)
    return text, named


class _Linker:
    """Links titles to catalog ids (cached: PEARL repeats titles) and collects the linked catalog rows."""

    def __init__(self, catalog: _Catalog | None) -> None:
        self.catalog = catalog
        self.cache: dict[str, str] = {}
        self.items: dict[str, dict[str, Any]] = {}

    def link(self, title: str) -> str:
        if self.catalog is None:
            return ""
        if title not in self.cache:
            item_id = self.catalog.link(title) or ""
            self.cache[title] = item_id
            if item_id and item_id not in self.items:
                row = self.catalog.get(item_id)
                if row is not None:
                    self.items[item_id] = row
        return self.cache[title]


def count_links(record: dict[str, Any], stats: LinkStats) -> None:
    """Adds every item reference of a kept dialogue (target, watched items, turn mentions) to ``stats``."""
    refs = [*record["target_items"], *record["user_profile"]["watched_items"]]
    refs += [ref for turn in record["turns"] for ref in turn["items"]]
    for ref in refs:
        stats.add(bool(ref["item_id"]))


class PearlBuilder(Builder):
    name = "pearl"
    pretty_name = "PEARL (crsdata)"
    description = (
        "PEARL: movie recommendation dialogues between LLM simulators grounded in real users' IMDb reviews "
        "(seeker persona from the user's reviews of watched movies, recommender knowledge from movie reviews). "
        "Built from the public release format; see the builder's notes on how that format was established."
    )
    license = "CC BY 4.0 (Hugging Face dataset DLI-Lab/pearl)"
    license_id = "cc-by-4.0"
    citation = """@inproceedings{kim-etal-2024-pearl,
  title = {Pearl: A Review-driven Persona-Knowledge Grounded Conversational Recommendation Dataset},
  author = {Kim, Minjin and Kim, Minju and Kim, Hana and Kwak, Beong-woo and Kang, SeongKu and Yu, Youngjae
            and Yeo, Jinyoung and Lee, Dongha},
  booktitle = {Findings of the Association for Computational Linguistics: ACL 2024},
  year = {2024},
  pages = {1105--1120}
}"""
    homepage = "https://huggingface.co/datasets/DLI-Lab/pearl"
    input_help = (
        "PEARL's release files (train.json, valid.json, test.json of the Hugging Face dataset DLI-Lab/pearl) or a "
        "folder holding them; .jsonl files are read too, and the split comes from the file name"
    )

    NOTES = [
        "PEARL support was written against the public release format (Hub listing of DLI-Lab/pearl, code that "
        "reads its files, PEARL's generation code) and tested on hand-written records only; no PEARL file was "
        "available when the builder was written.",
        "Splits as released: train, validation (valid.json), test.",
        "`user_profile.target_attributes` is the target's genre, director, cast and review from `gt_abstract` "
        "with the title line removed and the title replaced by 'this movie'.",
        "`outcome.end_reason` is `accept` when the seeker's last line carries PEARL's [EOD] token, else `source`.",
    ]

    def build(
        self, inputs: list[Path], *, catalogs: list[Path], skip: SkipLog, split: str | None = None
    ) -> BuildResult:
        """Reads PEARL files; ``split`` (CLI ``--split``) puts every input in that split."""
        override = resolve_split(split) if split is not None else None
        notes = list(self.NOTES)
        if override:
            notes[1] = f"Splits: every input file was put in `{override}` (--split)."
        result = BuildResult(source=SOURCE, splits={}, skipped=skip, notes=notes, info=self.info())
        linker = _Linker(load_catalog(catalogs))
        seen_ids: set[str] = set()
        for path, rel in self._files([Path(p) for p in inputs]):
            file_split = split_from_name(path, override)
            digest = sha256_file(path)
            skipped_before = skip.total
            parsed = 0
            bad_parsed = 0
            for position, record_name, obj in self._records(path, skip):
                parsed += 1
                try:
                    record = self._convert(obj, path, rel, digest, file_split, position, record_name, linker)
                except BadInputError as err:
                    bad_parsed += 1
                    skip.handle(err)
                    continue
                if record["dialogue_id"] in seen_ids:
                    result.dropped["duplicate-id"] = result.dropped.get("duplicate-id", 0) + 1
                    continue
                seen_ids.add(record["dialogue_id"])
                result.splits.setdefault(file_split, []).append(record)
                count_links(record, result.link_stats)
            # Records read = those parsed + the lines (or whole file) that could not be parsed, which only
            # ``skip`` saw; skips of parsed records are already among ``parsed``.
            unparsed = skip.total - skipped_before - bad_parsed
            result.inputs.append(InputFile(rel, digest, parsed + unparsed))
        result.items = list(linker.items.values())
        return result

    @staticmethod
    def _files(inputs: list[Path]) -> list[tuple[Path, str]]:
        """(file, path relative to the input given) for every JSON or JSON-lines file, each once."""
        out: list[tuple[Path, str]] = []
        seen: set[Path] = set()
        for given in inputs:
            if given.is_dir():
                found = sorted(p for p in given.rglob("*") if p.suffix in {".json", ".jsonl"} and p.is_file())
                if not found:
                    raise BadInputError(given, "", "", "no .json or .jsonl files in this folder", "not-found")
                pairs = [(p, p.relative_to(given).as_posix()) for p in found]
            elif given.is_file():
                pairs = [(given, given.name)]
            else:
                raise BadInputError(given, "", "", "no such file or folder", "not-found")
            for path, rel in pairs:
                if path.resolve() not in seen:
                    seen.add(path.resolve())
                    out.append((path, rel))
        return out

    @staticmethod
    def _records(path: Path, skip: SkipLog) -> Iterator[tuple[int, str, Any]]:
        """Yields ``(position, record name, object)``; unreadable files and lines go to ``skip``.

        ``position`` is the index in a JSON array or the 0-based line of a JSON-lines file, so the fallback
        dialogue ids do not move when a bad line elsewhere is fixed.
        """
        if path.suffix != ".jsonl":
            try:
                text = read_text(path)
            except BadInputError as err:
                skip.handle(err)
                return
        if path.suffix == ".jsonl" or not text.lstrip().startswith("["):
            for line, obj in iter_jsonl(path, skip):
                yield line - 1, f"line {line}", obj
            return
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            message = json_error_message(err)
            skip.handle(BadInputError(path, f"line {err.lineno}", "", message, "invalid-json"))
            return
        for position, obj in enumerate(data):
            yield position, f"record {position}", obj

    def _convert(
        self,
        obj: Any,
        path: Path,
        rel: str,
        digest: str,
        split: str,
        position: int,
        rid: str,
        linker: _Linker,
    ) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise BadInputError(path, rid, "", f"expected a JSON object, got {type(obj).__name__}", "wrong-type")
        if "data_id" in obj and obj["data_id"] is not None:
            rid = f"{rid} (data_id {obj['data_id']})"
        # The generator's raw output names the dialogue "prediction"; the release names it "dialogue".
        key = "dialogue" if "dialogue" in obj or "prediction" not in obj else "prediction"
        lines = require(obj, key, list, path, rid)
        persona = obj.get("user_persona") or ""
        if not isinstance(persona, str):
            raise BadInputError(
                path, rid, "user_persona", f"expected a string, got {type(persona).__name__}", "wrong-type"
            )
        title = obj.get("gt_movie_title") or ""
        if not isinstance(title, str):
            raise BadInputError(
                path, rid, "gt_movie_title", f"expected a string, got {type(title).__name__}", "wrong-type"
            )
        attributes, named = target_attributes(obj, title.strip())
        title = title.strip() or named
        target_id = linker.link(title) if title else ""

        turns: list[dict[str, Any]] = []
        empty = 0
        eod_last_seeker = False
        for i, line in enumerate(lines):
            if not isinstance(line, str):
                raise BadInputError(
                    path, rid, f"{key}[{i}]", f"expected a string, got {type(line).__name__}", "wrong-type"
                )
            if not line.strip():
                empty += 1
                continue
            match = _LINE.fullmatch(line)
            if match is None:
                shown = line if len(line) <= 60 else line[:57] + "..."
                raise BadInputError(
                    path,
                    rid,
                    f"{key}[{i}]",
                    f"neither 'Seeker:' nor 'Recommender:' at the start of {shown!r}",
                    "bad-line",
                )
            role = SPEAKERS[match.group(1).lower()]
            text = match.group(2)
            extra: dict[str, Any] = {}
            if EOD in text:
                text = text.replace(EOD, "")
                extra["eod"] = True
            text = text.strip()
            if not text and not extra:  # "Seeker:" with nothing said: as empty as an empty line
                empty += 1
                continue
            items = []
            if title and mentions(text, title):
                items = [item_ref(target_id, title)]
            turns.append(new_turn(len(turns), role, text, items=items, extra=extra))
            if role == Role.USER:
                eod_last_seeker = bool(extra)
        if not turns:
            raise BadInputError(path, rid, key, "no utterances", "empty-dialogue")
        watched = self._watched(obj, persona, path, rid, linker)
        outcome: dict[str, Any] = {"end_reason": EndReason.SOURCE.value}
        if eod_last_seeker:
            outcome["end_reason"] = EndReason.ACCEPT.value
            last_seeker = max(i for i, t in enumerate(turns) if t["role"] == Role.USER)
            before = [t for t in turns[:last_seeker] if t["role"] == Role.RECOMMENDER]
            if title and before and before[-1]["items"]:
                outcome["accepted_item"] = item_ref(target_id, title)

        consumed = {key, "user_persona", "gt_movie_title", "seen_movie_titles", "seen_abstracts", "gt_abstract"}
        consumed |= {"gt_genre", "gt_director", "gt_cast"}
        extra = {k: v for k, v in obj.items() if k not in consumed and not _BULKY.fullmatch(k)}
        if empty:
            extra["empty_lines"] = empty
        # Without a data_id: the file's path below the input (without suffix) and the position in the file.
        fallback = f"{rel.rsplit('.', 1)[0]}-{position}"
        dialogue_id = str(obj["data_id"]) if obj.get("data_id") is not None else fallback
        record = new_dialogue(
            dialogue_id,
            SOURCE,
            split,
            turns,
            user_profile={
                "general_preferences": persona.strip(),
                "watched_items": watched,
                "target_attributes": attributes,
            },
            target_items=[item_ref(target_id, title)] if title else [],
            outcome=outcome,
            provenance={"source_file": rel, "source_sha256": digest},
            extra=extra,
        )
        validate_dialogue(record, str(path), rid)
        return record

    @staticmethod
    def _watched(obj: dict[str, Any], persona: str, path: Path, rid: str, linker: _Linker) -> list[dict[str, str]]:
        """Watched movies with the user's review, from ``seen_abstracts`` or titles + persona paragraphs."""
        pairs: list[tuple[str, str]] = []
        if isinstance(obj.get("seen_abstracts"), list):
            for i, entry in enumerate(obj["seen_abstracts"]):
                if not isinstance(entry, dict) or not isinstance(entry.get("title"), str):
                    raise BadInputError(path, rid, f"seen_abstracts[{i}].title", "expected a title", "wrong-type")
                pairs.append((entry["title"], str(entry.get("abstract") or "").strip()))
        elif obj.get("seen_movie_titles") is not None:
            titles = require(obj, "seen_movie_titles", list, path, rid)
            for i, t in enumerate(titles):
                if not isinstance(t, str):
                    raise BadInputError(path, rid, f"seen_movie_titles[{i}]", "expected a title string", "wrong-type")
            # The generator joined one review per watched movie with a blank line, in this order.
            paragraphs = [p.strip() for p in re.split(r"\n\s*\n", persona) if p.strip()]
            reviews = paragraphs if len(paragraphs) == len(titles) else [""] * len(titles)
            pairs = list(zip(titles, reviews, strict=True))
        return [{**item_ref(linker.link(t.strip()), t.strip()), "review": review} for t, review in pairs if t.strip()]
