"""``run_crs_eval``: a CRS evaluated zero-shot and with GRSU interaction on a built folder's recommendation turns.

Zero-shot, the CRS gives one list of ``max(ks)`` items (or ``zero_shot_size``) per turn from the conversation
alone. With the ``grsu`` protocol the same zero-shot list is computed (the baseline), and then the CRS and the
simulated user interact by search (:mod:`crsdata.grsu.search`); the turn's prediction is the final ranking of
every scored item. Both are scored with Recall/NDCG/MRR@k (:func:`crsdata.metrics.ranking_scores`, mentioned
items removed).

``OUT`` receives:

- ``turns.jsonl``: one line per evaluated turn (zero-shot list, final ranking, every searched list with its
  critique and reward), appended batch by batch and flushed, so that a killed run resumes where it stopped
  (``run.json`` holds the settings; a different setting in the same ``OUT`` is an error, not a silent mix);
- ``results.json``: the metrics, their bootstrap intervals, the costs and the settings (written atomically);
- ``README.md``: the same as a card, with an example interaction to read.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crsdata.errors import BadInputError
from crsdata.grsu.data import CONTEXT_CHARS, EvalSet, EvalTurn, ItemTable, evaluation_turns, load_eval_set
from crsdata.grsu.report import (
    METRIC_KEYS,
    bootstrap,
    dataset_name,
    render_card,
    source_section,
    update_source_card,
)
from crsdata.grsu.search import CrsQuery, SearchOutcome, SearchPlan, run_search
from crsdata.grsu.vectors import ItemVectors
from crsdata.seeds import derive_seed

CRS_NAMES = ("popularity", "retrieval", "llm")
PROTOCOLS = ("zero-shot", "grsu")
CRITICS = ("attributes", "model")
EMBEDDING_SCORERS = ("minilm", "embedding")
# Default sampling temperature of each CRS in the search (zero-shot lists are never sampled), set by reasoning, not
# tuned: retrieval scores are cosines that differ by hundredths across its sampling pool, popularity scores are
# log-counts that differ by units, and LLMs sample at 1 as in GRSU.
DEFAULT_TEMPERATURES = {"popularity": 1.0, "retrieval": 0.05, "llm": 1.0}
TURNS_FILE, RESULTS_FILE, RUN_FILE, CARD_FILE = "turns.jsonl", "results.json", "run.json", "README.md"


@dataclass
class CrsEvalConfig:
    """Everything ``crsdata crs-eval`` needs (see ``crsdata crs-eval --help`` for each field)."""

    source: Path
    out: Path
    crs: str
    protocol: str = "grsu"
    split: str = "test"
    n: int | None = 50
    search: str = "beam"
    beam_width: int = 4
    expand_width: int = 4
    depth: int = 5
    list_size: int = 10
    context_chars: int = CONTEXT_CHARS
    scorer_model: str = "minilm"
    scorer_backend: str = "local"
    critic: str = "attributes"
    crs_model: str = "embedded"
    crs_backend: str = "local"
    crs_temperature: float | None = None
    popularity_source: Path | None = None
    popularity_split: str | None = None
    ks: tuple[int, ...] = (10, 50)
    zero_shot_size: int | None = None  # items in the zero-shot list; default the largest k
    seed: int = 0
    batch_turns: int = 8
    max_batch_size: int = 16
    max_model_len: int | None = None  # context of the CRS and scorer models in tokens (None: theirs)
    bootstrap: int = 1000
    update_card: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        self.source, self.out = Path(self.source), Path(self.out)
        checks = [
            ("--crs", self.crs in CRS_NAMES, f"one of {', '.join(CRS_NAMES)}"),
            ("--protocol", self.protocol in PROTOCOLS, f"one of {', '.join(PROTOCOLS)}"),
            ("--critic", self.critic in CRITICS, f"one of {', '.join(CRITICS)}"),
            ("--n", self.n is None or self.n >= 1, "at least 1"),
            ("--list-size", self.list_size >= 1, "at least 1"),
            ("--batch-turns", self.batch_turns >= 1, "at least 1"),
            ("--zero-shot-size", self.zero_shot_size is None or self.zero_shot_size >= 1, "at least 1"),
        ]
        for option, ok, wanted in checks:
            if not ok:
                value = getattr(self, option[2:].replace("-", "_"))
                raise BadInputError("", "", option, f"must be {wanted}, not {value!r}", "bad-option")
        if self.critic == "model" and self.scorer_model in EMBEDDING_SCORERS:
            raise BadInputError(
                "", "", "--critic", "model critiques need a language model as --scorer-model, not an embedder"
            )
        try:
            self.plan()
        except ValueError as err:
            raise BadInputError("", "", "--beam-width/--expand-width/--depth", str(err), "bad-option") from None

    def plan(self) -> SearchPlan:
        return SearchPlan(self.search, self.beam_width, self.expand_width, self.depth)

    @property
    def temperature(self) -> float:
        return self.crs_temperature if self.crs_temperature is not None else DEFAULT_TEMPERATURES[self.crs]

    def settings(self) -> dict[str, Any]:
        """The fields that decide the results: a resumed run must have the same."""
        # Batching changes no list (seeds are per query) and at most float noise in a score.
        skip = {"out", "progress", "update_card", "bootstrap", "batch_turns", "max_batch_size"}
        values = {k: v for k, v in asdict(self).items() if k not in skip}
        values["source"] = str(self.source.resolve())
        values["popularity_source"] = str(self.popularity_source.resolve()) if self.popularity_source else None
        values["ks"] = list(self.ks)
        values["temperature"] = self.temperature
        if self.max_model_len is None:  # runs from before the option have no such setting
            values.pop("max_model_len")
        if self.protocol == "zero-shot":  # the search settings change nothing then
            for name in ("search", "beam_width", "expand_width", "depth", "list_size", "scorer_model", "critic"):
                values.pop(name)
            values.pop("scorer_backend")
        if self.crs != "llm":
            values.pop("crs_model")
            values.pop("crs_backend")
        return values


def command_line(config: CrsEvalConfig) -> str:
    """The command that reproduces a run, from its settings (output-only options left out)."""
    defaults = CrsEvalConfig(source=config.source, out=config.out, crs=config.crs)
    parts = ["crsdata", "crs-eval", "--source", str(config.source), "--split", config.split, "--crs", config.crs]
    parts += ["--protocol", config.protocol, "--out", str(config.out)]
    options = [
        ("--n", "n"),
        ("--search", "search"),
        ("--beam-width", "beam_width"),
        ("--expand-width", "expand_width"),
        ("--depth", "depth"),
        ("--list-size", "list_size"),
        ("--zero-shot-size", "zero_shot_size"),
        ("--context-chars", "context_chars"),
        ("--scorer-model", "scorer_model"),
        ("--scorer-backend", "scorer_backend"),
        ("--critic", "critic"),
        ("--crs-model", "crs_model"),
        ("--crs-backend", "crs_backend"),
        ("--crs-temperature", "crs_temperature"),
        ("--popularity-source", "popularity_source"),
        ("--popularity-split", "popularity_split"),
        ("--max-model-len", "max_model_len"),
        ("--seed", "seed"),
    ]
    settings = config.settings()
    for flag, name in options:
        value = getattr(config, name)
        if value != getattr(defaults, name) and (name in settings or name.startswith("popularity")):
            parts += [flag, "all" if name == "n" and value is None else str(value)]
    if config.update_card:
        parts.append("--update-card")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------------------
# Building the CRS and the user


class _Backends:
    """One backend per (spec, model): a CRS and a scorer on the same model share its weights and its cache."""

    def __init__(self, max_batch_size: int, max_model_len: int | None = None) -> None:
        self.max_batch_size = max_batch_size
        self.max_model_len = max_model_len
        self._made: dict[tuple[str, str], Any] = {}

    def get(self, spec: str, model: str) -> Any:
        from crsdata.backends import BackendError, make_backend

        if (spec, model) not in self._made:
            options = {"max_batch_size": self.max_batch_size} if spec == "local" else {}
            try:
                self._made[(spec, model)] = make_backend(spec, model, max_model_len=self.max_model_len, **options)
            except (BackendError, ValueError) as err:
                raise BadInputError("", "", "--crs-model/--scorer-model", f"cannot load {model!r}: {err}") from None
        return self._made[(spec, model)]

    def close(self) -> None:
        for backend in self._made.values():
            backend.close()


def popularity_counts_for(config: CrsEvalConfig, items: ItemTable) -> tuple[dict[str, int], str]:
    """Item -> recommendations counted on the training side, and where they came from.

    The source is ``--popularity-source`` (default: the evaluated folder) and its ``--popularity-split``
    (default ``train``, else ``validation``); counting the split being evaluated is refused.
    """
    from crsdata.grsu.crs import popularity_from_turns
    from crsdata.grsu.data import load_folder_config

    folder = Path(config.popularity_source or config.source)
    splits = load_folder_config(folder, "dialogues")
    split = config.popularity_split or next((s for s in ("train", "validation") if s in splits), None)
    same = folder.resolve() == config.source.resolve() and split == config.split
    if split is None or split not in splits or same:
        why = f"the split {split!r} is the one evaluated" if same else f"it has {sorted(splits)}"
        raise BadInputError(
            folder,
            "split",
            "--popularity-split",
            f"the popularity CRS counts recommendations in a training-side split, and {why}: "
            "pass --popularity-source FOLDER and/or --popularity-split SPLIT",
            "no-popularity-split",
        )
    turns, _, _ = evaluation_turns(list(splits[split]), items, only_new=False)
    return popularity_from_turns([t.targets for t in turns]), f"{folder} ({split}, {len(turns):,} turns)"


def build_crs(config: CrsEvalConfig, items: ItemTable, backends: _Backends, vectors: Any) -> Any:
    from crsdata.grsu.crs import LLMCRS, PopularityCRS, RetrievalCRS

    if config.crs == "popularity":
        counts, origin = popularity_counts_for(config, items)
        if not any(counts.values()):
            raise BadInputError(origin, "", "--popularity-source", "no recommended item of the catalog is counted")
        return PopularityCRS(items, counts, config.temperature, origin)
    if config.crs == "retrieval":
        return RetrievalCRS(vectors(), temperature=config.temperature)
    return LLMCRS(backends.get(config.crs_backend, config.crs_model), items, config.temperature)


def build_user(config: CrsEvalConfig, items: ItemTable, backends: _Backends, vectors: Any) -> Any:
    from crsdata.grsu.user import (
        AttributeCritic,
        CrossEncoderScorer,
        EmbeddingScorer,
        GenerativeScorer,
        ModelCritic,
        SimulatedUser,
        is_cross_encoder,
    )

    cross_encoder = config.scorer_backend == "local" and is_cross_encoder(config.scorer_model)
    if cross_encoder and config.critic == "model":
        raise BadInputError(
            config.scorer_model, "", "--critic", "model critiques need a language model, not a cross-encoder scorer"
        )
    if config.scorer_model in EMBEDDING_SCORERS:
        scorer: Any = EmbeddingScorer(vectors())
    elif cross_encoder:
        scorer = CrossEncoderScorer(config.scorer_model, items)
    else:
        scorer = GenerativeScorer(backends.get(config.scorer_backend, config.scorer_model), items)
    if config.critic == "model":
        critic: Any = ModelCritic(backends.get(config.scorer_backend, config.scorer_model), items)
    else:
        critic = AttributeCritic(items)
    return SimulatedUser(scorer, critic)


def check_critique_attributes(eval_set: EvalSet) -> None:
    missing = eval_set.items.missing_attributes()
    if missing:
        raise BadInputError(
            eval_set.folder,
            "config items",
            "genres/people",
            f"no item of the catalog has {', '.join(missing)}: GRSU's critiques name genre, actor, writer or "
            "director (build the folder with a catalog that has them, e.g. --catalog redial__id2info.json)",
            "missing-attributes",
        )


# ---------------------------------------------------------------------------------------------------------
# Resume


def _prepare_out(config: CrsEvalConfig) -> dict[str, dict[str, Any]]:
    """Checks ``OUT`` against the settings and returns the turns already done (key -> record)."""
    from crsdata.fileio import write_atomic

    out = config.out
    settings = config.settings()
    run_file, turns_file = out / RUN_FILE, out / TURNS_FILE
    if run_file.is_file():
        previous = json.loads(run_file.read_text(encoding="utf-8"))
        if previous.get("settings") != settings:
            before = previous.get("settings") or {}
            changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
            raise BadInputError(
                out,
                RUN_FILE,
                ", ".join(changed),
                "this folder holds a run with other settings; choose another --out or remove the folder",
                "other-run",
            )
    elif out.exists() and any(out.iterdir()):
        raise BadInputError(out, "folder", "--out", "exists and is not a crs-eval run folder", "other-run")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(run_file, json.dumps({"settings": settings}, indent=2) + "\n")
    done: dict[str, dict[str, Any]] = {}
    if turns_file.is_file():
        lines = turns_file.read_text(encoding="utf-8").splitlines()
        kept = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by a kill: everything from here is redone
            done[record["key"]] = record
            kept.append(line)
        if len(kept) < len(lines):
            write_atomic(turns_file, "".join(f"{line}\n" for line in kept))
    return done


def _append(path: Path, records: Sequence[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


# ---------------------------------------------------------------------------------------------------------
# The run


def _turn_record(turn: EvalTurn, zero_shot: list[str], outcome: SearchOutcome | None, k_max: int) -> dict[str, Any]:
    record: dict[str, Any] = {"key": turn.key, "group": turn.group, "targets": list(turn.targets)}
    record["zero_shot"] = zero_shot[:k_max]
    if outcome is not None:
        record["ranking"] = outcome.ranking[:k_max]
        record["scores"] = [round(outcome.item_scores[i], 6) for i in outcome.ranking[:k_max]]
        record["crs_calls"] = outcome.crs_calls
        record["scoring_passes"] = len(outcome.item_scores)
        record["lists"] = [
            {
                "id": node.id,
                "depth": node.depth,
                "parent": node.parent.id if node.parent is not None else None,
                "critique": node.critique.text if node.critique is not None else "",
                "items": list(node.items),
                "reward": round(node.reward, 6) if node.scores else None,
            }
            for node in outcome.nodes
        ]
    return record


def _process(chunk: list[EvalTurn], config: CrsEvalConfig, crs: Any, user: Any, k_max: int) -> list[dict[str, Any]]:
    size = config.zero_shot_size or k_max
    queries = [
        CrsQuery(t, size, derive_seed("grsu-zero-shot", config.seed, t.key), exclude=frozenset(t.mentioned))
        for t in chunk
    ]
    zero_shot = crs.recommend(queries)
    outcomes: list[SearchOutcome | None] = [None] * len(chunk)
    if config.protocol == "grsu":
        outcomes = list(
            run_search(
                chunk,
                config.plan(),
                crs.recommend,
                user.critique,
                user.score,
                list_size=config.list_size,
                seed=config.seed,
            )
        )
        user.forget(chunk)
    return [_turn_record(t, z, o, k_max) for t, z, o in zip(chunk, zero_shot, outcomes, strict=True)]


def _metrics(
    lists: list[list[str]], turns: list[EvalTurn], ks: tuple[int, ...]
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    from crsdata.metrics import ranking_scores

    scores = ranking_scores(lists, [list(t.targets) for t in turns], ks, mentioned=[list(t.mentioned) for t in turns])
    columns = {f"{name}@{k}": values for (name, k), values in scores.values.items()}
    return {key: float(column.mean()) for key, column in columns.items()}, columns


def reference_scores(
    lists: Sequence[Sequence[str]], turns: Sequence[EvalTurn], ks: tuple[int, ...]
) -> dict[str, float]:
    """Recall/NDCG/MRR@k as GRSU's released evaluation (``BaseTask.cal_metric``) computes them, to set beside ours.

    Per turn, every ground-truth item is scored on its own and the turn's value is the mean over its items; the
    run's value is the mean over turns. Where this differs from :func:`crsdata.metrics.ranking_scores`:

    - NDCG of one item is ``1 / log2(rank + 2)`` with no ideal-DCG normalisation (the same when a turn has one
      target, lower when it has several);
    - NDCG@k and MRR@k are computed on the list cut at the *largest* k for every k (the reference code reuses the
      list of its last cut-off), so its NDCG@10 equals its NDCG@50;
    - mentioned items are not taken out of the list (GRSU's turn filter leaves none among the targets; our CRSs
      never recommend them, so the lists are the same).
    """
    k_tail = max(ks)
    totals: dict[str, float] = {f"{name}@{k}": 0.0 for name in ("Recall", "NDCG", "MRR") for k in ks}
    for ranked, turn in zip(lists, turns, strict=True):
        rank = {item: i for i, item in reversed(list(enumerate(ranked[:k_tail])))}
        targets = turn.targets
        for k in ks:
            totals[f"Recall@{k}"] += sum(rank.get(t, k_tail) < k for t in targets) / len(targets)
            totals[f"NDCG@{k}"] += sum(1 / np.log2(rank[t] + 2) for t in targets if t in rank) / len(targets)
            totals[f"MRR@{k}"] += sum(1 / (rank[t] + 1) for t in targets if t in rank) / len(targets)
    return {key: float(value / len(turns)) for key, value in totals.items()}


def summarise(
    config: CrsEvalConfig, eval_set: EvalSet, records: list[dict[str, Any]], extra: dict[str, Any]
) -> dict[str, Any]:
    """results.json's content from the per-turn records (in the order of ``eval_set.turns``)."""
    turns = eval_set.turns
    groups = [t.group for t in turns]
    zero_means, zero_columns = _metrics([r["zero_shot"] for r in records], turns, config.ks)
    zero = {**zero_means, "crs_calls": len(turns), "scoring_passes": 0}
    zero["intervals"] = bootstrap(zero_columns, groups, config.bootstrap, config.seed)
    results: dict[str, Any] = {
        "protocol": config.protocol,
        "crs": config.crs,
        "source": eval_set.source_name,
        "dataset": dataset_name(eval_set.source_name),
        "split": config.split,
        "n_turns": len(turns),
    }
    if config.protocol == "grsu":
        means, columns = _metrics([r["ranking"] for r in records], turns, config.ks)
        interactive: dict[str, Any] = dict(means)
        interactive["crs_calls"] = sum(r["crs_calls"] for r in records)
        interactive["scoring_passes"] = sum(r["scoring_passes"] for r in records)
        interactive["intervals"] = bootstrap(columns, groups, config.bootstrap, config.seed)
        differences = {key: columns[key] - zero_columns[key] for key in columns}
        intervals = bootstrap(differences, groups, config.bootstrap, config.seed)
        results.update({k: interactive[k] for k in (*means, "crs_calls", "scoring_passes")})
        results["critiques"] = sum(1 for r in records for node in r["lists"] if node["critique"])
        results["grsu"] = interactive
        results["difference"] = {
            key: {"mean": float(differences[key].mean()), "interval": intervals.get(key)} for key in differences
        }
        plan = config.plan()
        results.update(beam_width=plan.beam_width, expand_width=plan.expand_width, depth=plan.depth)
        results["search"] = {
            "method": plan.method,
            "beam_width": plan.beam_width,
            "expand_width": plan.expand_width,
            "depth": plan.depth,
            "lists_per_turn": plan.total_lists,
            "list_size": config.list_size,
        }
    else:
        results.update({k: zero[k] for k in (*zero_means, "crs_calls", "scoring_passes")})
    results["zero_shot"] = zero
    # GRSU's own way of averaging (see reference_scores), on the same lists: the figures to set beside the paper's.
    results["reference_metrics"] = {"zero_shot": reference_scores([r["zero_shot"] for r in records], turns, config.ks)}
    if config.protocol == "grsu":
        results["reference_metrics"]["grsu"] = reference_scores([r["ranking"] for r in records], turns, config.ks)
    results["bootstrap_samples"] = config.bootstrap
    results["data"] = {
        "folder": str(eval_set.folder),
        "kind": eval_set.kind,
        "records": eval_set.records,
        "eligible": eval_set.eligible,
        "skipped": dict(sorted(eval_set.skipped.items())),
        "catalog_items": len(eval_set.items),
    }
    results.update(extra)
    results["settings"] = config.settings()
    results["command"] = command_line(config)
    missing = [k for k in METRIC_KEYS if k not in results]
    if missing:  # only when --k changed the cut-offs; the card shows what there is
        results["note"] = f"not computed at these cut-offs: {', '.join(missing)}"
    return results


def example_text(eval_set: EvalSet, record: dict[str, Any]) -> str:
    """The first turn of the run, told for a reader: conversation, targets, zero-shot list, search, ranking."""
    items = eval_set.items
    turn = next(t for t in eval_set.turns if t.key == record["key"])

    def titles(ids: Sequence[str], n: int = 5) -> str:
        return "; ".join(items.title(i) for i in ids[:n] if i in items) or "(nothing)"

    lines = ["Conversation (end):", "", "```"]
    lines += [f"{'User' if role == 'user' else 'System'}: {text}" for role, text in turn.context[-4:]]
    lines += ["```", "", f"- Ground truth: {titles(turn.targets)}", f"- Zero-shot top 5: {titles(record['zero_shot'])}"]
    # The best-rewarded list of each depth, with the critique that led to it.
    best: dict[int, dict[str, Any]] = {}
    for node in record.get("lists", []):
        reward = node["reward"] if node["reward"] is not None else -1.0
        if node["depth"] not in best or reward > (best[node["depth"]]["reward"] or -1.0):
            best[node["depth"]] = node
    for depth, node in sorted(best.items()):
        reward = f"{node['reward']:.3f}" if node["reward"] is not None else "n/a"
        critique = f', after the critique "{node["critique"]}"' if node["critique"] else ""
        head = f"- Best list at depth {depth} (list {node['id']}{critique}), reward {reward}"
        lines.append(f"{head}: {titles(node['items'])}")
    if "ranking" in record:
        scored = ", ".join(
            f"{items.title(i)} {s:.3f}" for i, s in zip(record["ranking"][:5], record["scores"][:5], strict=False)
        )
        lines.append(f"- Final ranking top 5: {scored}")
    return "\n".join(lines)


def run_crs_eval(config: CrsEvalConfig) -> dict[str, Any]:
    """Runs (or resumes) an evaluation, writes ``OUT``, and returns the results (see the module doc)."""
    from tqdm.auto import tqdm

    from crsdata.fileio import write_atomic

    started = time.perf_counter()
    eval_set = load_eval_set(
        config.source, config.split, n=config.n, seed=config.seed, context_chars=config.context_chars
    )
    if config.protocol == "grsu":
        check_critique_attributes(eval_set)
    done = _prepare_out(config)
    backends = _Backends(config.max_batch_size, config.max_model_len)
    k_max = max(config.ks)
    try:
        vectors = functools.cache(lambda: ItemVectors(eval_set.items))  # built on first use, shared by CRS and user
        crs = build_crs(config, eval_set.items, backends, vectors)
        user = build_user(config, eval_set.items, backends, vectors) if config.protocol == "grsu" else None
        todo = [t for t in eval_set.turns if t.key not in done]
        bar = tqdm(
            total=len(eval_set.turns),
            initial=len(eval_set.turns) - len(todo),
            unit="turn",
            desc=f"crs-eval {config.crs}/{config.protocol}",
            disable=not config.progress,
        )
        for start in range(0, len(todo), config.batch_turns):
            chunk = todo[start : start + config.batch_turns]
            records = _process(chunk, config, crs, user, k_max)
            _append(config.out / TURNS_FILE, records)
            done.update((r["key"], r) for r in records)
            bar.update(len(chunk))
        bar.close()
        extra: dict[str, Any] = {"crs_details": crs.describe(), "resumed_turns": len(eval_set.turns) - len(todo)}
        if user is not None:
            extra["user"] = user.describe()
    finally:
        backends.close()
    extra["wall_seconds"] = round(time.perf_counter() - started, 1)
    records = [done[t.key] for t in eval_set.turns]
    results = summarise(config, eval_set, records, extra)
    write_atomic(config.out / RESULTS_FILE, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    write_atomic(config.out / CARD_FILE, render_card(results, example_text(eval_set, records[0])))
    if config.update_card:
        update_source_card(config.source / "README.md", source_section(results))
    return results
