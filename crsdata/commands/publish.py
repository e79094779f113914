"""``crsdata publish FOLDER --repo-id ORG/NAME``: one commit to the Hub that makes the repository the folder, then
a tag. Datasets, models and metric Spaces alike."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from crsdata.publish import KINDS, PublishError, check_folder, plan_upload, publish, publishable_folder


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="upload a dataset, model or metric Space folder to the Hugging Face Hub and tag it",
        description="Upload a folder to a Hub repository in one commit (HfApi.upload_folder), then tag that "
        "commit (HfApi.create_tag). The folder's crsdata.json says what it is (kind dataset, the default, model "
        "or space) and so the repository type. The commit also deletes what the previous version left and this "
        "one replaces (datasets: parquet shards, plots, card and crsdata.json; models and Spaces: every file), "
        "so each tag holds exactly one build; older tags keep theirs. Hidden files (.simulate-run/) are never "
        "sent. The folder is checked first: a dataset must load with `load_dataset`, a model with "
        "transformers/PEFT (skops for .skops files, when installed), a metric Space must give its examples' "
        "numbers without crsdata installed. A metric module folder (metrics/NAME) is exported first with "
        "`crsdata export-metric`; its Space must be named ORG/NAME. --tag must be v + the folder's version; an "
        "existing tag is refused: published versions never move. The token is read from HF_TOKEN (or "
        "HUGGING_FACE_HUB_TOKEN) and is never printed or written.",
    )
    parser.add_argument(
        "folder", type=Path, help="folder written by crsdata (build, simulate, training, export-metric) or metrics/NAME"
    )
    parser.add_argument("--repo-id", required=True, help="target repository, ORG/NAME")
    parser.add_argument("--revision", default="main", help="branch to commit to; created from main if missing")
    parser.add_argument("--tag", help="tag for the commit, vX.Y.Z matching the folder's version")
    parser.add_argument(
        "--kind", choices=sorted(KINDS), help="refuse the folder unless its crsdata.json says this kind"
    )
    parser.add_argument("--private", action="store_true", help="create the repository as private if it is new")
    parser.add_argument("--no-verify", action="store_true", help="skip loading the folder before the upload")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the folder and print the files the upload would send and those it would delete (read from "
        "the repository when it can be reached), without changing anything",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.dry_run:
            return dry_run(args)
        result = publish(
            args.folder,
            args.repo_id,
            revision=args.revision,
            tag=args.tag,
            private=args.private or None,
            verify=not args.no_verify,
            kind=args.kind,
        )
    except PublishError as err:
        print(f"crsdata publish: error: {err}", file=sys.stderr)
        return 1
    print(
        f"published {args.folder} to {result.repo_type} {result.repo_id}@{result.revision}: commit {result.commit}"
        + (f", tag {result.tag}" if result.tag else "")
    )
    for note in result.notes:
        print(f"note: {note}")
    return 0


def dry_run(args: argparse.Namespace) -> int:
    from crsdata import publish as publishing

    with publishable_folder(args.folder, args.tag) as folder:
        checked = check_folder(folder, args.tag, verify=not args.no_verify, kind=args.kind)
        client = publishing.hub_client()
        unreachable = publishing.hub_unreachable(client)
        plan = plan_upload(folder, args.repo_id, checked.kind, args.revision, client=None if unreachable else client)
        plan.remote_note = unreachable or plan.remote_note
        print(
            f"would upload {len(plan.upload)} files of {checked.kind} version {checked.version} to {plan.repo_type} "
            f"{args.repo_id}@{args.revision}" + (f" and tag {args.tag}" if args.tag else "")
        )
        for path in plan.upload:
            print(f"  {path}")
    for note in checked.notes:
        print(f"note: {note}")
    if plan.delete is None:
        print(
            f"would delete remote files matching {plan.delete_patterns} that this upload does not write again; "
            f"the remote could not be checked: {plan.remote_note}"
        )
    else:
        print(f"would delete {len(plan.delete)} files" + (f" ({plan.remote_note})" if plan.remote_note else ""))
        for path in plan.delete:
            print(f"  {path}")
    return 0
