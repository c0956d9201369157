"""``ecard webhooks deliver``: one delivery pass from the command line (what the service's worker
does every ``ECARD_WEBHOOK_POLL_SECONDS``).

Declared in ``ecard.webhooks.domain``; ``ecard.cli`` calls ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import asyncio


def cmd_webhooks_deliver(args: argparse.Namespace) -> int:
    """Claim the due deliveries (at most ``--limit``), send each once, print how many were
    delivered."""
    from ecard.cli import _settings, _with_platform
    from ecard.webhooks.delivery import deliver_pass

    settings = _settings(args)
    claimed, delivered = asyncio.run(
        _with_platform(settings, lambda platform: deliver_pass(platform, limit=args.limit))
    )
    print(f"{delivered} delivered ({claimed} due, {claimed - delivered} to retry or failed)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``webhooks deliver [--limit N]``."""
    webhooks = subparsers.add_parser("webhooks", help="partner webhooks").add_subparsers(
        dest="webhooks_cmd", required=True
    )
    deliver = webhooks.add_parser(
        "deliver", help="send the due webhook deliveries once and print how many were delivered"
    )
    deliver.add_argument(
        "--limit", type=int, default=50, help="at most this many deliveries (default 50)"
    )
    deliver.set_defaults(func=cmd_webhooks_deliver)
