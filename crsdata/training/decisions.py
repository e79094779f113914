"""The user simulator's decision read off the model instead of sampled: P(accept) at each real answer to a proposal.

``python -m crsdata.training.decisions --data FOLDER --split validation --user-model MODEL [MODEL...]`` lays out
held-out dialogues as the user's training sequences are laid out (:func:`crsdata.training.interplay.prepare_sequences`
with ``objective="decisions"``), reads the model's probability of ``accept`` as the first token of each answer's
action in one forward pass per dialogue, and scores it as an AUC against the seeker's real answer, beside the seen
rule (decline a proposal marked seen) and chance. A replay (:mod:`crsdata.simulate.replay`) measures the sampled
turn; this measures the decision alone, in minutes.

Each point also keeps its greedy *margin*, accept's logit less the largest other one: greedy decoding writes accept
where it is above 0, and with an accept bias b (``--accept-bias``; transformers' ``SequenceBiasLogitsProcessor`` in
the local backend) where margin + b is. ``--calibrate`` picks the b with the best balanced accuracy on a validation
split (:func:`calibrate`) and ``--save-calibration`` writes it into the model folder's crsdata.json, where
simulate, replay and the Space read their default ``--accept-bias``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crsdata.errors import BadInputError
from crsdata.schema import Role
from crsdata.training.interplay import accept_token, proposal_seen


@dataclass(frozen=True)
class DecisionPoint:
    """One held-out answer to a proposal (:func:`crsdata.training.interplay.decision_turns`): whether the seeker
    took the film (the dialogue's one target), the model's probability of ``accept`` as the answer's action, and
    whether every film the proposal named was marked as seen in the user's facts."""

    accepted: bool
    p_accept: float
    marked_seen: bool
    # logit(accept) less the largest other logit at that position: greedy decoding writes accept when it is > 0,
    # and with an accept bias b when margin + b > 0 (:func:`calibrate`).
    margin: float = 0.0


def decision_points(
    model: str,
    records: list[dict[str, Any]],
    catalog: Any,
    *,
    grounding: str = "catalog",
    persona_history: str = "reported",
    max_length: int = 1024,
    seed: int = 42,
    progress: bool = True,
) -> list[DecisionPoint]:
    """Every answer to a proposal in ``records``, as the training sequences of the user simulator lay them out
    (:func:`crsdata.training.interplay.prepare_sequences` with ``objective="decisions"``, in ``grounding``), with
    ``model``'s P(accept) read from one forward pass per dialogue (teacher forcing: the real conversation is the
    context). ``model`` is anything ``crsdata simulate`` takes (a registry name, a model or adapter folder)."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from crsdata.backends.embedded import resolve_model
    from crsdata.simulate.interplay import PERSONA_HISTORIES
    from crsdata.training.interplay import IGNORE_INDEX, action_tag_ids, prepare_sequences

    path = resolve_model(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    network = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    prepared = prepare_sequences(
        records,
        Role.USER.value,
        tokenizer,
        catalog,
        max_length=max_length,
        seed=seed,
        objective="decisions",
        action_tag=action_tag_ids(tokenizer),
        grounding=grounding,
        n_watched=PERSONA_HISTORIES[persona_history],
    )
    accept = accept_token(tokenizer)
    points = []
    with torch.inference_mode():
        for ids, labels in tqdm(
            list(zip(prepared.input_ids, prepared.labels, strict=True)), desc="decisions", disable=not progress
        ):
            logits = network(torch.tensor([ids])).logits[0].float()
            probabilities = logits.softmax(-1)
            for position, target in enumerate(labels):
                if target == IGNORE_INDEX:
                    continue
                others = logits[position - 1].clone()
                others[accept] = float("-inf")
                points.append(
                    DecisionPoint(
                        accepted=target == accept,
                        p_accept=float(probabilities[position - 1, accept]),
                        marked_seen=proposal_seen(tokenizer.decode(ids[:position])) == "all",
                        margin=float(logits[position - 1, accept] - others.max()),
                    )
                )
    return points


def decision_figures(points: list[DecisionPoint]) -> dict[str, float]:
    """How well P(accept) separates the proposals the seeker took from the others: ``auc``, beside two rules
    with no model, ``auc_seen_rule`` (decline a proposal marked seen, accept the rest) and 0.5 (chance); the mean
    P(accept) of each group; counts."""
    from crsdata.metrics.ranking import auc

    taken = [p for p in points if p.accepted]
    others = [p for p in points if not p.accepted]
    labels = [p.accepted for p in points]
    return {
        "decisions": len(points),
        "accepted": len(taken),
        "auc": auc(labels, [p.p_accept for p in points]),
        "auc_seen_rule": auc(labels, [0.0 if p.marked_seen else 1.0 for p in points]),
        "mean_p_accept_taken": sum(p.p_accept for p in taken) / max(len(taken), 1),
        "mean_p_accept_other": sum(p.p_accept for p in others) / max(len(others), 1),
        "marked_seen_taken": sum(p.marked_seen for p in taken),
        "marked_seen_other": sum(p.marked_seen for p in others),
    }


# The accept biases :func:`calibrate` tries: a quarter of a logit apart, up to four either way.
BIAS_GRID = tuple(step / 4 for step in range(-16, 17))


def balanced_accuracy_at(points: list[DecisionPoint], bias: float) -> float | None:
    """The balanced accuracy of greedy decisions with ``bias`` added to accept's logit (accept where margin + bias
    > 0) against the seeker's answers; None when one class is missing."""
    taken = [p.margin + bias > 0 for p in points if p.accepted]
    others = [p.margin + bias <= 0 for p in points if not p.accepted]
    if not taken or not others:
        return None
    return (sum(taken) / len(taken) + sum(others) / len(others)) / 2


def calibrate(points: list[DecisionPoint]) -> dict[str, Any]:
    """The accept bias (of :data:`BIAS_GRID`) whose greedy decisions have the best balanced accuracy on ``points``,
    the smallest in size among equals, so that a model already calibrated keeps 0. Returns ``accept_bias``, its
    ``balanced_accuracy`` and ``balanced_accuracy_unbiased`` (bias 0)."""
    scored = [(b, balanced_accuracy_at(points, b)) for b in BIAS_GRID]
    valid = [(b, ba) for b, ba in scored if ba is not None]
    if not valid:
        raise BadInputError("", "", "--calibrate", "needs both accepted and declined proposals", "bad-option")
    best, score = max(valid, key=lambda pair: (round(pair[1], 9), -abs(pair[0])))
    return {"accept_bias": best, "balanced_accuracy": score, "balanced_accuracy_unbiased": dict(valid)[0.0]}


def save_calibration(model: str, calibration: dict[str, Any]) -> Path:
    """Writes ``calibration`` as ``decision`` into the crsdata.json of the model folder ``model`` (what simulate,
    replay and the Space read as the default ``--accept-bias``: :func:`crsdata.backends.embedded.accept_bias_of`),
    atomically. BadInputError for a model that is not a folder trained by an Interplay recipe."""
    import json

    from crsdata.backends.embedded import FINETUNED_RECIPES
    from crsdata.fileio import write_json_atomic

    path = Path(model) / "crsdata.json"
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BadInputError(str(path), "", "--save-calibration", f"cannot read the model's metadata: {error}") from None
    if metadata.get("recipe") not in FINETUNED_RECIPES:
        raise BadInputError(str(path), "", "recipe", "is not a folder trained by an Interplay recipe", "bad-option")
    metadata["decision"] = calibration
    write_json_atomic(path, metadata)
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m crsdata.training.decisions --data FOLDER --user-model MODEL [MODEL...]``: the
    user simulators' decision at every held-out answer to a proposal, read off the model (P(accept), teacher
    forced; :func:`decision_points`) and scored as an AUC against the seeker's real answer, beside the seen rule
    and chance. Minutes per model on 2 cores, against an hour for a replay; it measures the decision alone, a
    replay the sampled turn."""
    import argparse
    import json
    import sys

    from crsdata.backends.base import BackendError
    from crsdata.simulate.interplay import PERSONA_HISTORIES
    from crsdata.training.catalog import folders_catalog
    from crsdata.training.data import load_data_folder

    parser = argparse.ArgumentParser(prog="python -m crsdata.training.decisions", description=main.__doc__)
    parser.add_argument("--data", required=True, help="built folder with the held-out split and the catalog")
    parser.add_argument("--split", default="test")
    parser.add_argument("--user-model", nargs="+", required=True, help="user simulators: registry names or folders")
    parser.add_argument("--n", type=int, default=300, help="held-out dialogues read (those with a proposal count)")
    parser.add_argument("--grounding", choices=("catalog", "none"), default="catalog")
    parser.add_argument("--persona-history", choices=tuple(PERSONA_HISTORIES), default="reported")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--accept-bias",
        type=float,
        help="score greedy decisions with this bias on accept's logit (default: each model's calibrated bias, 0 "
        "when it has none), as `crsdata replay --accept-bias` decodes",
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="also choose the accept bias with the best balanced accuracy on this split (a validation split: the "
        "official test split is never used to choose)",
    )
    parser.add_argument(
        "--save-calibration",
        action="store_true",
        help="write the bias chosen by --calibrate, or the --accept-bias chosen elsewhere (say how with "
        "--chosen-by), into each model folder's crsdata.json (`decision`): the default --accept-bias of simulate, "
        "replay and the Space",
    )
    parser.add_argument(
        "--chosen-by",
        default="",
        help="with --save-calibration --accept-bias: how that bias was chosen (the commands of the validation "
        "replays that chose it), kept beside it",
    )
    args = parser.parse_args(argv)
    if args.save_calibration and args.calibrate == (args.accept_bias is not None):
        parser.error("--save-calibration saves either the bias --calibrate chooses or a given --accept-bias")
    if args.split == "test" and (args.calibrate or args.save_calibration):
        parser.error("a bias is chosen on held-out dialogues that are not the test split: give --split validation")
    import torch

    from crsdata.backends.embedded import accept_bias_of

    torch.set_num_threads(args.threads)
    try:
        folder = load_data_folder(args.data)
        records = folder.records(args.split)[: args.n]
        catalog = folders_catalog([folder])
        report = {}
        for model in args.user_model:
            points = decision_points(
                model, records, catalog, grounding=args.grounding, persona_history=args.persona_history
            )
            figures: dict[str, Any] = decision_figures(points)
            bias = args.accept_bias if args.accept_bias is not None else accept_bias_of(model) or 0.0
            figures.update(accept_bias=bias, balanced_accuracy=balanced_accuracy_at(points, bias))
            calibration: dict[str, Any] = {}
            if args.calibrate:
                calibration = {**calibrate(points), "chosen_by": "teacher-forced balanced accuracy"}
                figures["calibration"] = calibration
            elif args.save_calibration:
                calibration = {
                    "accept_bias": bias,
                    "balanced_accuracy": figures["balanced_accuracy"],
                    "balanced_accuracy_unbiased": balanced_accuracy_at(points, 0.0),
                    "chosen_by": args.chosen_by or "given (--accept-bias)",
                }
            if args.save_calibration:
                calibration.update(chosen_on=args.split, n=args.n, data=args.data)
                print(f"wrote the accept bias into {save_calibration(model, calibration)}")
            report[model] = figures
    except (BadInputError, BackendError, OSError) as error:  # OSError: a model transformers cannot load
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    print("| user model | decisions | accepted | AUC | seen rule AUC | P(accept) taken / other | bias | BA |")
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for model, f in report.items():
        ba = f["balanced_accuracy"]
        print(
            f"| {model} | {f['decisions']} | {f['accepted']} | {f['auc']:.3f} | {f['auc_seen_rule']:.3f} | "
            f"{f['mean_p_accept_taken']:.3f} / {f['mean_p_accept_other']:.3f} | {f['accept_bias']:+.2f} | "
            f"{'n/a' if ba is None else f'{ba:.3f}'} |"
        )
    text = json.dumps({"data": args.data, "split": args.split, "n": args.n, "models": report}, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
