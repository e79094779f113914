"""The Interplay simulator recipes on a handful of real ReDial dialogues: training data (turns, questionnaire
accepts, one sequence per dialogue with role-masked labels, personas that name no target), both recipes end to
end with a tiny random model, the embedded model registry, and one clear line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.tiny_models import widened
from huggingface_hub import ModelCard

from crsdata.cli import main
from crsdata.simulate.turns import merge_consecutive_turns
from crsdata.training.catalog import folders_catalog
from crsdata.training.data import load_data_folder
from crsdata.training.interplay import (
    IGNORE_INDEX,
    label_turns,
    prepare_sequences,
    tokenize_pieces,
    training_records,
    wanted_items,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REDIAL = DATA / "redial"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")


def _head(source: Path, target: Path, n: int) -> Path:
    with source.open(encoding="utf-8") as lines:
        target.write_text("".join(next(lines) for _ in range(n)), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def redial_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 real train dialogues and 16 official test dialogues, built with `crsdata build`."""
    raw = tmp_path_factory.mktemp("raw")
    train = _head(REDIAL / "train_partial" / "kgsf_train_subset_901.jsonl", raw / "redial_train.jsonl", 24)
    test = _head(REDIAL / "official" / "test_data.jsonl", raw / "redial_test.jsonl", 16)
    out = tmp_path_factory.mktemp("data") / "redial"
    args = ["build", "redial", "--input", str(train), "--input", str(test)]
    assert main([*args, "--catalog", str(REDIAL / "redial__id2info.json"), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def records(redial_folder: Path) -> list[dict]:
    return training_records([load_data_folder(redial_folder)], "train")


def test_consecutive_turns_merge_and_accepts_come_from_the_questionnaire(records: list[dict]) -> None:
    # KGSF's first dialogue (6712): the seeker asks for a documentary; "Man on Wire" was suggested, liked and
    # not seen by the seeker's questionnaire, so the answer to it is the accept.
    record = next(r for r in records if r["dialogue_id"] == "6712")
    merged = merge_consecutive_turns(record["turns"])
    assert len(merged) < len(record["turns"])
    assert all(a["role"] != b["role"] for a, b in zip(merged, merged[1:], strict=False))
    assert merged[2]["text"] == "Im looking for a great documentary do you have any suggestions"
    assert "191911" in wanted_items(record)  # Man on Wire (2008)
    turns, origins = label_turns(record)
    accept = next(i for i, t in enumerate(turns) if t["action"] == "accept")
    assert origins[accept] == "questionnaire"
    assert "191911" in {i["item_id"] for i in turns[accept - 1]["items"]}
    assert turns[accept]["text"].startswith("I havent seen that one")
    assert set(origins) <= {"inferred", "questionnaire"}  # ReDial has no action labels


def _check_sequences(tokenizer, records: list[dict], catalog) -> None:
    """One sequence per dialogue; each run of labelled tokens is one whole turn of the trained role, from its
    action to the newline that ends it, right after that role's speaker label."""
    for role in ("user", "recommender"):
        data = prepare_sequences(records, role, tokenizer, catalog, max_length=4096, seed=0)
        summary = data.summary()
        assert data.n == summary["sequences"] <= len(records)
        assert data.dialogues_read == len(records) == data.n + sum(data.skipped.values())
        assert summary["leak_guard_checked"] == data.n + data.leak_refused and data.leak_refused == 0
        segments = 0
        for ids, labels in zip(data.input_ids, data.labels, strict=True):
            assert tokenizer.decode(ids).startswith(f"[ROLE] {role}\n")
            runs, start = [], None
            for j, label in enumerate([*labels, IGNORE_INDEX]):
                if label != IGNORE_INDEX and start is None:
                    start = j
                elif label == IGNORE_INDEX and start is not None:
                    runs.append((start, j))
                    start = None
            for begin, end in runs:
                assert tokenizer.decode(ids[:begin]).endswith(f"\n{role}:")
                turn = tokenizer.decode(ids[begin:end])
                assert turn.startswith(" <action><") and turn.endswith("</response>\n") and turn.count("\n") == 1
            segments += len(runs)
        assert segments == data.trained_turns
        if role == "user":
            assert 0 < data.with_accept < data.n
            assert summary["questionnaire_accept_share"] > 0
            for ids in data.input_ids:
                text = tokenizer.decode(ids)
                if "<accept>" in text:  # the sequence ends at the accept: nothing follows the accepting turn
                    assert text.rstrip("\n").rsplit("\n", 1)[-1].startswith("user: <action><accept>")
                assert ' I said: "' not in text  # reviews do not quote the dialogue


def test_tokenized_labels_cover_exactly_the_trained_turns(redial_folder: Path, records: list[dict]) -> None:
    from fixtures.tiny_models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    pieces = [("[ROLE] user\n", False), ("user:", False), (" <action><greeting></action>", True), ("x\n", True)]
    pieces += [("recommender:", False), (" hi\n", False)]
    ids, labels = tokenize_pieces(tokenizer, pieces, 1000)
    assert tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX]) == (
        " <action><greeting></action>x\n"
    )
    assert ids == tokenizer("".join(t for t, _ in pieces)).input_ids  # one tokenization, as inference sees it
    _check_sequences(tokenizer, records, folders_catalog([load_data_folder(redial_folder)]))


def test_reported_history_lists_every_watched_film_in_the_training_personas(
    redial_folder: Path, records: list[dict]
) -> None:
    """`--persona-history reported` (as in replay): the user's training personas list every film the seeker
    reported, where Interplay's history keeps three; it is refused unless it is one of the two."""
    from fixtures.tiny_models import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    catalog = folders_catalog([load_data_folder(redial_folder)])

    def watched_lines(n_watched: int | None) -> list[int]:
        data = prepare_sequences(records, "user", tokenizer, catalog, max_length=4096, seed=0, n_watched=n_watched)
        texts = [tokenizer.decode(ids) for ids in data.input_ids]
        return [t.split("[CONVERSATION]")[0].count("\n- ") for t in texts]

    three, every = watched_lines(3), watched_lines(None)
    assert len(three) == len(every) > 0
    assert max(three) <= 3 and all(e >= t for e, t in zip(every, three, strict=True)) and sum(every) > sum(three)
    from crsdata.errors import BadInputError
    from crsdata.models import get_recipe
    from crsdata.training.interplay import InterplayTrainConfig

    with pytest.raises(BadInputError, match="persona_history"):
        get_recipe("user-simulator").check(InterplayTrainConfig(persona_history="everything"))


def test_action_loss_weight_falls_on_the_first_token_of_each_trained_action(
    redial_folder: Path, records: list[dict]
) -> None:
    """`--action-loss-weight`: one weighted token per trained turn, the first of its action's name, on real
    dialogues; a weight of 0 is refused."""
    import torch
    from fixtures.tiny_models import build_tiny_tokenizer

    from crsdata.errors import BadInputError
    from crsdata.models import get_recipe
    from crsdata.training.interplay import InterplayTrainConfig, action_tag_ids
    from crsdata.training.sft import TokenWeight

    tokenizer = build_tiny_tokenizer()
    catalog = folders_catalog([load_data_folder(redial_folder)])
    data = prepare_sequences(records, "user", tokenizer, catalog, max_length=4096, seed=0)
    weighting = TokenWeight(action_tag_ids(tokenizer), 5.0)
    weighted = 0
    for ids, labels in zip(data.input_ids, data.labels, strict=True):
        weights = weighting.weights(torch.tensor([labels]))[0]
        for j in (weights == 5.0).nonzero().flatten().tolist():
            assert labels[j] == ids[j] and tokenizer.decode(ids[:j]).endswith("<action><")
            weighted += 1
        assert set(weights.tolist()) <= {1.0, 5.0}
    assert weighted == data.trained_turns > 0
    with pytest.raises(BadInputError, match="action_loss_weight"):
        get_recipe("user-simulator").check(InterplayTrainConfig(action_loss_weight=0))


def test_decision_turns_are_the_answers_to_each_proposal() -> None:
    """Hand-written turns: the first user turn after each recommender turn naming new catalog films; the accept
    before the next proposal when the seeker asked first; a film named again is no new proposal."""
    from crsdata.training.interplay import decision_turns

    def turn(role: str, action: str, *ids: str) -> dict:
        return {"role": role, "action": action, "items": [{"item_id": i, "title": i} for i in ids], "text": ""}

    turns = [
        turn("user", "greeting"),
        turn("recommender", "recommend", "a"),  # 1: proposal
        turn("user", "feedback"),  # 2: its answer
        turn("recommender", "recommend", "a"),  # 3: named before, no proposal
        turn("user", "feedback"),
        turn("recommender", "recommend", "b", ""),  # 5: proposal (the unlinked title does not count)
        turn("user", "inquire"),  # asks first...
        turn("recommender", "feedback"),
        turn("user", "accept"),  # 8: ...then accepts before the next proposal
        turn("recommender", "recommend", "c"),  # 9: proposal with no user turn after it
    ]
    assert decision_turns(turns) == {2, 8}


def test_decisions_objective_trains_only_the_action_of_each_answer(redial_folder: Path, records: list[dict]) -> None:
    """`--objective decisions` on real dialogues: one trained token per answer to a proposal, the first of its
    action's name, the accept among them; the same sequences as the dialogue objective otherwise."""
    from fixtures.tiny_models import build_tiny_tokenizer

    from crsdata.errors import BadInputError
    from crsdata.models import get_recipe
    from crsdata.training.interplay import InterplayTrainConfig, action_tag_ids

    tokenizer = build_tiny_tokenizer()
    catalog = folders_catalog([load_data_folder(redial_folder)])
    tag = action_tag_ids(tokenizer)
    options = {"max_length": 4096, "seed": 0}
    dialogue = prepare_sequences(records, "user", tokenizer, catalog, **options)
    decisions = prepare_sequences(records, "user", tokenizer, catalog, objective="decisions", action_tag=tag, **options)
    assert decisions.input_ids == dialogue.input_ids
    trained = [
        (ids, j)
        for ids, labels in zip(decisions.input_ids, decisions.labels, strict=True)
        for j, label in enumerate(labels)
        if label != IGNORE_INDEX
    ]
    assert len(trained) == decisions.trained_turns == decisions.trained_tokens > 0
    assert decisions.trained_turns < dialogue.trained_turns
    assert decisions.actions["accept"] == dialogue.actions["accept"] > 0
    for ids, j in trained:
        assert tokenizer.decode(ids[:j]).endswith("<action><")
    with pytest.raises(BadInputError, match="objective"):
        get_recipe("recommender-simulator").check(InterplayTrainConfig(objective="decisions"))
    with pytest.raises(BadInputError, match="objective"):
        get_recipe("user-simulator").check(InterplayTrainConfig(objective="accuracy"))


def test_decision_loss_weight_falls_on_the_decisions_of_the_dialogue_objective(
    redial_folder: Path, records: list[dict]
) -> None:
    """`--decision-loss-weight` on real dialogues: the dialogue objective's labels unchanged, the weight on exactly
    the tokens the decisions objective trains and 1 elsewhere; the recommender and a weight of 0 are refused."""
    from fixtures.tiny_models import build_tiny_tokenizer

    from crsdata.errors import BadInputError
    from crsdata.models import get_recipe
    from crsdata.training.interplay import InterplayTrainConfig, action_tag_ids

    tokenizer = build_tiny_tokenizer()
    catalog = folders_catalog([load_data_folder(redial_folder)])
    options = {"max_length": 4096, "seed": 0, "action_tag": action_tag_ids(tokenizer)}
    dialogue = prepare_sequences(records, "user", tokenizer, catalog, **options)
    weighted = prepare_sequences(records, "user", tokenizer, catalog, decision_loss_weight=7.0, **options)
    decisions = prepare_sequences(records, "user", tokenizer, catalog, objective="decisions", **options)
    assert not dialogue.loss_weights
    assert weighted.input_ids == dialogue.input_ids == decisions.input_ids
    assert weighted.labels == dialogue.labels
    for weights, labels, decided in zip(weighted.loss_weights, weighted.labels, decisions.labels, strict=True):
        assert len(weights) == len(labels)
        assert [j for j, w in enumerate(weights) if w == 7.0] == [j for j, d in enumerate(decided) if d != IGNORE_INDEX]
        assert set(weights) <= {1.0, 7.0}
    assert weighted.decisions == dialogue.decisions == decisions.trained_tokens > 0
    assert weighted.summary()["decision_tokens"] == weighted.decisions
    with pytest.raises(BadInputError, match="decision_loss_weight"):
        get_recipe("user-simulator").check(InterplayTrainConfig(decision_loss_weight=0))
    with pytest.raises(BadInputError, match="decision_loss_weight"):
        get_recipe("recommender-simulator").check(InterplayTrainConfig(decision_loss_weight=5))


def test_balance_decisions_gives_each_kind_of_decision_the_same_total_weight(
    redial_folder: Path, records: list[dict]
) -> None:
    """`--balance-decisions` on real dialogues (catalog grounding, every reported film): the decision weights
    still sit on exactly the decision tokens, each kind (accepted or not x every/some/none of the proposed films
    marked seen) sums to the same total, and the mean stays W; without W it is refused."""
    from fixtures.tiny_models import build_tiny_tokenizer

    from crsdata.errors import BadInputError
    from crsdata.models import get_recipe
    from crsdata.simulate.prompts import SEEN_NOTE
    from crsdata.training.interplay import (
        InterplayTrainConfig,
        accept_token,
        action_tag_ids,
        decision_kind,
        proposal_seen,
    )

    tokenizer = build_tiny_tokenizer()
    catalog = folders_catalog([load_data_folder(redial_folder)])
    options = {
        "max_length": 4096,
        "seed": 0,
        "action_tag": action_tag_ids(tokenizer),
        "grounding": "catalog",
        "n_watched": None,
        "decision_loss_weight": 8.0,
    }
    plain = prepare_sequences(records, "user", tokenizer, catalog, **options)
    balanced = prepare_sequences(records, "user", tokenizer, catalog, balance_decisions=True, **options)
    assert balanced.input_ids == plain.input_ids and balanced.labels == plain.labels
    totals: dict[tuple[bool, str], float] = {}
    weights = []
    for ids, row, before in zip(balanced.input_ids, balanced.loss_weights, plain.loss_weights, strict=True):
        decided = [j for j, w in enumerate(before) if w == 8.0]
        assert [j for j, w in enumerate(row) if w != 1.0 or j in decided] == decided
        for j in decided:
            kind = decision_kind(tokenizer, ids, j, ids[j], accept_token(tokenizer))
            totals[kind] = totals.get(kind, 0.0) + row[j]
            weights.append(row[j])
    assert len(totals) >= 3 and max(totals.values()) == pytest.approx(min(totals.values()))
    assert sum(weights) / len(weights) == pytest.approx(8.0)
    assert sum(balanced.decision_kinds.values()) == balanced.decisions == len(weights)
    assert balanced.summary()["decision_kinds"] == balanced.decision_kinds and "decision_kinds" not in plain.summary()
    with pytest.raises(BadInputError, match="balance_decisions"):
        get_recipe("user-simulator").check(InterplayTrainConfig(balance_decisions=True))

    facts = "recommender: try these\n[FACTS] A (2000): drama{}\n[FACTS] B (2001): comedy{}\nuser:"
    assert proposal_seen(facts.format(SEEN_NOTE, SEEN_NOTE)) == "all"
    assert proposal_seen(facts.format(SEEN_NOTE, "")) == "some"
    assert proposal_seen(facts.format("", "")) == "none"
    assert proposal_seen(f"[FACTS] A (2000): drama{SEEN_NOTE}\nrecommender: hello\nuser:") == "none"  # earlier turn


def test_decision_figures_score_p_accept_beside_the_seen_rule() -> None:
    """The AUC of P(accept) and of the seen rule on hand-made answers: a model that ranks every taken proposal
    first scores 1; the rule scores by the seen marks alone."""
    from crsdata.training.decisions import DecisionPoint, decision_figures

    points = [
        DecisionPoint(accepted=True, p_accept=0.9, marked_seen=False),
        DecisionPoint(accepted=True, p_accept=0.6, marked_seen=True),
        DecisionPoint(accepted=False, p_accept=0.5, marked_seen=True),
        DecisionPoint(accepted=False, p_accept=0.1, marked_seen=False),
    ]
    figures = decision_figures(points)
    assert figures["auc"] == 1.0
    # Rule scores (taken: 1, 0; other: 0, 1): of the four taken/other pairs one is won, two tie, one is lost.
    assert figures["auc_seen_rule"] == 0.5
    assert figures["decisions"] == 4 and figures["accepted"] == 2
    assert figures["mean_p_accept_taken"] == pytest.approx(0.75)
    assert figures["marked_seen_taken"] == figures["marked_seen_other"] == 1


def test_calibrate_picks_the_smallest_bias_with_the_best_balanced_accuracy(tmp_path: Path) -> None:
    """Greedy writes accept where margin + bias > 0: the bias that separates hand-made margins best is chosen (the
    smallest among equals), saved into a user simulator's crsdata.json, and read back as its default."""
    from crsdata.backends.embedded import accept_bias_of
    from crsdata.errors import BadInputError
    from crsdata.training.decisions import DecisionPoint, balanced_accuracy_at, calibrate, save_calibration

    def point(accepted: bool, margin: float) -> DecisionPoint:
        return DecisionPoint(accepted=accepted, p_accept=0.5, marked_seen=False, margin=margin)

    points = [point(True, m) for m in (-0.6, 0.5, 1.0)] + [point(False, m) for m in (-2.0, -1.0, -0.9)]
    assert balanced_accuracy_at(points, 0.0) == pytest.approx((2 / 3 + 1) / 2)
    chosen = calibrate(points)
    assert chosen == {"accept_bias": 0.75, "balanced_accuracy": 1.0, "balanced_accuracy_unbiased": pytest.approx(5 / 6)}
    assert calibrate([point(True, 1.0), point(False, -1.0)])["accept_bias"] == 0.0  # already calibrated: keeps 0
    assert balanced_accuracy_at([point(True, 1.0)], 0.0) is None

    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "crsdata.json").write_text(json.dumps({"recipe": "user-simulator", "config": {}}))
    assert accept_bias_of(str(folder)) is None
    save_calibration(str(folder), {**chosen, "chosen_on": "validation"})
    assert accept_bias_of(str(folder)) == 0.75
    assert json.loads((folder / "crsdata.json").read_text())["config"] == {}  # the rest is kept
    with pytest.raises(BadInputError, match="crsdata.json"):
        save_calibration(str(tmp_path), chosen)


def test_decisions_command_reads_p_accept_at_each_held_out_answer(
    redial_folder: Path, wide_tiny_model: Path, tmp_path: Path, capsys
) -> None:
    """`python -m crsdata.training.decisions` on real held-out dialogues and a tiny model: one
    point per answer to a proposal, the taken ones among them, and the JSON the docs quote."""
    from crsdata.training.decisions import main

    out = tmp_path / "decisions.json"
    args = ["--data", str(redial_folder), "--split", "test", "--user-model", str(wide_tiny_model)]
    assert main([*args, "--threads", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())["models"][str(wide_tiny_model)]
    assert figures["decisions"] > figures["accepted"] > 0
    assert 0.0 <= figures["auc"] <= 1.0 and 0.0 <= figures["auc_seen_rule"] <= 1.0
    assert 0.0 < figures["mean_p_accept_taken"] < 1.0
    assert "| user model | decisions |" in capsys.readouterr().out
    assert figures["accept_bias"] == 0.0 and 0.0 <= figures["balanced_accuracy"] <= 1.0
    assert main([*args[:-1], str(tmp_path / "missing"), "--threads", "1"]) != 0
    with pytest.raises(SystemExit):  # the test split never chooses
        main([*args, "--calibrate"])
    with pytest.raises(SystemExit):
        main([*args, "--save-calibration"])
    with pytest.raises(SystemExit):  # saves one bias: chosen here or given, not neither
        main([*args[:3], "validation", *args[4:], "--save-calibration"])


def test_init_adapter_trains_the_given_adapter_further(
    redial_folder: Path, wide_tiny_model: Path, tmp_path: Path
) -> None:
    """A second stage: `--init-adapter FOLDER --objective decisions` trains FOLDER's adapter (its layers and
    rank, not the config's), and a folder without an adapter is one line of bad input; each stage's card says
    what its loss was on and which adapter it continued."""
    from safetensors.torch import load_file

    first = tmp_path / "first"
    assert _train("user-simulator", redial_folder, first, wide_tiny_model, "--eval-size", "0") == 0
    second = tmp_path / "second"
    extra = ("--eval-size", "0", "--init-adapter", str(first), "--objective", "decisions", "--lora-r", "4")
    assert _train("user-simulator", redial_folder, second, wide_tiny_model, *extra) == 0
    assert json.loads((second / "adapter_config.json").read_text())["r"] == 8
    before, after = load_file(first / "adapter_model.safetensors"), load_file(second / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not before[k].equal(after[k]) for k in before)
    card = (second / "README.md").read_text()
    assert f"trained further the adapter in `{first}`" in card and "loss covers only the user's decisions" in card
    # A third stage back on the dialogue objective, the decisions weighted: the card says how the loss was made.
    third = tmp_path / "third"
    extra = ("--eval-size", "0", "--init-adapter", str(second), "--decision-loss-weight", "5", "--balance-decisions")
    assert _train("user-simulator", redial_folder, third, wide_tiny_model, *extra, "--persona-history", "reported") == 0
    card = (third / "README.md").read_text()
    assert "the rest of the dialogue is context" in card and "weighs 5.0x on average" in card
    assert "each kind of decision\nweighs the same in all" in card and "other/none" in card
    assert "every film the seeker's\nquestionnaire or turns report" in card
    assert (
        _train("user-simulator", redial_folder, tmp_path / "bad", wide_tiny_model, "--init-adapter", str(tmp_path)) != 0
    )


def test_stacked_adapters_equal_the_two_stages_applied_in_turn(wide_tiny_model: Path, tmp_path: Path) -> None:
    """`stack_adapters`: a first adapter on the top layer (rank 4), a second on every layer (rank 2) trained on
    the base with the first merged in; the one adapter written has ranks 6 and 2 and gives the same logits."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    from crsdata.training.adapters import read_adapter, stack_adapters

    def base():
        return AutoModelForCausalLM.from_pretrained(wide_tiny_model, dtype=torch.float32).eval()

    def adapter(model, r, layers):
        config = LoraConfig(r=r, lora_alpha=3 * r, target_modules=["q_proj", "down_proj"], init_lora_weights=False)
        config.layers_to_transform = layers
        torch.manual_seed(r)
        return get_peft_model(model, config)

    first = adapter(base(), 4, [base().config.num_hidden_layers - 1])
    first.save_pretrained(tmp_path / "first")
    merged = first.merge_and_unload()
    second = adapter(merged, 2, None)
    ids = torch.tensor([[5, 9, 2, 7, 1, 3]])
    with torch.no_grad():
        expected = second(ids).logits
    state = {k: v.float() for k, v in get_peft_model_state_dict(second).items()}
    config, tensors = stack_adapters(read_adapter(tmp_path / "first"), (second.peft_config["default"], state))
    out = tmp_path / "stacked"
    out.mkdir()
    save_file(tensors, str(out / "adapter_model.safetensors"))
    (out / "adapter_config.json").write_text(json.dumps(config, default=str))
    assert sorted(set(config["rank_pattern"].values())) == [2, 6]
    with torch.no_grad():
        got = PeftModel.from_pretrained(base(), out).eval()(ids).logits
    assert torch.allclose(got, expected, atol=1e-4), (got - expected).abs().max()


def test_stack_adapter_trains_a_wider_second_stage_from_the_command(
    redial_folder: Path, wide_tiny_model: Path, tmp_path: Path
) -> None:
    """`--init-adapter FOLDER --stack-adapter`: the folder holds one adapter with the first stage's rank added
    where it was; without --init-adapter the option is one line of bad input."""
    first = tmp_path / "first"
    stage = ("--eval-size", "0", "--lora-layers", "1")
    assert _train("user-simulator", redial_folder, first, wide_tiny_model, *stage) == 0
    second = tmp_path / "second"
    extra = ("--init-adapter", str(first), "--stack-adapter", "--objective", "decisions", "--lora-r", "4")
    assert _train("user-simulator", redial_folder, second, wide_tiny_model, *extra) == 0
    config = json.loads((second / "adapter_config.json").read_text())
    assert sorted(set(config["rank_pattern"].values())) == [4, 12]
    assert 0.0 <= json.loads((second / "results.json").read_text())["success_rate"] <= 1.0  # scored as one adapter
    assert _train("user-simulator", redial_folder, tmp_path / "bad", wide_tiny_model, "--stack-adapter") != 0


@pytest.mark.slow
def test_sequences_with_the_real_tokenizer(redial_folder: Path, records: list[dict], embedded_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(embedded_model_dir)
    _check_sequences(tokenizer, records, folders_catalog([load_data_folder(redial_folder)]))


def _train(recipe: str, folder: Path, out: Path, base: Path, *extra: str) -> int:
    args = ["train", recipe, "--data", str(folder), "--out", str(out), "--base", str(base)]
    args += ["--max-steps", "2", "--batch-size", "2", "--max-length", "512", "--bf16", "false", "--eval-size", "3"]
    return main([*args, "--eval-max-new-tokens", "12", "--logging-steps", "1", *extra])


@pytest.fixture(scope="module")
def wide_tiny_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Replay prompts (persona plus a real conversation) run past the fixture's 512 positions in its small vocabulary.
    return widened(tiny_model_dir, tmp_path_factory.mktemp("tiny") / "model", positions=4096)


@pytest.mark.parametrize(
    ("recipe", "metrics"),
    [
        ("user-simulator", ("success_rate", "early_termination", "failure_rate", "parse_rate")),
        ("recommender-simulator", ("recall_at_1", "parse_rate")),
    ],
)
def test_recipe_writes_an_adapter_folder_scored_against_the_base(
    redial_folder: Path, wide_tiny_model: Path, tmp_path: Path, recipe: str, metrics: tuple[str, ...], capsys
) -> None:
    tiny_model_dir = wide_tiny_model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = tmp_path / recipe
    assert _train(recipe, redial_folder, out, tiny_model_dir) == 0
    printed = capsys.readouterr().out
    assert "training sequences from 24 dialogues" in printed and "'loss'" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["seed"] == 42 and results["n_train_dialogues"] == 24 and results["n_test"] > 0
    for name in metrics:
        assert 0.0 <= results[name] <= 1.0 and 0.0 <= results[f"base_{name}"] <= 1.0
    assert results["details"]["training"]["steps"] == 2
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tiny_model_dir) and config["r"] == 8
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out)
    assert any("lora_A" in name for name, _ in model.named_parameters())
    assert json.loads((out / "crsdata.json").read_text())["kind"] == "model"
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "peft" and card.data.datasets == ["redial"]
    assert {e.metric_type for e in card.data.eval_results} >= set(metrics)
    assert "| dialogues read (split `train`) | 24 |" in card.text
    assert "leak guard (target title in the prompt) |" in card.text
    assert "| Turns parsed without repair |" in card.text
    assert not (out / ".trainer").exists()


def test_a_command_stopped_while_scoring_scores_the_saved_model_when_run_again(
    redial_folder: Path, wide_tiny_model: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """A one-epoch run that failed in its held-out scoring lost nothing but the scoring: the same command scores the
    saved model and writes the folder, without training again; other training options are refused."""
    from crsdata.training import interplay as recipe_module

    out = tmp_path / "stopped"

    def scoring_fails(*args, **kwargs):
        raise ImportError("the scoring code changed under the running command")

    monkeypatch.setattr(recipe_module.InterplayRecipe, "evaluate", scoring_fails)
    assert _train("user-simulator", redial_folder, out, wide_tiny_model) != 0
    saved = (out / "adapter_model.safetensors").read_bytes()
    assert (out / ".trainer" / "run.json").is_file() and not (out / "results.json").exists()
    monkeypatch.undo()
    assert _train("user-simulator", redial_folder, out, wide_tiny_model, "--learning-rate", "5e-4") != 0
    assert "other options (learning_rate)" in capsys.readouterr().err

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(recipe_module, "train_sequences", no_training)
    assert _train("user-simulator", redial_folder, out, wide_tiny_model) == 0
    assert "holds the model this command trained before" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["details"]["training"]["steps"] == 2 and 0.0 <= results["success_rate"] <= 1.0
    assert (out / "adapter_model.safetensors").read_bytes() == saved and not (out / ".trainer").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--split", "validation"], "no split 'validation' in this data folder (it has test, train)"),
        (["--config", "{tmp}/bad.yaml"], "field 'lora_rank': unknown config key"),
        (["--base", "{tmp}/no-such-model"], "field '--base': cannot load the base model"),
        (["--eval-split", "validation"], "no held-out split 'validation' in any --data folder"),
    ],
)
def test_bad_input_is_one_line(
    redial_folder: Path, tiny_model_dir: Path, tmp_path: Path, capsys, extra: list[str], expected: str
) -> None:
    (tmp_path / "bad.yaml").write_text("lora_rank: 4\n")
    extra = [a.format(tmp=tmp_path) for a in extra]
    base = [] if "--base" in extra else ["--base", str(tiny_model_dir)]
    code = main(["train", "user-simulator", "--data", str(redial_folder), "--out", str(tmp_path / "m"), *base, *extra])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert expected in err[-1] and "Traceback" not in "\n".join(err)


def test_embedded_registry_defaults_styles_and_merge(tiny_model_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from crsdata.backends import embedded, make_backend
    from crsdata.training.interplay import InterplayTrainConfig, prepare_sequences, train_sequences

    assert embedded.embedded_style("embedded") == "instruct" and embedded.embedded_style("Embedded-Base") == "instruct"
    assert embedded.embedded_style(embedded.USER_SIMULATOR) == "finetuned"
    assert embedded.embedded_style(tmp_path) is None
    assert embedded.embedded_model("base") == embedded.EMBEDDED_MODELS[embedded.BASE_MODEL]
    # Without its adapter in the package, a default falls back to the zero-shot base.
    monkeypatch.setitem(embedded.EMBEDDED_MODELS, "missing", embedded.EmbeddedModel("missing", "finetuned", "nowhere"))
    assert embedded.shipped_or_base("missing") == embedded.BASE_MODEL
    assert embedded.shipped_or_base(embedded.BASE_MODEL) == embedded.BASE_MODEL

    # A trained adapter merges into a plain folder that the local backend loads; the merge is cached.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    data = prepare_sequences([], "user", tokenizer, None, max_length=64, seed=0)
    data.input_ids, data.labels = [[5, 6, 7, 8]] * 2, [[IGNORE_INDEX, 6, 7, 8]] * 2
    data.tokens = 8
    config = InterplayTrainConfig(out=str(tmp_path / "adapter"), max_steps=1, batch_size=2, bf16=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    train_sequences(config, data, tokenizer, model, hub_id="tiny/base")
    merged = embedded.merge_adapter(tiny_model_dir, tmp_path / "adapter", tmp_path / "merged")
    marker = (merged / embedded._MARKER).read_text()
    assert embedded.merge_adapter(tiny_model_dir, tmp_path / "adapter", tmp_path / "merged") == merged
    assert (merged / embedded._MARKER).read_text() == marker  # reused, not rebuilt
    backend = make_backend("local", str(merged))
    assert backend.model.config.num_hidden_layers == 2


def test_interplay_defaults_to_the_shipped_pair_in_their_style(tmp_path: Path) -> None:
    """The kinds registry declares the defaults: Interplay's roles get the shipped fine-tuned simulators and the
    finetuned layout, RecLLMSim the base; a named model or --prompt-style wins."""
    from crsdata.backends import embedded
    from crsdata.simulate.interplay import InterplayOptions, InterplaySimulation
    from crsdata.simulate.job import SimulateConfig

    shipped = all(embedded._available(embedded.EMBEDDED_MODELS[n]) for n in InterplaySimulation.default_models.values())
    assert shipped, "the fine-tuned adapters ship in models/<recipe>/adapter*/"

    def config(kind: str, **kwargs) -> SimulateConfig:
        return SimulateConfig(kind=kind, source="x", n=1, out=tmp_path / "o", **kwargs)

    default = config("interplay")
    assert (default.user_model, default.recommender_model) == (
        embedded.DEFAULT_PAIR["user"],
        embedded.DEFAULT_PAIR["recommender"],
    )
    assert default.options.grounding == "catalog"  # the default pair's, as trained
    # The ungrounded pair stays available by name, in Interplay's layout.
    names = {"user_model": embedded.USER_SIMULATOR, "recommender_model": embedded.RECOMMENDER_SIMULATOR}
    ungrounded = config("interplay", **names)
    assert ungrounded.options.grounding == "none" and ungrounded.options.prompt_style == "finetuned"
    assert default.options.prompt_style == "finetuned"
    assert default.options.first_speaker == "user"  # ReDial's seeker opens; the recommender never learned to
    assert config("interplay", options=InterplayOptions(prompt_style="instruct")).options.prompt_style == "instruct"
    base = config("interplay", user_model="base", recommender_model="base")
    assert base.options.prompt_style == "instruct" and base.options.first_speaker == "recommender"
    recllmsim = config("recllmsim")
    assert recllmsim.user_model == recllmsim.recommender_model == embedded.BASE_MODEL
    # A folder written by an Interplay recipe reads the finetuned layout; mixed roles get a style each.
    (tmp_path / "crsdata.json").write_text(json.dumps({"kind": "model", "recipe": "user-simulator"}))
    mixed = config("interplay", user_model=str(tmp_path), recommender_model="embedded")
    assert mixed.options.prompt_style == {"user": "finetuned", "recommender": "instruct"}


@pytest.mark.slow
def test_simulate_with_no_model_options_runs_the_fine_tuned_pair(tmp_path: Path) -> None:
    """The embedded default on real held-out records: the shipped adapters merged into the wheel's base."""
    import datasets

    from crsdata.schema import load_extra
    from crsdata.training.interplay_eval import dialogue_figures

    test = _head(REDIAL / "official" / "test_data.jsonl", tmp_path / "redial_test.jsonl", 30)
    folder = tmp_path / "redial"
    assert main(["build", "redial", "--input", str(test), "--catalog", str(REDIAL / "redial__id2info.json"),
                 "--out", str(folder)]) == 0  # fmt: skip
    out = tmp_path / "sim"
    assert main(["simulate", "interplay", "--source", str(folder), "--n", "4", "--max-turns", "6", "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    records = datasets.load_dataset(str(out), "dialogues", split="test").to_list()  # the source's one split
    assert 1 <= len(records) <= 4  # a dialogue that ends before its first turn is dropped (counted in the card)
    figures = dialogue_figures(str(out), "test")
    assert figures["dialogues"] == len(records) and figures["turns"] == sum(len(r["turns"]) for r in records)
    assert figures["accepts"] == sum(r["outcome"]["end_reason"] == "accept" for r in records)
    assert 0 <= figures["repeated_turns"] <= 1 and 0 <= figures["parse_rate"] <= 1
    for record in records:
        assert "interplay-user-catalog" in record["provenance"]["user_model"]  # the default pair, grounded
        assert "interplay-recommender-catalog" in record["provenance"]["recommender_model"]
        assert load_extra(record["extra"])["style"] == {"user": "finetuned", "recommender": "finetuned"}
        assert record["turns"] and record["turns"][0]["role"] == "user"  # the fine-tuned user opens
        assert record["outcome"]["end_reason"] in ("accept", "max_turns", "parse_error")
    assert any(r["outcome"]["end_reason"] != "parse_error" for r in records)


def test_held_out_records_never_include_a_training_record(tmp_path: Path) -> None:
    """KGSF's train subset and iEvaLM's validation file share 88 conversations: scoring leaves those out."""
    from crsdata.training.interplay import record_keys, split_records

    def lines(path: Path) -> dict[str, str]:
        return {json.loads(line)["conversationId"]: line for line in path.read_text(encoding="utf-8").splitlines()}

    train = lines(REDIAL / "train_partial" / "kgsf_train_subset_901.jsonl")
    valid = lines(REDIAL / "redial__valid_data.jsonl")
    shared = sorted(set(train) & set(valid))
    assert len(shared) == 88
    keep_train = shared + [i for i in train if i not in valid][:10]
    keep_valid = shared + [i for i in valid if i not in train][:10]
    folders = []
    for name, kept, rows in (("train", keep_train, train), ("valid", keep_valid, valid)):
        source = tmp_path / f"redial_{name}.jsonl"
        source.write_text("".join(rows[i] + "\n" for i in kept), encoding="utf-8")
        args = ["build", "redial", "--input", str(source), "--out", str(tmp_path / name)]
        assert main([*args, "--catalog", str(REDIAL / "redial__id2info.json")]) == 0
        folders.append(load_data_folder(tmp_path / name))
    trained = training_records(folders, "train")
    held_out, excluded = split_records(folders, "validation", exclude=record_keys(trained))
    assert excluded == 88 and len(held_out) == 10
    assert not record_keys(held_out) & record_keys(trained)


def _simulated(
    dialogue_id: str, target: dict, lines: list[tuple[str, str, str, list[dict]]], accepted: dict | None
) -> dict:
    """A record shaped like `crsdata simulate interplay`'s: (role, action, text, items) turns, the outcome."""
    from crsdata.schema import item_ref, new_dialogue, new_turn

    turns = [new_turn(i, role, text, action, items) for i, (role, action, text, items) in enumerate(lines)]
    outcome = {"accepted_item": accepted or item_ref(), "end_reason": "accept" if accepted else "max_turns"}
    return new_dialogue(dialogue_id, "interplay-sim", "test", turns, target_items=[target], outcome=outcome)


def test_self_play_figures_count_catalog_titles_accepts_and_greeting_loops(
    redial_folder: Path, tmp_path: Path, capsys
) -> None:
    """Issue 21's self-play measures on hand-made dialogues about real ReDial films: the folder's catalog decides
    which named titles are films, the record's target which accept is of the target, greetings are counted by
    label and by text."""
    from crsdata.build import BuildResult
    from crsdata.catalog import load_catalog
    from crsdata.export import export_folder
    from crsdata.schema import item_ref
    from crsdata.simulate.filters import is_greeting_turn
    from crsdata.simulate.replay import replay_target
    from crsdata.training.interplay_eval import dialogue_figures
    from crsdata.training.interplay_eval import main as eval_main

    catalog = load_catalog([redial_folder])
    held_out = load_data_folder(redial_folder).records("test")
    target_id = next(t for t in (replay_target(r)[0] for r in held_out) if t and t in catalog)
    target = item_ref(target_id, catalog.get(target_id)["title"])
    other = next(r for r in catalog.rows() if r["item_id"] != target_id)
    film = item_ref(other["item_id"], other["title"])
    invented = item_ref("", "The Mask of a Masquerade")
    unknown = item_ref("no-such-film", "Not In The Catalog")  # an id the catalog does not know
    user, rec = "user", "recommender"
    records = [
        # A catalog film and an invented title, then the target, accepted: 3 titles, 2 of them films.
        _simulated("target", target, [
            (user, "greeting", "Hi! I want a film to watch.", []),
            (rec, "recommend", "Hello! Try Film or The Mask of a Masquerade.", [film, invented]),
            (user, "feedback", "Something else?", []),
            (rec, "recommend", "Then Target.", [target]),
            (user, "accept", "Great!", []),  # an accept is never a greeting by its text
        ], target),
        # A catalog film that is not the target, accepted; an id the catalog does not know.
        _simulated("film", target, [
            (rec, "recommend", "Not In The Catalog, or Film?", [unknown, film]),
            (user, "accept", "Film it is.", []),
        ], film),
        # An invented title, accepted: an accept, not of a catalog film.
        _simulated("invented", target, [(rec, "recommend", "The Mask of a Masquerade.", [invented]),
                                        (user, "accept", "Sure.", [])], invented),
        # A greeting loop mislabelled as other acts: 6 greeting turns, three of them repeats.
        _simulated("loop", target, [
            (user, "greeting", "Hello!", []),
            (rec, "recommend", "Hi there!", []),
            (user, "feedback", "Hello!", []),
            (rec, "feedback", "Great!", []),
            (user, "feedback", "Hello!", []),
            (rec, "feedback", "Hi there!", []),
            (user, "feedback", "Great, I'll watch that one tonight.", []),
        ], None),
    ]  # fmt: skip
    folder = export_folder(BuildResult(source="interplay-sim", splits={"test": records}), tmp_path / "sim")
    figures = dialogue_figures(str(folder), "test", catalog)
    counts = ("accepts", "repeated", "turns", "dialogues", "recommended_titles", "catalog_titles", "catalog_accepts")
    counts += ("target_accepts", "target_proposed", "greeting_turns", "greeting_loop_dialogues", "max_greeting_turns")
    assert {k: figures[k] for k in counts} == {
        "accepts": 3,
        "repeated": 3,
        "turns": 16,
        "dialogues": 4,
        "recommended_titles": 6,
        "catalog_titles": 3,
        "catalog_accepts": 2,
        "target_accepts": 1,
        "target_proposed": 1,  # only the first dialogue's recommender named the target
        "greeting_turns": 7,
        "greeting_loop_dialogues": 1,
        "max_greeting_turns": 6,
    }  # fmt: skip
    assert figures["catalog_title_share"] == 0.5
    assert figures["catalog_accept_rate"] == 0.5 and figures["target_accept_rate"] == 0.25
    assert figures["repeated_turns"] == 3 / 16 and figures["greeting_loop_rate"] == 0.25
    # Without a catalog (a simulation's folder holds none) every linked id is a film: "no-such-film" counts too.
    assert dialogue_figures(str(folder), "test")["catalog_titles"] == 4
    assert not is_greeting_turn({"action": "feedback", "text": "Hello, I'm looking for a horror film.", "items": []})

    # The command: a markdown row per folder, then the same figures as JSON.
    out = tmp_path / "figures.json"
    args = ["figures", str(folder), "--split", "test", "--catalog", str(redial_folder), "--json", str(out)]
    assert eval_main(args) == 0
    printed = capsys.readouterr().out
    row = "| 4 | 6 | 3 (50.0%) | 2 (50.0%) | 1 (25.0%) | 1 (25.0%) | 3 (18.8%) | 1 (25.0%) | 6 |"
    assert f"| {folder} {row}" in printed
    assert json.loads(out.read_text()) == {str(folder): figures}
    assert eval_main(["figures", str(folder), "--split", "validation"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"python -m crsdata.training.interplay_eval figures: error: {folder}, field 'split': no split "
                   "'validation' (it has test)"]  # fmt: skip


def test_target_ranks_place_each_target_in_the_recommenders_retrieval(redial_folder: Path, tmp_path: Path) -> None:
    """`figures --target-rank` on real ReDial films (a 40-film slice of the catalog, MiniLM from the wheel): cues
    that are the target's own catalog text rank it first; the user's turns are a second query."""
    from crsdata.build import BuildResult
    from crsdata.catalog import Catalog, load_catalog
    from crsdata.export import export_folder
    from crsdata.schema import item_ref, new_dialogue, new_turn
    from crsdata.simulate.grounding import CatalogRetriever
    from crsdata.training.interplay_eval import target_ranks

    full = load_catalog([redial_folder])
    rows = [r for r in full.rows() if r.get("genres") and r.get("plot")][:40]
    catalog = Catalog().add_rows(rows)
    assert len(CatalogRetriever(catalog.rows()).ids) == 40
    target, other = rows[0], rows[1]
    records = [
        new_dialogue(
            f"d{i}",
            "interplay-sim",
            "test",
            [new_turn(0, "user", text, "disclose-goal", [])],
            user_profile={"target_attributes": cues},
            target_items=[item_ref(target["item_id"], target["title"])],
        )
        for i, (cues, text) in enumerate(
            [(f"{', '.join(target['genres'])}. {target['plot']}", "hi"), ("hello", target["plot"])]
        )
    ]
    folder = export_folder(BuildResult(source="interplay-sim", splits={"test": records}), tmp_path / "sim")
    figures = target_ranks(str(folder), "test", catalog, k=1)
    assert figures["target_rank_dialogues"] == 2 and figures["catalog_films"] == 40
    assert figures["in_top_1_by_cues"] == 1 and figures["in_top_1_by_user_turns"] == 1
    assert figures["median_target_rank_by_cues"] > 1 and other["item_id"] != target["item_id"]
