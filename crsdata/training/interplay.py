"""Training data and the TRL run shared by the two Interplay recipes (``models/user_simulator``,
``models/recommender_simulator``).

From built dialogues to training sequences (Interplay section 3.5, on corpora such as ReDial):

- **Turns.** Consecutive messages of one speaker become one turn
  (:func:`crsdata.simulate.turns.merge_consecutive_turns`, which replay uses too): ReDial keeps every chat
  message as a turn, a third of them right after one of the same speaker, while the simulators alternate.
  Each turn's action is the source's label where it has one, else
  :func:`~crsdata.simulate.prompts.infer_actions`' guess.
- **Accept from the questionnaire.** The action inference never says ``accept``, so a model trained on it would
  never end a chat. A user turn that answers a recommender turn naming the dialogue's one target
  (:func:`crsdata.simulate.replay.replay_target`, the target replay judges against; in ReDial the first film
  a recommender names that the seeker's questionnaire marks suggested, not seen and liked) is labelled
  ``accept`` (:func:`label_turns`), unless the source labelled the turn itself. Earlier proposals get no accept.
- **One sequence per dialogue.** The whole dialogue in the ``finetuned`` layout
  (:func:`~crsdata.simulate.prompts.finetuned_pieces`), tokenized once, with labels only on the trained role's
  turns and the newline that ends each of them (-100 elsewhere): each model sees the whole conversation and
  learns only its own turns, at one pass per dialogue instead of one per turn. The user's sequence ends at its
  first accept, where a simulated chat ends too.
- **Reference-free user.** The user's persona (:func:`~crsdata.simulate.persona.build_persona`, reviews without
  quotes of the dialogue) never names a target: every training sequence passes the prompt guard
  (:func:`~crsdata.simulate.leak.assert_no_target_leak`), and a user turn that names a target before the
  recommender did is context, not trained (the simulator must not learn to name titles it cannot know).

:class:`PreparedData` counts everything that was used, skipped or changed, for the model card.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from crsdata.errors import BadInputError
from crsdata.schema import Action, Role
from crsdata.simulate.turns import UNLABELLED, merge_consecutive_turns
from crsdata.training.catalog import folders_catalog
from crsdata.training.config import SFTTrainConfig
from crsdata.training.data import DataFolder
from crsdata.training.recipe import EvalScore, Recipe, TrainResult, is_main_process
from crsdata.training.sft import TokenWeight, TrainRun, check_sft_options, finished_run

IGNORE_INDEX = -100


@dataclass
class InterplayTrainConfig(SFTTrainConfig):
    """Settings of both Interplay recipes: the shared fine-tuning options (:class:`SFTTrainConfig`, whose
    defaults fit these recipes on a 2-core CPU) and the data and scoring options below (see each recipe's
    config.yaml)."""

    split: str = field(default="train", metadata={"help": "split of the --data folders to train on"})
    eval_split: str = field(
        default="test",
        metadata={"help": "held-out split, from the --data folders that have it; records also trained on are left out"},
    )
    eval_size: int = field(
        default=40,
        metadata={"help": "held-out examples to score: dialogues replayed (user), recommendation turns (recommender)"},
    )
    eval_max_new_tokens: int = field(default=96, metadata={"help": "tokens per generated turn when scoring"})
    eval_batch_size: int = field(default=16, metadata={"help": "generations per forward pass when scoring"})
    compare_base: bool = field(
        default=True, metadata={"help": "also score the zero-shot base model (instruct prompts) on the same data"}
    )
    grounding: str = field(
        default="none",
        metadata={
            "help": "catalog: train on the grounded layout of `crsdata simulate interplay --grounding catalog` "
            "(cues and film facts for the user, candidate lists for the recommender); none: Interplay's layout"
        },
    )
    candidates: int = field(default=5, metadata={"help": "films in each recommender list with grounding catalog"})
    tags: str = field(default="", metadata={"help": "MovieLens tags.csv for the user's cues (grounding catalog)"})
    action_loss_weight: float = field(
        default=1.0,
        metadata={
            "help": "weight on the loss of the first token of each trained turn's action (the user's accept or "
            "not is one token in a turn of dozens; above 1 it weighs as much as the words around it)"
        },
    )
    decision_loss_weight: float = field(
        default=1.0,
        metadata={
            "help": "weight on the loss of the user's decisions only: the first action token of each answer to a "
            "proposal (accept or not), on top of --action-loss-weight; with the dialogue objective, the decision "
            "is weighted without leaving the turns untrained (which broke their format)"
        },
    )
    balance_decisions: bool = field(
        default=False,
        metadata={
            "help": "with --decision-loss-weight: spread that weight so that each kind of decision weighs the same "
            "in all: accepted or not, with every, some or none of the proposed films marked seen. A proposal "
            "of a seen and an unseen film is mostly accepted in ReDial (134 of 203 in the training split) but "
            "rare, so without it the user learnt 'a seen mark means decline'"
        },
    )
    objective: str = field(
        default="dialogue",
        metadata={
            "help": "what the user's loss is on: dialogue (every token of its turns) or decisions (only the action "
            "of its answer to each proposal, accept or not, with the whole dialogue as context: a second stage "
            "for the decision, from --init-adapter)"
        },
    )
    init_adapter: str = field(
        default="",
        metadata={
            "help": "a LoRA adapter folder (a `crsdata train` out folder, or models/<recipe>/adapter-catalog) whose "
            "adapter this run trains further, instead of a new one; its own layers and rank apply"
        },
    )
    persona_history: str = field(
        default="interplay",
        metadata={
            "help": "the films the user's persona lists as watched, as `crsdata replay --persona-history`: interplay "
            "(three of them, as in Interplay) or reported (every film the seeker's questionnaire or turns report)"
        },
    )
    stack_adapter: bool = field(
        default=False,
        metadata={
            "help": "with --init-adapter: merge that adapter into the base and train a fresh one of this run's "
            "--lora-r and --lora-layers on top (more layers or rank than the first stage had); the folder holds "
            "the two as one adapter (crsdata.training.adapters)"
        },
    )


# What the user's loss is on (--objective): every token of its turns, or only its answers' actions.
OBJECTIVES = ("dialogue", "decisions")


# ---------------------------------------------------------------------------------------------------------
# Turns and labels.


def wanted_items(record: dict[str, Any]) -> set[str]:
    """The film whose proposal the seeker accepts: the dialogue's one target, the same rule as replay's
    (:func:`crsdata.simulate.replay.replay_target`); empty when the dialogue has none."""
    from crsdata.simulate.replay import replay_target

    target, _ = replay_target(record)
    return {target} if target else set()


def label_turns(record: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The merged turns with an Interplay action each, and where each action came from: ``source``,
    ``inferred`` or ``questionnaire``.

    Questionnaire accepts: the seeker's answer to a recommender turn naming :func:`wanted_items` (the target) is
    ``accept``; when that answer is a question ("What is it about?"), the seeker's next turn is, provided the
    recommender named nothing new in between. Turns the source labelled keep their label.
    """
    from crsdata.simulate.prompts import infer_actions

    turns = merge_consecutive_turns(record.get("turns", []))
    origins = ["inferred" if t["action"] in UNLABELLED else "source" for t in turns]
    actions = infer_actions(turns)
    wanted = wanted_items(record)
    pending = False  # a wanted film was just recommended and the seeker has not answered it yet
    for i, turn in enumerate(turns):
        ids = {item.get("item_id") for item in turn["items"]}
        if turn["role"] == Role.RECOMMENDER:
            pending = bool(ids & wanted) or (pending and not ids)
            continue
        if pending and origins[i] == "inferred":
            if actions[i] == Action.INQUIRE:
                continue  # asked about it first; the answer after the recommender's reply decides
            actions[i], origins[i] = Action.ACCEPT.value, "questionnaire"
        pending = False
    for turn, action in zip(turns, actions, strict=True):
        turn["action"] = action
    return turns, origins


def decision_turns(turns: list[dict[str, Any]]) -> frozenset[int]:
    """The user turns that answer a proposal, as replay asks them (:func:`crsdata.simulate.replay.proposals`:
    a recommender turn naming catalog films no recommender turn named before): the first user turn after it,
    or the accept before the next proposal when the seeker first asked about the film."""
    from crsdata.simulate.replay import proposals

    starts = [index for index, _ in proposals(turns)[0]]
    answers = set()
    for k, start in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(turns)
        users = [j for j in range(start + 1, end) if turns[j]["role"] == Role.USER]
        accepts = [j for j in users if turns[j]["action"] == Action.ACCEPT]
        if users:
            answers.add(accepts[0] if accepts else users[0])
    return frozenset(answers)


def action_labels(labels: list[int], action_tag: tuple[int, ...]) -> list[int]:
    """``labels`` with only the first token of each trained turn's action kept (the token after
    ``action_tag``, :func:`action_tag_ids`), -100 elsewhere."""
    import torch

    from crsdata.training.sft import TokenWeight

    keep = TokenWeight(action_tag, 1.0).positions(torch.tensor(labels)).tolist()
    return [label if kept else IGNORE_INDEX for label, kept in zip(labels, keep, strict=True)]


def accepted_item(turns: list[dict[str, Any]], end: int) -> str:
    """The item the accept at ``end`` takes: the last item a recommender turn before it named."""
    for turn in reversed(turns[:end]):
        if turn["role"] == Role.RECOMMENDER and turn["items"]:
            return str(turn["items"][-1].get("item_id", ""))
    return ""


def targets_first(record: dict[str, Any], item_id: str) -> dict[str, Any]:
    """``record`` with target ``item_id`` moved to the front, so the persona describes the film the seeker takes."""
    targets = record.get("target_items", [])
    chosen = [t for t in targets if t.get("item_id") == item_id]
    return {**record, "target_items": chosen + [t for t in targets if t.get("item_id") != item_id]}


def first_accept(turns: list[dict[str, Any]]) -> int | None:
    """Index of the first user accept, None when the user never accepts."""
    return next((i for i, t in enumerate(turns) if t["role"] == Role.USER and t["action"] == Action.ACCEPT), None)


# ---------------------------------------------------------------------------------------------------------
# Sequences.


@dataclass
class PreparedData:
    """Tokenized training sequences of one role and the counts behind them (for the card and results.json)."""

    role: str
    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    loss_weights: list[list[float]] = field(default_factory=list)  # per token; empty: every weight 1
    decisions: int = 0  # trained decision tokens (the user's answers to a proposal)
    decision_kinds: dict[str, int] = field(default_factory=dict)  # with --balance-decisions: decisions by kind
    dialogues_read: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> dialogues not used
    examples: list[str] = field(default_factory=list)  # a few skip messages
    action_origins: Counter[str] = field(default_factory=Counter)  # source / inferred / questionnaire, trained turns
    actions: Counter[str] = field(default_factory=Counter)  # trained turns by action
    with_accept: int = 0  # sequences holding a (trained or context) user accept
    leak_checked: int = 0
    leak_refused: int = 0
    target_naming_turns: int = 0  # user turns naming a target first: kept as context, not trained
    truncated: int = 0  # sequences cut at max_length
    trained_turns: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    sources: Counter[str] = field(default_factory=Counter)  # source corpus -> sequences

    @property
    def n(self) -> int:
        return len(self.input_ids)

    def summary(self) -> dict[str, Any]:
        """Plain numbers for results.json and the card."""
        trained = max(sum(self.action_origins.values()), 1)
        return {
            "role": self.role,
            "dialogues_read": self.dialogues_read,
            "sequences": self.n,
            "skipped": dict(self.skipped),
            "skip_examples": self.examples[:5],
            "sources": dict(self.sources),
            "sequences_with_accept": self.with_accept,
            "accept_share": self.with_accept / max(self.n, 1),
            "trained_turns": self.trained_turns,
            "actions": dict(self.actions.most_common()),
            "action_origins": dict(self.action_origins),
            "inferred_action_share": self.action_origins["inferred"] / trained,
            "questionnaire_accept_share": self.action_origins["questionnaire"] / trained,
            "source_action_share": self.action_origins["source"] / trained,
            "leak_guard_checked": self.leak_checked,
            "leak_guard_refused": self.leak_refused,
            "target_naming_user_turns_untrained": self.target_naming_turns,
            "truncated_sequences": self.truncated,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
            "decision_tokens": self.decisions,
            **({"decision_kinds": self.decision_kinds} if self.decision_kinds else {}),
            "mean_tokens": self.tokens / max(self.n, 1),
        }


def tokenize_pieces(tokenizer: Any, pieces: list[tuple[str, bool]], max_length: int) -> tuple[list[int], list[int]]:
    """``input_ids`` of the joined text, tokenized once as inference would (special tokens included), and
    ``labels``: the id where the token starts inside a trained piece, -100 elsewhere; both cut at ``max_length``."""
    text = "".join(t for t, _ in pieces)
    spans, start = [], 0
    for piece, trained in pieces:
        if trained:
            spans.append((start, start + len(piece)))
        start += len(piece)
    encoded = tokenizer(text, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [IGNORE_INDEX] * len(ids)
    k = 0
    for j, (begin, end) in enumerate(encoded["offset_mapping"]):
        if end <= begin:  # special tokens have empty spans
            continue
        while k < len(spans) and spans[k][1] <= begin:
            k += 1
        if k < len(spans) and spans[k][0] <= begin:
            labels[j] = ids[j]
    return ids[:max_length], labels[:max_length]


def _untrained_turns(record: dict[str, Any], turns: list[dict[str, Any]]) -> frozenset[int]:
    """User turns that name a target before any recommender turn did (reference-free: not to be learned)."""
    from crsdata.simulate.leak import find_leaks

    return frozenset(leak.turn_index for leak in find_leaks({**record, "turns": turns}))


def _leak_state(record: dict[str, Any], turns: list[dict[str, Any]], titles: list[str]) -> Any:
    from crsdata.simulate.base import DialogueState

    state = DialogueState(dialogue_id=str(record.get("dialogue_id", "")), record=record, seed=0)
    state.turns = turns
    state.context["target_titles"] = titles
    return state


def grounded_training_view(
    record: dict[str, Any],
    turns: list[dict[str, Any]],
    role: str,
    catalog: Any,
    retriever: Any,
    *,
    k: int = 5,
    seed: int = 0,
    allowed: list[str] | None = None,
    seen: Sequence[str] = (),
) -> Any:
    """What catalog grounding shows ``role`` in a real dialogue (a :class:`~crsdata.simulate.prompts.Grounding`):
    the user gets the facts of each film a recommender turn named, after that turn; the recommender gets, before
    each of its turns, the films that turn named plus retrieved hard negatives, shuffled
    (:func:`~crsdata.simulate.grounding.training_candidates`), a retrieved list when it named none. Lines that may
    name a target are added to ``allowed`` for the leak guard; a film in ``seen`` (the persona's watched ids) is
    marked as seen, as in the simulation."""
    from crsdata.seeds import derive_seed
    from crsdata.simulate.grounding import candidate_lines, target_ids, training_candidates, user_facts
    from crsdata.simulate.persona import all_target_titles
    from crsdata.simulate.prompts import Grounding

    allowed = allowed if allowed is not None else []
    targets, titles = target_ids(record, catalog), all_target_titles(record, catalog)
    if role == Role.USER:
        return Grounding(facts=user_facts(turns, catalog, targets, titles, allowed, seen))
    lists = {
        i: training_candidates(retriever, turns, i, k, derive_seed("train-candidates", record.get("dialogue_id"), seed))
        for i, turn in enumerate(turns)
        if turn["role"] == Role.RECOMMENDER
    }
    return Grounding(candidates=candidate_lines(lists, catalog, targets, titles, allowed))


def prepare_sequences(
    records: list[dict[str, Any]],
    role: str,
    tokenizer: Any,
    catalog: Any,
    *,
    max_length: int,
    seed: int,
    grounding: str = "none",
    retriever: Any = None,
    tags: dict[str, list[str]] | None = None,
    candidates: int = 5,
    n_watched: int | None = 3,
    objective: str = "dialogue",
    action_tag: tuple[int, ...] = (),
    decision_loss_weight: float = 1.0,
    balance_decisions: bool = False,
) -> PreparedData:
    """The training sequences of ``role``'s simulator from ``records`` (see the module doc); with
    ``grounding="catalog"`` in the grounded layout (:func:`grounded_training_view`, the user's target attributes
    as cues: :func:`~crsdata.simulate.grounding.record_cues`). ``n_watched``: the watched films a persona lists
    (:func:`~crsdata.simulate.persona.build_persona`; None keeps every one reported). With ``objective=
    "decisions"`` only the first token of the action of each of the user's answers to a proposal
    (:func:`decision_turns`) is trained, the token after ``action_tag``; the rest is context. For the user, those
    decision tokens are counted, and weighted ``decision_loss_weight`` (``loss_weights``) when it is not 1; with
    ``balance_decisions`` that weight is spread over the kinds of decision (:func:`decision_kind`) so that each
    kind carries the same share of it, the mean weight of a decision staying ``decision_loss_weight``."""
    from crsdata.backends.base import ChatRequest
    from crsdata.simulate.grounding import record_cues, training_queries
    from crsdata.simulate.leak import TargetLeakError, assert_no_target_leak
    from crsdata.simulate.persona import Persona, all_target_titles, build_persona
    from crsdata.simulate.prompts import NO_GROUNDING, PERSONA_QUOTES, finetuned_pieces

    data = PreparedData(role)
    kinds: list[dict[int, tuple[bool, str]]] = []  # per kept sequence: decision position -> its kind
    accept = accept_token(tokenizer) if balance_decisions else -1
    empty = Persona("", [], "")
    labelled = [label_turns(record) for record in records]
    if grounding == "catalog" and role == Role.RECOMMENDER and retriever is not None:
        # Every candidate list's query at once, in batches: one forward pass per turn took minutes on a split.
        retriever.encode_queries(training_queries(retriever, (turns for turns, _ in labelled), candidates))
    for record, (turns, origins) in zip(records, labelled, strict=True):
        data.dialogues_read += 1
        if not any(t["role"] == role for t in turns):
            data.skipped[f"no-{role}-turns"] += 1
            continue
        persona = empty
        if role == Role.USER:
            # The chat ends where the seeker accepts, and its target attributes describe the film it accepts.
            end = first_accept(turns)
            if end is not None:
                turns, origins = turns[: end + 1], origins[: end + 1]
                record = targets_first(record, accepted_item(turns, end))
            try:
                persona = build_persona(
                    record, catalog, n_watched=n_watched, seed=seed, quote_utterances=PERSONA_QUOTES["finetuned"]
                )
            except BadInputError as err:
                data.skipped[err.reason or "bad-record"] += 1
                data.examples.append(str(err))
                continue
        untrained = _untrained_turns(record, turns) if role == Role.USER else frozenset()
        # Every user turn but its answers to a proposal: left untrained, the decision tokens alone stay trained.
        answers = decision_turns(turns)
        not_decisions = {i for i, t in enumerate(turns) if t["role"] == role and i not in answers}
        if objective == "decisions":
            untrained = untrained | not_decisions
        allowed: list[str] = []
        view = NO_GROUNDING
        if grounding == "catalog":
            if role == Role.USER:
                cues = record_cues(record, catalog, tags or {}, all_target_titles(record, catalog))
                persona = dataclasses.replace(persona, target_attributes=cues or persona.target_attributes)
            seen = [w.item_id for w in persona.watched]
            view = grounded_training_view(
                record, turns, role, catalog, retriever, k=candidates, seed=seed, allowed=allowed, seen=seen
            )
        pieces = finetuned_pieces(role, persona, turns, untrained=untrained, grounding=view)
        data.leak_checked += 1
        state = _leak_state(record, turns, all_target_titles(record, catalog))
        try:
            assert_no_target_leak(ChatRequest(prompt="".join(t for t, _ in pieces)), state, allowed)
        except TargetLeakError as err:
            data.leak_refused += 1
            data.skipped["target-in-prompt"] += 1
            data.examples.append(str(err))
            continue
        ids, labels = tokenize_pieces(tokenizer, pieces, max_length + 1)
        decided = [IGNORE_INDEX] * len(labels)
        if role == Role.USER and action_tag:
            if objective == "decisions":
                decided = action_labels(labels, action_tag)
            else:
                only = finetuned_pieces(role, persona, turns, untrained=untrained | not_decisions, grounding=view)
                decided = action_labels(tokenize_pieces(tokenizer, only, max_length + 1)[1], action_tag)
        if objective == "decisions":
            labels = decided
        if len(ids) > max_length:
            data.truncated += 1
            ids, labels, decided = ids[:max_length], labels[:max_length], decided[:max_length]
        if all(label == IGNORE_INDEX for label in labels):
            data.skipped["nothing-trained-within-max-length"] += 1
            continue
        data.input_ids.append(ids)
        data.labels.append(labels)
        data.decisions += sum(label != IGNORE_INDEX for label in decided)
        if balance_decisions:
            kinds.append(
                {p: decision_kind(tokenizer, ids, p, d, accept) for p, d in enumerate(decided) if d != IGNORE_INDEX}
            )
        if decision_loss_weight != 1 or balance_decisions:
            data.loss_weights.append([decision_loss_weight if d != IGNORE_INDEX else 1.0 for d in decided])
        data.sources[record.get("source", "")] += 1
        data.tokens += len(ids)
        data.trained_tokens += sum(label != IGNORE_INDEX for label in labels)
        data.target_naming_turns += len(untrained)
        data.with_accept += first_accept(turns) is not None
        for i, turn in enumerate(turns):
            if turn["role"] == role and i not in untrained:
                data.trained_turns += 1
                data.actions[turn["action"]] += 1
                data.action_origins[origins[i]] += 1
    if balance_decisions:
        data.decision_kinds = balance_decision_weights(data.loss_weights, kinds, decision_loss_weight)
    return data


def proposal_seen(text: str) -> str:
    """Whether ``all``, ``some`` or ``none`` of the films the last recommender turn of ``text`` (a user sequence up
    to an answer) named are marked seen in the user's facts lines; ``none`` when it shows no facts."""
    from crsdata.simulate.prompts import SEEN_NOTE

    label = f"{Role.RECOMMENDER.value}:"
    facts = [line for line in text[text.rfind(label) :].splitlines() if line.startswith("[FACTS]")]
    seen = sum(line.endswith(SEEN_NOTE) for line in facts)
    return "all" if facts and seen == len(facts) else "some" if seen else "none"


def decision_kind(tokenizer: Any, ids: list[int], position: int, token: int, accept: int) -> tuple[bool, str]:
    """The kind of the decision whose action token ``token`` sits at ``position`` of ``ids``: accepted (``token``
    is ``accept``, :func:`accept_token`) or not, and :func:`proposal_seen` of what it answers."""
    return token == accept, proposal_seen(tokenizer.decode(ids[:position]))


def balance_decision_weights(
    loss_weights: list[list[float]], kinds: list[dict[int, tuple[bool, str]]], weight: float
) -> dict[str, int]:
    """Sets each decision's weight in ``loss_weights`` (in place) so that every kind of decision present carries
    the same total, the mean weight of a decision staying ``weight``: a kind with n of the N decisions, among K
    kinds, weighs ``weight * N / (K * n)``. Returns the count of each kind (``accept/some``, ``other/all``...)."""
    counts = Counter(kind for sequence in kinds for kind in sequence.values())
    total = sum(counts.values())
    for row, sequence in zip(loss_weights, kinds, strict=True):
        for position, kind in sequence.items():
            row[position] = weight * total / (len(counts) * counts[kind])
    return {f"{'accept' if taken else 'other'}/{seen}": n for (taken, seen), n in sorted(counts.items())}


def accept_token(tokenizer: Any) -> int:
    """The first token of the ``accept`` action's name after the action tag, the one the decision hangs on."""
    from crsdata.simulate.actions import format_turn
    from crsdata.simulate.prompts import FINETUNED_BODY

    body = tokenizer(FINETUNED_BODY.format(turn=format_turn("accept", "")), add_special_tokens=False)["input_ids"]
    return int(body[len(action_tag_ids(tokenizer))])


# ---------------------------------------------------------------------------------------------------------
# Data folders.


def split_records(
    folders: list[DataFolder], split: str, *, exclude: set[tuple[str, str]] = frozenset()
) -> tuple[list[dict[str, Any]], int]:
    """Every record of ``split`` in the folders that have it, and how many were left out by ``exclude``
    ((source, dialogue_id) pairs)."""
    records, excluded = [], 0
    for folder in folders:
        if folder.has_split(split):
            for record in folder.records(split):
                if (record.get("source", ""), str(record.get("dialogue_id", ""))) in exclude:
                    excluded += 1
                else:
                    records.append(record)
    return records, excluded


def training_records(folders: list[DataFolder], split: str) -> list[dict[str, Any]]:
    """The training split of every folder that has it; bad input when none has it."""
    records, _ = split_records(folders, split)
    if not any(folder.has_split(split) for folder in folders):
        folders[0].records(split)  # raises the missing-split error naming the folder and its splits
    return records


def record_keys(records: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(r.get("source", ""), str(r.get("dialogue_id", ""))) for r in records}


# ---------------------------------------------------------------------------------------------------------
# Models.


def base_model(name: str) -> tuple[str, str]:
    """(loadable path or id, Hub id for the card) of ``--base``; bad input when it cannot be found."""
    from crsdata.backends.base import BackendError
    from crsdata.backends.embedded import embedded_hub_id, resolve_model

    try:
        path = resolve_model(name)
    except (BackendError, KeyError) as err:
        raise BadInputError(name, "", "--base", f"cannot load the base model: {err}", "bad-model") from None
    return path, embedded_hub_id(name) or name


def load_tokenizer_and_model(path: str, name: str, *, dtype: Any = None) -> tuple[Any, Any]:
    """Tokenizer and causal LM from ``path``; a model that cannot be loaded is one line of bad input."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **({"dtype": dtype} if dtype is not None else {}))
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadInputError(name, "", "--base", f"cannot load the base model: {first}", "bad-model") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def train_sequences(
    config: InterplayTrainConfig,
    data: PreparedData,
    tokenizer: Any,
    model: Any,
    *,
    hub_id: str,
    callbacks: list[Any] | None = None,
) -> tuple[Any, TrainRun]:
    """Fine-tunes ``model`` on ``data`` through the shared layer (:func:`crsdata.training.sft.fit_sft`; labels
    as given: TRL keeps a ``labels`` column), LoRA when ``config.lora``; writes the adapter or the full model and
    the tokenizer into ``config.out`` (:func:`save_trained`). Returns the trained model (adapters not merged) and
    the run's figures."""
    import datasets

    from crsdata.training.sft import LOSS_WEIGHTS, fit_sft

    columns = {"input_ids": data.input_ids, "labels": data.labels}
    if data.loss_weights:
        columns[LOSS_WEIGHTS] = data.loss_weights
    dataset = datasets.Dataset.from_dict(columns)
    return fit_sft(
        config,
        model,
        tokenizer,
        dataset,
        tokens=data.tokens,
        save=lambda trained: save_trained(trained, tokenizer, config, hub_id=hub_id),
        callbacks=callbacks,
        weighted=TokenWeight(action_tag_ids(tokenizer), config.action_loss_weight),
    )


def action_tag_ids(tokenizer: Any) -> tuple[int, ...]:
    """The token ids a turn's body starts with before its action's name (`` <action><``, as the finetuned
    layout writes it), found as what two turns with different actions share."""
    import os

    from crsdata.simulate.actions import format_turn
    from crsdata.simulate.prompts import FINETUNED_BODY

    bodies = [
        tokenizer(FINETUNED_BODY.format(turn=format_turn(action, "")), add_special_tokens=False)["input_ids"]
        for action in (Action.ACCEPT.value, Action.FEEDBACK.value)
    ]
    return tuple(os.path.commonprefix(bodies))  # commonprefix compares any sequences element by element


def load_trainable_adapter(model: Any, folder: str, *, stack: bool = False) -> Any:
    """``model`` with the LoRA adapter in ``folder`` loaded for more training (peft's ``PeftModel``), or with
    ``stack`` merged into its weights (a fresh adapter then trains on top, :mod:`crsdata.training.adapters`); bad
    input naming the folder when it holds none."""
    from peft import PeftModel

    if not (Path(folder) / "adapter_config.json").is_file():
        raise BadInputError(folder, "", "init_adapter", "no adapter_config.json: not a LoRA adapter", "bad-model")
    if stack:
        return PeftModel.from_pretrained(model, folder).merge_and_unload()
    return PeftModel.from_pretrained(model, folder, is_trainable=True)


def save_trained(model: Any, tokenizer: Any, config: InterplayTrainConfig, *, hub_id: str) -> None:
    """The adapter (LoRA, in bfloat16: a few MB) or the full model, and the tokenizer, into ``config.out``.
    The folder names ``hub_id`` as its base (the adapter config's ``base_model_name_or_path``), not a local path."""
    import torch

    out = Path(config.out)
    if config.lora and config.stack_adapter:
        from crsdata.training.adapters import save_stacked

        save_stacked(config.init_adapter, model, out, base_model=hub_id)
    elif config.lora:
        for adapter in model.peft_config.values():
            adapter.base_model_name_or_path = hub_id
        # Halves the adapter on disk; peft casts it back to the base model's dtype when it loads.
        state = {k: v.detach().to(torch.bfloat16) for k, v in model.state_dict().items() if "lora_" in k}
        # No embedding layers are trained, so peft need not look the base up (on the Hub) to decide.
        model.save_pretrained(out, state_dict=state, save_embedding_layers=False)
    else:
        model.config._name_or_path = hub_id
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)


# ---------------------------------------------------------------------------------------------------------
# The recipe both simulators share.

METRIC_NAMES = {
    "success_rate": "Success rate (replay)",
    "early_termination": "Early termination (replay)",
    "failure_rate": "Failure rate (replay)",
    "parse_rate": "Turns parsed without repair",
    "parse_rate_with_repairs": "Turns parsed, repairs allowed",
    "accepts_per_answer": "Accepts per answer (replay)",
    "recall_at_1": "Recall@1 (recommendation turns)",
    "match_score": "Match Score (MiniLM item space)",
    "recommends_a_catalog_title": "Turns naming a catalog title",
}
# The scores that go into the card's model-index (the headline metrics of Interplay and the parse rate).
MODEL_INDEX = ("success_rate", "early_termination", "failure_rate", "parse_rate", "recall_at_1", "match_score")


def log(message: str) -> None:
    print(f"[crsdata train] {message}", flush=True)


USAGE = """\
Ready-to-run (CPU defaults from models/{folder}/config.yaml; about an hour on 2 shared cores):

    crsdata build redial --input ../shared/data/redial/train_partial \\
        --input ../shared/data/redial/official/test_data.jsonl \\
        --catalog ../shared/data/redial/redial__id2info.json --out out/redial-train-test
    crsdata train {name} --data out/redial-train-test --out out/{name}

The train split trains, the test split scores (records in both are left out of the scoring). Add simulated
corpora (`crsdata simulate` folders) as more --data folders. A full fine-tune on several GPUs (A100, bf16)
with the shipped accelerate and GPU configs:

    accelerate launch --config_file models/{folder}/accelerate.yaml -m crsdata.cli \\
        train {name} --data out/redial-train-test --out out/{name}-full \\
        --config models/{folder}/config.a100.yaml --lora false
"""


def simulation_options(config: InterplayTrainConfig, role: str, catalog: Any) -> dict[str, Any]:
    """What a simulation of the model takes, and what its training sequences are made with
    (:func:`prepare_sequences`' keywords): its grounding (a retriever for the recommender, the user's tags) and
    its persona's history."""
    from crsdata.simulate.interplay import PERSONA_HISTORIES

    options: dict[str, Any] = {"n_watched": PERSONA_HISTORIES[config.persona_history]}
    if config.grounding == "catalog":
        from crsdata.simulate.grounding import CatalogRetriever, read_tags

        if catalog is None:
            raise BadInputError("", "", "grounding", "grounding catalog needs --data folders with items", "bad-option")
        options.update(
            grounding="catalog",
            retriever=CatalogRetriever(catalog.rows()) if role == Role.RECOMMENDER else None,
            tags=read_tags(config.tags, catalog) if config.tags else None,
            candidates=config.candidates,
        )
    elif config.grounding != "none":
        raise BadInputError("", "", "grounding", f"must be none or catalog, not {config.grounding!r}", "bad-option")
    return options


class InterplayRecipe(Recipe):
    """Fine-tunes one Interplay simulator (``role``) on built dialogues and scores it against the base."""

    role: ClassVar[str]
    about: ClassVar[str]  # what the simulator learns, for --help
    config_class = InterplayTrainConfig
    license = "apache-2.0"

    @property
    def description(self) -> str:  # type: ignore[override]
        """The --help text: what it learns, then ready-to-run commands."""
        import textwrap

        about = textwrap.fill(self.about, width=110)
        return f"{self.summary}\n\n{about}\n\n" + USAGE.format(name=self.name, folder=self.folder.name)

    def check(self, config: InterplayTrainConfig) -> None:
        check_sft_options(config)
        for name, least in {"max_length": 64, "eval_size": 0}.items():
            if getattr(config, name) < least:
                raise BadInputError(
                    "", "", name, f"must be at least {least}, got {getattr(config, name)}", "bad-config"
                )
        if config.objective not in OBJECTIVES:
            raise BadInputError(
                "", "", "objective", f"must be one of {', '.join(OBJECTIVES)}, not {config.objective!r}", "bad-config"
            )
        if config.objective == "decisions" and self.role != Role.USER:
            raise BadInputError("", "", "objective", "decisions trains the user's accept; use dialogue", "bad-config")
        if config.stack_adapter and not config.init_adapter:
            raise BadInputError("", "", "stack_adapter", "stacks on --init-adapter FOLDER; name one", "bad-config")
        if config.init_adapter and not config.lora:
            raise BadInputError(
                config.init_adapter, "", "init_adapter", "continues a LoRA adapter: drop --lora false", "bad-config"
            )
        for name in ("action_loss_weight", "decision_loss_weight"):
            if not getattr(config, name) > 0:
                raise BadInputError("", "", name, f"must be above 0, got {getattr(config, name)}", "bad-config")
        if config.balance_decisions and config.decision_loss_weight == 1:
            raise BadInputError(
                "", "", "balance_decisions", "spreads --decision-loss-weight W: give W too", "bad-config"
            )
        if config.decision_loss_weight != 1 and self.role != Role.USER:
            raise BadInputError(
                "", "", "decision_loss_weight", "weights the user's answers to a proposal; the user only", "bad-config"
            )
        from crsdata.simulate.interplay import PERSONA_HISTORIES

        if config.persona_history not in PERSONA_HISTORIES:
            raise BadInputError(
                "",
                "",
                "persona_history",
                f"must be one of {', '.join(PERSONA_HISTORIES)}, not {config.persona_history!r}",
                "bad-config",
            )

    def train(self, config: InterplayTrainConfig, data: list[DataFolder]) -> TrainResult:
        train_records = training_records(data, config.split)
        held_out, overlap = split_records(data, config.eval_split, exclude=record_keys(train_records))
        if config.eval_size and not any(folder.has_split(config.eval_split) for folder in data):
            raise BadInputError(
                data[0].path,
                "",
                "split",
                f"no held-out split {config.eval_split!r} in any --data folder (add a built test folder, or "
                "--eval-size 0 to train without scoring)",
                "missing-split",
            )
        # A model this command saved before (it stopped while scoring): refused now, before any loading, when the
        # options differ; otherwise it is scored instead of trained again.
        run = finished_run(config)
        catalog = folders_catalog(data)
        path, hub_id = base_model(config.base)
        tokenizer, model = load_tokenizer_and_model(path, config.base)
        if config.init_adapter:
            model = load_trainable_adapter(model, config.init_adapter, stack=config.stack_adapter)
        grounded = simulation_options(config, self.role, catalog)
        prepared = prepare_sequences(
            train_records,
            self.role,
            tokenizer,
            catalog,
            max_length=config.max_length,
            seed=config.seed,
            objective=config.objective,
            action_tag=action_tag_ids(tokenizer),
            decision_loss_weight=config.decision_loss_weight,
            balance_decisions=config.balance_decisions,
            **grounded,
        )
        if not prepared.n:
            raise BadInputError(
                data[0].path,
                "",
                config.split,
                f"no usable {self.role} training dialogue ({dict(prepared.skipped)})",
                "empty",
            )
        summary = prepared.summary()
        log(
            f"{prepared.n} training sequences from {prepared.dialogues_read} dialogues "
            f"({summary['tokens']} tokens, {summary['trained_tokens']} trained; skipped {dict(prepared.skipped)}; "
            f"{prepared.truncated} cut at {config.max_length}; {prepared.with_accept} with an accept)"
        )
        if run is None:
            _, run = train_sequences(config, prepared, tokenizer, model, hub_id=hub_id)
        else:
            log(f"{config.out} holds the model this command trained before; scoring it and writing the folder")
        log(
            f"trained {run.steps} steps in {run.seconds:.0f}s ({run.tokens_per_second:.0f} tokens/s), "
            f"loss {run.first_loss:.3f} -> {run.last_loss:.3f}"
        )
        del model
        scored: dict[str, Any] = {}
        if is_main_process() and config.eval_size:
            scored = self.evaluate(config, path, tokenizer, held_out, catalog, grounded)
        return self.result(config, data, prepared, run, scored, len(train_records), overlap, hub_id)

    # -- scoring ---------------------------------------------------------------------------------------------

    def evaluate(
        self,
        config: InterplayTrainConfig,
        base_path: str,
        tokenizer: Any,
        held_out: list[dict[str, Any]],
        catalog: Any,
        grounded: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Scores the trained model (the adapter merged into the base, as the embedded default loads it) and,
        with ``compare_base``, the zero-shot base, on the same held-out examples, both in the grounding the model
        was trained with (``grounded``: the simulation's grounding options)."""
        import shutil
        import tempfile

        from crsdata.backends import make_backend
        from crsdata.backends.embedded import merge_adapter
        from crsdata.training.interplay_eval import EVALUATIONS

        evaluation = EVALUATIONS[self.role]
        examples = evaluation.examples(held_out, catalog, config.eval_size, seed=config.seed)
        if not examples:
            raise BadInputError("", "", config.eval_split, f"no held-out {self.role} example to score", "empty")
        models: list[tuple[str, str, str]] = []  # (label, path, style)
        scratch = Path(tempfile.mkdtemp(prefix="crsdata-merged-"))
        try:
            trained_path = str(merge_adapter(base_path, config.out, scratch / "model")) if config.lora else config.out
            models.append(("fine_tuned", trained_path, "finetuned"))
            if config.compare_base:
                models.append(("base", base_path, "instruct" if tokenizer.chat_template else "finetuned"))
            scored = {}
            for label, model_path, style in models:
                started = time.perf_counter()
                log(
                    f"scoring the {label.replace('_', '-')} model ({style} prompts) on {len(examples)} held-out "
                    "examples"
                )
                backend = make_backend(
                    "local", model_path, max_batch_size=config.eval_batch_size, model_id=f"{label}:{config.base}"
                )
                result = evaluation.score(
                    backend,
                    style,
                    examples,
                    catalog,
                    seed=config.seed,
                    max_new_tokens=config.eval_max_new_tokens,
                    grounded=grounded,
                )
                backend.close()
                scored[label] = {**dataclasses.asdict(result), "seconds": time.perf_counter() - started}
                # A rate is None when no held-out dialogue could be scored (each skipped, e.g. a prompt too long).
                log(
                    f"{label}: "
                    + ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in result.metrics.items())
                )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return scored

    # -- result ----------------------------------------------------------------------------------------------

    def result(
        self,
        config: InterplayTrainConfig,
        data: list[DataFolder],
        prepared: PreparedData,
        run: TrainRun,
        scored: dict[str, Any],
        n_train_dialogues: int,
        overlap: int,
        hub_id: str,
    ) -> TrainResult:
        tuned = scored.get("fine_tuned", {}).get("metrics", {})
        base = scored.get("base", {}).get("metrics", {})
        metrics = {**tuned, **{f"base_{k}": v for k, v in base.items()}}
        held = next((f for f in data if f.has_split(config.eval_split)), None)
        scores = [
            EvalScore(
                metric=name,
                value=value,
                name=METRIC_NAMES.get(name, name),
                dataset=held.source if held else "",
                split=config.eval_split,
                revision=f"v{held.version}" if held else "",
            )
            for name, value in tuned.items()
            if name in MODEL_INDEX
        ]
        counts = scored.get("fine_tuned", {}).get("counts", {})
        split_sizes = {
            "n_train": prepared.n,
            "n_train_dialogues": n_train_dialogues,
            "n_test": int(counts.get("dialogues", 0)),
            "n_test_examples": int(counts.get("turns", counts.get("answers", 0))),
            "n_test_excluded_as_trained": overlap,
        }
        details = {"data": prepared.summary(), "training": run.as_dict(), "scores": scored, "role": self.role}
        return TrainResult(
            metrics=metrics,
            split_sizes=split_sizes,
            base_model=hub_id,
            library_name="peft" if config.lora else "transformers",
            scores=scores,
            pipeline_tag="text-generation",
            card={
                "role": self.role,
                "prepared": prepared.summary(),
                "run": run.as_dict(),
                "scored": scored,
                "metric_names": METRIC_NAMES,
            },
            details=details,
        )
