"""The publisher against LocalHub (tests/fixtures/local_hub.py), a stand-in Hub that makes real git commits,
branches and tags, and whose ``upload_folder`` is checked here against huggingface_hub's own ``upload_folder``.

Nothing here reaches the real Hub: these tests check the calls and what each repository revision holds
afterwards. tests/test_hub_roundtrip.py loads the published revisions back through a real Hub-API server.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from fixtures.local_hub import LocalHub
from fixtures.publishable import dataset_folder, model_folder

from crsdata.cli import main
from crsdata.publish import PublishError, check_folder, files_to_upload, publish, write_folder_metadata

SECRET = "hf_test_token_never_to_be_seen"
ROOT = Path(__file__).resolve().parents[1]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def tree(repo: Path, revision: str) -> set[str]:
    return set(git(repo, "ls-tree", "-r", "--name-only", revision).splitlines())


@pytest.fixture
def hub(tmp_path: Path) -> LocalHub:
    return LocalHub(tmp_path / "hub")


def test_publish_commits_once_and_tags_that_commit(tmp_path: Path, hub: LocalHub) -> None:
    folder = dataset_folder(tmp_path / "v1", "1.0.0")
    result = publish(folder, "crs/redial", tag="v1.0.0", client=hub)
    repo = tmp_path / "hub" / "datasets" / "crs" / "redial"
    log = git(repo, "log", "--format=%s", "main").splitlines()
    assert log == ["crsdata 0.1.0: redial dataset version 1.0.0", "initial commit"]
    assert git(repo, "rev-parse", "v1.0.0^{commit}") == result.commit == git(repo, "rev-parse", "main")
    files = tree(repo, "v1.0.0")
    assert {"README.md", "crsdata.json", "dialogues/test-00000-of-00001.parquet", "turns_per_dialogue.png"} <= files
    assert [name for name, _ in hub.calls] == ["create_repo", "list_repo_refs", "upload_folder", "create_tag"]
    upload = dict(hub.calls)["upload_folder"]
    assert upload["repo_type"] == "dataset" and "*.parquet" in upload["delete_patterns"]


def test_hidden_run_state_is_not_uploaded(tmp_path: Path, hub: LocalHub) -> None:
    folder = dataset_folder(tmp_path / "v1", "1.0.0")
    (folder / ".simulate-run" / "shards").mkdir(parents=True)
    (folder / ".simulate-run" / "manifest.json").write_text("{}")
    (folder / ".simulate-run" / "shards" / "00000.jsonl").write_text("{}\n")
    (folder / "dialogues" / ".partial.tmp").write_text("half a file")
    publish(folder, "crs/sim", client=hub)
    files = tree(tmp_path / "hub" / "datasets" / "crs" / "sim", "main")
    assert "README.md" in files and not [f for f in files if "/." in f or (f.startswith(".") and f != ".gitattributes")]
    assert ".simulate-run/manifest.json" not in files_to_upload(folder)


def test_second_version_replaces_the_first_and_old_tags_keep_theirs(tmp_path: Path, hub: LocalHub) -> None:
    """The bug of issue #8: without deletions v0.2.0 kept v0.1.0's two shards beside its own one."""
    publish(dataset_folder(tmp_path / "v1", "0.1.0", 4, shard_rows=2), "crs/redial", tag="v0.1.0", client=hub)
    repo = tmp_path / "hub" / "datasets" / "crs" / "redial"
    # Someone adds a file of their own on the Hub: a dataset upload replaces only what crsdata writes.
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "LICENSE").write_text("CC BY 4.0\n")
    hub.upload_folder(repo_id="crs/redial", folder_path=extra, repo_type="dataset")
    publish(dataset_folder(tmp_path / "v2", "0.2.0", 3, prefix="e"), "crs/redial", tag="v0.2.0", client=hub)

    first, second = tree(repo, "v0.1.0"), tree(repo, "v0.2.0")
    assert {"dialogues/test-00000-of-00002.parquet", "dialogues/test-00001-of-00002.parquet"} <= first
    assert "dialogues/test-00000-of-00001.parquet" not in first
    assert sorted(f for f in second if f.endswith(".parquet")) == ["dialogues/test-00000-of-00001.parquet"]
    assert {".gitattributes", "LICENSE", "README.md", "crsdata.json", "turns_per_dialogue.png"} <= second
    assert json.loads(git(repo, "show", "v0.1.0:crsdata.json"))["dataset_version"] == "0.1.0"


def test_reusing_a_tag_is_refused_before_any_upload(tmp_path: Path, hub: LocalHub) -> None:
    publish(dataset_folder(tmp_path / "v1", "1.0.0"), "crs/redial", tag="v1.0.0", client=hub)
    repo = tmp_path / "hub" / "datasets" / "crs" / "redial"
    head = git(repo, "rev-parse", "main")
    with pytest.raises(PublishError, match="tag v1.0.0 already exists"):
        publish(dataset_folder(tmp_path / "again", "1.0.0", n=6), "crs/redial", tag="v1.0.0", client=hub)
    assert git(repo, "rev-parse", "main") == head
    assert git(repo, "rev-parse", "v1.0.0^{commit}") == head


def test_branch_revision_and_second_version(tmp_path: Path, hub: LocalHub) -> None:
    first = publish(dataset_folder(tmp_path / "v1", "1.0.0"), "crs/redial", tag="v1.0.0", client=hub)
    second = publish(
        dataset_folder(tmp_path / "v2", "1.1.0", n=6), "crs/redial", revision="next", tag="v1.1.0", client=hub
    )
    repo = tmp_path / "hub" / "datasets" / "crs" / "redial"
    assert git(repo, "rev-parse", "main") == first.commit  # main untouched by a branch publish
    assert git(repo, "rev-parse", "next") == second.commit
    assert git(repo, "rev-parse", "next~1") == first.commit  # the branch started from main
    assert git(repo, "rev-parse", "v1.1.0^{commit}") == second.commit
    meta = json.loads(git(repo, "show", "v1.1.0:crsdata.json"))
    assert meta["dataset_version"] == "1.1.0" and meta["accounting"]["kept"] == 6
    assert json.loads(git(repo, "show", "v1.0.0:crsdata.json"))["accounting"]["kept"] == 4


def test_tag_must_match_the_built_version(tmp_path: Path, hub: LocalHub) -> None:
    folder = dataset_folder(tmp_path / "v1", "1.0.0")
    with pytest.raises(PublishError, match="built as version 1.0.0 but --tag is v2.0.0"):
        publish(folder, "crs/redial", tag="v2.0.0", client=hub)
    with pytest.raises(PublishError, match="not of the form vX.Y.Z"):
        publish(folder, "crs/redial", tag="latest", client=hub)
    assert hub.calls == []


def test_not_a_crsdata_folder(tmp_path: Path, hub: LocalHub) -> None:
    with pytest.raises(PublishError, match="no README.md"):
        publish(tmp_path, "crs/redial", client=hub)
    (tmp_path / "README.md").write_text("# card\n")
    with pytest.raises(PublishError, match="no crsdata.json"):
        publish(tmp_path, "crs/redial", client=hub)
    (tmp_path / "crsdata.json").write_text('{"kind": "notebook", "version": "1.0.0"}')
    with pytest.raises(PublishError, match="unknown kind 'notebook'"):
        publish(tmp_path, "crs/redial", client=hub)


def test_local_hub_works_with_a_relative_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    hub = LocalHub("hub")
    publish(dataset_folder(Path("v1"), "1.0.0"), "crs/redial", tag="v1.0.0", client=hub)
    assert "README.md" in tree(tmp_path / "hub" / "datasets" / "crs" / "redial", "v1.0.0")


def test_local_hub_upload_matches_huggingface_hub(tmp_path: Path, hub: LocalHub, monkeypatch) -> None:
    """LocalHub.upload_folder adds and deletes exactly the paths huggingface_hub's HfApi.upload_folder puts in
    its commit, for the same remote files, folder and patterns (the real code runs; only the network calls
    are replaced: the remote listing, the README check and the commit itself)."""
    import huggingface_hub.hf_api as hf_api

    remote_folder = tmp_path / "remote"
    for path in ["README.md", "a.parquet", "data/x.parquet", "data/keep.txt", "logs/run.txt", "plot.png", "LICENSE"]:
        (remote_folder / path).parent.mkdir(parents=True, exist_ok=True)
        (remote_folder / path).write_text(path)
    hub.create_repo("crs/conformance", repo_type="dataset")
    hub.upload_folder(repo_id="crs/conformance", folder_path=remote_folder, repo_type="dataset")

    folder = tmp_path / "new"
    for path in [
        "README.md",
        "data/x.parquet",  # re-uploaded at the same path: not deleted although it matches
        "data/y.parquet",
        ".simulate-run/manifest.json",
        "sub/.hidden",
        "sub/.git/config",
        ".cache/huggingface/upload.lock",
        "logs/new.txt",
    ]:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text("new " + path)
    before = tree(hub.repo_path("crs/conformance", "dataset"), "main")

    class RecordingApi(hf_api.HfApi):
        operations: list = []

        def list_repo_files(self, repo_id, *, revision=None, repo_type=None, token=None):
            return sorted(before)

        def _validate_yaml(self, content, *, repo_type=None, token=None):
            return None

        def create_commit(self, repo_id, operations, **kwargs):
            RecordingApi.operations = list(operations)

    monkeypatch.setattr(hf_api, "is_xet_available", lambda: False)  # the single-commit path: no upload pipeline
    cases = [
        (["*.parquet", "*.png", "README.md", "logs/"], [".*", "*/.*"]),
        (["*"], [".*", "*/.*"]),
        (["data/*"], None),
    ]
    for delete_patterns, ignore_patterns in cases:
        RecordingApi().upload_folder(
            repo_id="crs/conformance",
            folder_path=folder,
            repo_type="dataset",
            ignore_patterns=list(ignore_patterns) if ignore_patterns else None,
            delete_patterns=delete_patterns,
        )
        expected_adds = {op.path_in_repo for op in RecordingApi.operations if type(op).__name__ == "CommitOperationAdd"}
        expected_deletes = {
            op.path_in_repo for op in RecordingApi.operations if type(op).__name__ == "CommitOperationDelete"
        }
        info = hub.upload_folder(
            repo_id="crs/conformance",
            folder_path=folder,
            repo_type="dataset",
            ignore_patterns=list(ignore_patterns) if ignore_patterns else None,
            delete_patterns=delete_patterns,
        )
        repo = hub.repo_path("crs/conformance", "dataset")
        changed = git(repo, "diff", "--no-renames", "--name-status", f"{info.oid}~1", info.oid).splitlines()
        deleted = {line.split("\t")[1] for line in changed if line.startswith("D")}
        assert deleted == expected_deletes, delete_patterns
        assert tree(repo, info.oid) == (before - expected_deletes) | expected_adds, delete_patterns
        # Back to the remote state for the next case.
        hub.upload_folder(
            repo_id="crs/conformance", folder_path=remote_folder, repo_type="dataset", delete_patterns="*"
        )
        assert tree(repo, "main") == before
    assert ".gitattributes" in before  # never deleted, even by "*"


def test_cli_reads_the_token_from_env_and_never_shows_it(tmp_path: Path, monkeypatch, capsys) -> None:
    """The CLI path with the client factory swapped for LocalHub: the token reaches the client only."""
    seen_tokens: list[str | None] = []
    fake = LocalHub(tmp_path / "hub")

    def factory(token: str | None = None) -> LocalHub:
        from crsdata.publish import token_from_env

        seen_tokens.append(token_from_env())
        return fake

    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr("crsdata.publish.hub_client", factory)
    folder = dataset_folder(tmp_path / "v1", "0.3.0")
    assert main(["publish", str(folder), "--repo-id", "crs/redial", "--tag", "v0.3.0"]) == 0
    out = capsys.readouterr()
    assert "tag v0.3.0" in out.out
    assert seen_tokens == [SECRET]
    assert SECRET not in out.out + out.err
    for path in list(folder.rglob("*")) + list((tmp_path / "hub").rglob("*")):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def _listed(out: str, header: str) -> list[str]:
    """The indented lines after the line starting with ``header``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    listed = []
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        listed.append(line.strip())
    return listed


def test_dry_run_lists_exactly_what_the_upload_sends_and_deletes(tmp_path: Path, monkeypatch, capsys) -> None:
    hub = LocalHub(tmp_path / "hub")
    monkeypatch.setattr("crsdata.publish.hub_client", lambda token=None: hub)
    publish(dataset_folder(tmp_path / "v1", "0.1.0", 4, shard_rows=2), "crs/redial", tag="v0.1.0", client=hub)
    folder = dataset_folder(tmp_path / "v2", "0.2.0", 3)
    (folder / ".simulate-run").mkdir()
    (folder / ".simulate-run" / "manifest.json").write_text("{}")
    calls_before = len(hub.calls)
    args = ["publish", str(folder), "--repo-id", "crs/redial", "--tag", "v0.2.0"]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert [name for name, _ in hub.calls[calls_before:]] == ["list_repo_files"]  # read, never written
    would_upload, would_delete = _listed(out, "would upload"), _listed(out, "would delete")
    assert would_delete == ["dialogues/test-00000-of-00002.parquet", "dialogues/test-00001-of-00002.parquet"]
    assert ".simulate-run/manifest.json" not in would_upload

    assert main(args) == 0
    repo = tmp_path / "hub" / "datasets" / "crs" / "redial"
    changed = git(repo, "diff", "--no-renames", "--name-status", "v0.1.0", "v0.2.0").splitlines()
    assert sorted(line.split("\t")[1] for line in changed if line.startswith("D")) == would_delete
    assert tree(repo, "v0.2.0") - {".gitattributes"} == set(would_upload)


def test_dry_run_offline_names_the_delete_patterns(tmp_path: Path, monkeypatch, capsys) -> None:
    from huggingface_hub.errors import OfflineModeIsEnabled

    class OfflineHub:
        def list_repo_files(self, *args, **kwargs):
            raise OfflineModeIsEnabled("Cannot reach the Hub: offline mode is enabled.")

    monkeypatch.setattr("crsdata.publish.hub_client", lambda token=None: OfflineHub())
    folder = dataset_folder(tmp_path / "v1", "0.3.0")
    assert main(["publish", str(folder), "--repo-id", "crs/redial", "--tag", "v0.3.0", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dialogues/test-00000-of-00001.parquet" in _listed(out, "would upload")
    assert "would delete remote files matching ['*.parquet', '*.png', 'README.md', 'crsdata.json']" in out
    assert "OfflineModeIsEnabled" in out and "the remote could not be checked" in out


def test_cli_error_is_one_line_on_stderr(tmp_path: Path, capsys) -> None:
    folder = dataset_folder(tmp_path / "v1", "1.0.0")
    assert main(["publish", str(folder), "--repo-id", "crs/redial", "--tag", "v9.0.0", "--dry-run"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("crsdata publish: error: ") and len(out.err.splitlines()) == 1


# --- models --------------------------------------------------------------------------------------------------


def test_model_folder_is_published_as_a_model_repo(tmp_path: Path, hub: LocalHub) -> None:
    folder = model_folder(tmp_path / "m1", "0.1.0")
    checked = check_folder(folder, "v0.1.0")
    assert (checked.kind, checked.version) == ("model", "0.1.0")
    result = publish(folder, "crs/tiny", tag="v0.1.0", client=hub)
    repo = tmp_path / "hub" / "models" / "crs" / "tiny"
    assert result.repo_type == "model" and git(repo, "rev-parse", "v0.1.0^{commit}") == result.commit
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "crsdata.json"} <= tree(repo, "v0.1.0")
    assert git(repo, "log", "-1", "--format=%s", "v0.1.0") == "crsdata 0.1.0: tiny-test-model model version 0.1.0"
    with pytest.raises(PublishError, match="is a model folder"):
        publish(folder, "crs/tiny", tag="v0.1.0", client=hub, kind="dataset")


def test_model_checks_refuse_what_does_not_load(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "m1", "0.1.0")
    (folder / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(PublishError, match="does not load as a model"):
        check_folder(folder, None)
    check_folder(folder, None, verify=False)  # --no-verify publishes it unchecked

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("# a model\n")
    write_folder_metadata(empty, "model", "0.1.0")
    with pytest.raises(PublishError, match="no model crsdata can check"):
        check_folder(empty, None)


def test_peft_adapter_and_skops_model_folders_are_checked(tmp_path: Path, tiny_model_dir: Path) -> None:
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = peft.get_peft_model(base, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    lora.save_pretrained(adapter)
    (adapter / "README.md").write_text("# adapter\n")
    write_folder_metadata(adapter, "model", "0.1.0")
    assert check_folder(adapter, "v0.1.0").kind == "model"
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(PublishError, match="does not load as a model"):
        check_folder(adapter, None)

    sio = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression

    sklearn_folder = tmp_path / "sklearn"
    sklearn_folder.mkdir()
    sio.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), sklearn_folder / "model.skops")
    (sklearn_folder / "README.md").write_text("# classifier\n")
    write_folder_metadata(sklearn_folder, "model", "0.1.0")
    assert check_folder(sklearn_folder, None).notes == []
    (sklearn_folder / "model.skops").write_bytes(b"PK not a skops file")
    with pytest.raises(PublishError, match="does not load as a model"):
        check_folder(sklearn_folder, None)


# --- metric Spaces ---------------------------------------------------------------------------------------------


def test_metric_module_folder_is_exported_and_published_as_a_space(tmp_path: Path, hub: LocalHub) -> None:
    source = ROOT / "metrics" / "distinct_n"
    with pytest.raises(PublishError, match="must be named after its module, ORG/distinct_n"):
        publish(source, "crs/dist", tag="v0.1.0", client=hub, verify=False)
    result = publish(source, "crs/distinct_n", tag="v0.1.0", client=hub)  # verified without crsdata
    repo = tmp_path / "hub" / "spaces" / "crs" / "distinct_n"
    assert result.repo_type == "space"
    files = tree(repo, "v0.1.0")
    assert {"distinct_n.py", "app.py", "README.md", "requirements.txt", "crsdata.json"} <= files
    assert "crsdata_metrics_diversity.py" in files and not [f for f in files if "__pycache__" in f]
    meta = json.loads(git(repo, "show", "v0.1.0:crsdata.json"))
    assert meta["kind"] == "space" and meta["version"] == "0.1.0" and meta["module"] == "distinct_n"
    requirements = git(repo, "show", "v0.1.0:requirements.txt").splitlines()
    assert "evaluate==0.4.6" in requirements and not [r for r in requirements if r.startswith("crsdata")]
    name, create = hub.calls[0]
    assert name == "create_repo" and create["repo_type"] == "space" and create["space_sdk"] == "gradio"


def test_dry_run_with_hf_hub_offline_does_not_contact_the_hub(tmp_path: Path, monkeypatch, capsys) -> None:
    import socket
    import time

    def no_network(*args, **kwargs):
        raise AssertionError("the dry run tried the network although HF_HUB_OFFLINE is set")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    folder = dataset_folder(tmp_path / "v1", "0.3.0")
    start = time.monotonic()
    assert main(["publish", str(folder), "--repo-id", "me/redial", "--tag", "v0.3.0", "--dry-run"]) == 0
    assert time.monotonic() - start < 10
    out = capsys.readouterr()
    assert "dialogues/test-00000-of-00001.parquet" in _listed(out.out, "would upload")
    checked = [line for line in out.out.splitlines() if "the remote could not be checked" in line]
    assert len(checked) == 1 and "HF_HUB_OFFLINE is set" in checked[0]
    assert "Retrying" not in out.err and "Name or service" not in out.out + out.err


def test_dry_run_without_network_tries_once_and_says_so_in_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """A Hub endpoint that refuses connections (a closed port on 127.0.0.1, as a machine without network would):
    one attempt, then the plan, without huggingface_hub's retries."""
    import socket
    import time

    from huggingface_hub import HfApi

    from crsdata.servers import free_port

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr("crsdata.publish.hub_client", lambda token=None: HfApi(endpoint=endpoint))
    attempts = []
    real_connect = socket.create_connection

    def counted(address, *args, **kwargs):
        attempts.append(address)
        return real_connect(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counted)
    folder = dataset_folder(tmp_path / "v1", "0.3.0")
    start = time.monotonic()
    assert main(["publish", str(folder), "--repo-id", "me/redial", "--tag", "v0.3.0", "--dry-run"]) == 0
    assert time.monotonic() - start < 10
    out = capsys.readouterr()
    assert len(attempts) == 1
    assert "dialogues/test-00000-of-00001.parquet" in _listed(out.out, "would upload")
    checked = [line for line in out.out.splitlines() if "the remote could not be checked" in line]
    assert len(checked) == 1 and f"cannot reach {endpoint}" in checked[0]
    assert "Retrying" not in out.err
