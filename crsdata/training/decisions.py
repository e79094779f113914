"""The user simulator's decision read off the model instead of sampled: P(accept) at each real answer to a proposal.

``python -m crsdata.training.decisions --data FOLDER --split validation --user-model MODEL [MODEL...]`` lays out
held-out dialogues as the user's training sequences are laid out (:func:`crsdata.training.interplay.prepare_sequences`
with ``objective="decisions"``), reads the model's probability of ``accept`` as the first token of each answer's
action in one forward pass per dialogue, and scores it as an AUC against the seeker's real answer, beside the seen
rule (decline a proposal marked seen) and chance. A replay (:mod:`crsdata.simulate.replay`) measures the sampled
turn; this measures the decision alone, in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crsdata.errors import BadInputError
from crsdata.schema import Role


@dataclass(frozen=True)
class DecisionPoint:
    """One held-out answer to a proposal (:func:`crsdata.training.interplay.decision_turns`): whether the seeker
    took the film (the dialogue's one target), the model's probability of ``accept`` as the answer's action, and
    whether every film the proposal named was marked as seen in the user's facts."""

    accepted: bool
    p_accept: float
    marked_seen: bool


def accept_token(tokenizer: Any) -> int:
    """The first token of the ``accept`` action's name after the action tag, the one the decision hangs on."""
    from crsdata.simulate.actions import format_turn
    from crsdata.simulate.prompts import FINETUNED_BODY
    from crsdata.training.interplay import action_tag_ids

    body = tokenizer(FINETUNED_BODY.format(turn=format_turn("accept", "")), add_special_tokens=False)["input_ids"]
    return int(body[len(action_tag_ids(tokenizer))])


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
    from crsdata.simulate.prompts import SEEN_NOTE
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
    label = f"{Role.RECOMMENDER.value}:"
    points = []
    with torch.inference_mode():
        for ids, labels in tqdm(
            list(zip(prepared.input_ids, prepared.labels, strict=True)), desc="decisions", disable=not progress
        ):
            probabilities = network(torch.tensor([ids])).logits[0].float().softmax(-1)
            for position, target in enumerate(labels):
                if target == IGNORE_INDEX:
                    continue
                text = tokenizer.decode(ids[:position])
                facts = [line for line in text[text.rfind(label) :].splitlines() if line.startswith("[FACTS]")]
                points.append(
                    DecisionPoint(
                        accepted=target == accept,
                        p_accept=float(probabilities[position - 1, accept]),
                        marked_seen=bool(facts) and all(line.endswith(SEEN_NOTE) for line in facts),
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
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:
        folder = load_data_folder(args.data)
        records = folder.records(args.split)[: args.n]
        catalog = folders_catalog([folder])
        report = {
            model: decision_figures(
                decision_points(model, records, catalog, grounding=args.grounding, persona_history=args.persona_history)
            )
            for model in args.user_model
        }
    except (BadInputError, BackendError, OSError) as error:  # OSError: a model transformers cannot load
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    print("| user model | decisions | accepted | AUC | seen rule AUC | P(accept) taken / other |")
    print("|---|---:|---:|---:|---:|---|")
    for model, f in report.items():
        print(
            f"| {model} | {f['decisions']} | {f['accepted']} | {f['auc']:.3f} | {f['auc_seen_rule']:.3f} | "
            f"{f['mean_p_accept_taken']:.3f} / {f['mean_p_accept_other']:.3f} |"
        )
    text = json.dumps({"data": args.data, "split": args.split, "n": args.n, "models": report}, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
