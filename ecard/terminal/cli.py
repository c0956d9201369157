"""``ecard terminal simulate``: a reference terminal's day, end to end, against an in-process
platform (a fresh SQLite database and keyring in a temporary directory unless given).

It registers a terminal, a card and an e-card, syncs the offline package, goes offline, accepts
the chip card (virtual card), the e-card over NFC (HCE) and a QR code, comes back, uploads its
signed records, and prints the operator's reconciliation.  The lead wires ``register(subparsers)``
into ``ecard.cli.build_parser``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.app import create_app
from ecard.codes.service import CodeService
from ecard.crypto.keyring import Keyring
from ecard.offline.es256 import b64url_decode, public_jwk
from ecard.platform import Platform, open_platform
from ecard.registry.evidence import sign_evidence
from ecard.registry.service import AccessService
from ecard.settings import load_settings
from ecard.store.keyfiles import save_keyring
from ecard.terminal.hce import HceCard
from ecard.terminal.reference import ReferenceTerminal
from ecard.terminal.service import TerminalService, issuer_master_keys
from ecard.terminal.virtual_card import VirtualCard


@dataclass
class Scenario:
    """What a simulation or benchmark needs: an operator, a registered terminal, a registry card
    (its chip), an e-card's HCE phone and a fresh QR code."""

    http: httpx.AsyncClient
    operator_headers: dict[str, str]
    terminal: ReferenceTerminal
    chip: VirtualCard
    phone: HceCard
    code: str


@asynccontextmanager
async def in_process_platform(
    workdir: Path, region: str
) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    """The whole app in this process over a SQLite file and a keyring in ``workdir``."""
    keys = workdir / "keys"
    if not keys.exists():
        keys.mkdir(parents=True)
        save_keyring(keys, Keyring.create([region]))
    settings = load_settings(
        {
            "ECARD_KEYS_DIR": str(keys),
            "ECARD_DATABASE_URL": f"sqlite:///{workdir}/ecard.db",
            "ECARD_LOG_LEVEL": "WARNING",
        }
    )
    platform = await open_platform(settings, migrate=True)
    app = create_app(settings, platform=platform)
    try:
        async with (
            app.lifespan(),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://platform.local"
            ) as http,
        ):
            yield platform, http
    finally:
        await platform.close()


async def set_up(platform: Platform, http: httpx.AsyncClient, region: str) -> Scenario:
    operator = f"sim-{uuid.uuid4().hex[:6]}"
    await AccessService(platform).create_operator(operator, "simulate-password", "admin")
    login = await http.post(
        "/operator/v1/login", json={"username": operator, "password": "simulate-password"}
    )
    op = {"Authorization": f"Bearer {login.json()['access_token']}"}

    async def post(path: str, body: dict, headers: dict[str, str]) -> dict:
        response = await http.post(path, json=body, headers=headers)
        response.raise_for_status()
        return response.json()

    identity_number = "11010519491231002X"
    person = await post(
        "/operator/v1/persons",
        {"name": "张三", "gender": "1", "identity_number": identity_number, "region": region},
        op,
    )
    card_number = "S" + uuid.uuid4().hex[:8].upper()
    card = await post(
        "/operator/v1/cards",
        {
            "person_id": person["id"],
            "card_number": card_number,
            "region": region,
            "chip_serial": uuid.uuid4().hex[:16].upper(),
            "identification_code": uuid.uuid4().hex[:24].upper(),
            "issue_date": "2024-01-01",
            "expiry_date": "2034-01-01",
        },
        op,
    )
    channel_key = ec.generate_private_key(ec.SECP256R1())  # signs the channel's 实人 evidence
    channel = await post(
        "/operator/v1/clients",
        {
            "kind": "channel",
            "name": f"app-{uuid.uuid4().hex[:6]}",
            "public_jwk": public_jwk(channel_key.public_key()),
        },
        op,
    )
    evidence = sign_evidence(
        channel_key,
        channel_id=channel["id"],
        audience=platform.settings.public_url,
        identity_number=identity_number,
        method="counter_in_person",
        reference=f"sim-{uuid.uuid4().hex[:8]}",
    )
    issued = await http.post(
        "/channel/v1/ecards",
        json={
            "name": "张三",
            "identity_number": identity_number,
            "card_number": card_number,
            "evidence": evidence,
        },
        auth=(channel["id"], channel["client_secret"]),
    )
    issued.raise_for_status()
    holder = {"Authorization": f"Bearer {issued.json()['session']['access_token']}"}
    device = ec.generate_private_key(ec.SECP256R1())
    certificate = await post(
        "/holder/v1/hce-certificates", {"device_key": public_jwk(device.public_key())}, holder
    )
    terminal_key = ec.generate_private_key(ec.SECP256R1())
    registered = await post(
        "/operator/v1/terminals/",
        {
            "name": f"sim-terminal-{uuid.uuid4().hex[:6]}",
            "institution": "模拟医院",
            "terminal_kind": "hospital",
            "address": "模拟地址1号",
            "region": region,
            "public_jwk": public_jwk(terminal_key.public_key()),
            "entitlements": ["card_status", "masked_name"],
        },
        op,
    )
    ring = platform.keys.ring
    return Scenario(
        http=http,
        operator_headers=op,
        terminal=ReferenceTerminal(
            registered["id"],
            terminal_key,
            http,
            ring.root.public_key(),
            psam_keys={region: issuer_master_keys(ring, region)},
        ),
        chip=await TerminalService(platform, CodeService(platform)).virtual_card(card["id"]),
        phone=HceCard(b64url_decode(certificate["certificate"]), device),
        code=(await post("/holder/v1/codes", {}, holder))["code"],
    )


async def simulate(workdir: Path, region: str) -> dict:
    async with in_process_platform(workdir, region) as (platform, http):
        world = await set_up(platform, http, region)
        terminal = world.terminal
        online = (await terminal.authenticate_card_online(world.chip)).json()
        await terminal.sync()  # then offline until the upload
        offline = [
            terminal.accept_card_offline(world.chip),
            terminal.accept_hce_offline(world.phone),
            terminal.accept_code_offline(world.code),
            terminal.accept_code_offline(world.code),
        ]
        upload = (await terminal.upload()).json()
        path = f"/operator/v1/terminals/{terminal.terminal_id}/reconciliation"
        reconciliation = (await http.get(path, headers=world.operator_headers)).json()
        return {
            "online_card_authentication": online,
            "offline_acceptances": [msgspec.to_builtins(item) for item in offline],
            "upload": upload,
            "reconciliation": reconciliation,
        }


def cmd_terminal_simulate(args: argparse.Namespace) -> int:
    if args.workdir:
        result = asyncio.run(simulate(Path(args.workdir), args.region))
    else:
        with tempfile.TemporaryDirectory(prefix="ecard-terminal-") as workdir:
            result = asyncio.run(simulate(Path(workdir), args.region))
    print(msgspec.json.format(msgspec.json.encode(result)).decode())
    return 0 if result["reconciliation"]["records"] == len(result["offline_acceptances"]) else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``terminal simulate [--workdir DIR] [--region CODE]``."""
    terminal = subparsers.add_parser("terminal", help="acceptance terminals").add_subparsers(
        dest="terminal_cmd", required=True
    )
    simulate_parser = terminal.add_parser(
        "simulate", help="a reference terminal's offline day, end to end, in process"
    )
    simulate_parser.add_argument(
        "--workdir", help="keep the database and keys here (default: a temporary directory)"
    )
    simulate_parser.add_argument(
        "--region", default="330000", help="issuer region code (default 330000)"
    )
    simulate_parser.set_defaults(func=cmd_terminal_simulate)
