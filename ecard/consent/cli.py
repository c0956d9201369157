"""``ecard ledger …``: audit the consent ledger and check receipts from the command line.

Declared in ``ecard.consent.domain``; ``ecard.cli`` calls ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path

import msgspec

from ecard.crypto.keyring import KeyringError
from ecard.errors import AppError
from ecard.settings import Settings
from ledger import LedgerError, Receipt


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
        f"{report.entries} entries, {report.blocks} blocks, "
        f"{report.anchors_confirmed} anchors confirmed "
        f"({chain}): {'OK' if result.ok else f'{len(report.problems)} problem(s)'}",
        file=sys.stderr,
    )
    return 0 if result.ok else 1


def cmd_ledger_deploy(args: argparse.Namespace) -> int:
    """Deploy LedgerAnchor from the anchoring account and print the settings that name it."""
    from ecard.cli import _settings

    settings = _settings(args)
    try:
        deployment = asyncio.run(_deploy(settings, args.admin, force=args.force))
    except (LedgerError, KeyringError) as exc:
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 1
    print(f"ECARD_LEDGER_CHAIN_ID={deployment.chain_id}")
    print(f"ECARD_LEDGER_CONTRACT={deployment.address}")
    print(f"ECARD_LEDGER_CONTRACT_BLOCK={deployment.block}")
    print(
        f"deployed LedgerAnchor in transaction {deployment.tx_hash}; anchorer "
        f"{deployment.anchorer}, admin {deployment.admin}",
        file=sys.stderr,
    )
    return 0


class Deployed(msgspec.Struct, frozen=True):
    chain_id: int
    address: str
    block: int
    tx_hash: str
    anchorer: str
    admin: str


async def _deploy(settings: Settings, admin: str | None, *, force: bool) -> Deployed:
    from ecard.consent.ledger_bridge import anchor_signer
    from ledger.evm.anchor import ChainAnchor, connect, deploy

    if not settings.ledger_rpc_url:
        raise LedgerError("anchor.not_configured", "set ECARD_LEDGER_RPC_URL to a node's JSON-RPC")
    signer = anchor_signer(settings)
    if signer is None:
        raise LedgerError(
            "anchor.not_configured",
            "set ECARD_LEDGER_ANCHOR_KEY: the contract is deployed from the anchoring account",
        )
    w3 = connect(settings.ledger_rpc_url)
    try:
        try:
            chain_id = await signer.chain_id(w3)
        except Exception as exc:
            raise LedgerError(
                "anchor.unreachable", f"the chain node cannot be reached: {type(exc).__name__}"
            ) from exc
        if settings.ledger_chain_id is not None and chain_id != settings.ledger_chain_id:
            raise LedgerError(
                "anchor.wrong_chain",
                f"the node serves chain {chain_id}; "
                f"ECARD_LEDGER_CHAIN_ID: {settings.ledger_chain_id}",
            )
        if settings.ledger_contract and not force:
            existing = ChainAnchor(w3, settings.ledger_contract, signer)
            if await existing.has_code():
                raise LedgerError(
                    "anchor.contract_exists",
                    f"ECARD_LEDGER_CONTRACT {settings.ledger_contract} is deployed on chain "
                    f"{chain_id}; a second contract would start a second anchor history "
                    "(pass --force to deploy one anyway)",
                )
        deployment = await deploy(w3, signer)
        chain = ChainAnchor(w3, deployment.address, signer, from_block=deployment.block)
        await chain.grant_anchorer(signer.address, signer)
        if admin:
            await chain.transfer_admin(admin, signer)
        return Deployed(
            deployment.chain_id,
            deployment.address,
            deployment.block,
            deployment.tx_hash,
            signer.address,
            admin or signer.address,
        )
    finally:
        await w3.provider.disconnect()


def _address(value: str) -> str:
    if not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
        raise argparse.ArgumentTypeError("expected a 0x-prefixed 20-byte hex address")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ledger verify [--receipt FILE]`` and ``ledger deploy [--admin ADDRESS]``."""
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
    deploy = ledger.add_parser(
        "deploy",
        help="deploy the anchoring contract from ECARD_LEDGER_ANCHOR_KEY's account and print "
        "ECARD_LEDGER_CHAIN_ID, ECARD_LEDGER_CONTRACT and ECARD_LEDGER_CONTRACT_BLOCK",
    )
    deploy.add_argument(
        "--admin",
        type=_address,
        help="hand the contract's admin role (grant/revoke anchorers) to this address afterwards, "
        "e.g. an operator multisig; by default the anchoring account stays admin",
    )
    deploy.add_argument(
        "--force", action="store_true", help="deploy even when ECARD_LEDGER_CONTRACT is deployed"
    )
    deploy.set_defaults(func=cmd_ledger_deploy)
