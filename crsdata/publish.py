"""Publishes a dataset folder to the Hugging Face Hub: one commit, then a tag.

The publisher only uses five calls of ``huggingface_hub.HfApi`` (``create_repo``, ``create_branch``,
``list_repo_refs``, ``upload_folder``, ``create_tag``), so any object with those methods can stand in for
the Hub. :class:`LocalGitHub` is such an object: it performs the same operations as real git commits,
branches and tags in local repositories, which is how the tests check the publisher without a network.

The token comes from the environment (``HF_TOKEN``, or ``HUGGING_FACE_HUB_TOKEN``) and is handed to the
client only: it is never printed, logged or written to a file.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from crsdata.export import read_metadata

HIDDEN_PATTERNS = [".*", "*/.*"]
TAG_PATTERN = re.compile(r"^v\d+\.\d+\.\d+([-.+][0-9A-Za-z.-]+)?$")


class PublishError(RuntimeError):
    pass


class HubClient(Protocol):
    def create_repo(self, repo_id: str, *, repo_type: str | None = None, exist_ok: bool = False, **kw: Any) -> Any: ...
    def create_branch(
        self, repo_id: str, *, branch: str, repo_type: str | None = None, exist_ok: bool = False
    ) -> Any: ...
    def list_repo_refs(self, repo_id: str, *, repo_type: str | None = None) -> Any: ...
    def upload_folder(
        self,
        *,
        repo_id: str,
        folder_path: str | Path,
        repo_type: str | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
        ignore_patterns: list[str] | None = None,
    ) -> Any: ...
    def create_tag(
        self,
        repo_id: str,
        *,
        tag: str,
        tag_message: str | None = None,
        revision: str | None = None,
        repo_type: str | None = None,
        exist_ok: bool = False,
    ) -> Any: ...


@dataclass
class PublishResult:
    repo_id: str
    revision: str
    commit: str
    tag: str | None
    url: str


def token_from_env() -> str | None:
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")


def hub_client(token: str | None = None) -> HubClient:
    from huggingface_hub import HfApi

    return HfApi(token=token if token is not None else token_from_env())


def check_folder(folder: Path, tag: str | None, verify: bool = True) -> dict[str, Any]:
    """Refuses what should not be published: not a crsdata folder, a tag that is not the folder's version,
    or a folder that ``load_dataset`` cannot load."""
    if not folder.is_dir():
        raise PublishError(f"{folder}: no such folder")
    if not (folder / "README.md").is_file():
        raise PublishError(f"{folder}: no README.md; build or simulate into this folder first")
    metadata = read_metadata(folder)
    version = metadata["dataset_version"]
    if tag is not None:
        if not TAG_PATTERN.match(tag):
            raise PublishError(f"tag {tag!r} is not of the form vX.Y.Z")
        if tag != f"v{version}":
            raise PublishError(
                f"{folder} was built as version {version} but --tag is {tag}; rebuild with --version "
                f"{tag[1:]} or tag v{version}"
            )
    if verify:
        import datasets

        configs = datasets.get_dataset_config_names(str(folder))
        for config in configs:
            datasets.load_dataset(str(folder), config)
    return metadata


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str = "main",
    tag: str | None = None,
    client: HubClient | None = None,
    private: bool | None = None,
    verify: bool = True,
) -> PublishResult:
    """Uploads ``folder`` to the dataset repo ``repo_id`` at branch ``revision`` in one commit, then tags it.

    A tag that already exists in the repository is refused before anything is uploaded: a published
    version never moves.
    """
    folder = Path(folder)
    metadata = check_folder(folder, tag, verify)
    client = client or hub_client()
    client.create_repo(repo_id, repo_type="dataset", exist_ok=True, private=private)
    refs = client.list_repo_refs(repo_id, repo_type="dataset")
    if tag is not None and any(t.name == tag for t in refs.tags):
        raise PublishError(f"{repo_id}: tag {tag} already exists; published versions are immutable, bump the version")
    if revision != "main" and not any(b.name == revision for b in refs.branches):
        client.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
    message = (
        f"crsdata {metadata['crsdata_version']}: {metadata['source']} dataset version {metadata['dataset_version']}"
    )
    # Hidden paths hold run state (a simulation's .simulate-run/ shards and manifest), not the dataset.
    info = client.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="dataset",
        revision=revision,
        commit_message=message,
        ignore_patterns=HIDDEN_PATTERNS,
    )
    commit = getattr(info, "oid", None) or str(info)
    if tag is not None:
        client.create_tag(repo_id, tag=tag, tag_message=message, revision=commit, repo_type="dataset")
    url = getattr(info, "commit_url", "") or f"{repo_id}@{commit}"
    return PublishResult(repo_id=repo_id, revision=revision, commit=commit, tag=tag, url=url)


# ---------------------------------------------------------------------------------------------------------
# A stand-in for the Hub that keeps each repository as a local git repository.


@dataclass
class _Ref:
    name: str
    ref: str
    target_commit: str


@dataclass
class _Refs:
    branches: list[_Ref]
    tags: list[_Ref]
    converts: list[_Ref]


@dataclass
class _CommitInfo:
    oid: str
    commit_url: str
    commit_message: str


class LocalGitHub:
    """Implements the publisher's five Hub calls as git operations under ``root/<repo_type>s/<repo_id>``.

    Behaviour follows the Hub where the publisher relies on it: ``upload_folder`` adds and overwrites files
    in one commit on an existing branch; ``create_tag`` on an existing tag fails unless ``exist_ok``;
    ``create_branch`` starts from the head of ``main``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _repo(self, repo_id: str, repo_type: str | None) -> Path:
        return self.root / f"{repo_type or 'model'}s" / repo_id

    def git(self, repo: Path, *args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "hub",
            "GIT_AUTHOR_EMAIL": "hub@localhost",
            "GIT_COMMITTER_NAME": "hub",
            "GIT_COMMITTER_EMAIL": "hub@localhost",
        }
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise PublishError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
        return done.stdout.strip()

    def _commit(
        self, repo: Path, branch: str, folder: Path, message: str, new_branch: bool = False, ignore: list[str] = ()
    ) -> str:
        """Copies ``folder`` over ``branch`` in a temporary clone, commits once and pushes; returns the commit."""
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp) / "work"
            if new_branch:
                self.git(Path(tmp), "init", "-q", "-b", branch, str(work))
            else:
                self.git(Path(tmp), "clone", "-q", "-b", branch, str(repo), str(work))
            for src in folder.rglob("*"):
                relative = src.relative_to(folder)
                if any(fnmatch.fnmatch(relative.as_posix(), pattern) for pattern in ignore):
                    continue
                if src.is_file() and ".git" not in relative.parts:
                    dst = work / src.relative_to(folder)
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
            self.git(work, "add", "-A")
            self.git(work, "commit", "-q", "--allow-empty", "-m", message)
            self.git(work, "push", "-q", str(repo), f"HEAD:refs/heads/{branch}")
            return self.git(work, "rev-parse", "HEAD")

    def create_repo(self, repo_id: str, *, repo_type: str | None = None, exist_ok: bool = False, **kw: Any) -> str:
        self.calls.append(("create_repo", {"repo_id": repo_id, "repo_type": repo_type, "exist_ok": exist_ok}))
        repo = self._repo(repo_id, repo_type)
        if repo.exists():
            if not exist_ok:
                raise PublishError(f"{repo_id} already exists")
            return str(repo)
        repo.mkdir(parents=True)
        self.git(repo, "init", "-q", "--bare", "-b", "main")
        # The Hub creates every repository with an initial commit holding .gitattributes.
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
            self._commit(repo, "main", Path(tmp), "initial commit", new_branch=True)
        return str(repo)

    def list_repo_refs(self, repo_id: str, *, repo_type: str | None = None, **kw: Any) -> _Refs:
        self.calls.append(("list_repo_refs", {"repo_id": repo_id, "repo_type": repo_type}))
        repo = self._repo(repo_id, repo_type)

        def refs(prefix: str) -> list[_Ref]:
            out = self.git(repo, "for-each-ref", "--format=%(refname:short) %(refname)", prefix)
            rows = []
            for line in filter(None, out.splitlines()):
                name, ref = line.split(" ")
                rows.append(_Ref(name=name, ref=ref, target_commit=self.git(repo, "rev-parse", f"{ref}^{{commit}}")))
            return rows

        return _Refs(branches=refs("refs/heads"), tags=refs("refs/tags"), converts=[])

    def create_branch(
        self,
        repo_id: str,
        *,
        branch: str,
        revision: str | None = None,
        repo_type: str | None = None,
        exist_ok: bool = False,
        **kw: Any,
    ) -> None:
        self.calls.append(("create_branch", {"repo_id": repo_id, "branch": branch, "repo_type": repo_type}))
        repo = self._repo(repo_id, repo_type)
        exists = bool(self.git(repo, "branch", "--list", branch))
        if exists and not exist_ok:
            raise PublishError(f"{repo_id}: branch {branch} already exists")
        if not exists:
            self.git(repo, "branch", branch, revision or "main")

    def upload_folder(
        self,
        *,
        repo_id: str,
        folder_path: str | Path,
        repo_type: str | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
        ignore_patterns: list[str] | None = None,
        **kw: Any,
    ) -> _CommitInfo:
        self.calls.append(
            (
                "upload_folder",
                {"repo_id": repo_id, "folder_path": str(folder_path), "repo_type": repo_type, "revision": revision},
            )
        )
        repo = self._repo(repo_id, repo_type)
        branch = revision or "main"
        if not self.git(repo, "branch", "--list", branch):
            raise PublishError(f"{repo_id}: revision {branch} does not exist")
        oid = self._commit(
            repo, branch, Path(folder_path), commit_message or "Upload folder", ignore=list(ignore_patterns or [])
        )
        return _CommitInfo(
            oid=oid, commit_url=f"local://{repo_type}s/{repo_id}/commit/{oid}", commit_message=commit_message or ""
        )

    def create_tag(
        self,
        repo_id: str,
        *,
        tag: str,
        tag_message: str | None = None,
        revision: str | None = None,
        repo_type: str | None = None,
        exist_ok: bool = False,
        **kw: Any,
    ) -> None:
        self.calls.append(("create_tag", {"repo_id": repo_id, "tag": tag, "revision": revision}))
        repo = self._repo(repo_id, repo_type)
        if self.git(repo, "tag", "--list", tag):
            if exist_ok:
                return
            raise PublishError(f"{repo_id}: tag {tag} already exists")
        self.git(repo, "tag", "-a", tag, "-m", tag_message or tag, revision or "main")
