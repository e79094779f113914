"""Held-out scores of the Interplay simulators, computed the same way for a fine-tuned model and the zero-shot base.

- **User simulator**: Interplay's replay protocol (:func:`crsdata.simulate.replay.replay_dialogues`): the real
  held-out dialogue is fed up to each recommender turn that proposes new items, and the simulator's answer
  accepts or rejects them. SR / ET / FR come from :func:`crsdata.metrics.sr_et_fr`; the dialogues scored are
  those whose persona can be built and whose target the real recommender did propose (otherwise success is
  impossible by construction).
- **Recommender simulator**: at each recommendation turn of the held-out dialogues (a recommender turn naming
  items, :func:`crsdata.metrics.recommendation_turns` with ``rule="mentions"``), the simulator writes its turn
  from the real conversation before it. Recall@1: the first title it names, linked to the catalog, is an item
  the real recommender named in that turn (:func:`crsdata.metrics.turn_recall_at_1`). Match Score: cosine
  similarity of the recommended and the real item in the MiniLM item space (:func:`crsdata.metrics.match_score`;
  turns recommending no catalog title are not scored and counted).
- **Both**: the share of generated turns that parse without any repair (:mod:`crsdata.simulate.actions`).

Requests are built by :class:`~crsdata.simulate.interplay.InterplaySimulation` itself, so the prompts are exactly
those of ``crsdata simulate interplay`` in the model's style, through the prompt guard, with the same request
seeds for every model scored. Held-out dialogues are read with consecutive messages of a speaker merged, as in
training (:func:`crsdata.simulate.turns.merged_record`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crsdata.errors import BadInputError
from crsdata.schema import Role
from crsdata.simulate.filters import GREETING_LOOP, is_greeting_turn


@dataclass
class ScoredModel:
    """One model's held-out scores, with what they were measured on."""

    model: str
    style: str
    metrics: dict[str, float]
    counts: dict[str, int]


def _simulation(
    backend: Any,
    style: str,
    catalog: Any,
    max_new_tokens: int,
    kind: type | None = None,
    grounded: dict[str, Any] | None = None,
) -> Any:
    """The Interplay simulation (or a subclass: ``kind``, e.g. replay) with both roles on ``backend``;
    ``grounded`` holds the catalog-grounding options the model was trained with (none: Interplay's layout)."""
    from crsdata.backends.base import SamplingParams
    from crsdata.simulate.interplay import InterplaySimulation

    kind = kind or InterplaySimulation
    # The sampling of `crsdata simulate` (temperature 0.7, top-p 0.95), so the scores describe the simulator
    # as it is used; the per-request seeds make every run repeatable.
    params = SamplingParams(max_new_tokens=max_new_tokens)
    return kind(
        {Role.USER.value: backend, Role.RECOMMENDER.value: backend},
        {Role.USER.value: params, Role.RECOMMENDER.value: params},
        catalog=catalog,
        style=style,
        **(grounded or {}),
    )


def replay_records(records: list[dict[str, Any]], catalog: Any, limit: int, *, seed: int) -> list[dict[str, Any]]:
    """The first ``limit`` held-out records (merged turns) that the replay can score: a persona can be built
    and the real recommender proposes its one target (:func:`crsdata.simulate.replay.replay_target`)."""
    from crsdata.simulate.persona import build_persona
    from crsdata.simulate.replay import proposals, replay_target
    from crsdata.simulate.turns import merged_record

    chosen = []
    for record in records:
        if len(chosen) >= limit:
            break
        merged = merged_record(record)
        target, _ = replay_target(merged)
        points, _ = proposals(merged["turns"])
        if not target or not any(item["item_id"] == target for _, items in points for item in items):
            continue
        try:
            build_persona(merged, catalog, seed=seed)
        except BadInputError:
            continue
        chosen.append(merged)
    return chosen


def score_user(
    backend: Any,
    style: str,
    records: list[dict[str, Any]],
    catalog: Any,
    *,
    seed: int,
    max_new_tokens: int,
    grounded: dict[str, Any] | None = None,
) -> ScoredModel:
    """SR / ET / FR by replay and the clean-parse rate of the answers (see the module doc)."""
    import tempfile

    from crsdata.simulate.replay import ReplaySimulation, replay_dialogues

    simulation = _simulation(backend, style, catalog, max_new_tokens, kind=ReplaySimulation, grounded=grounded)
    with tempfile.TemporaryDirectory(prefix="crsdata-replay-") as work_dir:
        outcome = replay_dialogues(simulation, records, work_dir, seed=seed)
    counters = outcome["counters"]
    questions = counters.get("questions", 0)
    unparsed, repaired = counters.get("unparsed_answers", 0), counters.get("repaired_answers", 0)
    metrics = {
        "success_rate": outcome["sr"],
        "early_termination": outcome["et"],
        "failure_rate": outcome["fr"],
        "parse_rate": (questions - unparsed - repaired) / max(questions, 1),
        "parse_rate_with_repairs": (questions - unparsed) / max(questions, 1),
        "accepts_per_answer": counters.get("accepted", 0) / max(questions, 1),
    }
    counts = {"dialogues": outcome["n_dialogues"], "answers": questions, **outcome["counts"]}
    return ScoredModel(backend.model_id, style, metrics, counts)


def recommendation_examples(
    records: list[dict[str, Any]], catalog: Any, limit: int, *, seed: int = 0
) -> list[tuple[dict[str, Any], Any]]:
    """(merged record, recommendation turn) pairs of the first held-out dialogues, ``limit`` turns in all."""
    from crsdata.metrics import recommendation_turns
    from crsdata.simulate.turns import merged_record

    examples: list[tuple[dict[str, Any], Any]] = []
    for record in records:
        merged = merged_record(record)
        for turn in recommendation_turns([merged], rule="mentions"):
            if len(examples) >= limit:
                return examples
            examples.append((merged, turn))
    return examples


def score_recommender(
    backend: Any,
    style: str,
    examples: list[tuple[dict[str, Any], Any]],
    catalog: Any,
    *,
    seed: int,
    max_new_tokens: int,
    grounded: dict[str, Any] | None = None,
) -> ScoredModel:
    """Recall@1, Match Score and the clean-parse rate on recommendation turns (see the module doc)."""
    from crsdata.metrics import match_score, turn_recall_at_1
    from crsdata.metrics.common import MetricError
    from crsdata.simulate.base import DialogueState
    from crsdata.simulate.persona import Persona, all_target_titles

    simulation = _simulation(backend, style, catalog, max_new_tokens, grounded=grounded)
    requests = []
    for record, turn in examples:
        state = DialogueState(dialogue_id=str(record["dialogue_id"]), record=record, seed=seed)
        # The recommender's prompt never shows a persona; an empty one keeps records without history usable.
        state.context = {
            "persona": dataclasses.asdict(Persona("", [], "")),
            "target_titles": all_target_titles(record, catalog),
        }
        state.turns = [dict(t) for t in record["turns"][: turn.index]]
        requests.append(simulation.request(state, Role.RECOMMENDER.value))
    generations = backend.generate(requests, simulation.params[Role.RECOMMENDER.value])
    recommended: list[list[str]] = []
    clean = parsed_count = 0
    for generation in generations:
        parsed = simulation.parse_generation(generation, Role.RECOMMENDER.value)
        ids: list[str] = []
        if parsed is not None:
            parsed_count += 1
            clean += not parsed.repaired
            for title in parsed.titles:
                item_id = catalog.link(title) if catalog is not None else None
                if item_id and item_id not in ids:
                    ids.append(item_id)
        recommended.append(ids)
    truths = [turn.items for _, turn in examples]
    metrics = {
        "recall_at_1": turn_recall_at_1(recommended, truths),
        "parse_rate": clean / max(len(examples), 1),
        "parse_rate_with_repairs": parsed_count / max(len(examples), 1),
        "recommends_a_catalog_title": sum(1 for r in recommended if r) / max(len(examples), 1),
    }
    counts = {"turns": len(examples), "dialogues": len({r["dialogue_id"] for r, _ in examples})}
    try:
        match = match_score(recommended, truths, catalog.rows(), on_missing="skip")
        metrics["match_score"] = match["match_score"]
        counts["match_scored"] = match["n_scored"]
    except MetricError:  # no turn named a catalog title: Match Score is undefined
        counts["match_scored"] = 0
    return ScoredModel(backend.model_id, style, metrics, counts)


@dataclass(frozen=True)
class RoleEvaluation:
    """How one simulator role is scored: which held-out examples, and the scoring function."""

    examples: Callable[..., list[Any]]  # (records, catalog, limit, *, seed) -> examples
    score: Callable[..., ScoredModel]  # (backend, style, examples, catalog, *, seed, max_new_tokens, grounded)


EVALUATIONS: dict[str, RoleEvaluation] = {
    Role.USER.value: RoleEvaluation(replay_records, score_user),
    Role.RECOMMENDER.value: RoleEvaluation(recommendation_examples, score_recommender),
}


# ---------------------------------------------------------------------------------------------------------
# The held-out table of docs/benchmarks.md: a pair of simulators against another, on the same data and seeds.


def self_play(
    source: str, split: str, models: dict[str, str], out: str, *, n: int, max_turns: int, seed: int, threads: int
) -> dict[str, float]:
    """``crsdata simulate interplay`` with the pair (each in its own prompt style), then
    :func:`dialogue_figures` of what it wrote."""
    from crsdata.cli import main as cli

    args = ["simulate", "interplay", "--source", source, "--split", split, "--n", str(n), "--out", out]
    args += ["--user-model", models[Role.USER.value], "--recommender-model", models[Role.RECOMMENDER.value]]
    args += ["--max-turns", str(max_turns), "--seed", str(seed), "--no-progress", "--threads", str(threads)]
    if cli(args) != 0:
        raise RuntimeError(f"crsdata {' '.join(args)} failed")
    return dialogue_figures(out, split)


def _catalog_of(folder: str, catalog: Any) -> Any:
    """``catalog``, else the folder's own ``items`` configuration as a catalog, else None."""
    if catalog is not None:
        return catalog
    from crsdata.catalog import Catalog, read_items

    rows = read_items(folder)
    return Catalog().add_rows(rows) if rows else None


def _dialogue_records(folder: str, split: str) -> list[dict[str, Any]]:
    """The ``dialogues`` split of a folder, refused with an error naming the folder and what is missing."""
    import datasets

    parquet = Path(folder) / "dialogues"
    if not parquet.is_dir():
        raise BadInputError(folder, "", "dialogues", "no dialogues configuration (a folder from crsdata simulate?)")
    splits = sorted({p.name.split("-")[0] for p in parquet.glob("*.parquet")})
    if split not in splits:
        raise BadInputError(folder, "", "split", f"no split {split!r} (it has {', '.join(splits) or 'none'})")
    return datasets.load_dataset(folder, "dialogues", split=split).to_list()


def dialogue_figures(folder: str, split: str, catalog: Any = None) -> dict[str, float]:
    """What a folder of simulated Interplay dialogues (``crsdata simulate interplay``) shows.

    - ``accepts`` / ``accept_rate``: dialogues ending in an accept (``outcome.end_reason``), of any item.
    - ``parse_rate``: generated turns parsed without repair (failed generations count against it).
    - ``repeated`` / ``repeated_turns``: turns, and their share, that repeat an earlier turn of the same speaker
      (:func:`crsdata.simulate.filters.repetition`, similarity >= 0.9).
    - ``turns``, ``mean_turns``, ``dialogues``.
    - ``recommended_titles``: every title a recommender turn names, counted once per turn that names it (a turn
      names a title once). These are the turn's ``items``: the simulation writes there every title its parser
      found (tagged, quoted, or "Name (1999)"), linked or not, with ``item_id`` empty when the catalog does not
      know it, and removes the title tags from the text, so nothing else in the text is a title. A title the
      model wrote untagged and unquoted is found by nobody and not counted.
    - ``catalog_titles`` / ``catalog_title_share``: those that are catalog films (share 0 when none is named).
    - ``catalog_accepts`` / ``catalog_accept_rate``: dialogues ending in an accept of a catalog film (the
      ``outcome.accepted_item``: the last item a recommender turn named, linked or not).
    - ``target_accepts`` / ``target_accept_rate``: dialogues ending in an accept of the persona's target: the
      record's first linked ``target_items`` entry, the one film the persona describes
      (:func:`crsdata.simulate.replay.replay_target`).
    - ``target_proposed`` / ``target_proposed_rate``: dialogues where a recommender turn named that target at all:
      no user can accept a target it was never offered, so this bounds ``target_accepts``.
    - ``greeting_turns``, ``greeting_loop_dialogues`` (more than :data:`GREETING_LOOP` greeting turns, both
      speakers together), ``greeting_loop_rate``, ``max_greeting_turns``: greetings by :func:`is_greeting_turn`.

    A catalog film is an ``item_id`` that ``catalog`` knows (its row id or a source id merged into it); with no
    ``catalog``, one that the folder's ``items`` configuration knows; when the folder has none (a simulation's
    folder does not copy its catalog), any non-empty ``item_id``, since the simulation links titles only to the
    catalog it ran with. Rates are over all dialogues of the split.
    """
    from crsdata.schema import load_extra
    from crsdata.simulate.filters import repetition
    from crsdata.simulate.replay import replay_target

    records = _dialogue_records(folder, split)
    catalog = _catalog_of(folder, catalog)

    def film(item_id: str) -> str | None:
        """The catalog id of ``item_id``; None when it is not a catalog film."""
        if not item_id:
            return None
        return catalog.canonical_id(item_id) if catalog is not None else item_id

    turns = sum(len(r["turns"]) for r in records)
    counters = [load_extra(r["extra"]).get("counters", {}) for r in records]
    failures = sum(c.get("parse_failures", 0) for c in counters)
    repairs = sum(c.get("repairs", 0) for c in counters)
    repeated = sum(len(repetition(r["turns"])) for r in records)
    accepts = catalog_accepts = target_accepts = target_proposed = 0
    titles = catalog_titles = 0
    greetings: list[int] = []
    for record in records:
        named = [i["item_id"] for t in record["turns"] if t["role"] == Role.RECOMMENDER.value for i in t["items"]]
        titles += len(named)
        catalog_titles += sum(film(i) is not None for i in named)
        greetings.append(sum(is_greeting_turn(t) for t in record["turns"]))
        target = replay_target(record)[0]
        target_film = film(target) or target
        target_proposed += bool(target) and any(film(i) == target_film for i in named)
        if record["outcome"]["end_reason"] != "accept":
            continue
        accepts += 1
        accepted = film(record["outcome"]["accepted_item"]["item_id"])
        catalog_accepts += accepted is not None
        target_accepts += accepted is not None and accepted == target_film
    n = max(len(records), 1)
    return {
        "accept_rate": accepts / n,
        "accepts": accepts,
        "parse_rate": (turns - repairs) / max(turns + failures, 1),
        "repeated_turns": repeated / max(turns, 1),
        "repeated": repeated,
        "turns": turns,
        "mean_turns": turns / n,
        "dialogues": len(records),
        "recommended_titles": titles,
        "catalog_titles": catalog_titles,
        "catalog_title_share": catalog_titles / max(titles, 1),
        "catalog_accepts": catalog_accepts,
        "catalog_accept_rate": catalog_accepts / n,
        "target_accepts": target_accepts,
        "target_accept_rate": target_accepts / n,
        "target_proposed": target_proposed,
        "target_proposed_rate": target_proposed / n,
        "greeting_turns": sum(greetings),
        "greeting_loop_dialogues": sum(g > GREETING_LOOP for g in greetings),
        "greeting_loop_rate": sum(g > GREETING_LOOP for g in greetings) / n,
        "max_greeting_turns": max(greetings, default=0),
    }


def target_ranks(folder: str, split: str, catalog: Any, k: int = 5) -> dict[str, float]:
    """Where each dialogue's target ranks in the recommender's retrieval (:class:`CatalogRetriever`, MiniLM over
    the catalog's item texts, as ``--grounding catalog`` searches) when the query is the persona's cues
    (``user_profile.target_attributes``) and when it is the user's turns the simulation wrote: how findable the
    target is at all. ``in_top_k_by_*``: dialogues whose target is among the first ``k`` (the recommender's list
    holds 5 by default). Dialogues without a described target are left out."""
    from statistics import median

    from crsdata.simulate.grounding import CatalogRetriever, user_query
    from crsdata.simulate.replay import replay_target

    retriever = CatalogRetriever(catalog.rows())
    ranks: dict[str, list[int]] = {"cues": [], "user_turns": []}
    for record in _dialogue_records(folder, split):
        target = replay_target(record)[0]
        target = catalog.canonical_id(target) if target else None
        cues = ((record.get("user_profile") or {}).get("target_attributes") or "").strip()
        if target not in retriever.rows or not cues:
            continue
        for name, query in (("cues", cues), ("user_turns", user_query(record["turns"]))):
            order = retriever.search(query, k=len(retriever.ids)) if query.strip() else []
            ranks[name].append(order.index(target) + 1 if target in order else len(retriever.ids))
    figures: dict[str, float] = {"target_rank_dialogues": len(ranks["cues"]), "catalog_films": len(retriever.ids)}
    for name, found in ranks.items():
        figures[f"median_target_rank_by_{name}"] = median(found) if found else math.nan
        figures[f"in_top_{k}_by_{name}"] = sum(rank <= k for rank in found)
    return figures


FIGURE_COLUMNS = (
    "dialogues",
    "recommended titles",
    "catalog films among them",
    "accepts of a catalog film",
    "accepts of the target",
    "target proposed",
    "repeated utterances",
    f"dialogues with > {GREETING_LOOP} greeting turns",
    "most greeting turns",
)


def figures_row(label: str, figures: dict[str, float]) -> str:
    """One markdown table row of :data:`FIGURE_COLUMNS` (counts with their share over the dialogues)."""
    n = figures["dialogues"]
    cells = [
        label,
        str(n),
        str(figures["recommended_titles"]),
        f"{figures['catalog_titles']} ({100 * figures['catalog_title_share']:.1f}%)",
        f"{figures['catalog_accepts']} ({100 * figures['catalog_accept_rate']:.1f}%)",
        f"{figures['target_accepts']} ({100 * figures['target_accept_rate']:.1f}%)",
        f"{figures['target_proposed']} ({100 * figures['target_proposed_rate']:.1f}%)",
        f"{figures['repeated']} ({100 * figures['repeated_turns']:.1f}%)",
        f"{figures['greeting_loop_dialogues']} ({100 * figures['greeting_loop_rate']:.1f}%)",
        str(figures["max_greeting_turns"]),
    ]
    return "| " + " | ".join(cells) + " |"


def figures_main(argv: list[str]) -> int:
    """``python -m crsdata.training.interplay_eval figures FOLDER [FOLDER...] --split test [--json OUT]``: the
    self-play figures of :func:`dialogue_figures` for folders written by ``crsdata simulate interplay``, as a
    markdown table (one row per folder) and JSON (folder -> figures)."""
    import argparse
    import json
    import sys

    from crsdata.catalog import load_catalog

    parser = argparse.ArgumentParser(
        prog="python -m crsdata.training.interplay_eval figures", description=figures_main.__doc__
    )
    parser.add_argument("folders", nargs="+", help="folders written by crsdata simulate interplay")
    parser.add_argument("--split", default="test")
    parser.add_argument(
        "--catalog",
        action="append",
        default=[],
        help="catalog files or built folders the simulation linked to (repeat for several); without it an item "
        "linked by the simulation is a catalog film",
    )
    parser.add_argument(
        "--target-rank",
        action="store_true",
        help="also rank each target in the recommender's retrieval by the persona's cues and by the user's turns "
        "(target_ranks; needs --catalog, loads MiniLM)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.target_rank and not args.catalog:
        parser.error("--target-rank needs --catalog")
    try:
        catalog = load_catalog(args.catalog) if args.catalog else None
        report = {folder: dialogue_figures(folder, args.split, catalog) for folder in args.folders}
        if args.target_rank:
            for folder in args.folders:
                report[folder].update(target_ranks(folder, args.split, catalog))
    except BadInputError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    print("| folder | " + " | ".join(FIGURE_COLUMNS) + " |")
    print("|" + " --- |" * (len(FIGURE_COLUMNS) + 1))
    for folder, figures in report.items():
        print(figures_row(folder, figures))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m crsdata.training.interplay_eval --data FOLDER``: the base pair against the fine-tuned pair.
    ``python -m crsdata.training.interplay_eval figures FOLDER...``: the self-play figures of simulated folders
    (:func:`figures_main`)."""
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if argv[:1] == ["figures"]:
        return figures_main(argv[1:])
    import argparse
    import json
    import tempfile
    import time

    import torch

    from crsdata.backends import make_backend
    from crsdata.backends.embedded import BASE_MODEL, prompt_style_of
    from crsdata.simulate.interplay import InterplaySimulation
    from crsdata.training.catalog import folders_catalog
    from crsdata.training.data import load_data_folder

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data", required=True, help="built folder holding the held-out split (never trained on)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--user-model", default=InterplaySimulation.default_model(Role.USER.value))
    parser.add_argument("--recommender-model", default=InterplaySimulation.default_model(Role.RECOMMENDER.value))
    parser.add_argument("--base", default=BASE_MODEL, help="the zero-shot model both roles are compared with")
    parser.add_argument("--dialogues", type=int, default=40, help="held-out dialogues replayed to the user")
    parser.add_argument("--turns", type=int, default=60, help="held-out recommendation turns for the recommender")
    parser.add_argument("--self-play", type=int, default=20, help="dialogues simulated by each pair")
    parser.add_argument("--max-turns", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", default="zero-shot base,fine-tuned", help="which pairs to score, comma-separated")
    parser.add_argument(
        "--parts",
        default="held-out,self-play",
        help="what to measure, comma-separated: held-out (each role on the split's dialogues), self-play",
    )
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    parser.add_argument("--keep-self-play", type=Path, help="keep the self-play folders here (one per pair)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    folder = load_data_folder(args.data)
    records = folder.records(args.split)
    catalog = folders_catalog([folder])
    pairs = {
        "zero-shot base": {Role.USER.value: args.base, Role.RECOMMENDER.value: args.base},
        "fine-tuned": {Role.USER.value: args.user_model, Role.RECOMMENDER.value: args.recommender_model},
    }
    report: dict[str, Any] = {"data": str(args.data), "split": args.split, "settings": vars(args) | {"out": None}}
    wanted = [p.strip() for p in args.pairs.split(",") if p.strip()]
    for label in wanted:
        if label not in pairs:
            parser.error(f"--pairs: unknown pair {label!r} (known: {', '.join(pairs)})")
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts or parts - {"held-out", "self-play"}:
        parser.error(f"--parts: choose from held-out, self-play (got {args.parts!r})")
    for label, models in pairs.items():
        if label not in wanted:
            continue
        figures: dict[str, Any] = {"models": models}
        for role, evaluation in EVALUATIONS.items() if "held-out" in parts else ():
            started = time.perf_counter()
            limit = args.dialogues if role == Role.USER.value else args.turns
            examples = evaluation.examples(records, catalog, limit, seed=args.seed)
            style = prompt_style_of(models[role]) or "instruct"
            backend = make_backend("local", models[role], max_batch_size=16)
            scored = evaluation.score(
                backend, style, examples, catalog, seed=args.seed, max_new_tokens=args.max_new_tokens
            )
            backend.close()
            figures[role] = {**dataclasses.asdict(scored), "seconds": time.perf_counter() - started}
            print(f"{label} {role}: {scored.metrics} {scored.counts}", flush=True)
        if "self-play" not in parts:
            report[label] = figures
            continue
        with tempfile.TemporaryDirectory(prefix="crsdata-selfplay-") as scratch:
            started = time.perf_counter()
            keep = args.keep_self_play / label.replace(" ", "-") if args.keep_self_play else None
            figures["self_play"] = self_play(
                args.data,
                args.split,
                models,
                str(keep or Path(scratch) / "sim"),
                n=args.self_play,
                max_turns=args.max_turns,
                seed=args.seed,
                threads=args.threads,
            )
            figures["self_play"]["seconds"] = time.perf_counter() - started
        print(f"{label} self-play: {figures['self_play']}", flush=True)
        report[label] = figures
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
