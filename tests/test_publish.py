"""The publisher against LocalGitHub, a stand-in Hub that makes real git commits, branches and tags.

Nothing here reaches the real Hub: these tests check the sequence of calls and what the repository looks
like afterwards, which is what the real Hub would hold if it behaves as its API documents.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from crsdata.build import BuildResult, InputFile
from crsdata.cli import main
from crsdata.export import export_folder
from crsdata.publish import LocalGitHub, PublishError, publish
from crsdata.schema import item_ref, new_dialogue, new_turn

SECRET = "hf_test_token_never_to_be_seen"


def make_folder(out: Path, version: str, n: int = 4) -> Path:
    rows = [
        new_dialogue(
            f"d{i}",
            "redial",
            "test",
            [
                new_turn(0, "user", "any horror film?"),
                new_turn(1, "recommender", "Try It", "recommend", [item_ref("7", "It")]),
            ],
        )
        for i in range(n)
    ]
    result = BuildResult(source="redial", splits={"test": rows}, inputs=[InputFile("x.jsonl", "0" * 64, n)])
    result.info = {"name": "redial", "license": "CC BY 4.0", "license_id": "cc-by-4.0"}
    return export_folder(result, out, version=version)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def hub(tmp_path: Path) -> LocalGitHub:
    return LocalGitHub(tmp_path / "hub")


def test_publish_commits_once_and_tags_that_commit(tmp_path: Path, hub: LocalGitHub) -> None:
    folder = make_folder(tmp_path / "v1", "1.0.0")
    result = publish(folder, "crs/redial", tag="v1.0.0", client=hub)
    repo = tmp_path / "hub" / "datasets" / "crs" / "redial"
    log = git(repo, "log", "--format=%s", "main").splitlines()
    assert log == ["crsdata 0.1.0: redial dataset version 1.0.0", "initial commit"]
    assert git(repo, "rev-parse", "v1.0.0^{commit}") == result.commit == git(repo, "rev-parse", "main")
    files = set(git(repo, "ls-tree", "-r", "--name-only", "v1.0.0").splitlines())
    assert {"README.md", "crsdata.json", "dialogues/test-00000-of-00001.parquet", "turns_per_dialogue.png"} <= files
    assert [name for name, _ in hub.calls] == ["create_repo", "list_repo_refs", "upload_folder", "create_tag"]


def test_hidden_run_state_is_not_uploaded(tmp_path: Path, hub: LocalGitHub) -> None:
    folder = make_folder(tmp_path / "v1", "1.0.0")
    (folder / ".simulate-run").mkdir()
    (folder / ".simulate-run" / "manifest.json").write_text("{}")
    publish(folder, "crs/sim", client=hub)
    repo = tmp_path / "hub" / "datasets" / "crs" / "sim"
    files = git(repo, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert "README.md" in files and not [f for f in files if f.startswith(".simulate-run")]


def test_reusing_a_tag_is_refused_before_any_upload(tmp_path: Path, hub: LocalGitHub) -> None:
    publish(make_folder(tmp_path / "v1", "1.0.0"), "crs/redial", tag="v1.0.0", client=hub)
    repo = tmp_path / "hub" / "datasets" / "crs" / "redial"
    head = git(repo, "rev-parse", "main")
    with pytest.raises(PublishError, match="tag v1.0.0 already exists"):
        publish(make_folder(tmp_path / "again", "1.0.0", n=6), "crs/redial", tag="v1.0.0", client=hub)
    assert git(repo, "rev-parse", "main") == head
    assert git(repo, "rev-parse", "v1.0.0^{commit}") == head


def test_branch_revision_and_second_version(tmp_path: Path, hub: LocalGitHub) -> None:
    first = publish(make_folder(tmp_path / "v1", "1.0.0"), "crs/redial", tag="v1.0.0", client=hub)
    second = publish(
        make_folder(tmp_path / "v2", "1.1.0", n=6), "crs/redial", revision="next", tag="v1.1.0", client=hub
    )
    repo = tmp_path / "hub" / "datasets" / "crs" / "redial"
    assert git(repo, "rev-parse", "main") == first.commit  # main untouched by a branch publish
    assert git(repo, "rev-parse", "next") == second.commit
    assert git(repo, "rev-parse", "next~1") == first.commit  # the branch started from main
    assert git(repo, "rev-parse", "v1.1.0^{commit}") == second.commit
    meta = json.loads(git(repo, "show", "v1.1.0:crsdata.json"))
    assert meta["dataset_version"] == "1.1.0" and meta["accounting"]["kept"] == 6
    assert json.loads(git(repo, "show", "v1.0.0:crsdata.json"))["accounting"]["kept"] == 4


def test_tag_must_match_the_built_version(tmp_path: Path, hub: LocalGitHub) -> None:
    folder = make_folder(tmp_path / "v1", "1.0.0")
    with pytest.raises(PublishError, match="built as version 1.0.0 but --tag is v2.0.0"):
        publish(folder, "crs/redial", tag="v2.0.0", client=hub)
    with pytest.raises(PublishError, match="not of the form vX.Y.Z"):
        publish(folder, "crs/redial", tag="latest", client=hub)
    assert hub.calls == []


def test_not_a_dataset_folder(tmp_path: Path, hub: LocalGitHub) -> None:
    with pytest.raises(PublishError, match="no README.md"):
        publish(tmp_path, "crs/redial", client=hub)


def test_cli_reads_the_token_from_env_and_never_shows_it(tmp_path: Path, monkeypatch, capsys) -> None:
    """The CLI path with the client factory swapped for LocalGitHub: the token reaches the client only."""
    seen_tokens: list[str | None] = []
    fake = LocalGitHub(tmp_path / "hub")

    def factory(token: str | None = None) -> LocalGitHub:
        from crsdata.publish import token_from_env

        seen_tokens.append(token_from_env())
        return fake

    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr("crsdata.publish.hub_client", factory)
    folder = make_folder(tmp_path / "v1", "0.3.0")
    assert main(["publish", str(folder), "--repo-id", "crs/redial", "--tag", "v0.3.0"]) == 0
    out = capsys.readouterr()
    assert "tag v0.3.0" in out.out
    assert seen_tokens == [SECRET]
    assert SECRET not in out.out + out.err
    for path in list(folder.rglob("*")) + list((tmp_path / "hub").rglob("*")):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_cli_dry_run_lists_files_without_calling_the_hub(tmp_path: Path, monkeypatch, capsys) -> None:
    def no_hub(token: str | None = None):
        raise AssertionError("a dry run must not create a client")

    monkeypatch.setattr("crsdata.publish.hub_client", no_hub)
    folder = make_folder(tmp_path / "v1", "0.3.0")
    assert main(["publish", str(folder), "--repo-id", "crs/redial", "--tag", "v0.3.0", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would upload" in out and "dialogues/test-00000-of-00001.parquet" in out
