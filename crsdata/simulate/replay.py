"""Replay: real dialogues fed to a user simulator, its accept/reject decisions scored as SR, ET and FR.

Interplay (section 4.3.1, 5.1.1) judges a user simulator by *replaying* real conversations: the simulator holds
the dialogue's persona (general preferences, watched movies with reviews, the target's attributes, never its
title), the real recommender's turns reach it one by one, and at each recommendation it accepts or not. Success
(SR): it accepts the ground-truth target; early termination (ET): it accepts another item before the target was
proposed; failure (FR): it accepts nothing (see :mod:`crsdata.metrics.outcomes` for the exact classes).

This is the ``replay`` simulation kind (``crsdata replay``, or ``crsdata simulate replay``), so the run engine
batches, shards and resumes it like any other kind; only its step contract and its export differ.

One target, merged turns
    Each dialogue has one target (:func:`replay_target`; Interplay's protocol), the one the persona's target
    attributes describe and the user simulator's accept labels use. Consecutive messages of one speaker are
    merged into one turn (:func:`crsdata.simulate.turns.merge_consecutive_turns`), as in the simulator's
    training, so ``round`` indexes merged turns.

Which dialogues
    Each source dialogue is used at most once (:attr:`ReplaySimulation.draws_each_record_once`): ``--n N`` scores
    the first ``N`` dialogues of a seeded shuffle of the split that can be replayed (the whole split without
    ``--n``); those drawn on the way and skipped are counted by reason. A dialogue is skipped when it has no
    target (the builder's ``extra.target_rule_miss`` reason, e.g. ReDial's ``no-suggested-unseen-liked-film``;
    ``target_rejected`` for a dialogue that ended in a reject; else ``no_target_items``), when no recommender
    turn names a catalog item (``no_recommender_items``: nothing to accept or reject), or when no persona can
    be built for it (the persona's reasons, e.g. ``no-history``). A dialogue whose answers kept failing at the
    backend is left out of the scores (``backend_error``).

One step per proposal (teacher forcing)
    A *proposal* is a recommender turn naming catalog items that no earlier recommender turn named
    (:func:`proposals`). At each one the user simulator gets the real dialogue up to and including that turn and
    writes its next turn (the Interplay user prompt, either style). The real user turns stay in the context, so
    it stays coherent with what the real recommender says next; target titles in those real user turns are
    replaced by "that movie" (:func:`crsdata.simulate.leak.scrub_titles`), so the only place a target title can
    reach the simulator is a real recommender turn: that is the protocol. Every request passes
    :func:`crsdata.simulate.leak.assert_no_target_leak` against the recommender turns alone (and raises).

    - ``accept``: the proposed item the answer names (its tagged titles first, then a fuzzy title match in the
      text) is accepted, or the turn's last proposed item when it names none; the turn's other items are
      recorded as not accepted. The dialogue stops there (end reason ``accept``).
    - any other action, or an unparseable or empty answer: every proposed item of the turn is not accepted
      (unparseable and repaired answers are counted). After the last proposal the dialogue ends (``reject``).

    Items the catalog did not link (empty ``item_id``) cannot be scored against targets; they are counted as
    ``unlinked_proposals`` and not asked about.

Records
    Each replayed dialogue is a schema record (so the engine's shards hold it): the real turns up to the last
    judged recommender turn (user turns scrubbed as fed), the persona as ``user_profile``, the targets, and in
    ``extra``: ``source_dialogue_id``, ``decisions`` and ``answers`` (the simulator's action and response at
    each proposal). ``provenance.recommender_model`` is empty: the recommender was the real one.

Export (:meth:`ReplaySimulation.export`) writes, instead of a dataset folder:

- ``results.json``: ``sr``, ``et``, ``fr`` with bootstrap 95% intervals (``intervals``), ``n_dialogues``,
  ``n_skipped`` and ``skipped`` (by reason), class counts, answer counters, the settings and the command;
  ``baselines`` (``accept_first``, ``never``, ``random``, each ``{sr, et, fr}`` on the same dialogues; see
  :func:`crsdata.metrics.outcomes.baseline_rates`; ``random`` accepts each proposal with the simulator's own
  observed accepts per answer, ``baseline_random_accept_rate``, seeded by ``--seed``; and the rules with the
  persona's knowledge, ``exact_match`` and ``similarity``, chosen on the source's train split:
  :mod:`crsdata.simulate.rule_baselines`), ``persona_history`` (``--persona-history``) and the per-proposal
  scores ``decision_accuracy``, ``decision_balanced_accuracy``, ``accept_precision``, ``accept_recall``
  (:func:`crsdata.metrics.outcomes.decision_scores`, with ``decision_counts``);
- ``decisions.json``: one entry per scored dialogue, ``{"source_dialogue_id", "replay_id", "target_ids",
  "outcome", "decisions": [{"item_id", "accepted", "round"}], "answers": [{"round", "action", "response"}]}``;
  ``target_ids`` holds exactly one id; ``decisions`` end at the first accepted item, ``round`` is the index of
  the (merged) recommender turn that proposed the item (items of one turn share it), the format
  :func:`crsdata.metrics.outcomes.sr_et_fr` reads;
- ``README.md``: a card with the table, the protocol, the accounting and the command.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from crsdata.backends.base import ChatRequest, Generation
from crsdata.errors import BadInputError
from crsdata.fileio import write_atomic
from crsdata.schema import Action, EndReason, Role, dump_extra, item_ref
from crsdata.simulate.actions import ParsedTurn
from crsdata.simulate.base import DialogueState, SimulationOptions, option
from crsdata.simulate.interplay import PERSONA_HISTORIES, InterplayOptions, InterplaySimulation
from crsdata.simulate.leak import (
    assert_no_target_leak,
    fuzzy_title_match,
    normalize_text,
    scrub_titles,
    split_title,
    target_titles,
)

if TYPE_CHECKING:
    from crsdata.simulate.base import Exported, ExportTarget
    from crsdata.simulate.results import RunResult
    from crsdata.simulate.source import SimulationSource

SOURCE = "replay"
RESULTS_NAME = "results.json"
DECISIONS_NAME = "decisions.json"
CARD_NAME = "README.md"
# Skip reasons of the replay itself (the persona builder adds its own).
NO_TARGET_ITEMS = "no_target_items"
TARGET_REJECTED = "target_rejected"
NO_RECOMMENDER_ITEMS = "no_recommender_items"
BACKEND_ERROR = "backend_error"
RATES = ("sr", "et", "fr")
BASELINES = ("accept_first", "never", "random")
DECISION_KEYS = ("decision_accuracy", "decision_balanced_accuracy", "accept_precision", "accept_recall")
PAPER_NOTE = (
    "The paper's figures, on its own data and models, not these dialogues: Interplay (Table 1, PEARL test set, "
    "2,069 dialogues): fine-tuned 8B user simulators SR 0.93-0.95, ET 0.02-0.05, "
    "FR 0.02; zero-shot Llama3.1 70B SR 0.36 / ET 0.00 / FR 0.64; Qwen3 32B SR 0.78 / ET 0.01 / FR 0.21."
)


def proposals(turns: list[dict[str, Any]]) -> tuple[list[tuple[int, list[dict[str, str]]]], int]:
    """(turn index, newly proposed linked items) of each recommender turn that proposes, and the number of
    unlinked items that recommender turns named. An item is newly proposed when no earlier *recommender* turn
    named it: a film the seeker asked about first is still proposed when the recommender names it, as the target
    rule counts it (the first film named in a recommender message)."""
    mentioned: set[str] = set()
    found = []
    unlinked = 0
    for index, turn in enumerate(turns):
        items = turn.get("items", [])
        if turn.get("role") == Role.RECOMMENDER.value:
            unlinked += sum(1 for i in items if not i.get("item_id"))
            new = []
            for item in items:
                if item.get("item_id") and item["item_id"] not in mentioned and item not in new:
                    new.append({"item_id": item["item_id"], "title": item.get("title", "")})
            if new:
                found.append((index, new))
            mentioned.update(i["item_id"] for i in items if i.get("item_id"))
    return found, unlinked


def replay_target(record: dict[str, Any]) -> tuple[str, str]:
    """The dialogue's one target id and, when it has none, the skip reason.

    Interplay's protocol has one target per dialogue. A builder writes it as the first of ``target_items``
    (ReDial: the first film a recommender names that the seeker's questionnaire marks suggested, not seen and
    liked; PEARL: the generator's target; INSPIRED: the recommended movie), so the first linked one is it. A
    record whose builder found none says why in ``extra.target_rule_miss`` (the reason its skip is counted
    under); a dialogue that ended in ``reject`` (INSPIRED's seekers who declined the recommended movie) has no
    film the seeker wanted (``target_rejected``). Replay, the persona's target attributes and the user
    simulator's accept labels all use this.
    """
    from crsdata.schema import load_extra

    extra = record.get("extra") or {}
    if isinstance(extra, str):
        extra = load_extra(extra)
    if (record.get("outcome") or {}).get("end_reason") == EndReason.REJECT.value:
        return "", TARGET_REJECTED
    for target in record.get("target_items") or []:
        if target.get("item_id"):
            return str(target["item_id"]), ""
    return "", str(extra.get("target_rule_miss") or NO_TARGET_ITEMS)


def linked_targets(record: dict[str, Any]) -> list[str]:
    """The one target as a list (empty when there is none): ``decisions.json``'s ``target_ids``."""
    target, _ = replay_target(record)
    return [target] if target else []


def replay_turns(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The turns replay feeds: consecutive messages of one speaker merged, as in the user simulator's training."""
    from crsdata.simulate.turns import merge_consecutive_turns

    return merge_consecutive_turns(record.get("turns") or [])


def unusable(record: dict[str, Any]) -> BadInputError | None:
    """Why ``record`` cannot be replayed (no linked target, no proposal), as the error a skip records; None when
    it can (a persona may still fail to build, which :meth:`ReplaySimulation.start` finds)."""
    where = f"dialogue {record.get('dialogue_id', '?')}"
    source_file = (record.get("provenance") or {}).get("source_file", "")
    target, reason = replay_target(record)
    if not target:
        message = f"no target item ({reason}): nothing to judge the decisions against"
        return BadInputError(source_file, where, "target_items", message, reason)
    if not proposals(replay_turns(record))[0]:
        message = "no recommender turn names a catalog item: nothing to accept or reject"
        return BadInputError(source_file, where, "turns", message, NO_RECOMMENDER_ITEMS)
    return None


def _chosen(parsed: ParsedTurn, items: list[dict[str, str]]) -> dict[str, str]:
    """The proposed item the accepting answer names; the last one when it names none."""
    for title in parsed.titles:
        for item in items:
            if normalize_text(split_title(title)[0]) == normalize_text(split_title(item["title"])[0]):
                return item
    for item in reversed(items):
        if item["title"] and fuzzy_title_match(parsed.response, item["title"]):
            return item
    return items[-1]


def _decision(item: dict[str, str], accepted: bool, turn_index: int) -> dict[str, Any]:
    return {"item_id": item["item_id"], "accepted": accepted, "round": turn_index}


@dataclass
class ReplayOptions(InterplayOptions):
    """``crsdata replay`` options: the user simulator's prompt options (the persona's history among them), and
    the intervals."""

    max_resamples: int = option(
        0, "not used by replay: every answer is a decision, scored as the model wrote it", in_run_config=False
    )
    bootstrap: int = option(
        1000, "bootstrap resamples for the 95%% intervals (default 1000; 0: none)", in_run_config=False
    )
    baselines_only: bool = option(
        False,
        "score only the baselines (the trivial accept_first and the rules exact_match and similarity) on every "
        "usable dialogue of the split, loading no language model; writes OUT/baselines.json",
        in_run_config=False,
    )


class ReplaySimulation(InterplaySimulation):
    """The Interplay user simulator judging a real recommender's turns; see the module doc."""

    name = "replay"
    grounding_roles = (Role.USER.value,)  # the recommender's turns are the real ones
    # Replay measures decisions: each answer is the user's most likely one, not a draw at the simulation's
    # temperature (which, for a user whose P(accept) is 0.6 against 0.4, turns a learnt ranking into noise).
    flag_defaults = {
        "temperature": (
            0.0,
            "sampling temperature of the user's answers (default %(default)s: greedy, the model's most likely "
            "decision at each proposal; 0.7 samples as `crsdata simulate interplay` does)",
        )
    }
    summary = "replay real dialogues to the user simulator and score its accepts as SR/ET/FR (Interplay 4.3.1)"
    description = """\
Replay real dialogues to the Interplay user simulator and score its decisions (Interplay section 4.3.1). Each
dialogue has one target (ReDial: the first film a recommender names that the seeker's questionnaire marks
suggested, not seen and liked). The simulator holds the dialogue's persona (general preferences, watched movies,
the target's attributes, never its title); the real recommender turns (consecutive messages of one speaker merged,
as in training) reach it one by one, and at each recommendation of a catalog item it accepts or not. SR: the
target was accepted; ET: another item was accepted before the target came up; FR: anything else. Writes
OUT/results.json (SR/ET/FR with bootstrap 95% intervals; the trivial policies accept_first, never and random on
the same dialogues; per-proposal decision accuracy, balanced accuracy, accept precision and recall; n_dialogues,
n_skipped by reason), OUT/decisions.json (per dialogue) and OUT/README.md.

--source is a folder built by `crsdata build` whose records have target items (ReDial, PEARL, INSPIRED); --split
names the split (the paper replays the test split). Without --n the whole usable split is replayed; --n N scores
the first N dialogues of a seeded shuffle of the split that can be replayed, each at most once. Dialogues without
a target, without a recommender turn naming a catalog item, or without a usable persona are skipped on the way
and counted by reason. --max-turns is not used."""
    examples = """\
crsdata build redial --input ../shared/data/redial/official/test_data.jsonl --out out/redial-test \\
    --catalog ../shared/data/redial/redial__id2info.json
crsdata replay --source out/redial-test --split test --out out/replay  # the shipped user simulator
crsdata replay --source out/redial-test --split test --n 100 --user-model base --out out/replay-base
crsdata simulate replay --source out/redial-test --split test --n 100 --out out/replay-100  # the same job
crsdata replay --source out/pearl --split test --out out/replay-usersim --user-model models/usersim \\
    --prompt-style finetuned"""
    default_max_turns = 12
    output_source = SOURCE
    draws_each_record_once: ClassVar[bool] = True
    card_info = {
        "name": "crsdata replay",
        "pretty_name": "Replay of real dialogues to a user simulator (crsdata)",
        "description": "Decisions of a user simulator on the real recommender turns of a dialogue corpus.",
        "license": "derived from the source dataset (see its licence) and the model in provenance",
        "license_id": "other",
        "homepage": "",
        "citation": "",
    }
    options_class = ReplayOptions
    options: ReplayOptions

    @property
    def persona_history(self) -> str:
        """``interplay`` or ``reported`` (:data:`PERSONA_HISTORIES`), from the number of watched films kept."""
        return next((k for k, n in PERSONA_HISTORIES.items() if n == self.n_watched), f"{self.n_watched} films")

    @classmethod
    def default_n(cls, source: SimulationSource) -> int:
        """Without ``--n`` every dialogue of the split is replayed once."""
        return len(source.records)

    def settings(self) -> dict[str, Any]:
        # Only the user simulator speaks; the recommender-side settings of Interplay do not apply.
        settings = super().settings()
        for key in ("first_speaker", "show_profile", "max_parse_failures", "max_resamples"):
            settings.pop(key, None)
        settings["protocol"] = "teacher-forced real turns; target titles scrubbed from real user turns"
        settings["persona_history"] = self.persona_history
        return settings

    # -- contract ------------------------------------------------------------------------------------------

    @classmethod
    def load_source(cls, source: str, split: str | None, options: SimulationOptions) -> SimulationSource:
        """The split, unfiltered (a dialogue that cannot be replayed is skipped when drawn, and counted); a split
        where none can be replayed is refused at once, before any model is loaded."""
        loaded = super().load_source(source, split, options)
        reasons = Counter(error.reason if error else "" for error in map(unusable, loaded.records))
        if not reasons[""]:
            detail = ", ".join(f"{reason}: {n}" for reason, n in sorted(reasons.items()))
            raise BadInputError(
                loaded.name, "", "", f"no dialogue of split {loaded.split} can be replayed ({detail})", "no-records"
            )
        return loaded

    def start(self, record: dict[str, Any], dialogue_id: str, seed: int) -> DialogueState:
        error = unusable(record)
        if error is not None:
            raise error
        turns = replay_turns(record)
        points, unlinked = proposals(turns)
        # One target: the persona's target attributes describe it alone, and titles are scrubbed for it.
        target = next(t for t in record["target_items"] if t.get("item_id") == replay_target(record)[0])
        record = {**record, "target_items": [target]}
        state = super().start(record, dialogue_id, seed)
        titles = target_titles(state)
        fed = []
        for turn in turns:
            turn = dict(turn)
            if turn.get("role") == Role.USER.value:
                # The simulator speaks for the user: a target title in a real user turn would tell it the answer.
                turn["text"] = scrub_titles(turn.get("text", ""), titles)
                wanted = set(linked_targets(record))
                turn["items"] = [i for i in turn.get("items") or [] if i.get("item_id") not in wanted]
            fed.append(turn)
        state.context["replay"] = {
            "fed": fed,
            "points": points,
            "step": 0,
            "decisions": [],
            "answers": [],
            "target": target["item_id"],
        }
        state.counters["unlinked_proposals"] = unlinked
        self._feed_until(state, points[0][0])
        return state

    def next_role(self, state: DialogueState) -> str:
        return Role.USER.value

    def proposal_items(self, state: DialogueState) -> list[dict[str, Any]]:
        """The films of the proposal being replayed (those no earlier recommender turn named)."""
        replay = state.context["replay"]
        return list(replay["points"][replay["step"]][1]) if replay["step"] < len(replay["points"]) else []

    def request(self, state: DialogueState, role: str) -> ChatRequest:
        request = super().request(state, role)
        # The replay protocol is stricter than self-play: a target title may reach the simulator only inside a
        # real recommender turn, so the guard counts those turns alone as allowed places.
        view = DialogueState(
            dialogue_id=state.dialogue_id,
            record=state.record,
            seed=state.seed,
            turns=[t for t in state.turns if t.get("role") == Role.RECOMMENDER.value],
            context=state.context,
        )
        allowed: list[str] = []  # under catalog grounding: the facts line of a target a real turn named
        self.grounding_of(state, role, allowed)
        allowed.append(self.answer_opening(state, role))  # a decided accept names the film the real turn named
        assert_no_target_leak(request, view, allowed)
        return request

    def apply(self, state: DialogueState, role: str, generation: Generation) -> None:
        replay = state.context["replay"]
        turn_index, items = replay["points"][replay["step"]]
        parsed = self.parse_generation(generation, role, self.answer_opening(state, role))
        self._count(state, "questions")
        if parsed is None:
            self._count(state, "unparsed_answers")
        elif parsed.repaired:
            self._count(state, "repaired_answers")
        replay["answers"].append(
            {
                "round": turn_index,
                "action": str(parsed.action) if parsed is not None else "",
                "response": parsed.response if parsed is not None else generation.text.strip(),
            }
        )
        decision = self.decision(state)
        if decision is not None:
            replay.setdefault("scorer", []).append({"round": turn_index, **decision})
        if parsed is not None and parsed.action == Action.ACCEPT:
            # The film the scorer accepted (the very item, as ``_decision`` tells the others by identity); else the
            # one the answer names.
            decided = decision["accept"] if decision else None
            chosen = next((i for i in items if decided and i["item_id"] == decided), None) or _chosen(parsed, items)
            replay["decisions"] += [_decision(i, False, turn_index) for i in items if i is not chosen]
            replay["decisions"].append(_decision(chosen, True, turn_index))
            self._count(state, "accepted")
            state.accepted_item = item_ref(chosen["item_id"], chosen["title"])
            self._finish(state, EndReason.ACCEPT)
            return
        replay["decisions"] += [_decision(i, False, turn_index) for i in items]
        replay["step"] += 1
        if replay["step"] == len(replay["points"]):
            self._finish(state, EndReason.REJECT)
        else:
            self._feed_until(state, replay["points"][replay["step"]][0])

    @staticmethod
    def _feed_until(state: DialogueState, turn_index: int) -> None:
        """The conversation the simulator sees: the (scrubbed) real turns up to and including ``turn_index``."""
        state.turns = [dict(t) for t in state.context["replay"]["fed"][: turn_index + 1]]

    def to_record(self, state: DialogueState) -> dict[str, Any]:
        """Interplay's record of the conversation fed, marked as a replay: the recommender was the real one
        (``provenance.recommender_model`` empty, so it is not self-play), and ``extra`` holds the decisions."""
        record = super().to_record(state)
        replay = state.context["replay"]
        record["source"] = SOURCE
        record["provenance"].update(builder=SOURCE, recommender_model="")
        extra = {
            "source_dialogue_id": str(state.record.get("dialogue_id", "")),
            "target_id": replay["target"],
            "source": state.record.get("source", ""),
            "decisions": replay["decisions"],
            "answers": replay["answers"],
            **({"scorer_decisions": replay["scorer"]} if replay.get("scorer") else {}),
            "proposals": [[index, [i["item_id"] for i in items]] for index, items in replay["points"]],
            "counters": dict(sorted(state.counters.items())),
            "style": self.styles["user"],
            "infer_actions": self.infer_actions,
        }
        record["extra"] = dump_extra(extra)
        return record

    def prompt_hashes(self) -> dict[str, str]:
        from crsdata.simulate.prompts import template_hashes

        return template_hashes([f"interplay.user.{self.styles['user']}"])

    # -- output --------------------------------------------------------------------------------------------

    def export(self, result: RunResult, source: SimulationSource, config: ExportTarget) -> Exported:
        from crsdata.simulate.base import Exported
        from crsdata.simulate.rule_baselines import replayed_views, rule_baselines

        options = self.options if isinstance(self.options, ReplayOptions) else ReplayOptions()
        scored = score_replay(result.records, dict(result.skipped.counts), options.bootstrap, config.seed)
        # The rules answer the same dialogues (those score_replay kept) with the same personas.
        kept = [r for r in result.records if r["outcome"]["end_reason"] != EndReason.ERROR]
        rules, rule_intervals, rule_info = rule_baselines(
            self, replayed_views(kept), source.name, source.split, options.bootstrap, config.seed
        )
        results = {
            **{k: scored[k] for k in ("sr", "et", "fr", "intervals", "n_dialogues", "n_skipped", "skipped")},
            "baselines": {**scored["baselines"], **rules},
            "baseline_intervals": {**scored.get("baseline_intervals", {}), **rule_intervals},
            "rule_baselines": rule_info,
            "persona_history": self.persona_history,
            "grounding": self.grounding,
            # Who decided: the user's decision scorer (folder and threshold), or None for the language model.
            "decision_scorer": self.decision_scorer.describe() if self.decision_scorer else None,
            "baseline_random_accept_rate": scored.get("baseline_random_accept_rate"),
            **{k: scored[k] for k in DECISION_KEYS},
            "decision_counts": scored.get("decision_counts", {}),
            "counts": scored["counts"],
            "counters": dict(sorted(result.counters.items())),
            "skipped_examples": list(result.skipped.examples),
            "n_requested": config.n,
            "source": source.name,
            "split": source.split,
            "source_records": len(source.records),
            "user_model": self.backends[Role.USER.value].model_id,
            "backend": config.backend,
            "prompt_style": self.styles["user"],
            "infer_actions": self.infer_actions,
            "sampling": {
                "temperature": config.temperature,
                "top_p": config.top_p,
                "max_new_tokens": config.max_new_tokens,
                "repetition_penalty": config.repetition_penalty,
                "no_repeat_ngram_size": config.no_repeat_ngram_size,
                "accept_bias": self.accept_bias,
            },
            "seed": config.seed,
            "bootstrap_samples": options.bootstrap,
            "command": config.command,
            "crsdata_version": _version(),
        }
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(out / DECISIONS_NAME, json.dumps(scored["dialogues"], indent=1, ensure_ascii=False) + "\n")
        write_atomic(out / RESULTS_NAME, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        write_atomic(out / CARD_NAME, replay_card(results, scored["dialogues"]))
        return Exported(
            path=out,
            kept=scored["n_dialogues"],
            dropped={k: n for k, n in scored["skipped"].items() if k == BACKEND_ERROR},
            description=f"{RESULTS_NAME}, {DECISIONS_NAME}, {CARD_NAME}",
        )


def _version() -> str:
    from crsdata import __version__

    return __version__


def score_replay(
    records: list[dict[str, Any]], skipped: dict[str, int], samples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """SR/ET/FR of replayed dialogues (records of the ``replay`` kind), with bootstrap 95% intervals.

    Dialogues that ended in a backend error are left out and counted in ``skipped`` (``backend_error``) with the
    engine's skips (``skipped``: reason -> count). Returns ``sr``, ``et``, ``fr``, ``intervals`` (rate -> [low,
    high], empty without resamples), ``counts``, ``n_dialogues``, ``n_skipped``, ``skipped`` and ``dialogues``
    (the per-dialogue rows of ``decisions.json``).
    """
    from crsdata.grsu.report import bootstrap
    from crsdata.metrics.outcomes import (
        OUTCOME_CLASSES,
        baseline_outcomes,
        classify_outcomes,
        decision_scores,
        sr_et_fr,
    )
    from crsdata.schema import load_extra

    skipped = Counter(skipped)
    rows = []
    proposals_of = []
    for record in records:
        if record["outcome"]["end_reason"] == EndReason.ERROR:
            skipped[BACKEND_ERROR] += 1
            continue
        extra = load_extra(record["extra"])
        rows.append(
            {
                "source_dialogue_id": extra["source_dialogue_id"],
                "replay_id": record["dialogue_id"],
                "target_ids": [extra["target_id"]],
                "outcome": "",
                "decisions": extra["decisions"],
                "answers": extra["answers"],
            }
        )
        proposals_of.append([(index, ids) for index, ids in extra["proposals"]])
    scored: dict[str, Any] = {
        "n_dialogues": len(rows),
        "n_skipped": sum(skipped.values()),
        "skipped": dict(sorted(skipped.items())),
        "dialogues": rows,
    }
    if not rows:
        empty = {key: None for key in DECISION_KEYS}
        return {**scored, "sr": None, "et": None, "fr": None, "intervals": {}, "counts": {}, "baselines": {}, **empty}
    decisions = [row["decisions"] for row in rows]
    targets = [row["target_ids"][0] for row in rows]
    labels = classify_outcomes(decisions, targets)
    for row, label in zip(rows, labels, strict=True):
        row["outcome"] = label
    rates = sr_et_fr(decisions, targets)
    columns = {
        rate: np.array([label == cls for label in labels], dtype=float)
        for rate, cls in zip(RATES, OUTCOME_CLASSES, strict=True)
    }
    intervals = bootstrap(columns, [row["replay_id"] for row in rows], samples, seed)
    answered = sum(len(row["answers"]) for row in rows)
    accepts = sum(any(d["accepted"] for d in row["decisions"]) for row in rows)
    accept_rate = accepts / answered if answered else 0.0
    policies = baseline_outcomes(proposals_of, targets, accept_rate, seed)
    baselines = {
        name: {rate: policy.count(cls) / len(policy) for rate, cls in zip(RATES, OUTCOME_CLASSES, strict=True)}
        for name, policy in policies.items()
    }
    baseline_columns = {
        f"{name}.{rate}": np.array([label == cls for label in policy], dtype=float)
        for name, policy in policies.items()
        for rate, cls in zip(RATES, OUTCOME_CLASSES, strict=True)
    }
    pairs = bootstrap(baseline_columns, [row["replay_id"] for row in rows], samples, seed)
    baseline_intervals = {
        name: {rate: list(pairs[f"{name}.{rate}"]) for rate in RATES if f"{name}.{rate}" in pairs} for name in policies
    }
    return {
        **scored,
        **{rate: rates[rate] for rate in RATES},
        "intervals": {rate: list(pair) for rate, pair in intervals.items()},
        "counts": rates["counts"],
        "baselines": baselines,
        "baseline_intervals": {name: pair for name, pair in baseline_intervals.items() if pair},
        "baseline_random_accept_rate": accept_rate,
        **decision_scores(decisions, targets),
    }


def _rate(results: dict[str, Any], rate: str) -> str:
    value = results.get(rate)
    if value is None:
        return "n/a"
    pair = (results.get("intervals") or {}).get(rate)
    return f"{value:.3f}" + (f" [{pair[0]:.3f}, {pair[1]:.3f}]" if pair else "")


def summary_line(results: dict[str, Any]) -> str:
    """``SR 0.120 [0.040, 0.220], ET ..., FR ...`` with the accounting, for the command's output."""
    skipped = ", ".join(f"{n} {reason}" for reason, n in results["skipped"].items())
    line = (
        f"SR {_rate(results, 'sr')}, ET {_rate(results, 'et')}, FR {_rate(results, 'fr')} over "
        f"{results['n_dialogues']} dialogues; {results['n_skipped']} skipped" + (f" ({skipped})" if skipped else "")
    )
    return line + "\n" + baselines_line(results)


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def baselines_line(results: dict[str, Any]) -> str:
    """The trivial policies on the same dialogues, and the per-proposal decision scores, in one line."""
    baselines = results.get("baselines") or {}
    parts = [
        f"{name} SR {_share(rates['sr'])} ET {_share(rates['et'])} FR {_share(rates['fr'])}" + _rule_detail(rates)
        for name, rates in baselines.items()
    ]
    decisions = ", ".join(f"{key} {_share(results.get(key))}" for key in DECISION_KEYS)
    return "baselines on the same dialogues: " + ("; ".join(parts) or "none") + f"\ndecisions: {decisions}"


def _rule_detail(rates: dict[str, Any]) -> str:
    """The rule baselines' decision balanced accuracy and choice (rule or tau, and the split it was chosen on)."""
    if "decision_balanced_accuracy" not in rates:
        return ""
    choice = f"rule {rates['rule']}" if "rule" in rates else f"tau {rates.get('tau', 0):.3f}"
    return f" BA {_share(rates['decision_balanced_accuracy'])} ({choice} chosen on {rates.get('chosen_on', '?')})"


def replay_card(results: dict[str, Any], dialogues: list[dict[str, Any]]) -> str:
    """The README.md of a replay folder: results with intervals, the protocol, the accounting, examples."""
    answers = results.get("counters") or {}
    lines = [
        f"# Replay: {results['user_model']} on `{results['split']}` of {results['source']}",
        "",
        "Real dialogues replayed to a user simulator (Interplay, section 4.3.1): it holds each dialogue's persona "
        "(general preferences, watched movies, the target's attributes, never its title) and answers the real "
        "recommender's turns one at a time; at each recommendation of a catalog item it accepts or not.",
        "",
        "| rate | value | 95% bootstrap interval |",
        "|---|---:|---|",
    ]
    labels = ("SR (target accepted)", "ET (other item accepted first)", "FR (nothing accepted)")
    for rate, label in zip(RATES, labels, strict=True):
        value = results.get(rate)
        pair = (results.get("intervals") or {}).get(rate)
        lines.append(
            f"| {label} | {'n/a' if value is None else f'{value:.3f}'} | "
            + (f"[{pair[0]:.3f}, {pair[1]:.3f}]" if pair else "")
            + " |"
        )
    baselines = results.get("baselines") or {}
    notes = {
        "accept_first": "accepts the first proposal",
        "never": "accepts nothing",
        "random": f"accepts each proposal with p = {_share(results.get('baseline_random_accept_rate'))}, the "
        "simulator's own accepts per answer (seeded)",
        "exact_match": "accepts the first proposed film, not seen by the persona, whose shown facts have the rule's "
        "fields written in the cues",
        "similarity": "accepts the first proposed film, not seen by the persona, whose facts have MiniLM cosine "
        ">= tau with the cues",
    }
    for name, rates in baselines.items():
        pairs = (results.get("baseline_intervals") or {}).get(name) or {}
        lines.append(
            f"| baseline `{name}` ({notes.get(name, '')}{';' if 'rule' in rates or 'tau' in rates else ''}"
            f"{_rule_detail(rates)}): SR / ET / FR | "
            f"{_share(rates['sr'])} / {_share(rates['et'])} / {_share(rates['fr'])} | "
            + " / ".join(f"[{pairs[r][0]:.3f}, {pairs[r][1]:.3f}]" for r in RATES if r in pairs)
            + " |"
        )
    lines += [
        "",
        "Per proposal answered (accepting is right only at the proposal naming the target): "
        + ", ".join(f"{key.replace('_', ' ')} {_share(results.get(key))}" for key in DECISION_KEYS)
        + f" ({json.dumps(results.get('decision_counts') or {})}).",
    ]
    skipped = results["skipped"]
    lines += [
        "",
        f"Intervals: percentile bootstrap over dialogues ({results['bootstrap_samples']:,} resamples, seed "
        f"{results['seed']}).",
        "",
        PAPER_NOTE,
        "",
        "## Accounting",
        "",
        f"- dialogues asked for: {results['n_requested']:,} (`--n`), drawn in a seeded shuffle (seed "
        f"{results['seed']}) of the {results['source_records']:,} in the split, each at most once",
        f"- scored: **{results['n_dialogues']:,}**; skipped: **{results['n_skipped']:,}**"
        + (" (" + ", ".join(f"{reason}: {n}" for reason, n in skipped.items()) + ")" if skipped else ""),
        f"- questions asked (proposals judged): {answers.get('questions', 0):,}; "
        f"accepts: {answers.get('accepted', 0):,}; "
        f"unparseable answers (counted as not accepted): {answers.get('unparsed_answers', 0):,}; repaired answers: "
        f"{answers.get('repaired_answers', 0):,}; recommended items the catalog did not link (not asked): "
        f"{answers.get('unlinked_proposals', 0):,}",
        "- outcome counts: " + ", ".join(f"{k} {v}" for k, v in (results.get("counts") or {}).items()),
        "",
        "## Protocol",
        "",
        "- A proposal is a recommender turn naming catalog items no earlier turn named. At each, the simulator sees "
        "the real dialogue up to and including that turn (teacher forcing) and writes its next turn.",
        '- Target titles in the real user turns are replaced by "that movie"; a target title reaches the simulator '
        "only inside a real recommender turn, and every prompt is checked for it (the run raises otherwise).",
        "- `accept` accepts the item the answer names (else the turn's last proposed item) and ends the dialogue; "
        "any other action, or an unparseable answer, rejects the turn's items.",
        "- SR: the first acceptance includes a target; ET: another item was accepted before any target was "
        "proposed; FR: anything else (see `crsdata.metrics.outcomes`).",
        "",
        "## Settings",
        "",
        f"- user model: `{results['user_model']}` (backend {results['backend']}), prompt style "
        f"{results['prompt_style']}, infer actions: {results['infer_actions']}",
        f"- persona history: {results.get('persona_history', 'interplay')} (`--persona-history`); grounding: "
        f"{results.get('grounding', 'none')}",
        f"- accept decisions: {_decider(results.get('decision_scorer'))}",
        f"- sampling: {json.dumps(results['sampling'])}; crsdata {results['crsdata_version']}",
        "",
    ]
    if results.get("command"):
        lines += ["```bash", results["command"], "```", ""]
    examples = [d for d in dialogues if d["answers"]][:3]
    if examples:
        lines += ["## Examples", ""]
        for row in examples:
            target = ", ".join(row["target_ids"])
            lines.append(f"Dialogue {row['source_dialogue_id']} (target {target}): {row['outcome']}")
            lines.append("")
            for answer, decision in zip(row["answers"], _by_round(row["decisions"]), strict=False):
                text = answer["response"].replace("\n", " ")[:200]
                action = answer["action"] or "unparsed"
                lines.append(f"- turn {answer['round']}, proposed {decision}: `{action}` {text}")
            lines.append("")
    lines += [
        "Files: `results.json` (the numbers and settings), `decisions.json` (per dialogue: decisions, answers, "
        "outcome)."
    ]
    return "\n".join(lines) + "\n"


def _decider(scorer: dict[str, Any] | None) -> str:
    if not scorer:
        return "the language model's (`--decision-scorer none`, or a user model without a scorer)"
    return (
        f"the user's decision scorer `{scorer['path']}` (declines seen films, accepts the first other one at cosine >= "
        f"{scorer['threshold']:.3f} with its cues; threshold chosen on {scorer.get('chosen_on') or 'unknown'}); the "
        "language model writes the turn"
    )


def _by_round(decisions: list[dict[str, Any]]) -> list[str]:
    rounds: dict[int, list[str]] = {}
    for decision in decisions:
        mark = "accepted" if decision["accepted"] else "not accepted"
        rounds.setdefault(decision["round"], []).append(f"{decision['item_id']} ({mark})")
    return [", ".join(items) for items in rounds.values()]


def replay_dialogues(
    simulation: ReplaySimulation,
    records: list[dict[str, Any]],
    work_dir: str | Path,
    *,
    seed: int = 0,
    split: str = "test",
    batch_size: int = 16,
    bootstrap_samples: int = 0,
) -> dict[str, Any]:
    """Replays ``records`` (each once) to ``simulation`` through the run engine, from Python: what
    ``crsdata replay`` does without reading a folder or writing one. ``work_dir`` holds the run's shards, so a
    killed call resumes. Returns :func:`score_replay`'s result plus ``counters`` (questions, accepted,
    unparsed_answers, repaired_answers, summed over the replayed dialogues)."""
    from crsdata.schema import load_extra
    from crsdata.simulate.base import simulation_parts
    from crsdata.simulate.engine import RunConfig, RunEngine
    from crsdata.simulate.source import SimulationSource, fingerprint_records

    source = SimulationSource("python", "dataset", records, fingerprint_records(records), "records", split=split)
    config = RunConfig(
        simulation=simulation.name,
        n=len(records),
        seed=seed,
        max_turns=simulation.max_turns,
        split=split,
        backend="python",
        models={role: backend.model_id for role, backend in simulation.backends.items()},
        source=source.name,
        source_kind=source.kind,
        source_fingerprint=source.fingerprint,
        options={},
        batch_size=batch_size,
        **simulation_parts(simulation),
    )
    result = RunEngine(simulation, source, config, Path(work_dir), progress=False).run()
    scored = score_replay(result.records, dict(result.skipped.counts), samples=bootstrap_samples, seed=seed)
    counters: Counter[str] = Counter()
    for record in result.records:
        counters.update(load_extra(record["extra"]).get("counters", {}))
    return {**scored, "counters": dict(counters)}
