"""Publishes a crsdata folder to the Hugging Face Hub: one commit that makes the repository exactly that folder,
then a tag. Datasets, models and metric Spaces go the same way.

The folder contract (what ``crsdata publish`` accepts; every folder crsdata writes follows it):

    README.md       the card (dataset card, model card, or a Space's README with its YAML front matter)
    crsdata.json    {"kind": "dataset" | "model" | "space", <version key>: "X.Y.Z", ...}

``kind`` picks the repository type and the check run before the upload. A ``crsdata.json`` without ``kind`` is
a dataset folder (``crsdata build`` and ``crsdata simulate`` write ``dataset_version``); model and Space folders
carry ``version`` (:func:`write_folder_metadata` writes it). A tag must be ``v`` + that version. The checks:

- dataset: every config loads with ``datasets.load_dataset``;
- model: ``adapter_config.json`` loads with ``peft.PeftConfig`` and the adapter weights with PEFT (the base model
  is not loaded: it may live on the Hub); ``config.json`` with ``AutoConfig`` and the
  weights with the class named in ``architectures`` (and the tokenizer, when the folder has one); a ``.skops``
  file loads with skops when skops is installed;
- space (a metric module exported by :mod:`crsdata.export_metric`): the module gives the numbers of its
  ``examples.json`` and its app builds, in a Python process that cannot import crsdata.

One upload both adds and deletes (``HfApi.upload_folder`` with ``delete_patterns``): remote files that the
kind's patterns cover and the new folder does not hold are removed in the same commit, so a second version never
keeps the first one's shards beside its own (the card's ``data_files`` globs would read both). Tags made earlier
keep pointing at their own commits. Hidden paths (a simulation's ``.simulate-run/``) are never sent.

The publisher uses seven calls of ``huggingface_hub.HfApi`` (``create_repo``, ``list_repo_refs``,
``create_branch``, ``upload_folder``, ``create_tag``, and ``list_repo_files`` for a dry run), so any object with
those methods can stand in for the Hub; the tests use one that keeps repositories as local git repositories.

The token comes from the environment (``HF_TOKEN``, or ``HUGGING_FACE_HUB_TOKEN``) and is handed to the
client only: it is never printed, logged or written to a file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from crsdata.folder_metadata import (
    KINDS,
    METADATA_FILE,
    VERSION_PATTERN,
    Kind,
    PublishError,
    read_folder_metadata,
    write_folder_metadata,  # noqa: F401 - public here too: the README documents crsdata.publish.write_folder_metadata
)

# Never sent: hidden files and folders at any depth hold run state (.simulate-run/), not the published thing.
HIDDEN_PATTERNS = (".*", "*/.*")
TAG_PATTERN = re.compile(r"^v\d+\.\d+\.\d+([-.+][0-9A-Za-z.-]+)?$")


class HubClient(Protocol):
    def create_repo(self, repo_id: str, *, repo_type: str | None = None, exist_ok: bool = False, **kw: Any) -> Any: ...
    def create_branch(
        self, repo_id: str, *, branch: str, repo_type: str | None = None, exist_ok: bool = False
    ) -> Any: ...
    def list_repo_refs(self, repo_id: str, *, repo_type: str | None = None) -> Any: ...
    def list_repo_files(self, repo_id: str, *, revision: str | None = None, repo_type: str | None = None) -> Any: ...
    def upload_folder(
        self,
        *,
        repo_id: str,
        folder_path: str | Path,
        repo_type: str | None = None,
        revision: str | None = None,
        commit_message: str | None = None,
        ignore_patterns: list[str] | None = None,
        delete_patterns: list[str] | None = None,
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
    repo_type: str
    revision: str
    commit: str
    tag: str | None
    url: str
    notes: list[str] = field(default_factory=list)  # what the checks could not cover


@dataclass
class CheckedFolder:
    """A folder that passed :func:`check_folder`: what it is and what the checks could not cover."""

    folder: Path
    kind: str
    version: str
    metadata: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def spec(self) -> Kind:
        return KINDS[self.kind]

    def commit_message(self) -> str:
        crsdata = self.metadata.get("crsdata_version", "?")
        if self.kind == "dataset":
            return f"crsdata {crsdata}: {self.metadata.get('source', self.folder.name)} dataset version {self.version}"
        name = self.metadata.get("name") or self.metadata.get("module") or self.folder.name
        return f"crsdata {crsdata}: {name} {self.kind} version {self.version}"


@dataclass
class UploadPlan:
    """What one upload sends and deletes, computed with the Hub's own matching rules."""

    repo_id: str
    repo_type: str
    revision: str
    upload: list[str]
    delete_patterns: list[str]
    # None when the remote could not be listed (offline, no access); ``remote_note`` says why.
    delete: list[str] | None
    remote_note: str = ""


def token_from_env() -> str | None:
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")


def hub_client(token: str | None = None) -> HubClient:
    from huggingface_hub import HfApi

    return HfApi(token=token if token is not None else token_from_env())


def hub_unreachable(client: HubClient, timeout_s: float = 3.0) -> str:
    """Why ``client``'s Hub cannot be read now, ``""`` when it may be. Used before a dry run lists the remote, so
    that a machine without network prints its plan at once instead of after huggingface_hub's retries (five
    attempts, about 23 s of ``Name or service not known``). With ``HF_HUB_OFFLINE`` set nothing is tried; otherwise
    one TCP connection to the endpoint, with a short timeout. Only a real ``HfApi`` is checked: another client
    (a local test hub) knows its own reachability."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import HfApi, constants

    if not isinstance(client, HfApi):
        return ""
    offline = getattr(constants, "is_offline_mode", lambda: constants.HF_HUB_OFFLINE)()
    if offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set, so the Hub was not contacted"
    endpoint = client.endpoint or constants.ENDPOINT
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return ""
    except OSError as err:
        return f"cannot reach {endpoint} ({type(err).__name__}: {err})"


def folder_kind(metadata: dict[str, Any]) -> str:
    kind = metadata.get("kind", "dataset")
    if kind not in KINDS:
        raise PublishError(f"{METADATA_FILE}: unknown kind {kind!r}; one of {sorted(KINDS)}")
    return kind


def check_folder(folder: str | Path, tag: str | None, verify: bool = True, kind: str | None = None) -> CheckedFolder:
    """Refuses what should not be published: not a crsdata folder, a kind other than ``kind`` (when given), a
    tag that is not the folder's version, or a folder that does not load as what it claims to be."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PublishError(f"{folder}: no such folder")
    if not (folder / "README.md").is_file():
        raise PublishError(f"{folder}: no README.md; build, train or export into this folder first")
    metadata = read_folder_metadata(folder)
    found = folder_kind(metadata)
    if kind is not None and kind != found:
        raise PublishError(f"{folder} is a {found} folder ({METADATA_FILE}), not a {kind}")
    version = metadata.get(KINDS[found].version_key)
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise PublishError(f"{folder}/{METADATA_FILE}: {KINDS[found].version_key} must be X.Y.Z, got {version!r}")
    if tag is not None:
        if not TAG_PATTERN.match(tag):
            raise PublishError(f"tag {tag!r} is not of the form vX.Y.Z")
        if tag != f"v{version}":
            raise PublishError(
                f"{folder} was built as version {version} but --tag is {tag}; rebuild with --version "
                f"{tag[1:]} or tag v{version}"
            )
    checked = CheckedFolder(folder=folder, kind=found, version=version, metadata=metadata)
    if verify:
        VERIFIERS[found](checked)
    return checked


def _verify_dataset(checked: CheckedFolder) -> None:
    import datasets

    for config in datasets.get_dataset_config_names(str(checked.folder)):
        datasets.load_dataset(str(checked.folder), config)


def _verify_model(checked: CheckedFolder) -> None:
    folder = checked.folder
    skops_files = sorted(folder.glob("*.skops"))
    known = [(folder / "adapter_config.json").is_file(), (folder / "config.json").is_file(), bool(skops_files)]
    if not any(known):
        raise PublishError(
            f"{folder}: no model crsdata can check (config.json, adapter_config.json or a .skops file); "
            "pass --no-verify to publish it unchecked"
        )
    try:
        if (folder / "adapter_config.json").is_file():
            try:
                from peft import PeftConfig
            except ImportError:
                raise PublishError(
                    f"{folder} is a PEFT adapter: install peft to check it, or pass --no-verify"
                ) from None
            from peft.utils import load_peft_weights

            config = PeftConfig.from_pretrained(str(folder))
            if getattr(config, "peft_type", None) is None:
                raise ValueError("adapter_config.json names no peft_type")
            # The base model may live on the Hub; the adapter's own weights are checked here.
            if not load_peft_weights(str(folder), device="cpu"):
                raise ValueError("the adapter weights are empty")
        elif (folder / "config.json").is_file() and not skops_files:
            # A scikit-learn repository's config.json is the Hub's widget config, not a transformers one.
            import transformers

            config = transformers.AutoConfig.from_pretrained(str(folder))
            names = getattr(config, "architectures", None) or []
            model_class = getattr(transformers, names[0], None) if names else None
            if model_class is None:
                raise PublishError(f"{folder}/config.json names no architecture transformers knows: {names}")
            model_class.from_pretrained(str(folder))
            if (folder / "tokenizer_config.json").is_file():
                transformers.AutoTokenizer.from_pretrained(str(folder))
        for path in skops_files:
            try:
                import skops.io as sio
            except ImportError:
                checked.notes.append(f"{path.name} not checked: skops is not installed")
                continue
            # Our own file, checked before it is published: trust the types it names (skops refuses unknown
            # types by default to protect people loading files from strangers).
            sio.load(path, trusted=sio.get_untrusted_types(file=path))
    except PublishError:
        raise
    except Exception as err:  # a folder that fails to load fails in many ways: name the folder and the cause
        raise PublishError(f"{folder} does not load as a model: {type(err).__name__}: {err}") from None


def _verify_space(checked: CheckedFolder) -> None:
    from crsdata.export_metric import ExportError, verify_exported

    try:
        verify_exported(checked.folder)
    except ExportError as err:
        raise PublishError(str(err)) from None


VERIFIERS = {"dataset": _verify_dataset, "model": _verify_model, "space": _verify_space}


def is_metric_source(folder: str | Path) -> bool:
    """A metric module folder of this repository (``metrics/<name>/<name>.py``), not yet exported."""
    folder = Path(folder)
    return not (folder / METADATA_FILE).exists() and (folder / f"{folder.name}.py").is_file()


@contextmanager
def publishable_folder(folder: str | Path, tag: str | None) -> Iterator[Path]:
    """Yields the folder to publish: ``folder`` itself, or, for a metric module source folder, its export
    (:func:`crsdata.export_metric.export_metric`) in a temporary folder, versioned from the tag."""
    folder = Path(folder)
    if not is_metric_source(folder):
        yield folder
        return
    from crsdata import __version__
    from crsdata.export_metric import ExportError, export_metric

    version = tag[1:] if tag and TAG_PATTERN.match(tag) else __version__
    with tempfile.TemporaryDirectory(prefix="crsdata-space-") as tmp:
        try:
            exported = export_metric(folder, Path(tmp) / folder.name, version=version)
        except ExportError as err:
            raise PublishError(str(err)) from None
        yield exported


def _check_repo_id(repo_id: str, checked: CheckedFolder) -> None:
    if checked.kind == "space":
        # evaluate.load("ORG/NAME") fetches NAME.py from the Space: the repository must be named after the module.
        module = checked.metadata.get("module")
        if repo_id.split("/")[-1] != module:
            raise PublishError(
                f"{repo_id}: a metric Space must be named after its module, ORG/{module}, so that "
                f"evaluate.load('ORG/{module}') finds {module}.py"
            )


def files_to_upload(folder: str | Path) -> list[str]:
    """The paths ``HfApi.upload_folder(folder, ignore_patterns=HIDDEN_PATTERNS)`` sends, by its own rules."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    root = Path(folder).resolve()
    paths = sorted(p.relative_to(root).as_posix() for p in root.glob("**/*") if p.is_file())
    return list(filter_repo_objects(paths, ignore_patterns=[*HIDDEN_PATTERNS, *DEFAULT_IGNORE_PATTERNS]))


def files_to_delete(remote: list[str], upload: list[str], delete_patterns: list[str]) -> list[str]:
    """The remote files an upload with ``delete_patterns`` deletes: matching ones, except ``.gitattributes`` and
    those the upload writes again (``HfApi.upload_folder`` drops the deletion of a path it re-adds)."""
    from huggingface_hub.utils import filter_repo_objects

    sent = set(upload)
    return [
        path
        for path in filter_repo_objects(remote, allow_patterns=delete_patterns)
        if path != ".gitattributes" and path not in sent
    ]


def plan_upload(
    folder: str | Path, repo_id: str, kind: str, revision: str = "main", client: HubClient | None = None
) -> UploadPlan:
    """What :func:`publish` would send and delete. Reads the remote file list when ``client`` can (a new
    repository has nothing to delete; a new branch starts from ``main``); otherwise ``delete`` is None."""
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    spec = KINDS[kind]
    upload = files_to_upload(folder)
    plan = UploadPlan(repo_id, spec.repo_type, revision, upload, list(spec.delete_patterns), delete=None)
    if client is None:
        plan.remote_note = "no client"
        return plan
    try:
        try:
            remote = client.list_repo_files(repo_id, revision=revision, repo_type=spec.repo_type)
        except RevisionNotFoundError:
            plan.remote_note = f"branch {revision} does not exist yet; it will start from main"
            remote = client.list_repo_files(repo_id, revision="main", repo_type=spec.repo_type)
    except RepositoryNotFoundError:
        plan.remote_note = f"{repo_id} does not exist yet (or is not visible with this token)"
        remote = []
    except Exception as err:  # offline, no network, no access: the plan is still useful without deletions
        first_line = (str(err).splitlines() or [""])[0]
        plan.remote_note = f"cannot list {repo_id}: {type(err).__name__}: {first_line}"
        return plan
    plan.delete = files_to_delete(list(remote), upload, plan.delete_patterns)
    return plan


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str = "main",
    tag: str | None = None,
    client: HubClient | None = None,
    private: bool | None = None,
    verify: bool = True,
    kind: str | None = None,
) -> PublishResult:
    """Uploads ``folder`` to ``repo_id`` (a dataset, model or Space repository, from the folder's kind) at branch
    ``revision`` in one commit that also deletes what the previous version left, then tags that commit.

    A metric module source folder (``metrics/<name>``) is exported first (see :func:`publishable_folder`).
    A tag that already exists in the repository is refused before anything is uploaded: a published version
    never moves.
    """
    with publishable_folder(folder, tag) as source:
        checked = check_folder(source, tag, verify, kind)
        _check_repo_id(repo_id, checked)
        return _upload(checked, repo_id, revision=revision, tag=tag, client=client, private=private)


def _upload(
    checked: CheckedFolder,
    repo_id: str,
    *,
    revision: str,
    tag: str | None,
    client: HubClient | None,
    private: bool | None,
) -> PublishResult:
    spec = checked.spec
    client = client or hub_client()
    client.create_repo(
        repo_id, repo_type=spec.repo_type, exist_ok=True, private=private, **dict(spec.create_repo_options)
    )
    refs = client.list_repo_refs(repo_id, repo_type=spec.repo_type)
    if tag is not None and any(t.name == tag for t in refs.tags):
        raise PublishError(f"{repo_id}: tag {tag} already exists; published versions are immutable, bump the version")
    if revision != "main" and not any(b.name == revision for b in refs.branches):
        client.create_branch(repo_id, branch=revision, repo_type=spec.repo_type, exist_ok=True)
    message = checked.commit_message()
    info = client.upload_folder(
        repo_id=repo_id,
        folder_path=str(checked.folder),
        repo_type=spec.repo_type,
        revision=revision,
        commit_message=message,
        # Copies: HfApi.upload_folder appends its default ignore patterns to the list it is given.
        ignore_patterns=list(HIDDEN_PATTERNS),
        delete_patterns=list(spec.delete_patterns),
    )
    commit = getattr(info, "oid", None) or str(info)
    if tag is not None:
        client.create_tag(repo_id, tag=tag, tag_message=message, revision=commit, repo_type=spec.repo_type)
    url = getattr(info, "commit_url", "") or f"{repo_id}@{commit}"
    return PublishResult(
        repo_id=repo_id,
        repo_type=spec.repo_type,
        revision=revision,
        commit=commit,
        tag=tag,
        url=url,
        notes=list(checked.notes),
    )
