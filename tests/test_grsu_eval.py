"""crs-eval end to end on real records: iEvaLM's ReDial turns and INSPIRED dialogues built with `crsdata build`,
the search with the tiny test model as CRS and simulated user, resume, results and card, and bad input; an
Interplay recommender simulator as `--crs llm`, asked in its finetuned layout (grounded or not)."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import pytest

from crsdata.cli import main
from crsdata.errors import BadInputError
from crsdata.grsu import CrsEvalConfig, load_eval_set, run_crs_eval
from crsdata.grsu.report import METRIC_KEYS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REDIAL = DATA / "redial"
CATALOG = REDIAL / "redial__id2info.json"
INSPIRED = DATA / "inspired"
pytestmark = pytest.mark.skipif(not CATALOG.is_file(), reason=f"ReDial data not found under {REDIAL}")


def build(args: list[str]) -> None:
    assert main(["build", *args]) == 0


@pytest.fixture(scope="module")
def redial_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 60 test and 30 validation turns of iEvaLM's files, built with the whole ReDial catalog."""
    root = tmp_path_factory.mktemp("redial-eval")
    for name, lines in (("test", 60), ("valid", 30)):
        source = REDIAL / f"redial_eval__{name}_data_processed.jsonl"
        head = source.read_text(encoding="utf-8").splitlines()[:lines]
        (root / f"sample_{name}_data_processed.jsonl").write_text("\n".join(head) + "\n", encoding="utf-8")
    out = root / "built"
    build(
        [
            "redial-eval",
            "--input",
            str(root / "sample_test_data_processed.jsonl"),
            "--input",
            str(root / "sample_valid_data_processed.jsonl"),
            "--catalog",
            str(CATALOG),
            "--out",
            str(out),
        ]
    )
    return out


@pytest.fixture(scope="module")
def inspired_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inspired") / "built"
    tsv = [str(INSPIRED / "test.tsv"), str(INSPIRED / "dev.tsv")]
    build(["inspired", "--input", tsv[0], "--input", tsv[1], "--catalog", str(CATALOG), "--out", str(out)])
    return out


def test_turn_samples_keep_new_targets_only(redial_folder: Path) -> None:
    eval_set = load_eval_set(redial_folder, "test")
    assert eval_set.kind == "turn samples" and eval_set.source_name == "redial-eval"
    assert eval_set.records == 60 and eval_set.eligible + sum(eval_set.skipped.values()) == 60
    keys = {t.key for t in eval_set.turns}
    # 20001-3 recommends Police Academy (1984), named earlier, and its sequel: GRSU (only_new) skips the turn.
    assert "20001-3" not in keys
    turn = next(t for t in eval_set.turns if t.group == "20001")
    assert turn.context[0] == ("user", "Hi I am looking for a movie like Super Troopers (2001)")
    assert eval_set.skipped["targets-already-mentioned"] > 0
    sample = load_eval_set(redial_folder, "test", n=5, seed=3)
    assert [t.key for t in sample.turns] == [t.key for t in load_eval_set(redial_folder, "test", n=5, seed=3).turns]
    assert len(sample.turns) == 5 and sample.eligible == eval_set.eligible


@pytest.mark.skipif(not (INSPIRED / "test.tsv").is_file(), reason="INSPIRED data not found")
def test_recommendation_turns_of_whole_dialogues(inspired_folder: Path) -> None:
    eval_set = load_eval_set(inspired_folder, "test")
    assert eval_set.kind == "dialogues" and eval_set.source_name == "inspired"
    assert 100 < len(eval_set.turns) < 292  # 292 recommender turns name a movie; some have nothing new or linkable
    assert eval_set.skipped["targets-not-in-catalog"] > 0 and eval_set.skipped["targets-already-mentioned"] > 0
    for turn in eval_set.turns:
        assert turn.targets and not set(turn.targets) & set(turn.mentioned)
        assert all(t in eval_set.items for t in turn.targets)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test model, reading 2,048 positions: its byte-level vocabulary of 384 spends a token on every few
    characters, so GRSU's prompts run past its default 512. Its rotary positions are not learnt: only the limit
    changes."""
    from fixtures.tiny_models import build_tiny_chat_model

    folder = build_tiny_chat_model(tmp_path_factory.mktemp("tiny-2048"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 2048}))
    return folder


def tiny_config(folder: Path, out: Path, model: Path, **changes: object) -> CrsEvalConfig:
    settings = dict(
        source=folder,
        out=out,
        crs="llm",
        protocol="grsu",
        n=3,
        crs_model=str(model),
        scorer_model=str(model),
        list_size=3,
        zero_shot_size=10,  # the tiny model never stops early: 50 titles would be 800 tokens
        context_chars=600,
        beam_width=2,  # smaller than the paper's default 4/4/5: the tiny model is a test of the plumbing
        expand_width=2,
        depth=2,
        batch_turns=2,
        bootstrap=50,
        progress=False,
    )
    settings.update(changes)
    return CrsEvalConfig(**settings)


@pytest.fixture(scope="module")
def tiny_run(redial_folder: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    return {"out": out, "results": run_crs_eval(tiny_config(redial_folder, out, tiny_model))}


def test_search_on_real_turns_with_the_tiny_model(tiny_run: dict, redial_folder: Path) -> None:
    results, out = tiny_run["results"], tiny_run["out"]
    assert results["n_turns"] == 3 and results["protocol"] == "grsu" and results["dataset"] == "ReDial"
    for key in (*METRIC_KEYS, "n_turns", "crs_calls", "scoring_passes"):
        assert key in results
    assert json.loads((out / "results.json").read_text())["recall@10"] == results["recall@10"]
    # B = N = 2, D = 2: 4 lists from the conversation, then 2 kept x 2 critiques, per turn.
    assert results["search"]["lists_per_turn"] == 8 and results["crs_calls"] == 24
    assert results["zero_shot"]["crs_calls"] == 3 and results["critiques"] == 3 * 4
    records = [json.loads(line) for line in (out / "turns.jsonl").read_text().splitlines()]
    turns = {t.key: t for t in load_eval_set(redial_folder, "test", n=3).turns}
    assert [r["key"] for r in records] == list(turns)
    for record in records:
        turn = turns[record["key"]]
        lists = record["lists"]
        assert [node["depth"] for node in lists] == [1, 1, 1, 1, 2, 2, 2, 2]
        kept = {node["parent"] for node in lists[4:]}
        rewards = {node["id"]: node["reward"] if node["reward"] is not None else -1 for node in lists[:4]}
        assert kept == set(sorted(rewards, key=lambda i: (-rewards[i], i))[:2])  # the two best of depth 1
        scored = {i for node in lists for i in node["items"]}
        assert record["scoring_passes"] == len(scored)
        assert set(record["ranking"]) <= scored and record["scores"] == sorted(record["scores"], reverse=True)
        mentioned = set(turn.mentioned)
        assert not mentioned & (set(record["ranking"]) | set(record["zero_shot"]) | scored)
    card = (out / "README.md").read_text()
    assert "| recall@10 |" in card and "## Example" in card and "paper GRSU" in card
    assert "crsdata crs-eval --source" in card and "--crs llm" in card


def test_resume_after_a_kill_gives_the_same_results(tiny_run: dict, redial_folder: Path, tiny_model: Path) -> None:
    out = tiny_run["out"]
    lines = (out / "turns.jsonl").read_text().splitlines()
    # A kill during the second batch: one full line, then a line cut in the middle.
    (out / "turns.jsonl").write_text(lines[0] + "\n" + lines[1][:40])
    resumed = run_crs_eval(tiny_config(redial_folder, out, tiny_model))
    assert resumed["resumed_turns"] == 1
    before = [json.loads(line) for line in lines]
    after = [json.loads(line) for line in (out / "turns.jsonl").read_text().splitlines()]
    # The same lists, critiques and rankings; scores agree to float32 noise (the batches of the forward passes
    # differ: turn 3 was scored beside turn 2 this time).
    for old, new in zip(before, after, strict=True):
        assert new["scores"] == pytest.approx(old["scores"], abs=1e-5)
        for node in old["lists"] + new["lists"]:
            node["reward"] = round(node["reward"], 4) if node["reward"] is not None else None
        assert {**new, "scores": None} == {**old, "scores": None}
    for key in (*METRIC_KEYS, "crs_calls", "scoring_passes"):
        assert resumed[key] == tiny_run["results"][key]


def test_other_settings_in_the_same_out_are_refused(tiny_run: dict, redial_folder: Path, tiny_model: Path) -> None:
    with pytest.raises(BadInputError, match="depth.*other settings"):
        run_crs_eval(tiny_config(redial_folder, tiny_run["out"], tiny_model, depth=1))


def test_zero_shot_protocol_and_source_card(redial_folder: Path, tiny_model: Path, tmp_path: Path) -> None:
    config = tiny_config(
        redial_folder, tmp_path / "zs", tiny_model, crs="popularity", protocol="zero-shot", update_card=True
    )
    results = run_crs_eval(config)
    assert results["crs_calls"] == 3 and results["scoring_passes"] == 0 and "grsu" not in results
    assert results["recall@10"] == results["zero_shot"]["recall@10"]
    card = (redial_folder / "README.md").read_text()
    assert card.count("## Interactive evaluation (GRSU)") == 1 and "zero-shot (test, 3 turns)" in card
    run_crs_eval(
        tiny_config(
            redial_folder, tmp_path / "zs2", tiny_model, crs="popularity", protocol="zero-shot", update_card=True
        )
    )
    assert (redial_folder / "README.md").read_text().count("## Interactive evaluation (GRSU)") == 1


def test_popularity_counts_a_training_side_split(redial_folder: Path, tiny_model: Path, tmp_path: Path) -> None:
    config = tiny_config(redial_folder, tmp_path / "pop", tiny_model, crs="popularity", depth=1)
    results = run_crs_eval(config)  # test evaluated: validation counted
    assert "(validation, " in results["crs_details"]["popularity_from"]
    assert results["search"]["lists_per_turn"] == 4
    same = tiny_config(redial_folder, tmp_path / "pop2", tiny_model, crs="popularity", popularity_split="test")
    with pytest.raises(BadInputError, match="is the one evaluated"):
        run_crs_eval(same)


def cli_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["crs-eval", *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crsdata crs-eval: error: ")
    return err[0]


@pytest.mark.skipif(not (INSPIRED / "test.tsv").is_file(), reason="INSPIRED data not found")
def test_bad_folders_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tsv = str(INSPIRED / "test.tsv")
    build(["inspired", "--input", tsv, "--out", str(tmp_path / "no-catalog")])
    movielens = DATA / "movielens-latest-small" / "movies.csv"
    build(["inspired", "--input", tsv, "--catalog", str(movielens), "--out", str(tmp_path / "genres-only")])
    capsys.readouterr()
    base = ["--crs", "popularity", "--protocol", "grsu", "--out", str(tmp_path / "out")]
    error = cli_error(["--source", str(tmp_path / "no-catalog"), *base], capsys)
    assert "no 'items' config" in error
    error = cli_error(["--source", str(tmp_path / "genres-only"), *base], capsys)
    assert "no item of the catalog has actor, writer, director" in error
    error = cli_error(["--source", str(tmp_path / "missing"), *base], capsys)
    assert "no such folder" in error


def test_a_folder_without_new_targets_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    turn = {"dialog_id": "9", "turn_id": 1, "context": ["I loved Alien (1979)"], "entity": ["Alien (1979)"]}
    (tmp_path / "x_test_data_processed.jsonl").write_text(json.dumps({**turn, "rec": ["Alien (1979)"]}) + "\n")
    folder = tmp_path / "built"
    build(
        [
            "redial-eval",
            "--input",
            str(tmp_path / "x_test_data_processed.jsonl"),
            "--catalog",
            str(CATALOG),
            "--out",
            str(folder),
        ]
    )
    capsys.readouterr()
    error = cli_error(
        ["--source", str(folder), "--crs", "retrieval", "--protocol", "zero-shot", "--out", str(tmp_path / "out")],
        capsys,
    )
    assert "no turn has ground-truth items" in error and "targets-already-mentioned: 1" in error


@pytest.mark.slow
def test_cli_default_scorer_with_minilm(
    redial_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default simulated user (all-MiniLM-L6-v2 from its wheel) with the popularity CRS, through the CLI."""
    out = tmp_path / "cli"
    args = ["--source", str(redial_folder), "--crs", "popularity", "--protocol", "grsu", "--n", "5", "--out", str(out)]
    assert main(["crs-eval", *args, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "recall@10" in printed and "crs_calls 400" in printed  # 5 turns x 80 lists (B = N = 4, D = 5)
    results = json.loads((out / "results.json").read_text())
    assert results["user"]["scorer"]["name"] == "embedding" and results["n_turns"] == 5


def test_options_come_from_a_config_file_and_a_flag_overrides_it(
    redial_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`crsdata crs-eval --config run.yaml`: the file's keys are the flags (zero-shot-size or zero_shot_size); --n on
    the command line wins over the file's n; an unknown key names the file and the key."""
    out = tmp_path / "from-file"
    run = tmp_path / "run.yaml"
    run.write_text(
        f"source: {redial_folder}\ncrs: popularity\nprotocol: zero-shot\nout: {out}\nn: 3\nzero-shot-size: 20\n"
        "bootstrap: 0\nquiet: true\n"
    )
    assert main(["crs-eval", "--config", str(run), "--n", "5"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n_turns"] == 5 and "grsu" not in results  # --n over the file's 3; the file's protocol
    capsys.readouterr()
    run.write_text(f"source: {redial_folder}\ncrs: popularity\nprotocol: grsu\nout: {out}\nbeam_widht: 2\n")
    error = cli_error(["--config", str(run)], capsys)
    assert str(run) in error and "beam_widht" in error and "not an option of this command" in error


# ---------------------------------------------------------------------------------------------------------
# The Interplay recommender simulator as `--crs llm` (crsdata.grsu.simulator)

PROMPT_END = "\nrecommender: <action><recommend></action><response>"


def simulator_folder(model: Path, root: Path, grounding: str, recipe: str = "recommender-simulator") -> Path:
    """The tiny model as a `crsdata train` folder of an Interplay recipe: its crsdata.json names the recipe and the
    grounding it was trained on, which is all crs-eval reads to choose the layout."""
    from crsdata.folder_metadata import write_folder_metadata

    folder = root / f"{recipe}-{grounding}"
    shutil.copytree(model, folder)
    write_folder_metadata(folder, "model", "0.1.0", recipe=recipe, config={"grounding": grounding})
    return folder


def simulator_crs(source: Path, out: Path, model: Path) -> tuple:
    """The CRS that `crsdata crs-eval --crs llm --crs-model MODEL` builds, and the evaluation set (2 test turns)."""
    from crsdata.grsu.evaluation import _Backends, build_crs
    from crsdata.grsu.vectors import ItemVectors

    config = tiny_config(source, out, model, protocol="zero-shot", n=2, max_model_len=2048)
    eval_set = load_eval_set(source, "test", n=2, context_chars=600)
    backends = _Backends(config.max_batch_size, config.max_model_len)
    vectors = functools.cache(lambda: ItemVectors(eval_set.items))
    return build_crs(config, eval_set.items, backends, vectors), eval_set


def queries_for(eval_set, critique_text: str = "I would like a comedy instead.") -> list:
    """A zero-shot query of 50 items and a revision of the first catalog items with a critique, as the search
    asks (the revised list excluded on its path)."""
    from crsdata.grsu.search import Critique, CrsQuery

    turn = eval_set.turns[0]
    previous = tuple(i for i in eval_set.items.ids() if i not in turn.mentioned)[:3]
    zero_shot = CrsQuery(turn, 50, 1, exclude=frozenset(turn.mentioned))
    revise = CrsQuery(
        turn,
        10,
        2,
        sample=True,
        previous=previous,
        critique=Critique(critique_text, "genre", "Comedy"),
        exclude=frozenset(turn.mentioned) | frozenset(previous),
    )
    return [zero_shot, revise]


def test_models_are_told_apart_as_simulate_tells_them() -> None:
    from crsdata.grsu.simulator import SimulatorLayout, simulator_layout

    assert simulator_layout("smollm2-135m-interplay-recommender") == SimulatorLayout("finetuned", "none")
    assert simulator_layout("embedded") is None and simulator_layout("HuggingFaceTB/SmolLM2-135M-Instruct") is None
    with pytest.raises(BadInputError, match="user simulator"):
        simulator_layout("smollm2-135m-interplay-user")


@pytest.mark.skipif(not (INSPIRED / "test.tsv").is_file(), reason="INSPIRED data not found")
def test_recommender_simulator_is_asked_in_its_finetuned_layout(
    inspired_folder: Path, tiny_model: Path, tmp_path: Path
) -> None:
    from crsdata.grsu.simulator import SimulatorCRS

    folder = simulator_folder(tiny_model, tmp_path, "none")
    crs, eval_set = simulator_crs(inspired_folder, tmp_path / "run", folder)
    assert isinstance(crs, SimulatorCRS) and crs.grounding == "none"
    queries = queries_for(eval_set)
    lists = crs.recommend(queries)
    zero_shot, revise = crs.last_prompts
    turn = eval_set.turns[0]
    # The bare layout: the recommender's header, one line a turn, the act given; nothing of GRSU's Eq. 1.
    assert zero_shot.startswith("[ROLE] recommender\n[CONVERSATION]\n") and zero_shot.endswith(PROMPT_END)
    assert "## Instruction" not in zero_shot and "[CANDIDATES]" not in zero_shot
    lines = zero_shot.split("[CONVERSATION]\n", 1)[1].splitlines()[:-1]
    assert len(lines) == len(turn.context)
    for line, (role, text) in zip(lines, turn.context, strict=True):
        assert line.startswith(f"{role}: <action><") and line.endswith("</response>")
        assert " ".join(text.split())[:20] in line.replace("<movie_title>", "").replace("</movie_title>", "")
    # Revising: the list being revised said by the recommender, then the critique as the user's turn.
    titles = [eval_set.items.title(i) for i in queries[1].previous]
    said = ", ".join(f"<movie_title>{t}</movie_title>" for t in titles)
    critique = "user: <action><feedback></action><response>I would like a comedy instead.</response>"
    assert revise.startswith(zero_shot[: -len(PROMPT_END)])
    assert revise.endswith(
        f"<action><recommend></action><response>You might like {said}.</response>\n{critique}{PROMPT_END}"
    )
    # Complete rankings: 50 and 10 films, each once, none mentioned or excluded.
    for ranking, query in zip(lists, queries, strict=True):
        assert len(ranking) == query.k == len(set(ranking)) and not set(ranking) & query.exclude
    details = crs.describe()
    assert details["model"] == str(folder) and details["prompt_layout"].startswith("finetuned")
    assert details["replies"] == 2 and details["fill"]["name"] == "retrieval"


@pytest.mark.skipif(not (INSPIRED / "test.tsv").is_file(), reason="INSPIRED data not found")
def test_grounded_recommender_simulator_gets_its_candidates(
    inspired_folder: Path, tiny_model: Path, tmp_path: Path
) -> None:
    from crsdata.simulate.grounding import compact_line

    folder = simulator_folder(tiny_model, tmp_path, "catalog")
    crs, eval_set = simulator_crs(inspired_folder, tmp_path / "run", folder)
    assert crs.grounding == "catalog"
    queries = queries_for(eval_set)
    prompt, _, shown = crs.prompt(queries[0])
    assert len(shown) == 5 and not set(shown) & queries[0].exclude
    block = "".join(f"- {compact_line(crs.catalog.get(i))}\n" for i in shown)
    assert prompt.endswith(f"[CANDIDATES]\n{block}recommender: <action><recommend></action><response>")
    assert prompt.startswith("[ROLE] recommender\n[CONVERSATION]\n")
    revise, _, revised_shown = crs.prompt(queries[1])
    assert not set(revised_shown) & queries[1].exclude and revise.endswith(PROMPT_END)
    lists = crs.recommend(queries)
    assert crs.last_prompts == [prompt, revise]
    # The films the turn names come first; the tiny model names none, so its candidates lead, in retrieval order.
    if crs.named == 0:
        assert lists[0][:5] == shown
    assert len(lists[0]) == 50 == len(set(lists[0])) and crs.describe()["candidates"] == 5


@pytest.mark.skipif(not (INSPIRED / "test.tsv").is_file(), reason="INSPIRED data not found")
def test_simulator_ranking_puts_the_named_film_first(inspired_folder: Path, tmp_path: Path) -> None:
    """A simulator turn that names the target (and a mentioned film, and the target again): the target is first,
    the mentioned film is left out, and the retrieval CRS's order fills the list to 50 with no duplicate."""
    from fixtures.fake_backends import FakeBackend

    from crsdata.grsu.crs import RetrievalCRS
    from crsdata.grsu.search import CrsQuery
    from crsdata.grsu.simulator import SimulatorCRS
    from crsdata.grsu.vectors import ItemVectors

    eval_set = load_eval_set(inspired_folder, "test")
    turn = next(t for t in eval_set.turns if t.mentioned and set(t.mentioned) <= set(eval_set.items.ids()))
    items = eval_set.items
    target, seen = items.title(turn.targets[0]), items.title(turn.mentioned[0])
    text = f"Try <movie_title>{seen}</movie_title> or <movie_title>{target}</movie_title>!"
    text += f" <movie_title>{target}</movie_title> is great."
    backend = FakeBackend("fake-simulator", text=lambda request, digest: text)
    fill = RetrievalCRS(ItemVectors(items))
    crs = SimulatorCRS(backend, items, fill, model="fake-simulator")
    query = CrsQuery(turn, 50, 0, exclude=frozenset(turn.mentioned))
    (ranking,) = crs.recommend([query])
    assert ranking[0] == turn.targets[0] and turn.mentioned[0] not in ranking
    assert len(ranking) == 50 == len(set(ranking))
    expected = [turn.targets[0], *(i for i in fill.recommend([query])[0] if i != turn.targets[0])][:50]
    assert ranking == expected and crs.describe()["replies_naming_a_film"] == 1


@pytest.mark.skipif(not (INSPIRED / "test.tsv").is_file(), reason="INSPIRED data not found")
def test_crs_eval_results_and_card_name_the_simulator_and_its_layout(
    inspired_folder: Path, tiny_model: Path, tmp_path: Path
) -> None:
    folder = simulator_folder(tiny_model, tmp_path, "none")
    config = tiny_config(inspired_folder, tmp_path / "run", folder, protocol="zero-shot", n=2, max_model_len=2048)
    results = run_crs_eval(config)
    details = results["crs_details"]
    assert results["crs"] == "llm" and details["model"] == str(folder) and details["grounding"] == "none"
    assert details["prompt_layout"].startswith("finetuned") and details["replies"] == 2
    assert len(details["example_replies"]) == 2  # what the model wrote, for a reader of the card
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["crs_details"]["prompt_layout"] == details["prompt_layout"]
    card = (tmp_path / "run" / "README.md").read_text()
    assert f"model {folder}" in card and "prompt_layout finetuned" in card and "--crs-model" in card
    user = simulator_folder(tiny_model, tmp_path, "none", recipe="user-simulator")
    with pytest.raises(BadInputError, match="user simulator"):
        run_crs_eval(tiny_config(inspired_folder, tmp_path / "user", user, protocol="zero-shot", n=2))
