"""``crsdata publish FOLDER --repo-id ORG/NAME``: one commit to the Hub, then a tag."""

from __future__ import annotations

import argparse
from pathlib import Path

from crsdata.publish import PublishError, check_folder, publish


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "publish",
        help="upload a dataset folder to the Hugging Face Hub and tag it",
        description="Upload a dataset folder to a Hub dataset repository in one commit (HfApi.upload_folder), "
        "then tag that commit (HfApi.create_tag). The folder is checked first: it must load with "
        "`load_dataset`, and a --tag must equal the version the folder was built with. An existing tag is "
        "refused: published versions never move. The token is read from HF_TOKEN (or "
        "HUGGING_FACE_HUB_TOKEN) and is never printed or written.",
    )
    parser.add_argument("folder", type=Path, help="dataset folder written by `crsdata build` or `crsdata simulate`")
    parser.add_argument("--repo-id", required=True, help="target dataset repository, ORG/NAME")
    parser.add_argument("--revision", default="main", help="branch to commit to; created from main if missing")
    parser.add_argument("--tag", help="tag for the commit, vX.Y.Z matching the folder's dataset version")
    parser.add_argument("--private", action="store_true", help="create the repository as private if it is new")
    parser.add_argument("--no-verify", action="store_true", help="skip loading the folder with `load_dataset` first")
    parser.add_argument("--dry-run", action="store_true", help="check the folder and print what would be uploaded")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        if args.dry_run:
            metadata = check_folder(args.folder, args.tag, verify=not args.no_verify)
            files = sorted(p.relative_to(args.folder) for p in args.folder.rglob("*") if p.is_file())
            print(
                f"would upload {len(files)} files of {metadata['source']} version {metadata['dataset_version']} "
                f"to {args.repo_id}@{args.revision}" + (f" and tag {args.tag}" if args.tag else "")
            )
            for path in files:
                print(f"  {path}")
            return 0
        result = publish(
            args.folder,
            args.repo_id,
            revision=args.revision,
            tag=args.tag,
            private=args.private or None,
            verify=not args.no_verify,
        )
    except PublishError as err:
        # One line on stderr, like every other command's errors (crsdata.cli prints it).
        raise PublishError(str(err)) from None
    print(
        f"published {args.folder} to {result.repo_id}@{result.revision}: commit {result.commit}"
        + (f", tag {result.tag}" if result.tag else "")
    )
    return 0
