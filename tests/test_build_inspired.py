"""The INSPIRED builder on the real dev/test files, and on bad input written to temporary files."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from crsdata.build import BuildResult
from crsdata.builders import BUILDERS
from crsdata.builders.inspired import SURVEY_FILE, InspiredBuilder
from crsdata.catalog import Catalog
from crsdata.errors import BadInputError, SkipLog
from crsdata.fileio import sha256_file
from crsdata.schema import load_extra, validate_dialogue

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
INSPIRED = DATA / "inspired"
pytestmark = pytest.mark.skipif(
    not (INSPIRED / "dev.tsv").is_file(), reason=f"INSPIRED data not found under {INSPIRED}"
)

ACCEPTED = "20191202-103716_425_live.pkl"  # dev, accept_rating_good, Full Metal Jacket recommended
REJECTED = {"20200227-121301_95_live.pkl": "validation", "20191201-074524_208_live.pkl": "test"}
# Measured with the five shared catalog files: 741 of 1,067 mentions (0.694). INSPIRED's movies are largely
# late-2019 releases that the 2017-2019 catalogs do not list, and its entity linker adds false mentions
# ("Accept (2016)" for "I accept").
LINK_RATE_FLOOR = 0.65


def real_rows(name: str) -> list[dict[str, str]]:
    with open(INSPIRED / name, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture(scope="module")
def build() -> tuple[BuildResult, float]:
    started = time.perf_counter()
    result = InspiredBuilder().build([INSPIRED], catalogs=Catalog.default_paths(DATA), skip=SkipLog())
    return result, time.perf_counter() - started


def by_id(result: BuildResult) -> dict[str, dict]:
    return {d["dialogue_id"]: d for rows in result.splits.values() for d in rows}


def test_registered() -> None:
    assert BUILDERS["inspired"] is InspiredBuilder


def test_counts_splits_provenance(build: tuple[BuildResult, float]) -> None:
    result, elapsed = build
    print(f"inspired: built in {elapsed:.2f}s; link stats {result.link_stats.as_dict()}")
    dev, test = real_rows("dev.tsv"), real_rows("test.tsv")
    assert len({r["dialog_id"] for r in dev}) == 99 and len({r["dialog_id"] for r in test}) == 99
    assert {split: len(rows) for split, rows in result.splits.items()} == {"validation": 99, "test": 99}
    assert result.accounting() == {"read": 198, "kept": 198, "skipped": 0, "dropped": 0, "balanced": True}
    # One turn per utterance row.
    assert sum(len(d["turns"]) for d in result.splits["validation"]) == len(dev) == 3538
    assert sum(len(d["turns"]) for d in result.splits["test"]) == len(test) == 3438
    inputs = {f.path: f for f in result.inputs}
    assert inputs["dev.tsv"].sha256 == sha256_file(INSPIRED / "dev.tsv") and inputs["dev.tsv"].records == 99
    assert inputs[SURVEY_FILE].records == 0  # read for outcomes and trailer ids, holds no dialogue
    for dialogue in by_id(result).values():
        validate_dialogue(dialogue)
        assert dialogue["provenance"]["source_file"] in {"dev.tsv", "test.tsv"}
        assert all("QUOTATION_MARK" not in t["text"] for t in dialogue["turns"])
        indices = [load_extra(t["extra"])["utt_id"] for t in dialogue["turns"]]
        assert indices == sorted(indices)
    assert result.info["license_id"] == "other" and "do not" in result.info["license"]
    assert elapsed < 20  # a few seconds when the machine is not shared; a guard against slow regressions


def test_link_rate(build: tuple[BuildResult, float]) -> None:
    stats = build[0].link_stats
    rows = real_rows("dev.tsv") + real_rows("test.tsv")
    mentions = sum(len({m.strip() for m in r["movies"].split(";") if m.strip()}) for r in rows)
    print(f"inspired: link rate {stats.rate:.3f} ({stats.linked} of {stats.mentions} mentions)")
    assert stats.mentions == mentions
    assert stats.rate >= LINK_RATE_FLOOR
    linked = {ref["item_id"] for d in by_id(build[0]).values() for t in d["turns"] for ref in t["items"]} - {""}
    assert linked == {row["item_id"] for row in build[0].items}


def test_accept_case(build: tuple[BuildResult, float]) -> None:
    dialogue = by_id(build[0])[ACCEPTED]
    assert dialogue["split"] == "validation"
    extra = load_extra(dialogue["extra"])
    assert extra["case"] == "accept_rating_good" and extra["trailer_youtube_id"] == "Ks_MbPPkhmA"
    assert extra["rec_survey_id"]  # from the survey list beside the dialogue files
    full_metal_jacket = dialogue["outcome"]["accepted_item"]
    assert full_metal_jacket["title"] == "Full Metal Jacket (1987)"
    row = next(r for r in build[0].items if r["item_id"] == full_metal_jacket["item_id"])
    assert (row["title"], row["year"], row["imdb_id"]) == ("Full Metal Jacket", 1987, "tt0093058")
    assert dialogue["outcome"]["end_reason"] == "accept"
    assert dialogue["target_items"] == [full_metal_jacket]
    turns = dialogue["turns"]
    assert turns[0]["role"] == "recommender" and turns[1]["role"] == "user"
    assert turns[12]["text"] == 'I guess the "future" portrayed seemed a little dated'
    recommend = turns[15]
    assert recommend["text"] == "Full Metal Jacket" and recommend["action"] == "recommend"
    assert load_extra(recommend["extra"])["strategy"] == "encouragement"
    assert recommend["items"] == [full_metal_jacket]
    assert turns[2]["action"] == "inquire"  # opinion_inquiry
    assert turns[0]["action"] == "none"  # no_strategy
    assert all(t["action"] == "none" for t in turns if t["role"] == "user")


def test_reject_cases(build: tuple[BuildResult, float]) -> None:
    dialogues = by_id(build[0])
    for dialog_id, split in REJECTED.items():
        dialogue = dialogues[dialog_id]
        assert dialogue["split"] == split
        assert load_extra(dialogue["extra"])["case"] == "reject"
        assert dialogue["outcome"]["end_reason"] == "reject"
        assert dialogue["outcome"]["accepted_item"] == {"item_id": "", "title": ""}
    assert sum(d["outcome"]["end_reason"] == "reject" for d in dialogues.values()) == len(REJECTED)
    assert sum(d["outcome"]["end_reason"] == "accept" for d in dialogues.values()) == 198 - len(REJECTED)


def test_recommended_movie_agrees_with_hand_annotations(build: tuple[BuildResult, float]) -> None:
    sample = INSPIRED / "usersimcrs_annotated_sample.json"
    if not sample.is_file():
        pytest.skip(f"{sample} not found")
    dialogues = by_id(build[0])
    annotated = {d["conversation_id"]: d["metadata"]["recommended_movie"] for d in json.loads(sample.read_text())}
    agree = 0
    for dialog_id, title in annotated.items():
        targets = dialogues[dialog_id]["target_items"]
        agree += bool(targets) and targets[0]["title"].startswith(title + " (")
    print(f"inspired: recommended movie agrees with {agree} of {len(annotated)} hand-annotated dialogues")
    assert len(annotated) == 10 and agree >= 8


def write_tsv(path: Path, header: list[str], rows: list[list[str]] | list[bytes]) -> None:
    lines = ["\t".join(header).encode("utf-8")]
    lines += [row if isinstance(row, bytes) else "\t".join(row).encode("utf-8") for row in rows]
    path.write_bytes(b"\n".join(lines) + b"\n")


def real_dialogues(count: int) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of the first ``count`` dev dialogues."""
    with open(INSPIRED / "dev.tsv", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    header = lines[0].split("\t")
    rows, ids = [], []
    for line in lines[1:]:
        cells = line.split("\t")
        if cells[0] not in ids:
            if len(ids) == count:
                break
            ids.append(cells[0])
        rows.append(cells)
    return header, rows


def test_survey_fills_missing_case_and_readme_header(tmp_path: Path) -> None:
    header, rows = real_dialogues(1)
    case = header.index("fine_label")
    for row in rows:
        row[case] = "nan"
    # The README's names for the strategy and case columns are accepted too.
    header = ["first_label" if h == "expert_label" else "case" if h == "fine_label" else h for h in header]
    write_tsv(tmp_path / "dev.tsv", header, rows)
    (tmp_path / SURVEY_FILE).write_text(
        "dialog_id\trec_survey_id\tseek_survey_id\tfine_label\tcoarse_label\tmovie_id\n"
        f"{rows[0][0]}\tfirst_batch_1\tfirst_batch_1\treject\treject_new\tREC_abcSPLIT154SEEKERno\n",
        encoding="utf-8",
    )
    dialogue = InspiredBuilder().build([tmp_path / "dev.tsv"], catalogs=[], skip=SkipLog()).splits["validation"][0]
    assert load_extra(dialogue["extra"])["case"] == "reject" and dialogue["outcome"]["end_reason"] == "reject"
    assert load_extra(dialogue["turns"][15]["extra"])["strategy"] == "encouragement"


def test_split_override_and_duplicates(tmp_path: Path) -> None:
    header, rows = real_dialogues(2)
    write_tsv(tmp_path / "sample.tsv", header, rows)
    with pytest.raises(BadInputError, match="sample.tsv.*--split"):
        InspiredBuilder().build([tmp_path / "sample.tsv"], catalogs=[], skip=SkipLog())
    result = InspiredBuilder().build([tmp_path / "sample.tsv"], catalogs=[], skip=SkipLog(), split="train")
    assert list(result.splits) == ["train"] and len(result.splits["train"]) == 2
    write_tsv(tmp_path / "test.tsv", header, rows[-5:])  # the second dialogue's last rows again
    result = InspiredBuilder().build(
        [tmp_path / "sample.tsv", tmp_path / "test.tsv"], catalogs=[], skip=SkipLog(), split="train"
    )
    assert result.dropped == {"duplicate-dialog-id": 1}
    assert result.accounting() == {"read": 3, "kept": 2, "skipped": 0, "dropped": 1, "balanced": True}


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str, str]]:
    """reason -> (file, expected record text, expected field), each file holding one real dialogue made bad."""
    header, rows = real_dialogues(1)
    dialog_id = rows[0][0]
    out = {}

    def write(reason: str, new_header: list[str], new_rows: list) -> Path:
        folder = tmp_path / reason
        folder.mkdir()
        write_tsv(folder / "dev.tsv", new_header, new_rows)
        return folder / "dev.tsv"

    short = [row[:] for row in rows]
    short[3] = short[3][:5]
    out["wrong-columns"] = (write("wrong-columns", header, short), f"line 5 (dialog_id {dialog_id})", "")
    binary = [("\t".join(row)).encode("utf-8") for row in rows]
    binary[2] = binary[2].replace(b"Great", b"Gr\xffeat")
    out["not-utf8"] = (write("not-utf8", header, binary), f"line 4 (dialog_id {dialog_id})", "")
    speaker = [row[:] for row in rows]
    speaker[6][header.index("speaker")] = "CRITIC"
    out["wrong-value"] = (write("wrong-value", header, speaker), f"line 8 (dialog_id {dialog_id})", "speaker")
    utt = [row[:] for row in rows]
    utt[1][header.index("utt_id")] = "two"
    out["wrong-type"] = (write("wrong-type", header, utt), f"line 3 (dialog_id {dialog_id})", "utt_id")
    no_movies = [h for h in header if h != "movies"]
    trimmed = [[c for c, h in zip(row, header, strict=True) if h != "movies"] for row in rows]
    out["missing-field"] = (write("missing-field", no_movies, trimmed), "line 1", "movies")
    return out


@pytest.mark.parametrize("reason", ["wrong-columns", "not-utf8", "wrong-value", "wrong-type", "missing-field"])
def test_bad_input_names_file_record_field(tmp_path: Path, reason: str) -> None:
    path, record, field = bad_files(tmp_path)[reason]
    with pytest.raises(BadInputError) as err:
        InspiredBuilder().build([path], catalogs=[], skip=SkipLog())
    error = err.value
    assert (error.path, error.record, error.field, error.reason) == (str(path), record, field, reason)
    assert str(path) in str(error) and record in str(error)


def test_skip_bad_skips_whole_dialogues(tmp_path: Path) -> None:
    header, rows = real_dialogues(4)
    ids = list(dict.fromkeys(row[0] for row in rows))
    lines = [("\t".join(row)).encode("utf-8") for row in rows]
    second = [i for i, row in enumerate(rows) if row[0] == ids[1]]
    lines[second[4]] += b"\xe9"  # a latin-1 byte at the end of a row of the second dialogue
    third = [i for i, row in enumerate(rows) if row[0] == ids[2]]
    lines[third[3]] = lines[third[3]].replace(b"_live", b"_l\xefve", 1)  # inside the dialog_id cell itself
    write_tsv(tmp_path / "dev.tsv", header, lines)
    skip = SkipLog(skip_bad=True)
    result = InspiredBuilder().build([tmp_path / "dev.tsv"], catalogs=[], skip=skip)
    # Never a dialogue with an utterance missing: both damaged dialogues are skipped whole.
    assert [d["dialogue_id"] for d in result.splits["validation"]] == [ids[0], ids[3]]
    assert result.accounting() == {"read": 4, "kept": 2, "skipped": 2, "dropped": 0, "balanced": True}
    assert dict(skip.counts) == {"not-utf8": 2}
    assert ids[1] in skip.examples[0] and ids[2] in skip.examples[1]
