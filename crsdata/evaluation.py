"""``crsdata evaluate`` as a library: score a built or simulated dataset folder with the registered metrics.

:func:`evaluate` loads the folder's dialogues, picks the split, runs each selected entry of
:data:`crsdata.metrics.registry.METRICS` (needs checked first, then compute, then rows) and returns an
:class:`EvaluationResult`; with ``json`` or ``update_card`` set it also writes the numbers to a JSON file or
into the folder's card (the ``## Evaluation`` section). A metric named explicitly that cannot run is an error
that says what is missing; with ``metrics="auto"`` it is listed as skipped instead.

Recommendation turns are chosen by ``turns`` (see :mod:`crsdata.metrics.turns`): recommender turns with action
``recommend``, or, for corpora without dialogue acts, every recommender turn that names an item.

Ranking ground truth follows iEvaLM's ReDial test turns: for a recommendation turn, the items the recommender
names in it; items named in earlier turns are removed from predictions and ground truth unless
``keep_mentioned``. The popularity baseline counts, in ``popularity_split`` (default ``train``), how many
recommendation turns name each item, and recommends the most counted items not yet mentioned.

``predictions`` is JSON lines, one object per scored turn: ``dialogue_id``, ``index`` (the turn's index), and
``items`` (ranked item ids) and/or ``text`` (a generated response, scored against that turn's text).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.errors import BadInputError
from crsdata.fileio import write_atomic
from crsdata.metrics.registry import METRICS, METRICS_BY_NAME, NOT_HERE, Context, EvaluateConfig, Row, Unavailable

SECTION_TITLE = "## Evaluation"
TURN_RULES = ("auto", "recommend", "mentions")
BASELINES = ("popularity",)


@dataclass
class EvaluationResult:
    folder: Path
    split: str
    n_dialogues: int
    rows: list[Row]
    skipped: dict[str, str] = field(default_factory=dict)  # metric -> why it did not run
    details: dict[str, Any] = field(default_factory=dict)  # metric -> its full result
    notes: list[str] = field(default_factory=list)  # what the reader must know about the rows given
    command: str = ""

    def as_dict(self) -> dict[str, Any]:
        from crsdata import __version__

        return {
            "folder": str(self.folder),
            "split": self.split,
            "crsdata_version": __version__,
            "command": self.command,
            "results": [r.as_dict() for r in self.rows],
            "details": self.details,
            "skipped": self.skipped,
            "notes": self.notes,
        }


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """``"1,10,50"`` -> ``(1, 10, 50)``; anything but positive integers is a one-line error naming ``option``."""
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise BadInputError("", "", option, f"expected comma-separated integers, got {text!r}", "bad-option") from None
    if not values or min(values) < 1:
        raise BadInputError("", "", option, f"expected positive integers, got {text!r}", "bad-option")
    return values


# ---------------------------------------------------------------------------------------------------------
# Loading


def load_dialogues(folder: Path) -> dict[str, Any]:
    from datasets import load_dataset

    from crsdata.simulate.replay import DECISIONS_NAME, RESULTS_NAME

    if (folder / RESULTS_NAME).is_file() and (folder / DECISIONS_NAME).is_file():
        raise BadInputError(
            folder,
            "",
            "",
            f"a `crsdata replay` folder, not a dataset: its SR/ET/FR are in {RESULTS_NAME} and each dialogue's "
            f"decisions in {DECISIONS_NAME}",
            "replay-folder",
        )

    if not (folder / "README.md").is_file() and not any(folder.glob("**/*.parquet")):
        raise BadInputError(folder, "folder", "", "not a dataset folder (no README.md and no parquet files)")
    try:
        return dict(load_dataset(str(folder), "dialogues"))
    except (ValueError, FileNotFoundError) as err:
        raise BadInputError(folder, "config dialogues", "", f"cannot load: {err}") from None


def choose_split(folder: Path, splits: dict[str, Any], wanted: str | None) -> str:
    if wanted:
        if wanted not in splits:
            raise BadInputError(folder, "split", "", f"no split {wanted!r}; the folder has {sorted(splits)}")
        return wanted
    if "test" in splits:
        return "test"
    if len(splits) == 1:
        return next(iter(splits))
    raise BadInputError(folder, "split", "", f"several splits and none is 'test': choose one of {sorted(splits)}")


def read_predictions(path: Path) -> list[dict[str, Any]]:
    from crsdata.errors import SkipLog
    from crsdata.readers import iter_jsonl

    if not path.is_file():
        raise BadInputError(path, "file", "", "no such predictions file")
    out = []
    for line, obj in iter_jsonl(path, SkipLog()):
        if "dialogue_id" not in obj or "index" not in obj:
            raise BadInputError(path, f"line {line}", "dialogue_id", "each line needs dialogue_id and index")
        if "items" not in obj and "text" not in obj:
            raise BadInputError(path, f"line {line}", "items", "each line needs items (ranked ids) or text")
        out.append({**obj, "_line": line})
    if not out:
        raise BadInputError(path, "file", "", "no predictions")
    return out


def select_metrics(spec: str) -> tuple[list[str], bool]:
    """The metric names ``spec`` asks for, and whether a metric that cannot run is an error (not "auto")."""
    if spec in ("auto", "all"):
        return [metric.name for metric in METRICS], spec == "all"
    names = [s.strip() for s in spec.split(",") if s.strip()]
    for name in names:
        if name in NOT_HERE:
            raise BadInputError("", "", "--metrics", f"{name} is not computed here: {NOT_HERE[name]}", "bad-option")
    known = ", ".join([*METRICS_BY_NAME, "auto", "all"])
    unknown = [n for n in names if n not in METRICS_BY_NAME]
    if not names:
        raise BadInputError("", "", "--metrics", f"names no metric; the known ones are {known}", "bad-option")
    if unknown:
        what = "unknown metric" + ("s " if len(unknown) > 1 else " ") + ", ".join(map(repr, unknown))
        raise BadInputError("", "", "--metrics", f"{what}; the known ones are {known}", "bad-option")
    return names, True


# ---------------------------------------------------------------------------------------------------------
# Running


def evaluate(config: EvaluateConfig) -> EvaluationResult:
    """Scores ``config.folder`` (see the module doc); writes ``config.json`` and the card when asked to."""
    from crsdata.metrics.common import MetricError

    folder = config.folder
    names, explicit = select_metrics(config.metrics)
    if config.turns not in TURN_RULES:
        raise BadInputError("", "", "--turns", f"expected one of {', '.join(TURN_RULES)}", "bad-option")
    if config.baseline is not None and config.baseline not in BASELINES:
        raise BadInputError("", "", "--baseline", f"expected one of {', '.join(BASELINES)}", "bad-option")
    splits = load_dialogues(folder)
    split = choose_split(folder, splits, config.split)
    ctx = Context(folder=folder, split=split, records=list(splits[split]), all_splits=splits, config=config)
    if config.predictions:
        ctx.predictions = read_predictions(config.predictions)
    result = EvaluationResult(folder=folder, split=split, n_dialogues=len(ctx.records), rows=[])
    for name in names:
        metric = METRICS_BY_NAME[name]
        try:
            missing = metric.missing(ctx)
            if missing is not None:
                raise Unavailable(missing)
            scores = metric.compute(ctx)
            rows = metric.rows(scores, ctx)
        except Unavailable as err:
            if explicit:
                raise BadInputError(
                    folder, f"split {split}", name, f"cannot compute {name}: {err}", "metric-unavailable"
                ) from None
            result.skipped[name] = str(err)
            continue
        except MetricError as err:
            if explicit:
                raise BadInputError(folder, f"split {split}", name, str(err), "metric") from None
            result.skipped[name] = str(err)
            continue
        result.rows += rows
        result.details[name] = scores
        if metric.note and rows:
            result.notes.append(metric.note)
    if not result.rows:
        raise BadInputError(
            folder,
            f"split {split}",
            "",
            "no metric could be computed: " + "; ".join(f"{k}: {v}" for k, v in result.skipped.items()),
        )
    result.command = command_line(config, split)
    if config.json:
        # default=float: numpy scalars in the details.
        write_atomic(config.json, json.dumps(result.as_dict(), indent=2, ensure_ascii=False, default=float) + "\n")
    if config.update_card:
        section = card_section(result.rows, split, result.command, result.skipped, config.keep_mentioned, result.notes)
        update_card(folder / "README.md", section)
    return result


# ---------------------------------------------------------------------------------------------------------
# Output


def format_table(rows: list[Row]) -> str:
    header = ("metric", "scope", "value", "n")
    body = [(r.metric, r.scope, f"{r.value:.4f}", f"{r.n:,}") for r in rows]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True)))
        for line in [header, *body]
    )


def card_section(
    rows: list[Row],
    split: str,
    command: str,
    skipped: dict[str, str],
    keep_mentioned: bool = False,
    notes: list[str] | None = None,
) -> str:
    from crsdata import __version__

    lines = [
        SECTION_TITLE,
        "",
        f"Computed with crsdata {__version__} on the `{split}` split by:",
        "",
        "```bash",
        command,
        "```",
        "",
        "| metric | scope | value | n |",
        "|---|---|---:|---:|",
    ]
    lines += [f"| {r.metric} | {r.scope} | {r.value:.4f} | {r.n:,} |" for r in rows]
    lines += [
        "",
        "Definitions: Dist-n is distinct n-grams over all n-grams of the corpus (`dist_n`) or per utterance "
        "(`dist_n_per_utterance`, CRSLab's convention); Recall@1 and Match Score follow Interplay (section 4.3.3); "
        "Recall/NDCG/MRR@k follow GRSU/iEvaLM, "
        + ("with items already mentioned kept. " if keep_mentioned else "with items already mentioned removed. ")
        + "See the metric cards in crsdata's `metrics/` folder.",
    ]
    lines += [line for note in notes or [] for line in ("", note)]
    if skipped:
        lines += ["", "Not computed:", ""] + [f"- `{name}`: {why}" for name, why in skipped.items()]
    return "\n".join(lines) + "\n"


def update_card(readme: Path, section: str) -> None:
    """Replaces the card's ``## Evaluation`` section (up to the next ``## `` heading) or appends one.

    The YAML front matter is split off first and written back untouched, so a heading-like line inside it can
    never be taken for the section.
    """
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    front, body = "", text
    match = re.match(r"---\r?\n.*?\r?\n---\r?\n", text, flags=re.DOTALL)
    if match:
        front, body = text[: match.end()], text[match.end() :]
    lines = body.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION_TITLE), None)
    if start is None:
        new_body = body.rstrip("\n") + ("\n\n" if body.strip() else "") + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new_body = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    write_atomic(readme, front + new_body)


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else json.dumps(arg)


def command_line(config: EvaluateConfig, split: str) -> str:
    """The command that reproduces these numbers, rebuilt from the configuration (not from sys.argv, which is
    someone else's when the evaluation runs inside another program); output options are left out."""
    defaults = EvaluateConfig(folder=config.folder)
    parts = ["crsdata", "evaluate", str(config.folder), "--metrics", config.metrics, "--split", split]
    options = [
        ("--n", config.n, defaults.n),
        ("--k", config.k, defaults.k),
        ("--turns", config.turns, defaults.turns),
        ("--baseline", config.baseline, None),
        ("--popularity-split", config.popularity_split if config.baseline else "train", defaults.popularity_split),
        ("--predictions", config.predictions, None),
        ("--bertscore-model", config.bertscore_model, None),
        ("--num-layers", config.num_layers, defaults.num_layers),
    ]
    for flag, value, default in options:
        if value is not None and value != default:
            parts += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    if config.keep_mentioned:
        parts.append("--keep-mentioned")
    return " ".join(_quote(p) for p in parts)
