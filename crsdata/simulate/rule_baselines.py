"""Replay's rule baselines: users with no language model that a user simulator must beat.

The trivial policies (``accept_first``, ``never``, ``random``) know nothing about the persona. These two know what
the simulator knows, so a simulator that does not beat them has learnt nothing a rule could not do:

- ``exact_match``: accepts the first proposed film whose shown catalog facts (:func:`film_facts`: genres, year,
  director, stars, plot; the decade follows from the year) have every field of the rule written in the persona's
  cues (the target attributes) as whole words. The rule is the set of up to three field families
  (:data:`FIELDS`) that scores the best decision balanced accuracy on the tuning split. With cues that repeat
  shown fields (the ``none`` grounding's "A comedy movie from the 1990s, directed by ...") it is a lookup; with
  cues that name qualities the facts do not spell out (``--grounding catalog``) it should be weak.
- ``similarity``: accepts the first proposed film whose facts have a MiniLM cosine (the wheel's
  all-MiniLM-L6-v2 through :class:`crsdata.metrics.match.ItemEmbeddings`, the film's text being
  :func:`film_facts`) of at least ``tau`` with the cues; ``tau`` is the one with the best decision balanced
  accuracy on the tuning split.

Both decline every film the persona lists as watched (its "seen" knowledge, so ``--persona-history`` sets it)
and end the dialogue at their accept, as a replay does. The tuning split is the source's ``train`` split; a
source without one tunes on the replayed split itself, and the results say so (``chosen_on``, in-sample).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crsdata.backends.base import Backend, BackendError, ChatRequest, Generation, SamplingParams
from crsdata.errors import BadInputError
from crsdata.schema import load_extra
from crsdata.simulate.grounding import MAX_PLOT_CHARS, film_facts
from crsdata.simulate.grounding import _people as people_of
from crsdata.simulate.leak import normalize_text
from crsdata.simulate.persona import catalog_row

if TYPE_CHECKING:
    from crsdata.simulate.job import SimulateConfig
    from crsdata.simulate.replay import ReplaySimulation

RULES = ("exact_match", "similarity")
# Field families of a film's shown facts that exact_match can look for in the cues.
FIELDS = ("genre_list", "genre", "decade", "year", "director", "star", "plot")
MAX_RULE_FIELDS = 3
TUNING_SPLIT = "train"
CHOSEN_BY = "decision_balanced_accuracy"
TAU_GRID = np.round(np.arange(0.0, 1.0001, 0.005), 3)
BASELINES_NAME = "baselines.json"


@dataclass
class RuleDialogue:
    """What a rule needs of one replayed dialogue: its proposals, its target and its persona's knowledge."""

    replay_id: str
    target: str
    proposals: list[tuple[int, list[str]]]
    cues: str
    seen: frozenset[str]
    matches: dict[str, frozenset[str]] = field(default_factory=dict)  # item id -> families found in the cues
    scores: dict[str, float] = field(default_factory=dict)  # item id -> cosine(cues, facts); absent: no facts


def _contains(text: str, value: str) -> bool:
    value = normalize_text(value)
    return bool(value) and f" {value} " in f" {text} "


def fact_matches(cues: str, row: Mapping[str, Any]) -> frozenset[str]:
    """The field families of ``row``'s shown facts that ``cues`` write out as whole words (normalised text):
    ``genre_list`` (every genre), ``genre`` (any genre), ``decade`` ("1990s" or "90s"), ``year``, ``director``,
    ``star`` (one of the two stars shown), ``plot`` (a cue phrase of two words or more inside the shown plot)."""
    text = normalize_text(cues)
    genres = [str(g) for g in row.get("genres") or [] if str(g).strip()]
    found = set()
    if genres and all(_contains(text, g) for g in genres):
        found.add("genre_list")
    if any(_contains(text, g) for g in genres):
        found.add("genre")
    year = int(row["year"]) if str(row.get("year") or "").isdigit() else None
    if year and (_contains(text, f"{year // 10 * 10}s") or _contains(text, f"{year % 100 // 10 * 10:02d}s")):
        found.add("decade")
    if year and _contains(text, str(year)):
        found.add("year")
    if any(_contains(text, name) for name in people_of(row, ("direct",))[:1]):
        found.add("director")
    if any(_contains(text, name) for name in people_of(row, ("star", "actor", "actress", "cast"))[:2]):
        found.add("star")
    shown = normalize_text(" ".join(str(row.get("plot") or "").split())[:MAX_PLOT_CHARS])
    phrases = [normalize_text(p) for p in cues.replace('"', ".").replace(":", ".").replace(",", ".").split(".")]
    if any(len(p.split()) >= 2 and f" {p} " in f" {shown} " for p in phrases):
        found.add("plot")
    return frozenset(found)


def rule_decisions(dialogue: RuleDialogue, accepts: Callable[[str], bool]) -> list[dict[str, Any]]:
    """Decisions of a rule user: at each proposal, the first film it ``accepts`` that the persona has not seen is
    accepted (the turn's other films declined) and the dialogue ends; otherwise the turn's films are declined."""
    decisions: list[dict[str, Any]] = []
    for round_, items in dialogue.proposals:
        chosen = next((i for i in items if i not in dialogue.seen and accepts(i)), None)
        decisions += [{"item_id": i, "accepted": i == chosen, "round": round_} for i in items]
        if chosen is not None:
            break
    return decisions


def exact_rule(dialogue: RuleDialogue, fields: frozenset[str]) -> list[dict[str, Any]]:
    return rule_decisions(dialogue, lambda item: fields <= dialogue.matches.get(item, frozenset()))


def similarity_rule(dialogue: RuleDialogue, tau: float) -> list[dict[str, Any]]:
    return rule_decisions(dialogue, lambda item: dialogue.scores.get(item, -np.inf) >= tau)


def outcomes_of(dialogues: Sequence[RuleDialogue], decisions: Sequence[list[dict[str, Any]]]) -> dict[str, Any]:
    """SR/ET/FR with the outcome class per dialogue (``labels``) and the per-proposal decision scores."""
    from crsdata.metrics.outcomes import classify_outcomes, decision_scores, sr_et_fr

    targets = [d.target for d in dialogues]
    rates = sr_et_fr(decisions, targets)
    scores = decision_scores(decisions, targets)
    return {
        "sr": rates["sr"],
        "et": rates["et"],
        "fr": rates["fr"],
        "decision_balanced_accuracy": scores["decision_balanced_accuracy"],
        "decision_accuracy": scores["decision_accuracy"],
        "decision_counts": scores["decision_counts"],
        "labels": classify_outcomes(decisions, targets),
    }


def _key(scored: Mapping[str, Any]) -> tuple[float, float]:
    balanced = scored["decision_balanced_accuracy"]
    return (-1.0 if balanced is None else balanced, scored["sr"])


def exact_rules() -> list[frozenset[str]]:
    """Every rule exact_match chooses from: the sets of one to :data:`MAX_RULE_FIELDS` field families."""
    return [frozenset(c) for n in range(1, MAX_RULE_FIELDS + 1) for c in itertools.combinations(FIELDS, n)]


def rule_name(fields: frozenset[str]) -> str:
    return "+".join(f for f in FIELDS if f in fields)


def choose_exact_rule(dialogues: Sequence[RuleDialogue]) -> tuple[frozenset[str], dict[str, Any]]:
    """The field set with the best decision balanced accuracy on ``dialogues`` (then SR; then fewer fields, then
    :data:`FIELDS` order), and its scores there."""
    best: tuple[frozenset[str], dict[str, Any]] | None = None
    for fields in exact_rules():
        scored = outcomes_of(dialogues, [exact_rule(d, fields) for d in dialogues])
        if best is None or _key(scored) > _key(best[1]):
            best = (fields, scored)
    assert best is not None
    return best


def choose_tau(dialogues: Sequence[RuleDialogue]) -> tuple[float, dict[str, Any]]:
    """The threshold of :data:`TAU_GRID` (0 to 1 by 0.005) with the best decision balanced accuracy on
    ``dialogues`` (then SR; then the lowest), and its scores there."""
    best: tuple[float, dict[str, Any]] | None = None
    for tau in TAU_GRID:
        scored = outcomes_of(dialogues, [similarity_rule(d, float(tau)) for d in dialogues])
        if best is None or _key(scored) > _key(best[1]):
            best = (float(tau), scored)
    assert best is not None
    return best


# ---------------------------------------------------------------------------------------------------------
# Views of replayed dialogues, with the persona the simulator holds.


def fact_embeddings(catalog: Any) -> Any:
    """MiniLM vectors of the catalog films' facts (:func:`film_facts`), encoded on demand and cached on disk by
    :class:`crsdata.metrics.match.ItemEmbeddings` (the cache is keyed by every text, so runs share it)."""
    from crsdata.metrics.match import ItemEmbeddings

    texts = {
        str(row["item_id"]): film_facts(row)
        for row in catalog.rows()
        if row.get("item_id") and (row.get("genres") or row.get("plot") or row.get("people"))
    }
    if not texts:
        raise BadInputError(
            "", "", "--catalog", "no catalog film has facts (genres, plot, people) to compare cues with"
        )
    return ItemEmbeddings(texts)


def view(
    replay_id: str, target: str, points: Sequence[tuple[int, Sequence[str]]], profile: Mapping[str, Any]
) -> RuleDialogue:
    """A dialogue as the rules see it: ``profile`` is the persona as ``user_profile`` (cues = its target
    attributes, seen = its watched items)."""
    seen = frozenset(str(w.get("item_id")) for w in profile.get("watched_items") or [] if w.get("item_id"))
    return RuleDialogue(
        replay_id,
        target,
        [(int(index), [str(i) for i in ids]) for index, ids in points],
        str(profile.get("target_attributes") or ""),
        seen,
    )


def replayed_views(records: Sequence[Mapping[str, Any]]) -> list[RuleDialogue]:
    """Views of records written by a replay run (its ``extra`` holds the target and the proposals)."""
    views = []
    for record in records:
        extra = load_extra(record["extra"])
        views.append(view(record["dialogue_id"], extra["target_id"], extra["proposals"], record["user_profile"]))
    return views


def drawn_views(
    simulation: ReplaySimulation, records: Sequence[dict[str, Any]], seed: int
) -> tuple[list[RuleDialogue], Counter[str]]:
    """Views of every record of a split in the order, with the ids and seeds, a replay run over the whole split
    would draw them (so the personas are those of ``crsdata replay --seed SEED``); records the run would skip are
    counted by reason."""
    from crsdata.simulate.engine import dialogue_id, dialogue_seed, source_index

    views, skipped = [], Counter()
    for index in range(len(records)):
        record = records[source_index(seed, index, len(records))]
        try:
            state = simulation.start(record, dialogue_id(simulation.name, seed, index), dialogue_seed(seed, index))
        except BadInputError as err:
            skipped[err.reason or "bad-input"] += 1
            continue
        replay = state.context["replay"]
        points = [(i, [x["item_id"] for x in items]) for i, items in replay["points"]]
        profile = simulation.persona(state).to_profile()
        views.append(view(state.dialogue_id, replay["target"], points, profile))
    return views, skipped


def add_features(views: Sequence[RuleDialogue], catalog: Any, embeddings: Any) -> int:
    """Fills each view's ``matches`` and ``scores`` for its proposed films; returns the number of proposed films
    the catalog has no facts for (never accepted by either rule)."""
    cue_vectors = np.asarray(embeddings.embedder.encode([v.cues for v in views]), dtype=np.float32)
    cue_vectors /= np.maximum(np.linalg.norm(cue_vectors, axis=1, keepdims=True), 1e-12)
    rows = {}
    for item in {i for v in views for _, items in v.proposals for i in items}:
        row = catalog_row(catalog, item)
        if row is not None and str(row.get("item_id")) in embeddings:
            rows[item] = row
    order = sorted({str(r["item_id"]) for r in rows.values()})
    matrix = embeddings.vectors(order) if order else np.zeros((0, cue_vectors.shape[1]), dtype=np.float32)
    position = {item_id: n for n, item_id in enumerate(order)}
    missing = 0
    for v, vector in zip(views, cue_vectors, strict=True):
        for _, items in v.proposals:
            for item in items:
                row = rows.get(item)
                if row is None:
                    missing += 1
                    continue
                v.matches[item] = fact_matches(v.cues, row)
                v.scores[item] = float(matrix[position[str(row["item_id"])]] @ vector)
    return missing


def _public(scored: Mapping[str, Any]) -> dict[str, Any]:
    return {k: scored[k] for k in ("sr", "et", "fr", "decision_balanced_accuracy", "decision_accuracy")}


def score_rules(
    test: Sequence[RuleDialogue], tuning: Sequence[RuleDialogue], chosen_on: str, samples: int, seed: int
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, list[float]]]]:
    """Both rules chosen on ``tuning`` (described by ``chosen_on``) and scored on ``test``: the ``baselines``
    entries (``{sr, et, fr, decision_balanced_accuracy, ...}`` with the choice and its tuning scores) and their
    bootstrap intervals (the same resamples of the same dialogue ids as the simulator's and the trivial
    policies')."""
    from crsdata.grsu.report import bootstrap
    from crsdata.metrics.outcomes import OUTCOME_CLASSES

    fields, exact_tuned = choose_exact_rule(tuning)
    tau, similarity_tuned = choose_tau(tuning)
    exact = outcomes_of(test, [exact_rule(d, fields) for d in test])
    similar = outcomes_of(test, [similarity_rule(d, tau) for d in test])
    common = {"chosen_on": chosen_on, "chosen_by": CHOSEN_BY, "declines_seen": True}
    baselines = {
        "exact_match": {
            **_public(exact),
            "decision_counts": exact["decision_counts"],
            "rule": rule_name(fields),
            **common,
            "tuning": {**_public(exact_tuned), "n_dialogues": len(tuning)},
        },
        "similarity": {
            **_public(similar),
            "decision_counts": similar["decision_counts"],
            "tau": tau,
            "tau_split": chosen_on,
            **common,
            "tuning": {**_public(similarity_tuned), "n_dialogues": len(tuning)},
        },
    }
    columns = {
        f"{name}.{rate}": np.array([label == cls for label in scored["labels"]], dtype=float)
        for name, scored in (("exact_match", exact), ("similarity", similar))
        for rate, cls in zip(("sr", "et", "fr"), OUTCOME_CLASSES, strict=True)
    }
    pairs = bootstrap(columns, [d.replay_id for d in test], samples, seed)
    intervals = {
        name: {rate: list(pairs[f"{name}.{rate}"]) for rate in ("sr", "et", "fr") if f"{name}.{rate}" in pairs}
        for name in RULES
    }
    return baselines, {name: pair for name, pair in intervals.items() if pair}


def tuning_views(
    simulation: ReplaySimulation, source_name: str, split: str, seed: int
) -> tuple[list[RuleDialogue], str]:
    """Views of the source's train split (its personas as replay would build them) and where they came from; the
    replayed split itself when the source has no train split (or it is the one replayed)."""
    from crsdata.simulate.source import load_dataset_source

    if split != TUNING_SPLIT and Path(source_name).is_dir():
        try:
            train = load_dataset_source(source_name, TUNING_SPLIT)
        except BadInputError as err:
            if err.reason not in ("missing-split", "no-records"):
                raise
        else:
            views, _ = drawn_views(simulation, train.records, seed)
            if views:
                return views, TUNING_SPLIT
    return [], f"{split} (in-sample: the source has no {TUNING_SPLIT} split)"


def rule_baselines(
    simulation: ReplaySimulation,
    test: list[RuleDialogue],
    source_name: str,
    split: str,
    samples: int,
    seed: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, list[float]]], dict[str, Any]]:
    """``exact_match`` and ``similarity`` on the replayed dialogues ``test`` (see the module doc), with their
    intervals and the facts behind them (``rule_baselines_info``: embedder, films without facts, tuning
    dialogues)."""
    if not test:
        return {}, {}, {}
    if simulation.catalog is None:
        raise BadInputError(source_name, "", "--catalog", "the rule baselines need a catalog to read films' facts")
    tuning, chosen_on = tuning_views(simulation, source_name, split, seed)
    embeddings = fact_embeddings(simulation.catalog)
    missing = add_features(test, simulation.catalog, embeddings)
    if tuning:
        add_features(tuning, simulation.catalog, embeddings)
    baselines, intervals = score_rules(test, tuning or test, chosen_on, samples, seed)
    info = {
        "embedder": embeddings.embedder.name,
        "proposed_films_without_facts": missing,
        "tuning_dialogues": len(tuning or test),
        "persona_history": getattr(simulation, "persona_history", ""),
    }
    return baselines, intervals, info


# ---------------------------------------------------------------------------------------------------------
# `crsdata replay --baselines-only`: the rules on a whole split, with no model loaded.


class NoModel(Backend):
    """The backend of a run that loads no model: any generation is an error."""

    model_id = "none"

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        raise BackendError("--baselines-only loads no model")

    def option_probabilities(self, requests: list[ChatRequest], options: list[str]) -> list[dict[str, float]]:
        raise BackendError("--baselines-only loads no model")


def baselines_only(config: SimulateConfig) -> dict[str, Any]:
    """The rule baselines (and the trivial ``accept_first``) on every usable dialogue of ``config``'s split, the
    personas drawn as ``crsdata replay`` with the same options and seed would: no language model is loaded.
    Writes ``OUT/baselines.json`` and returns what it holds."""
    from crsdata.fileio import write_atomic
    from crsdata.metrics.outcomes import OUTCOME_CLASSES, baseline_outcomes
    from crsdata.simulate.replay import ReplaySimulation, _version

    options = config.options
    assert options is not None
    source = ReplaySimulation.load_source(config.source, config.split, options)
    backend = NoModel()
    params = {"user": config.sampling(), "recommender": config.sampling()}
    simulation = ReplaySimulation.from_options(
        {"user": backend, "recommender": backend}, params, config.turns, options, source
    )
    test, skipped = drawn_views(simulation, source.records, config.seed)
    if config.n is not None:
        test = test[: config.n]
    if not test:
        raise BadInputError(source.name, f"split {source.split}", "", "no dialogue can be replayed", "no-records")
    samples = getattr(options, "bootstrap", 1000)
    baselines, intervals, info = rule_baselines(simulation, test, source.name, source.split, samples, config.seed)
    first = baseline_outcomes([d.proposals for d in test], [d.target for d in test], 0.0, config.seed)
    labels = first["accept_first"]
    accept_first = {
        rate: labels.count(cls) / len(labels) for rate, cls in zip(("sr", "et", "fr"), OUTCOME_CLASSES, strict=True)
    }
    results = {
        "n_dialogues": len(test),
        "n_skipped": sum(skipped.values()),
        "skipped": dict(sorted(skipped.items())),
        "baselines": {"accept_first": accept_first, **baselines},
        "baseline_intervals": intervals,
        "rule_baselines": info,
        "source": source.name,
        "split": source.split,
        "grounding": simulation.grounding,
        "persona_history": simulation.persona_history,
        "seed": config.seed,
        "bootstrap_samples": samples,
        "command": config.command,
        "crsdata_version": _version(),
    }
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / BASELINES_NAME, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return results
