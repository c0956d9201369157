"""Offline: the reference terminal takes the signed package, accepts a chip card, an e-card over
NFC and a QR code without the platform, comes back, uploads, and the operator reconciles."""

from __future__ import annotations

import time

import httpx
import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.codes import trust
from ecard.offline import OfflineError, Reason, load_offline_package, parse_code
from ecard.offline.es256 import b64url_decode, public_jwk
from ecard.terminal import records as rec
from ecard.terminal.hce import HceCard, HceReason
from tests.helpers import World, bearer
from tests.terminal_service.conftest import (
    HOSPITAL,
    RegisteredTerminal,
    RegistryCard,
    chip_of,
    reference_terminal,
    register_terminal,
    registry_card,
)


async def holder_session(world: World, card: RegistryCard) -> str:
    return (await world.issue(card.person))["session"]["access_token"]


async def hce_card(http: httpx.AsyncClient, token: str) -> HceCard:
    device_key = ec.generate_private_key(ec.SECP256R1())
    response = await http.post(
        "/holder/v1/hce-certificates",
        json={"device_key": public_jwk(device_key.public_key())},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    return HceCard(b64url_decode(response.json()["certificate"]), device_key)


async def fresh_code(http: httpx.AsyncClient, token: str) -> str:
    response = await http.post("/holder/v1/codes", headers=bearer(token))
    assert response.status_code == 201, response.text
    return response.json()["code"]


async def test_offline_day_then_upload_and_reconciliation(
    client: httpx.AsyncClient, world: World, hospital: RegisteredTerminal, card: RegistryCard
) -> None:
    token = await holder_session(world, card)
    phone, code = await hce_card(client, token), await fresh_code(client, token)
    terminal = reference_terminal(client, hospital)
    await terminal.sync()

    chip = terminal.accept_card_offline(await chip_of(client, card))
    nfc = terminal.accept_hce_offline(phone)
    qr = terminal.accept_code_offline(code)
    again = terminal.accept_code_offline(code)
    assert chip and nfc and qr and again
    assert [chip.accepted, nfc.accepted, qr.accepted] == [True, True, True], (chip, nfc, qr)
    assert (again.accepted, again.reason) == (False, "already_used")

    report = await terminal.upload()
    assert report.status_code == 200, report.text
    assert report.json()["stored"] == 4 and not report.json()["gaps"] and not terminal.pending

    reconciliation = await client.get(
        f"/operator/v1/terminals/{hospital.id}/reconciliation", headers=world.op("auditor")
    )
    assert reconciliation.status_code == 200, reconciliation.text
    body = reconciliation.json()
    assert (body["records"], body["accepted"], body["refused"], body["last_counter"]) == (
        4,
        3,
        1,
        4,
    )
    assert body["anomalies"] == {} and body["terminal"]["institution"] == "杭州市第一人民医院"
    forbidden = await client.get(
        f"/operator/v1/terminals/{hospital.id}/reconciliation", headers=world.op("readonly")
    )
    assert forbidden.status_code == 403


async def test_uploads_are_idempotent_and_anomalies_are_reported(
    client: httpx.AsyncClient, world: World, hospital: RegisteredTerminal, card: RegistryCard
) -> None:
    terminal = reference_terminal(client, hospital)
    await terminal.sync()
    chip = await chip_of(client, card)
    for _ in range(5):
        terminal.accept_card_offline(chip)
    first, second, third, fourth, fifth = terminal.pending
    terminal.pending = [first, second, fourth]
    assert (await terminal.upload()).json()["gaps"] == [{"first": 3, "last": 3}]

    retry = [first, second]  # a retry after a lost answer
    tampered = rec.SignedRecord(
        msgspec.structs.replace(fifth.record, reference="another_pseudonym"), fifth.signature
    )
    conflict = rec.sign_record(
        msgspec.structs.replace(second.record, reference="another_pseudonym"), hospital.key
    )
    terminal.pending = [*retry, tampered, conflict, third]
    report = (await terminal.upload()).json()
    assert (
        report["duplicates"] == [1, 2] and report["wrong_key"] == [5] and report["conflicts"] == [2]
    )
    assert report["stored"] == 1 and report["gaps"] == []

    later = rec.sign_record(
        msgspec.structs.replace(fifth.record, accepted_at=fifth.record.accepted_at - 3600),
        hospital.key,
    )
    terminal.pending = [later]  # the clock went back while the counter went on
    assert (await terminal.upload()).json()["rollbacks"] == [5]

    body = (
        await client.get(f"/operator/v1/terminals/{hospital.id}/reconciliation", headers=world.op())
    ).json()
    assert body["anomalies"] == {"wrong_key": 1, "conflicts": 1, "rollbacks": 1}
    assert body["records"] == 4 and body["gaps"] == []


async def test_a_lost_card_is_refused_offline_after_a_sync_and_flagged_when_accepted_before(
    client: httpx.AsyncClient,
    world: World,
    hospital: RegisteredTerminal,
    card: RegistryCard,
    monkeypatch,
) -> None:
    monkeypatch.setattr(
        trust, "REVOCATION_REFRESH_SECONDS", 0
    )  # workers re-read the registry each second
    token = await holder_session(world, card)
    code = await fresh_code(client, token)
    chip = await chip_of(client, card)
    stale = reference_terminal(
        client, await register_terminal(world, HOSPITAL), clock=lambda: time.time() + 5
    )
    await stale.sync()  # then offline, with no news of the loss
    lost = await client.post(
        f"/operator/v1/cards/{card.card_id}/status",
        json={"status": "lost", "reason": "挂失"},
        headers=world.op(),
    )
    assert lost.status_code == 200

    synced = reference_terminal(client, hospital, clock=lambda: time.time() + 5)
    await synced.sync()
    refused_chip = synced.accept_card_offline(chip)  # the package's chip blacklist knows the card
    assert refused_chip and (refused_chip.accepted, refused_chip.reason) == (False, "revoked")
    refused = synced.accept_code_offline(code)  # and its revocation list knows the e-card's codes
    assert refused and (refused.accepted, refused.reason) == (False, Reason.REVOKED)

    parsed = parse_code(code)
    late = rec.sign_record(
        rec.AcceptanceRecord(
            terminal_id=hospital.id,
            counter=3,
            reference=rec.code_reference(parsed.code_id),
            accepted_at=parsed.claims.expires_at + 60,
            kind=rec.AcceptanceKind.QR,
            result=rec.AcceptanceResult.ACCEPTED,
        ),
        hospital.key,
    )
    synced.pending.append(late)
    assert (await synced.upload()).json()["expired_codes"] == [3]

    accepted = stale.accept_card_offline(chip)  # its package predates the loss
    assert accepted and accepted.accepted
    assert (await stale.upload()).json()["revoked_before_acceptance"] == [1]


async def test_hce_refusals_offline(
    client: httpx.AsyncClient, world: World, hospital: RegisteredTerminal
) -> None:
    owner = await registry_card(world, name="王五")
    phone = await hce_card(client, await holder_session(world, owner))
    terminal = reference_terminal(client, hospital)
    await terminal.sync()
    thief = HceCard(
        phone._record[2:], ec.generate_private_key(ec.SECP256R1())
    )  # copied certificate, no key
    assert terminal.accept_hce_offline(thief).reason == HceReason.FORGED_ANSWER  # type: ignore[union-attr]
    late = reference_terminal(client, hospital, clock=lambda: time.time() + 2 * 86_400)
    late.package = terminal.package
    assert late.accept_hce_offline(phone).reason == Reason.EXPIRED  # type: ignore[union-attr]


async def test_the_terminal_refuses_a_tampered_package(
    client: httpx.AsyncClient, world: World, hospital: RegisteredTerminal
) -> None:
    terminal = reference_terminal(client, hospital)
    await terminal.sync()
    token = (await client.get("/offline/v1/package")).text
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload[:-4]}AAAA.{signature}"
    with pytest.raises(OfflineError):
        load_offline_package(forged, terminal._root, int(time.time()))
