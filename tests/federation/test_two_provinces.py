"""Two provinces' deployments on one machine, each with its own database, keys and region code,
listed in one national trust list: a code of one verifies at the other's verifiers offline, and
online through the issuing deployment (routed by region code)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ecard.crypto.keyring import Keyring
from ecard.demo import create_demo
from ecard.demo_run import free_port, server
from ecard.offline import RevocationSet, load_trust_list, verify
from ecard.offline.es256 import public_jwk, public_key_from_jwk
from ecard.offline.revocation import build_revocation_list
from ecard.platform import open_platform
from ecard.registry import schemas
from ecard.registry.service import AccessService
from ecard.settings import load_settings
from ecard.store.keyfiles import save_keyring

ZHEJIANG, BEIJING = "330000", "110000"


@dataclass
class Province:
    region: str
    workdir: Path
    port: int
    env: dict[str, str]
    root_jwk: dict[str, str]
    actors: dict | None = None
    peer_verifier: dict | None = None  # the other province's credentials here

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def province(tmp_path: Path, region: str) -> Province:
    workdir = tmp_path / region
    ring = Keyring.create([region])
    save_keyring(workdir / "keys", ring)
    port = free_port()
    env = {
        "ECARD_DATABASE_URL": f"sqlite:///{workdir}/ecard.db",
        "ECARD_KEYS_DIR": str(workdir / "keys"),
        "ECARD_REGION_CODE": region,
        "ECARD_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ECARD_LOG_LEVEL": "WARNING",
    }
    return Province(region, workdir, port, env, public_jwk(ring.root.public_key()))


async def prepare(here: Province) -> None:
    """Demo actors, and a verifier account for the other province's routed verifications."""
    settings = load_settings(
        {k: v for k, v in os.environ.items() if not k.startswith("ECARD_")} | here.env
    )
    platform = await open_platform(settings, migrate=True)
    try:
        here.actors = await create_demo(platform, settings)
        peer = await AccessService(platform).create_client(
            schemas.ClientCreate(
                kind="verifier",
                name="另一省平台 (peer province)",
                entitlements=["masked_name", "card_status"],
            ),
            "test",
        )
        here.peer_verifier = {"client_id": peer.id, "client_secret": peer.client_secret}
    finally:
        await platform.close()


def peering(here: Province, there: Province) -> str:
    """``ECARD_PEERS`` for ``here``: ``there`` issues its region; here's credentials at there."""
    assert there.peer_verifier is not None
    return json.dumps(
        [
            {
                "regions": [there.region],
                "url": there.url,
                "root_key": there.root_jwk,
                **there.peer_verifier,
            }
        ]
    )


@pytest.fixture()
def provinces(tmp_path: Path) -> Iterator[tuple[Province, Province]]:
    zhejiang, beijing = province(tmp_path, ZHEJIANG), province(tmp_path, BEIJING)
    for each in (zhejiang, beijing):
        asyncio.run(prepare(each))
    zhejiang.env["ECARD_PEERS"], beijing.env["ECARD_PEERS"] = (
        peering(zhejiang, beijing),
        peering(beijing, zhejiang),
    )
    with ExitStack() as running:
        for each in (zhejiang, beijing):
            running.enter_context(server(each.env, each.port, 1, each.workdir / "server.log"))
        yield zhejiang, beijing


def fetch_code(issuer: Province) -> str:
    assert issuer.actors is not None
    token = issuer.actors["holder"]["access_token"]
    response = httpx.post(
        f"{issuer.url}/holder/v1/codes", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text
    return response.json()["code"]


def present(at: Province, code: str) -> httpx.Response:
    assert at.actors is not None
    verifier = at.actors["verifier"]
    return httpx.post(
        f"{at.url}/verifier/v1/verifications",
        json={"code": code},
        auth=(verifier["client_id"], verifier["client_secret"]),
        timeout=10,
    )


def test_a_code_verifies_at_the_other_province_online_once_and_offline(
    provinces: tuple[Province, Province],
) -> None:
    zhejiang, beijing = provinces
    code = fetch_code(zhejiang)

    # offline: Beijing's trust list, checked with Beijing's root key, carries Zhejiang's issuer keys
    now = int(time.time())
    national = load_trust_list(
        httpx.get(f"{beijing.url}/offline/v1/trust-list").text,
        public_key_from_jwk(beijing.root_jwk),
        now,
    )
    assert {ZHEJIANG, BEIJING} <= national.regions
    nothing_revoked = RevocationSet.from_list(
        build_revocation_list([], version=1, issued_at=now, next_update=now + 60)
    )
    offline = verify(code, national, nothing_revoked, now)
    assert offline.ok, offline.reason

    # online: Beijing routes to Zhejiang, which checks the card and consumes the code
    routed = present(beijing, code)
    assert routed.status_code == 200, routed.text
    result = routed.json()
    assert result["valid"] is True and result["issuer_region"] == ZHEJIANG
    assert result["fields"] == {"masked_name": "张*三", "card_status": "active"}
    again = present(zhejiang, code).json()
    assert again["valid"] is False and again["reason"] == "already_used"

    # and the other way round
    back = fetch_code(beijing)
    assert present(zhejiang, back).json()["valid"] is True
    assert present(beijing, back).json()["reason"] == "already_used"


def test_a_peer_speaks_only_for_its_own_regions(tmp_path: Path) -> None:
    zhejiang, beijing = province(tmp_path, ZHEJIANG), province(tmp_path, BEIJING)
    for each in (zhejiang, beijing):
        asyncio.run(prepare(each))
    # Beijing is told that Zhejiang's deployment issues for Guangdong only
    assert zhejiang.peer_verifier is not None
    beijing.env["ECARD_PEERS"] = json.dumps(
        [
            {
                "regions": ["440000"],
                "url": zhejiang.url,
                "root_key": zhejiang.root_jwk,
                **zhejiang.peer_verifier,
            }
        ]
    )
    with (
        server(zhejiang.env, zhejiang.port, 1, zhejiang.workdir / "server.log"),
        server(beijing.env, beijing.port, 1, beijing.workdir / "server.log"),
    ):
        code = fetch_code(zhejiang)
        national = load_trust_list(
            httpx.get(f"{beijing.url}/offline/v1/trust-list").text,
            public_key_from_jwk(beijing.root_jwk),
            int(time.time()),
        )
        assert ZHEJIANG not in national.regions
        assert present(beijing, code).json()["reason"] in ("unknown_issuer", "unknown_key")


def test_an_unreachable_issuer_gets_a_clear_503(tmp_path: Path) -> None:
    zhejiang, beijing = province(tmp_path, ZHEJIANG), province(tmp_path, BEIJING)
    for each in (zhejiang, beijing):
        asyncio.run(prepare(each))
    beijing.env["ECARD_PEERS"] = peering(beijing, zhejiang)
    issuer = ExitStack()
    issuer.enter_context(server(zhejiang.env, zhejiang.port, 1, zhejiang.workdir / "server.log"))
    with issuer, server(beijing.env, beijing.port, 1, beijing.workdir / "server.log"):
        code = fetch_code(zhejiang)
        httpx.get(f"{beijing.url}/offline/v1/trust-list")  # Beijing has learnt Zhejiang's keys
        issuer.close()  # Zhejiang goes down
        refused = present(beijing, code)
        assert refused.status_code == 503, refused.text
        assert (
            refused.json()["code"] == "peer_unavailable" and int(refused.headers["retry-after"]) > 0
        )
