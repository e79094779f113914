"""The Space (spaces/playground, ``crsdata space``) through its API, on a built ReDial folder.

The app runs on 127.0.0.1 and is driven with ``gradio_client`` the way the page drives it. Models: a tiny random
LM (tests/fixtures/tiny_models.py) through the real local backend, or scripted backends where a test needs
failures, slowness or a known reply. The browser checks are in tests/test_space_browser.py.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("gradio")

from fixtures.fake_backends import ScriptedBackend, recommender, user  # noqa: E402
from gradio_client import Client  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from crsdata.backends.base import Backend, ChatRequest, Generation, SamplingParams  # noqa: E402
from crsdata.backends.shared import SharedBackend  # noqa: E402
from crsdata.simulate.interplay import InterplaySimulation  # noqa: E402
from crsdata.space import render  # noqa: E402
from crsdata.space.app import build_app  # noqa: E402
from crsdata.space.config import SpaceConfig, SpaceError  # noqa: E402
from crsdata.space.session import Space  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SPACE = ROOT / "spaces" / "playground"
FAKE_TOKEN = "hf_spaceTestToken0123456789abc"


# ---------------------------------------------------------------------------------------------------------
# Fixtures: a built ReDial folder, a tiny model that takes long prompts, an app on 127.0.0.1


@pytest.fixture(scope="module")
def redial_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``crsdata build redial`` on the ReDial validation file with its catalog (~1,000 dialogues)."""
    from crsdata.cli import main

    out = tmp_path_factory.mktemp("built") / "redial"
    code = main(
        [
            "build",
            "redial",
            "--input",
            str(DATA / "redial" / "redial__valid_data.jsonl"),
            "--catalog",
            str(DATA / "redial" / "redial__id2info.json"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def long_tiny_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with room for a persona prompt (its byte-level tokenizer makes ~1,000-token prompts)."""
    import shutil

    folder = tmp_path_factory.mktemp("models") / "tiny-chat"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["max_position_embeddings"] = 8192
    (folder / "config.json").write_text(json.dumps(config))
    return folder


class Served:
    """An app launched on 127.0.0.1 (``demo``: an already built page, e.g. the Space's own app.py)."""

    def __init__(self, space: Space, demo: Any = None) -> None:
        self.space = space
        self.demo = demo if demo is not None else build_app(space)
        self.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
        self.url = self.demo.local_url

    def client(self) -> Client:
        return Client(self.url, verbose=False)

    def close(self) -> None:
        self.demo.close()


@pytest.fixture(scope="module")
def served(redial_folder: Path, long_tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """The app on the tiny model through the real local backend, with a token in the environment that must never
    reach the page."""
    save_dir = tmp_path_factory.mktemp("saves") / "space-saved"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_TOKEN", FAKE_TOKEN)
        config = SpaceConfig(
            data=[str(redial_folder)],
            user_model=str(long_tiny_model),
            recommender_model=str(long_tiny_model),
            save_dir=str(save_dir),
            max_turns=6,
            max_new_tokens=12,
            timeout_s=60,
        )
        app = Served(Space(config))
    yield app
    app.close()


def _scripted_app(tmp_path: Path, redial_folder: Path, backend: Backend, **options: Any) -> Served:
    config = SpaceConfig(
        data=[str(redial_folder)],
        user_model="scripted",
        recommender_model="scripted",
        save_dir=str(tmp_path / "saved"),
        **options,
    )
    return Served(Space(config, backends={"scripted": backend}))


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    """The text of Chatbot messages as gradio_client returns them."""
    out = []
    for message in messages:
        content = message["content"]
        out.append(content if isinstance(content, str) else " ".join(p.get("text", "") for p in content))
    return out


# ---------------------------------------------------------------------------------------------------------
# The Space folder deploys as it is


def test_space_folder_has_the_hub_front_matter_and_installable_requirements() -> None:
    import gradio
    from packaging.requirements import Requirement

    card = (SPACE / "README.md").read_text(encoding="utf-8")
    meta = yaml.safe_load(re.match(r"---\n(.*?)\n---\n", card, flags=re.DOTALL).group(1))
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and (SPACE / "app.py").is_file()
    assert str(meta["sdk_version"]) == gradio.__version__
    lines = [line.strip() for line in (SPACE / "requirements.txt").read_text().splitlines()]
    requirements = [Requirement(line) for line in lines if line and not line.startswith("#")]
    # Only registry packages: nothing from this machine (no paths, no editable installs, no URLs).
    assert all(not r.url for r in requirements) and not any(line.startswith(("-e", ".", "/")) for line in lines)
    names = {r.name for r in requirements}
    assert {"crsdata", "gradio"} <= names
    assert "demo" in next(r for r in requirements if r.name == "crsdata").extras
    assert str(next(r for r in requirements if r.name == "gradio").specifier) == f"=={gradio.__version__}"


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return names - set(sys.stdlib_module_names) - {"__future__"}


def _distribution(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement.strip()).group().replace("-", "_").lower()


def test_app_imports_only_what_requirements_provide() -> None:
    import importlib.metadata

    lines = (SPACE / "requirements.txt").read_text().splitlines()
    provided = {_distribution(line) for line in lines if line.strip() and not line.startswith("#")}
    assert _top_level_imports(SPACE / "app.py") <= provided
    # The crsdata.space modules import only crsdata's own dependencies (the core and the demo extra) and
    # modules those bring (yaml is pyyaml; gradio brings gradio_client).
    allowed = {_distribution(r) for r in importlib.metadata.requires("crsdata") or []} | {"crsdata", "yaml"}
    modules = sorted((ROOT / "crsdata" / "space").glob("*.py"))
    assert len(modules) > 5
    for module in modules:
        assert _top_level_imports(module) <= allowed, module.name


def test_app_reads_its_configuration_from_space_variables() -> None:
    config = SpaceConfig.from_env(
        {
            "CRSDATA_SPACE_DATA": "org/redial-crsdata, org/inspired-crsdata",
            "CRSDATA_USER_MODEL": "org/user-sim",
            "CRSDATA_SPACE_MAX_TURNS": "8",
            "CRSDATA_SPACE_TIMEOUT": "30",
            "CRSDATA_SPACE_SEED": "7",
        }
    )
    assert config.seed == 7
    assert config.data == ["org/redial-crsdata", "org/inspired-crsdata"]
    assert (config.user_model, config.recommender_model, config.max_turns, config.timeout_s) == (
        "org/user-sim",
        InterplaySimulation.default_model("recommender"),  # the shipped pair, as `crsdata simulate`
        8,
        30.0,
    )
    assert SpaceConfig.from_env({}) == SpaceConfig()


def test_a_seeded_space_gives_chats_consecutive_seeds(redial_folder: Path, tmp_path: Path) -> None:
    backend = ScriptedBackend("scripted", user())
    config = SpaceConfig(
        data=[str(redial_folder)], user_model="scripted", recommender_model="scripted", save_dir=str(tmp_path), seed=7
    )
    space = Space(config, backends={"scripted": backend})
    chats = [space.start_chat("recommender", corpus="redial") for _ in range(2)]
    assert [c.state.seed for c in chats] == [7, 8]


def test_command_line_names_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    from crsdata.cli import main

    with pytest.raises(SystemExit):
        main(["space", "--help"])
    text = capsys.readouterr().out
    for flag in ("--port", "--data", "--backend", "--user-model", "--recommender-model", "--timeout", "--concurrency"):
        assert flag in text
    assert "default_concurrency_limit" in text and "embedded" in text


def test_crsdata_space_serves_the_page(redial_folder: Path, long_tiny_model: Path, tmp_path: Path) -> None:
    """The one command: `crsdata space` in its own process answers on its port until it is stopped."""
    import socket
    import subprocess

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "crsdata.cli", "space", "--port", str(port), "--data", str(redial_folder)]
    command += ["--user-model", str(long_tiny_model), "--recommender-model", str(long_tiny_model)]
    command += ["--save-dir", str(tmp_path / "saved")]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/config", timeout=5)
                if page.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read()
            time.sleep(1)
        else:
            pytest.fail("crsdata space did not answer within 180 s")
        assert "crsdata playground" in page.text and "tiny-chat" in page.text and str(redial_folder) not in page.text
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        chat, _, _, _ = client.predict("redial", "", api_name="/start_recommender_chat")
        assert chat == []
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_command_refuses_bad_limits(capsys: pytest.CaptureFixture[str]) -> None:
    from crsdata.cli import main

    assert main(["space", "--data", "nowhere/at/all/here", "--no-warm-up"]) == 1
    assert "neither a folder nor a Hub dataset id" in capsys.readouterr().err
    assert main(["space", "--max-turns", "0", "--no-warm-up"]) == 1
    assert "max_turns must be at least 1" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# The four tabs, through the API


def test_tab1_person_recommends_and_the_simulated_user_answers(served: Served) -> None:
    client = served.client()
    chat, preview, outcome, picked = client.predict("redial", "", api_name="/start_recommender_chat")
    dialogue_id = picked["value"]
    record = served.space.corpus("redial").by_id[dialogue_id]
    assert chat == [] and outcome == "" and "Taste:" in preview
    target = record["target_items"][0]["title"]
    # The title with its year: a short title ("It") also occurs inside other titles of the persona's history.
    assert target not in preview, "the target is revealed only when the chat ends"

    chat, text, outcome = client.predict(
        'Hi! Have you seen "The Shining (1980)"? It is a scary classic.', "auto", api_name="/send_as_recommender"
    )
    texts = _texts(chat)
    assert len(texts) == 2 and text == ""
    assert texts[0].startswith("`recommend`") and "The Shining (1980)" in texts[0]
    assert re.match(r"`(greeting|disclose-goal|inquire|feedback|accept)` ", texts[1]), texts[1]
    if not outcome:  # the tiny model rarely accepts; the person can end the chat and see the reveal
        outcome = client.predict(api_name="/end_recommender_chat")
    assert "Target:" in outcome and target.split(" (")[0] in outcome and "Outcome:" in outcome


def test_tab1_typing_before_starting_chats_with_the_persona_shown(served: Served) -> None:
    client = served.client()
    chat, text, outcome = client.predict('Have you seen "Heat (1995)"?', "auto", api_name="/send_as_recommender")
    texts = _texts(chat)
    assert len(texts) == 2 and text == "" and "Heat (1995)" in texts[0] and "Catalog:" in texts[0]
    shown = served.space.persona_choices(served.space.corpus("redial"))[0]
    target = served.space.corpus("redial").by_id[shown]["target_items"][0]["title"]
    outcome = outcome or client.predict(api_name="/end_recommender_chat")
    assert target.split(" (")[0] in outcome


def test_a_film_named_by_either_side_shows_its_catalog_facts(tmp_path: Path, redial_folder: Path) -> None:
    """Through the page's API on the built ReDial folder: a film the person names and one the recommender names
    each come with their catalog facts (title, year, genres, director, stars, plot), rendered by the grounded
    simulators' own :func:`film_fact_parts`; a turn that names no film shows none."""
    from crsdata.simulate.grounding import film_fact_parts

    backend = ScriptedBackend("scripted", recommender("The Shining (1980)", inquiries=1))
    app = _scripted_app(tmp_path, redial_folder, backend)
    catalog = app.space.corpus("redial").catalog
    try:
        client = app.client()
        chat, *_ = client.predict('I loved "Jaws (1975)". Anything like it?', "auto", api_name="/send_as_user")
        chat, *_ = client.predict("Something from the eighties?", "auto", api_name="/send_as_user")
        chat, _, recs, _ = client.predict("Tell me more.", "auto", api_name="/send_as_user")
        texts = _texts(chat)
        assert [("Catalog:" in t) for t in texts] == [True, False, False, False, False, True], texts
        for text, title in ((texts[0], "Jaws (1975)"), (texts[5], "The Shining (1980)")):
            row = catalog.get(catalog.link(title))
            assert f"[**{title}**](https://www.imdb.com/title/{row['imdb_id']}/)" in text
            parts = film_fact_parts(row)
            assert len(parts) >= 4 and all(render.esc(part) in text for part in parts), (parts, text)
        assert "directed by Stanley Kubrick" in texts[5] and "Jack Nicholson" in texts[5]
        assert "directed by Steven Spielberg" in texts[0] and "directed by Stanley Kubrick" in recs
    finally:
        app.close()


def test_the_space_simulate_replay_and_the_quick_start_share_one_default(tmp_path: Path) -> None:
    """With no model options every entry point runs the kind's default pair (the shipped catalog-grounded one named
    in ``DEFAULT_PAIR``, never the zero-shot base in this checkout) and, as ``crsdata simulate``, the grounding
    those models were trained with: catalog."""
    from crsdata.backends.embedded import BASE_MODEL, DEFAULT_PAIR, grounding_of
    from crsdata.simulate.job import SimulateConfig
    from crsdata.simulate.replay import ReplaySimulation

    pair = (InterplaySimulation.default_model("user"), InterplaySimulation.default_model("recommender"))
    assert BASE_MODEL not in pair
    assert pair == (DEFAULT_PAIR["user"], DEFAULT_PAIR["recommender"])
    assert pair == ("smollm2-135m-interplay-user-catalog", "smollm2-135m-interplay-recommender-catalog")
    assert (
        (SpaceConfig().user_model, SpaceConfig().recommender_model)
        == pair
        == (
            SpaceConfig.from_env({}).user_model,
            SpaceConfig.from_env({}).recommender_model,
        )
    )
    simulate = SimulateConfig(kind="interplay", source="x", n=1, out=tmp_path / "s")
    assert (simulate.user_model, simulate.recommender_model) == pair
    replay = SimulateConfig(kind="replay", source="x", n=1, out=tmp_path / "r")
    assert replay.user_model == ReplaySimulation.default_model("user") == pair[0]
    assert simulate.options.grounding == InterplaySimulation.trained_grounding(
        {"user": pair[0], "recommender": pair[1]}
    )
    assert simulate.options.grounding == (grounding_of(pair[0]) or "none") == "catalog"
    assert replay.options.grounding == "catalog"
    quickstart = (ROOT / "scripts" / "quickstart.sh").read_text()
    assert "simulate interplay" in quickstart and "-model" not in quickstart and "--grounding" not in quickstart


def test_a_chat_uses_the_grounding_its_simulator_was_trained_with(tmp_path: Path, redial_folder: Path) -> None:
    """The catalog-grounded user (tab 1) wants cues and is told the facts of a film the person names; the
    ungrounded recommender (tab 2) chats without grounding; two simulators trained on different groundings do not
    talk."""
    from crsdata.backends.embedded import RECOMMENDER_SIMULATOR, USER_SIMULATOR_CATALOG
    from crsdata.simulate.grounding import film_facts

    backends = {
        USER_SIMULATOR_CATALOG: ScriptedBackend(USER_SIMULATOR_CATALOG, user(accept=False)),
        RECOMMENDER_SIMULATOR: ScriptedBackend(RECOMMENDER_SIMULATOR, recommender("The Shining (1980)")),
    }
    config = SpaceConfig(
        data=[str(redial_folder)],
        user_model=USER_SIMULATOR_CATALOG,
        recommender_model=RECOMMENDER_SIMULATOR,
        save_dir=str(tmp_path / "saved"),
    )
    space = Space(config, backends=backends)
    chat = space.start_chat("recommender", corpus="redial")
    assert chat.sim.grounding == "catalog"
    assert chat.sim.persona(chat.state).target_attributes.startswith("Looking for")
    space.reply(chat, 'Have you seen "The Shining (1980)"?')
    catalog = chat.catalog
    facts = film_facts(catalog.get(catalog.link("The Shining (1980)")))
    assert facts in backends[USER_SIMULATOR_CATALOG].requests[-1].prompt
    person = space.start_chat("user")
    assert person.sim.grounding == "none"
    with pytest.raises(SpaceError, match="different groundings"):
        space.start_chat("watch", corpus="redial")


def test_tab1_written_persona(served: Served) -> None:
    client = served.client()
    chat, preview, _ = client.predict(
        "I love slow science fiction.",
        "Arrival (2016): quiet and clever\nMoon (2009): lonely and beautiful",
        "A thoughtful science fiction movie about time.",
        "Interstellar (2014)",
        api_name="/start_written_chat",
    )
    assert "Arrival (2016)" in preview and "Interstellar" not in preview
    chat, _, _ = client.predict("Do you like space movies?", "inquire", api_name="/send_as_recommender")
    assert len(chat) == 2
    assert "Interstellar (2014)" in client.predict(api_name="/end_recommender_chat")


def test_tab2_person_is_the_user_and_recommendations_link_to_the_catalog(tmp_path: Path, redial_folder: Path) -> None:
    """A scripted recommender names a title; the page links it to its catalog entry with its facts."""
    backend = ScriptedBackend("scripted", recommender("The Shining (1980)", inquiries=0))
    app = _scripted_app(tmp_path, redial_folder, backend)
    try:
        client = app.client()
        chat, _, recs, _ = client.predict("Hi, I want something scary.", "auto", api_name="/send_as_user")
        assert len(chat) == 2 and _texts(chat)[1].startswith("`greeting`")
        chat, _, recs, outcome = client.predict("Something from the eighties?", "auto", api_name="/send_as_user")
        assert "[**The Shining (1980)**](https://www.imdb.com/title/tt0081505/)" in recs
        assert "horror" in recs and "isolated hotel" in recs
        chat, _, _, outcome = client.predict("", "accept", api_name="/send_as_user")
        assert "Accepted:** The Shining (1980)" in outcome and "`accept`" in outcome
    finally:
        app.close()


def test_tab3_watch_streams_to_the_end_and_saves_a_loadable_folder(served: Served) -> None:
    import datasets

    client = served.client()
    job = client.submit("redial", "", served.space.models()[0], served.space.models()[0], api_name="/watch")
    job.result()
    updates = job.outputs()  # every yield of the generator: the opening one, then one per turn
    chat, _, outcome, _ = updates[-1]
    assert len(updates) >= 2 and len(_texts(chat)) >= 1
    assert "The chat has ended" in outcome and "Leak check:" in outcome and "Target reached" in outcome
    assert re.search(r"after \d+ turns", outcome)

    first, _, _ = client.predict(api_name="/save")
    assert "it now holds 1 dialogue" in first
    client.predict("redial", "", served.space.models()[0], served.space.models()[0], api_name="/watch")
    second, browse_choices, _ = client.predict(api_name="/save")
    assert "it now holds 2 dialogue" in second

    folder = served.space.save_dir
    saved = datasets.load_dataset(str(folder), "dialogues", split="train")
    assert len(saved) == 2 and set(saved["source"]) == {"interplay-sim"}
    from crsdata.schema import validate_dialogue

    for row in saved:
        validate_dialogue(row)
        assert row["target_items"] and row["provenance"]["user_model"]
    # The saved folder is now a corpus of the page.
    assert folder.name in served.space.corpus_names()


def test_tab4_browse_filter_and_read(served: Served) -> None:
    client = served.client()
    stats, plot, splits, reasons, actions, dialogues, count = client.predict("redial", "", api_name="/open_corpus")
    assert "| dialogues | 1,000 |" in stats and "data:image/png;base64," in plot
    assert "1,000 dialogues match" in count and dialogues["value"]
    assert "validation" in [c[0] for c in splits["choices"]]

    dialogue, count = client.predict("redial", "", "validation", "", "", "Shining", api_name="/filter_corpus")
    matching = int(count.split()[0].replace(",", ""))
    assert 0 < matching < 1000
    chat, header = client.predict("redial", "", dialogue["value"], api_name="/show_dialogue")
    assert any("shining" in t.lower() for t in _texts(chat)) and "split `validation`" in header


def test_browse_a_hub_id_at_a_revision_fails_visibly_offline(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    client = served.client()
    with pytest.raises(AppError, match="Cannot open someorg/nothing-here at revision v0.1.0"):
        client.predict("someorg/nothing-here", "v0.1.0", api_name="/open_corpus")
    with pytest.raises(AppError, match="Unknown dataset"):
        client.predict("../../etc", "", api_name="/open_corpus")


# ---------------------------------------------------------------------------------------------------------
# Limits a public Space needs


def test_input_length_is_capped_with_a_visible_message(served: Served) -> None:
    client = served.client()
    client.predict("redial", "", api_name="/start_recommender_chat")
    limit = served.space.config.max_input_chars
    with pytest.raises(AppError, match=f"has {limit + 1} characters; the limit is {limit}"):
        client.predict("x" * (limit + 1), "auto", api_name="/send_as_recommender")
    chat, _, _ = client.predict("x" * limit, "auto", api_name="/send_as_recommender")
    assert len(chat) == 2


def test_turn_limit_ends_the_chat(tmp_path: Path, redial_folder: Path) -> None:
    backend = ScriptedBackend("scripted", user(accept=False))
    app = _scripted_app(tmp_path, redial_folder, backend, max_turns=4)
    try:
        client = app.client()
        client.predict("redial", "", api_name="/start_recommender_chat")
        client.predict("Hello! What are you looking for?", "auto", api_name="/send_as_recommender")
        chat, _, outcome = client.predict('How about "Heat (1995)"?', "auto", api_name="/send_as_recommender")
        assert len(chat) == 4 and "`max_turns`" in outcome and "Target:" in outcome
        with pytest.raises(AppError, match="This chat has ended"):
            client.predict("And another one?", "auto", api_name="/send_as_recommender")
    finally:
        app.close()


class FlakyBackend(ScriptedBackend):
    """Raises (a server gone) on the calls listed in ``failing``, answers otherwise."""

    def __init__(self, failing: set[int]) -> None:
        super().__init__("scripted", user(accept=False))
        self.failing = failing
        self.attempts = 0

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        self.attempts += 1
        if self.attempts in self.failing:
            raise ConnectionError(f"server at {Path.cwd()}/socket refused the connection ({FAKE_TOKEN})")
        return super().generate(requests, params)


def test_backend_failure_shows_an_error_and_the_app_keeps_running(tmp_path: Path, redial_folder: Path) -> None:
    app = _scripted_app(tmp_path, redial_folder, FlakyBackend({1}))
    try:
        client = app.client()
        client.predict("redial", "", api_name="/start_recommender_chat")
        with pytest.raises(AppError) as failure:
            client.predict("Hello!", "auto", api_name="/send_as_recommender")
        message = str(failure.value)
        assert "The user simulator failed: ConnectionError" in message
        assert str(Path.cwd()) not in message and FAKE_TOKEN not in message
        chat, _, _ = client.predict("Hello!", "auto", api_name="/send_as_recommender")
        assert len(chat) == 2, "the failed turn was taken back, so sending again does not repeat it"
    finally:
        app.close()


class SlowBackend(ScriptedBackend):
    """Sleeps ``seconds`` per call and records how many requests each call carried."""

    def __init__(self, seconds: float) -> None:
        super().__init__("scripted", user(accept=False))
        self.seconds = seconds
        self.batches: list[int] = []

    def generate(self, requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        self.batches.append(len(requests))
        time.sleep(self.seconds)
        return super().generate(requests, params)


def test_a_slow_generation_times_out_with_a_visible_error(tmp_path: Path, redial_folder: Path) -> None:
    app = _scripted_app(tmp_path, redial_folder, SlowBackend(3.0), timeout_s=0.5)
    try:
        client = app.client()
        client.predict("redial", "", api_name="/start_recommender_chat")
        started = time.perf_counter()
        with pytest.raises(AppError, match=r"no answer within 0\.5 s"):
            client.predict("Hello!", "auto", api_name="/send_as_recommender")
        assert time.perf_counter() - started < 2.5, "the page got its error before the model finished"
    finally:
        app.close()


def test_at_most_n_generations_at_once(tmp_path: Path, redial_folder: Path) -> None:
    """Six visitors send at once with a limit of 2: the queue lets two handlers in, whose requests the shared
    backend decodes together; no model call ever carries more than two."""
    backend = SlowBackend(0.6)
    app = _scripted_app(tmp_path, redial_folder, backend, concurrency=2)
    try:
        clients = [app.client() for _ in range(6)]
        for client in clients:
            client.predict("redial", "", api_name="/start_recommender_chat")
        with ThreadPoolExecutor(6) as pool:
            jobs = [pool.submit(c.predict, "Hello!", "auto", api_name="/send_as_recommender") for c in clients]
            replies = [job.result() for job in jobs]
        assert all(len(chat) == 2 for chat, _, _ in replies)
        assert sum(backend.batches) == 6 and max(backend.batches) <= 2
        assert app.demo._queue.default_concurrency_limit == 2
    finally:
        app.close()


def test_no_token_or_local_path_reaches_the_page(served: Served, redial_folder: Path, long_tiny_model: Path) -> None:
    import httpx

    client = served.client()
    seen = [httpx.get(served.url + "config").text]
    seen.append(json.dumps(client.predict("redial", "", api_name="/start_recommender_chat")))
    seen.append(json.dumps(client.predict("Hi there", "auto", api_name="/send_as_recommender")))
    seen.append(json.dumps(client.predict("redial", "", api_name="/open_corpus")))
    seen.append(client.view_api(return_format="str", print_info=False))
    page = "\n".join(seen)
    for secret in (FAKE_TOKEN, str(redial_folder), str(long_tiny_model), str(Path.home()) + "/", str(ROOT)):
        assert secret not in page, secret
    assert "tiny-chat" in page, "models are shown by name"


def test_public_removes_tokens_and_paths(tmp_path: Path, redial_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    space = Space(SpaceConfig(data=[str(redial_folder)], save_dir=str(tmp_path / "s")))
    text = space.public(
        f"failed reading {redial_folder}/dialogues/x.parquet with {FAKE_TOKEN} and sk_{'a' * 20}; "
        "see /usr/lib/python3/site.py or http://127.0.0.1:8000/v1"
    )
    assert "redial/dialogues/x.parquet" in text and "***" in text and FAKE_TOKEN not in text
    assert "<site.py>" in text and "http://127.0.0.1:8000/v1" in text and "/usr/lib" not in text


# ---------------------------------------------------------------------------------------------------------
# The shared backend and conversation-state reuse


def test_shared_backend_decodes_concurrent_requests_together() -> None:
    inner = SlowBackend(0.3)
    shared = SharedBackend(inner, timeout_s=10)
    request = ChatRequest(messages=[{"role": "system", "content": "x"}, {"role": "user", "content": "Hi"}])
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: shared.generate([request], SamplingParams()), range(4)))
    assert all(r[0].finish_reason == "stop" for r in results)
    assert sum(inner.batches) == 4 and len(inner.batches) < 4, inner.batches


def test_a_chat_reuses_its_conversation_states(redial_folder: Path, long_tiny_model: Path, tmp_path: Path) -> None:
    """Each simulator prompt of a chat starts with the whole previous prompt, so the local backend's store of
    key/value states serves it and only the new text runs through the model."""
    config = SpaceConfig(
        data=[str(redial_folder)],
        user_model=str(long_tiny_model),
        recommender_model=str(long_tiny_model),
        save_dir=str(tmp_path / "s"),
        max_new_tokens=8,
    )
    space = Space(config)
    backend = space.backend("tiny-chat").inner
    chat = space.start_chat("recommender", corpus="redial", seed=3)
    calls: list[tuple[list[int], int]] = []  # (prompt ids, prompt tokens served from stored states)
    generate = backend.generate

    def counting(requests: list[ChatRequest], params: SamplingParams) -> list[Generation]:
        reused = backend.prompt_stats.reused_tokens
        out = generate(requests, params)
        calls.append((backend.encode(requests[0]), backend.prompt_stats.reused_tokens - reused))
        return out

    backend.generate = counting
    for text in ("Hello! What do you like?", "Any favourite actors?", "Do you like old films?"):
        space.reply(chat, text)
    assert len(calls) >= 3
    for (previous, _), (current, reused) in zip(calls, calls[1:], strict=False):
        assert current[: len(previous)] == previous, "a chat's prompt extends the one before"
        assert reused >= len(previous) - 1, "and the stored states serve all of the previous prompt"


def test_a_person_cannot_choose_an_unconfigured_model(served: Served) -> None:
    with pytest.raises(SpaceError, match="Unknown model"):
        served.space.backend("gpt2")
    client = served.client()  # the page's dropdown refuses it before the Space is asked
    with pytest.raises(AppError, match="not in the list of choices"):
        client.predict("redial", "", "gpt2", "gpt2", api_name="/watch")


def test_shared_backend_survives_an_exception_and_serves_the_next_call() -> None:
    shared = SharedBackend(FlakyBackend({1}), timeout_s=5)
    request = ChatRequest(messages=[{"role": "user", "content": "Hi"}])
    first = shared.generate([request], SamplingParams())[0]
    assert first.finish_reason == "error" and "ConnectionError" in first.error
    assert shared.generate([request], SamplingParams())[0].finish_reason == "stop"
    assert threading.active_count() >= 1


def test_options_come_from_a_config_file_and_a_flag_overrides_it(
    redial_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`crsdata space --config space.yaml`: the file's keys are the flags; a flag on the command line wins (a --data
    given there replaces the file's list); an unknown key names the file and the key. The server is not started:
    the test records what the command would serve."""
    from crsdata.cli import main

    served: dict[str, Any] = {}

    class Recorded:
        def __init__(self, config: SpaceConfig) -> None:
            served["config"] = config

        def corpus_names(self) -> list[str]:
            return []

    class App:
        def launch(self, **kwargs: Any) -> None:
            served["launch"] = kwargs

    monkeypatch.setattr("crsdata.space.session.Space", Recorded)
    monkeypatch.setattr("crsdata.space.app.build_app", lambda space: App())
    config = tmp_path / "space.yaml"
    config.write_text(f"port: 8081\nmax-turns: 5\nmax_new_tokens: 33\ndata: [{tmp_path}]\nno_warm_up: true\n")
    assert main(["space", "--config", str(config), "--max-turns", "7", "--data", str(redial_folder)]) == 0
    assert served["launch"] == {"server_name": "127.0.0.1", "server_port": 8081}
    chosen = served["config"]
    assert (chosen.max_turns, chosen.max_new_tokens, list(chosen.data)) == (7, 33, [str(redial_folder)])
    capsys.readouterr()
    config.write_text("prot: 8081\n")
    assert main(["space", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert str(config) in err and "prot" in err and "not an option of this command" in err
