"""``ecard directory import FILE.json`` (listings and institutions from a file, audited as the
``system:cli`` actor) and ``ecard directory pull`` (one round over the peers' feeds, what the
service's background task does every ``ECARD_DIRECTORY_PULL_SECONDS``).

Declared in ``ecard.directory.domain``; ``ecard.cli`` calls ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import msgspec

CLI_ACTOR = "system:cli"


def cmd_directory_import(args: argparse.Namespace) -> int:
    """Validate the whole file first (its shape), then write entry by entry; print the counts."""
    from ecard.cli import _settings, _with_platform
    from ecard.directory.schemas import ImportFile
    from ecard.directory.service import DirectoryService
    from ecard.errors import AppError

    try:
        data = msgspec.json.decode(Path(args.file).read_bytes(), type=ImportFile)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as error:
        print(f"cannot import {args.file}: {error}", file=sys.stderr)
        return 2
    settings = _settings(args)
    try:
        result = asyncio.run(
            _with_platform(
                settings, lambda platform: DirectoryService(platform).import_file(data, CLI_ACTOR)
            )
        )
    except AppError as error:
        print(f"import stopped: {error.code}: {error}", file=sys.stderr)
        return 1
    print(
        f"{result.applications} applications and {result.institutions} institutions imported "
        f"(directory version {result.version})"
    )
    return 0


def cmd_directory_pull(args: argparse.Namespace) -> int:
    """Pull every configured peer's feed once; exit 1 if any was refused or unreachable."""
    from ecard.cli import _settings, _with_platform
    from ecard.directory.peers import pull_peers

    settings = _settings(args)
    results = asyncio.run(_with_platform(settings, pull_peers))
    if not results:
        print("no directory peers configured (ECARD_DIRECTORY_PEERS)")
    for status in results:
        if status.ok:
            print(f"{status.url}: version {status.version}, {status.applied} entries applied")
        else:
            print(f"{status.url}: refused: {status.error}", file=sys.stderr)
    return 0 if all(status.ok for status in results) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``directory import FILE`` and ``directory pull``."""
    directory = subparsers.add_parser(
        "directory", help="the service zone's directory"
    ).add_subparsers(dest="directory_cmd", required=True)
    importer = directory.add_parser(
        "import", help="list applications and institutions from a JSON file (docs/directory.md)"
    )
    importer.add_argument("file", help="a JSON file: {applications: {...}, institutions: [...]}")
    importer.set_defaults(func=cmd_directory_import)
    pull = directory.add_parser(
        "pull", help="fetch, verify and store the configured peers' directory feeds once"
    )
    pull.set_defaults(func=cmd_directory_pull)
