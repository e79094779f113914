"""The default export of a simulation run: a Hub-layout dataset folder with its card and plot.

:func:`export_dataset_folder` writes the run's dialogues as one split named after the source split (the
exporter of ``crsdata build``, :func:`crsdata.export.export_folder`), leaving out what the kind's
:meth:`~crsdata.simulate.base.Simulation.drop_reason` drops (always the dialogues that ended before any turn),
counted by reason so that the card's accounting holds: drawn = kept + skipped + dropped. The card gets the
shared sections (the run's settings, outcomes, run counters, plot) and the kind's own
(:meth:`~crsdata.simulate.base.Simulation.card_sections`); ``simulation.json`` beside it holds the manifest
summary. The folder loads with ``datasets.load_dataset(OUT, "dialogues")``.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crsdata.errors import BadInputError
from crsdata.schema import load_extra
from crsdata.simulate.results import NO_TURNS, Exported

if TYPE_CHECKING:
    from crsdata.simulate.base import ExportTarget, Simulation
    from crsdata.simulate.results import RunResult
    from crsdata.simulate.source import SimulationSource

PLOT_NAME = "simulation_outcomes.png"
SUMMARY_NAME = "simulation.json"


def kept_records(simulation: Simulation, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The records the folder keeps and the dropped ones counted by ``filter-<reason>``."""
    kept: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    for record in records:
        reason = simulation.drop_reason(record)
        if reason:
            dropped[f"filter-{reason}"] += 1
        else:
            kept.append(record)
    return kept, dict(sorted(dropped.items()))


def export_dataset_folder(
    simulation: Simulation, result: RunResult, source: SimulationSource, config: ExportTarget
) -> Exported:
    """Writes ``result`` to ``config.out`` as a dataset folder with its card; see the module docstring."""
    from crsdata.build import BuildResult, InputFile
    from crsdata.export import export_folder

    split = result.manifest["config"]["split"]
    kept, dropped = kept_records(simulation, result.records)
    if not kept:
        reasons = ", ".join(f"{r} {n}" for r, n in dropped.items())
        raise BadInputError(
            config.out, "", "", f"every simulated dialogue was left out ({reasons}){refused_note(result)}", "empty"
        )
    build = BuildResult(
        source=simulation.output_source,
        splits={split: kept},
        skipped=result.skipped,
        # "Read" is the number of source records drawn, so the card's accounting reads
        # drawn = kept + skipped + dropped.
        inputs=[
            InputFile(path=source.name, sha256=source.fingerprint, records=len(result.records) + result.skipped.total)
        ],
        dropped=dropped,
        notes=notes(simulation, result, source),
        info=dict(simulation.card_info),
    )
    plots = write_plots(config.out, simulation, result)
    sections = card_sections(simulation, result, source, plots, dropped, config.command)
    export_folder(build, config.out, version=config.version, card_sections=sections)
    return Exported(config.out, len(kept), dropped, f"dataset folder, split {split}")


def refused_note(result: RunResult) -> str:
    """``"; N refused by the backend, first: <why>"`` when requests were refused (a 4xx answer, a prompt that does
    not fit the model's context), else ``""``: for the summary line and the error of a run that wrote nothing."""
    refused = result.counters.get("refused", 0)
    if not refused:
        return ""
    details = refused_details(result)
    return f"; {refused} refused by the backend" + (f", first: {details[0]}" if details else "")


def refused_details(result: RunResult) -> list[str]:
    """The ``end_detail`` of each written dialogue that a refused request ended."""
    runs = [load_extra(r["extra"])["run"] for r in result.records]
    return [run.get("end_detail", "") for run in runs if run["counters"].get("refused") and run.get("end_detail")]


def notes(simulation: Simulation, result: RunResult, source: SimulationSource) -> list[str]:
    config = result.manifest["config"]
    out = [
        f"Simulated with `crsdata simulate {simulation.name}` from {source.description}; seed {config['seed']}, "
        f"at most {config['max_turns']} turns per dialogue. Dialogue i depends only on (seed, i).",
        f"Split: every dialogue was drawn from the source's `{config['split']}` split{_why(source)} and is written "
        "to the split of the same name; a run never mixes splits.",
        "Accounting: `read` is the number of source records drawn; skipped ones could not start a dialogue (the "
        "run drew the next record instead, so as many dialogues as requested were written), dropped ones were "
        f"left out of the folder: `filter-{NO_TURNS}` ended before any turn and is not a dialogue; other "
        "`filter-*` reasons are quality filters (--drop-flagged).",
    ]
    if source.other_splits:
        out.append(
            "Splits of the source not drawn from: "
            + ", ".join(f"`{name}` ({n} records)" for name, n in sorted(source.other_splits.items()))
            + "."
        )
    if source.excluded:
        out.append(
            "Source records not drawn (not usable by this simulation), by reason: "
            + ", ".join(f"`{r}` {n}" for r, n in sorted(source.excluded.items()))
            + f" of {source.total} read."
        )
    if config.get("dtype") not in ("", "float32", None):
        out.append(
            f"Weights in {config['dtype']}: unlike float32, the text of a dialogue depends on which dialogues shared "
            "its batches, so a resumed or grown run is not identical to an uninterrupted one."
        )
    return out


def _why(source: SimulationSource) -> str:
    return f" ({source.split_choice})" if source.split_choice else ""


def _table(rows: list[tuple[str, Any]], header: tuple[str, str] = ("", "value")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def card_sections(
    simulation: Simulation,
    result: RunResult,
    source: SimulationSource,
    plots: list[str],
    dropped: dict[str, int],
    command: str = "",
) -> dict[str, str]:
    """Markdown sections for the card: the run, outcomes, the kind's sections, counters, plots."""
    config = result.manifest["config"]
    counters: Counter[str] = result.counters
    records = result.records
    n = max(len(records), 1)
    sampling = next(iter(config["sampling"].values()), {})
    sessions = result.manifest.get("sessions", [])
    wall = sum(s.get("wall_seconds", 0.0) for s in sessions)
    tokens = sum(s.get("completion_tokens", 0) for s in sessions)
    done = sum(s.get("dialogues", 0) for s in sessions)
    run_rows = [
        ("kind", f"`{config['simulation']}`"),
        ("source", f"{source.description} (content sha256 `{config['source_fingerprint'][:16]}...`)"),
        ("split", f"`{config['split']}`: drawn from the source split of that name only{_why(source)}"),
        ("user model", f"`{config['model_ids'].get('user', '')}`"),
        ("recommender model", f"`{config['model_ids'].get('recommender', '')}`"),
        ("backend", f"`{config['backend']}`" + (f", {config['dtype']}" if config.get("dtype") else "")),
        ("seed", config["seed"]),
        ("dialogues requested", config["n"]),
        ("max turns", config["max_turns"]),
        (
            "sampling",
            f"max_new_tokens {sampling.get('max_new_tokens')}, temperature {sampling.get('temperature')}, "
            f"top_p {sampling.get('top_p')}",
        ),
        ("options", ", ".join(f"{k}={v}" for k, v in sorted(config["options"].items())) or "none"),
        ("settings", ", ".join(f"{k}={v}" for k, v in sorted(config.get("settings", {}).items())) or "none"),
        ("batch size / shard size", f"{config['batch_size']} / {config['shard_size']}"),
        (
            "generation time",
            f"{wall:.0f}s over {len(sessions)} session(s), {done} dialogues, {tokens} tokens"
            + (f" ({60 * done / wall:.1f} dialogues/min)" if wall else ""),
        ),
        (
            "prompt templates (sha256)",
            "<br>".join(f"`{k}` `{v[:12]}`" for k, v in sorted(config["prompt_hashes"].items())),
        ),
    ]
    if command:
        run_rows.append(("command", f"`{command}`"))
    sections = {"Simulation": _table(run_rows, ("setting", "value"))}

    ends = Counter(r["outcome"]["end_reason"] for r in records)
    outcome_rows = [(f"`{reason}`", f"{count} ({100 * count / n:.1f}%)") for reason, count in ends.most_common()]
    outcome_rows += simulation.outcome_rows(records)
    refused = counters.get("refused", 0)
    outcome_rows.append(("ended by backend errors after retries (`error`)", counters.get("abandoned", 0) - refused))
    outcome_rows.append(("refused by the backend, not retried (`error`, counter `refused`)", refused))
    if counters.get("context_trimmed", 0):
        outcome_rows.append(
            ("prompts trimmed to the model's context (oldest turns dropped)", counters["context_trimmed"])
        )
    no_turns = dropped.get(f"filter-{NO_TURNS}", 0)
    outcome_rows.append((f"ended before any turn, left out of the folder (`{NO_TURNS}`)", no_turns))
    sections["Outcomes"] = "End reasons of the written dialogues (before anything is left out):\n\n" + _table(
        outcome_rows, ("end reason", "dialogues")
    )
    sections.update(simulation.card_sections(records, counters))
    other = [
        (f"`{k}`", v)
        for k, v in sorted(counters.items())
        if not k.startswith(("filter.", "end_reason.")) and k != "dialogues"
    ]
    if other:
        sections["Run counters"] = (
            "Summed over written dialogues (per dialogue in `extra.run.counters`); generations that failed "
            "and were retried count as `backend_errors`.\n\n" + _table(other, ("counter", "count"))
        )
    if refused:
        sections["Refused requests"] = (
            "Requests the backend refused (a 4xx answer, or a prompt that does not fit the model's context even "
            "without its older turns) end their dialogue at once; the reason of each is in "
            "`extra.run.end_detail`. The first:\n\n" + "".join(f"`{d}`" for d in refused_details(result)[:1])
        )
    if plots:
        sections["Plots"] = "\n\n".join(f"![{Path(p).stem.replace('_', ' ')}]({p})" for p in plots)
    return sections


def write_plots(out: Path, simulation: Simulation, result: RunResult) -> list[str]:
    """End reasons (and the kind's panels) as a bar chart next to the card, and the manifest summary
    (``simulation.json``); returns the plot's path relative to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crsdata.export import write_atomic

    ends = Counter(r["outcome"]["end_reason"] for r in result.records)
    panels = [("end reasons", ends), *simulation.plot_panels(result.records, result.counters)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.2), dpi=100, squeeze=False)
    for ax, (title, counts) in zip(axes[0], panels, strict=True):
        labels = list(counts)
        ax.bar(labels, [counts[label] for label in labels], color="#3b6ea8")
        ax.set_title(title)
        ax.set_ylabel("dialogues")
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / PLOT_NAME, buffer.getvalue())
    # The manifest summary next to the card, for tools that read the run without the run folder.
    summary = {k: result.manifest[k] for k in ("config", "status", "source", "counters", "sessions")}
    summary["skipped"] = result.manifest["skipped"]
    write_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return [PLOT_NAME]
