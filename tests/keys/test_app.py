"""The whole service with its keys in SoftHSM2 (``ECARD_KEY_PROVIDER=pkcs11``), over HTTP, on both
storage backends: codes issued and verified, the offline kit signed by the token's root key, ID
tokens, HCE certificates, card authentication; and a token that goes away answers 503."""

from __future__ import annotations

import threading
import time

import httpx
import jwt
import pytest

from ecard.crypto.provider.pkcs11 import Pkcs11KeyProvider
from ecard.offline import load_revocation_list, load_trust_list, verify
from ecard.offline.es256 import public_key_from_jwk
from ecard.oidc.provider import Provider
from ecard.oidc.tokens import sign as sign_id_token
from ecard.terminal.reference import SELECT_SSSE
from tests.helpers import World, basic, bearer, platform_of
from tests.terminal_service.conftest import (
    HOSPITAL,
    chip_of,
    reference_terminal,
    register_terminal,
    registry_card,
)


async def holder_and_verifier(world: World) -> tuple[dict[str, str], dict[str, str]]:
    person = await world.person_with_card(region="330000")
    issued = await world.issue(person)
    verifier = await world.new_client(
        "verifier", entitlements=["masked_name", "card_status", "region"]
    )
    return {"access_token": issued["session"]["access_token"], **person}, verifier


async def test_issue_and_verify_a_code_signed_in_the_token(world: World) -> None:
    client = world.client
    assert isinstance(platform_of(client).keys.provider, Pkcs11KeyProvider)
    holder, verifier = await holder_and_verifier(world)
    issued = await client.post("/holder/v1/codes", headers=bearer(holder["access_token"]))
    assert issued.status_code == 201, issued.text
    code = issued.json()["code"]
    checked = await client.post(
        "/verifier/v1/verifications",
        json={"code": code},
        headers=basic(verifier["client_id"], verifier["client_secret"]),
    )
    assert checked.status_code == 200, checked.text
    assert checked.json()["valid"] is True
    again = await client.post(
        "/verifier/v1/verifications",
        json={"code": code},
        headers=basic(verifier["client_id"], verifier["client_secret"]),
    )
    assert again.status_code == 200 and again.json()["valid"] is False  # single use, as ever

    # offline: the root key in the token signed the trust list and the revocation list
    now = int(time.time())
    root = public_key_from_jwk((await client.get("/offline/v1/root-key")).json())
    trust = load_trust_list((await client.get("/offline/v1/trust-list")).text, root, now)
    revocations = load_revocation_list(
        (await client.get("/offline/v1/revocations")).text, root, now
    )
    ring = platform_of(client).keys.ring
    assert root.public_numbers() == ring.root.public_key().public_numbers()
    fresh = await client.post("/holder/v1/codes", headers=bearer(holder["access_token"]))
    assert verify(fresh.json()["code"], trust, revocations, now).ok


async def test_codes_are_signed_off_the_event_loop(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token's round trip (a network HSM's milliseconds) never stalls the event loop."""
    holder, _ = await holder_and_verifier(world)
    provider = platform_of(world.client).keys.provider
    assert isinstance(provider, Pkcs11KeyProvider)
    threads, run = [], provider.token.run

    def recording_run(operation):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread())
        return run(operation)

    monkeypatch.setattr(provider.token, "run", recording_run)
    issued = await world.client.post("/holder/v1/codes", headers=bearer(holder["access_token"]))
    assert issued.status_code == 201, issued.text
    assert threads and threading.main_thread() not in threads


async def test_id_tokens_and_the_jwks_come_from_the_token(world: World) -> None:
    platform = platform_of(world.client)
    token = sign_id_token(Provider(platform), {"sub": "s", "aud": "rp", "iss": "x"})
    jwks = (await world.client.get("/.well-known/jwks.json")).json()["keys"]
    kid = jwt.get_unverified_header(token)["kid"]
    key = public_key_from_jwk(next(k for k in jwks if k["kid"] == kid))
    assert jwt.decode(token, key, algorithms=["ES256"], audience="rp")["sub"] == "s"


async def test_card_authentication_through_the_gateway_with_master_keys_in_the_token(
    world: World,
) -> None:
    """卡认证 and 卡鉴权 over the terminal gateway: a chip personalised through the token's PSAM
    role authenticates, and the platform's cryptogram (computed in the token) opens its personal
    data for an entitled terminal."""
    client = world.client
    assert platform_of(client).keys.card_keys.cipher == "AES"  # SoftHSM2 has no SM4
    card = await registry_card(world)
    hospital = await register_terminal(world, HOSPITAL)
    terminal = reference_terminal(client, hospital)
    response = await terminal.authenticate_card_online(await chip_of(client, card))
    assert response.status_code == 200, response.text
    assert response.json()["authentic"] and response.json()["usable"]

    chip = await chip_of(client, card)
    chip.transmit(SELECT_SSSE)
    assert chip.transmit(bytes.fromhex("00B2083000"))[-2:] == b"\x69\x82"  # EF06 closed
    assert await terminal.open_personal_data(chip) == 0x9000
    data = chip.transmit(bytes.fromhex("00B2083000"))
    assert data[-2:] == b"\x90\x00" and data[2:-2].decode() == card.person["identity_number"]


async def test_a_token_that_went_away_answers_503_and_comes_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = world.client
    holder, _ = await holder_and_verifier(world)
    assert (
        await client.post("/holder/v1/codes", headers=bearer(holder["access_token"]))
    ).is_success
    provider = platform_of(client).keys.provider
    assert isinstance(provider, Pkcs11KeyProvider)
    # the token is unplugged: the worker's session is gone and no token has its label any more
    monkeypatch.setattr(provider.token, "label", "unplugged-token")
    provider.token.close()
    response = await client.post("/holder/v1/codes", headers=bearer(holder["access_token"]))
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "key_provider_unavailable"
    assert response.headers["retry-after"] == "5"
    assert provider.token._pin not in response.text and "Traceback" not in response.text
    monkeypatch.undo()  # plugged in again: the next request opens a new session
    again = await client.post("/holder/v1/codes", headers=bearer(holder["access_token"]))
    assert again.status_code == 201, again.text


async def test_jwks_lists_only_public_members(client: httpx.AsyncClient) -> None:
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert keys and all("d" not in key and key["kty"] == "EC" for key in keys)
