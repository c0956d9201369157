"""``ecard ledger …``: audit the consent ledger and check receipts from the command line.

Declared in ``ecard.consent.domain``; ``ecard.cli`` calls ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import msgspec

from ecard.errors import AppError
from ledger import Receipt


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the log (and the receipt, if given) checks out, 1 when a problem is found."""
    from ecard.cli import _settings, _with_platform
    from ecard.consent.ledger_bridge import verify_ledger

    receipt = None
    if args.receipt:
        try:
            receipt = msgspec.json.decode(Path(args.receipt).read_bytes(), type=Receipt)
        except (OSError, msgspec.DecodeError) as exc:
            print(f"ledger_receipt_invalid: cannot read {args.receipt}: {exc}", file=sys.stderr)
            return 2
    settings = _settings(args)
    try:
        result = asyncio.run(
            _with_platform(settings, lambda platform: verify_ledger(platform, receipt))
        )
    except AppError as exc:
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 1
    print(msgspec.json.format(msgspec.json.encode(result)).decode())
    report = result.audit
    for problem in report.problems:
        where = (
            f"entry {problem.seq}"
            if problem.seq is not None
            else f"block {problem.block}"
            if problem.block is not None
            else "log"
        )
        print(f"PROBLEM {problem.code} at {where}: {problem.message}", file=sys.stderr)
    chain = "checked against the chain" if result.chain_checked else "chain not checked"
    print(
        f"{report.entries} entries, {report.blocks} blocks, {report.anchors_confirmed} anchors confirmed "
        f"({chain}): {'OK' if result.ok else f'{len(report.problems)} problem(s)'}",
        file=sys.stderr,
    )
    return 0 if result.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``ledger verify [--receipt FILE]``."""
    ledger = subparsers.add_parser("ledger", help="the consent ledger").add_subparsers(
        dest="ledger_cmd", required=True
    )
    verify = ledger.add_parser(
        "verify", help="audit every entry, block and anchor; optionally check a receipt"
    )
    verify.add_argument(
        "--receipt", help="a receipt JSON file (as served by the holder receipts API)"
    )
    verify.set_defaults(func=cmd_ledger_verify)
