"""Fixtures of the code service tests: the service on both backends (from tests/api), holders with
an e-card session, verifiers with field entitlements, and the offline kit fetched over HTTP."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from litestar.testing import AsyncTestClient

from ecard.crypto.keyring import Keyring
from ecard.offline import RevocationSet, TrustStore, load_revocation_list, load_trust_list
from ecard.offline.es256 import public_key_from_jwk
from ecard.store.keyfiles import save_keyring
from tests.helpers import World, basic, bearer

PHARMACY = ["masked_name", "card_status"]
SERVICE_HALL = ["full_name", "identity_number", "card_number", "card_status", "region"]


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Issuer keys a day old, as in a running deployment, so codes from the past can be signed."""
    directory = tmp_path_factory.mktemp("keys")
    save_keyring(directory, Keyring.create(["330000", "110000"], now=int(time.time()) - 86_400))
    return str(directory)


@dataclass
class Holder:
    access_token: str
    ecard_id: str
    card_id: str
    person: dict[str, str]

    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


@dataclass
class Verifier:
    client_id: str
    client_secret: str

    def headers(self) -> dict[str, str]:
        return basic(self.client_id, self.client_secret)


async def new_holder(world: World, region: str = "330000", name: str = "张小三") -> Holder:
    person = await world.person_with_card(name=name, region=region)
    issued = await world.issue(person)
    return Holder(
        issued["session"]["access_token"], issued["ecard"]["id"], person["card_id"], person
    )


async def new_verifier(
    world: World, entitlements: list[str], regions: list[str] | None = None
) -> Verifier:
    extra = {"entitlements": entitlements} | ({"regions": regions} if regions else {})
    created = await world.new_client("verifier", **extra)
    return Verifier(created["client_id"], created["client_secret"])


@pytest.fixture()
async def holder(world: World) -> Holder:
    return await new_holder(world)


@pytest.fixture()
async def pharmacy(world: World) -> Verifier:
    return await new_verifier(world, PHARMACY)


@pytest.fixture()
async def hall(world: World) -> Verifier:
    return await new_verifier(world, SERVICE_HALL)


async def fetch_code(client: AsyncTestClient, holder: Holder) -> dict:
    response = await client.post("/holder/v1/codes", headers=holder.headers())
    assert response.status_code == 201, response.text
    return response.json()


async def present(client: AsyncTestClient, verifier: Verifier, code: str) -> dict:
    response = await client.post(
        "/verifier/v1/verifications", json={"code": code}, headers=verifier.headers()
    )
    assert response.status_code == 200, response.text
    return response.json()


async def root_public_key(client: AsyncTestClient):  # type: ignore[no-untyped-def]
    response = await client.get("/offline/v1/root-key")
    assert response.status_code == 200
    return public_key_from_jwk(response.json())


async def trust_store(client: AsyncTestClient, now: int) -> TrustStore:
    response = await client.get("/offline/v1/trust-list")
    assert response.status_code == 200 and response.headers["content-type"].startswith(
        "application/jose"
    )
    return load_trust_list(response.text, await root_public_key(client), now)


async def fetch_revocations(client: AsyncTestClient, now: int) -> RevocationSet:
    response = await client.get("/offline/v1/revocations")
    assert response.status_code == 200, response.text
    return load_revocation_list(response.text, await root_public_key(client), now)


async def report(world: World, holder: Holder, status: str) -> None:
    changed = await world.client.post(
        f"/operator/v1/cards/{holder.card_id}/status",
        json={"status": status, "reason": f"reported {status}"},
        headers=world.op(),
    )
    assert changed.status_code == 200, changed.text
