"""``bga-mner push OUT REPO_ID [--private] [--endpoint URL]``: upload an export folder to the Hub.

The folder is checked first (``pretrained.folder_files``: the model's files, no pickle), then
uploaded as it is (``hub.push_folder``: ``HfApi.create_repo`` and ``upload_folder``, one commit).
The token is ``HF_TOKEN`` or the one ``hf auth login`` saved; offline (``HF_HUB_OFFLINE=1``), or when
the Hub refuses, the command fails in one line.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a `bga-mner export` folder")
    parser.add_argument("repo_id", help="the Hub repository, org/name (created when absent)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--endpoint", default=None, help="another Hub endpoint (default: HF_ENDPOINT or the Hub)")
    parser.add_argument("--message", default="Upload bga-mner model", help="the commit message")


def main(args: argparse.Namespace) -> int:
    from bga_mner.hub import push_folder
    from bga_mner.pretrained import folder_files

    files = folder_files(args.folder)
    url = push_folder(args.folder, args.repo_id, private=True if args.private else None,
                      commit_message=args.message, endpoint=args.endpoint)
    print(f"{args.repo_id}: uploaded {len(files)} files ({', '.join(files)}): {url}")
    return 0
