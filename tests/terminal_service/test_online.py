"""Online: signed terminal requests, card authentication with the platform as PSAM, cryptograms
that open the chip, and bad input relayed through the gateway."""

from __future__ import annotations

import json

import httpx

from ecard.terminal import psam
from ecard.terminal.reference import READ_EF05_RECORD_1, SELECT_SSSE, signed_authorization
from ecard.terminal.virtual_card import VirtualCard
from tests.helpers import World
from tests.terminal_service.conftest import (
    PHARMACY,
    RegisteredTerminal,
    RegistryCard,
    chip_of,
    reference_terminal,
    register_terminal,
)

PATH = "/terminal/v1/card-authentications"


async def relay(
    http: httpx.AsyncClient, terminal: RegisteredTerminal, body: dict, now: int | None = None
) -> httpx.Response:
    import time

    raw = json.dumps(body).encode()
    authorization = signed_authorization(
        terminal.key, terminal.id, "POST", PATH, raw, int(time.time()) if now is None else now
    )
    return await http.post(
        PATH,
        content=raw,
        headers={"Authorization": authorization, "Content-Type": "application/json"},
    )


def card_answers(chip: VirtualCard, challenge: bytes) -> dict:
    chip.transmit(SELECT_SSSE)
    record = chip.transmit(READ_EF05_RECORD_1)
    answer = chip.transmit(bytes.fromhex("0088000008") + challenge + b"\x00")
    return {"card_record": record.hex(), "challenge": challenge.hex(), "answer": answer.hex()}


async def test_a_registry_card_authenticates_online_with_entitled_fields(
    client: httpx.AsyncClient, world: World, hospital: RegisteredTerminal, card: RegistryCard
) -> None:
    chip = await chip_of(client, card)
    assert chip.facts.card_number == card.person["card_number"]
    assert chip.facts.social_security_number == card.person["identity_number"]
    response = await reference_terminal(client, hospital).authenticate_card_online(chip)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["authentic"] and body["usable"] and body["card_status"] == "active"
    assert body["fields"] == {"masked_name": "李*", "card_status": "active"}

    pharmacy = await register_terminal(world, PHARMACY)
    only_status = await reference_terminal(client, pharmacy).authenticate_card_online(chip)
    assert only_status.json()["fields"] == {"card_status": "active"}


async def test_a_lost_card_is_authentic_but_not_usable(
    client: httpx.AsyncClient, world: World, hospital: RegisteredTerminal, card: RegistryCard
) -> None:
    lost = await client.post(
        f"/operator/v1/cards/{card.card_id}/status",
        json={"status": "lost", "reason": "挂失"},
        headers=world.op(),
    )
    assert lost.status_code == 200, lost.text
    response = await reference_terminal(client, hospital).authenticate_card_online(
        await chip_of(client, card)
    )
    assert response.json()["authentic"] and not response.json()["usable"]
    assert response.json()["card_status"] == "lost"


async def test_forged_answers_and_replayed_challenges_are_refused(
    client: httpx.AsyncClient, hospital: RegisteredTerminal, card: RegistryCard
) -> None:
    genuine = await chip_of(client, card)
    clone = VirtualCard(
        genuine.facts,
        psam.derive_card_keys(
            psam.MasterKeys(bytes(16), bytes(16)), genuine.facts.card_identification_code
        ),
    )
    forged = await relay(client, hospital, card_answers(clone, bytes(range(8))))
    assert (forged.status_code, forged.json()["code"]) == (403, "card_authentication_failed")

    answers = card_answers(genuine, bytes(range(1, 9)))
    assert (await relay(client, hospital, answers)).status_code == 200
    replayed = await relay(client, hospital, answers)
    assert (replayed.status_code, replayed.json()["code"]) == (409, "card_challenge_replayed")


def answers_for(chip: VirtualCard, challenge: bytes) -> dict:
    """What a terminal relays for a challenge of any length (Lc is the challenge's length)."""
    chip.transmit(SELECT_SSSE)
    record = chip.transmit(READ_EF05_RECORD_1)
    answer = chip.transmit(bytes([0x00, 0x88, 0x00, 0x00, len(challenge)]) + challenge + b"\x00")
    return {"card_record": record.hex(), "challenge": challenge.hex(), "answer": answer.hex()}


async def test_a_captured_authentication_is_refused_under_the_padded_challenge(
    client: httpx.AsyncClient, hospital: RegisteredTerminal, card: RegistryCard
) -> None:
    """C (8 bytes) and C || 80 00.. (16 bytes) once got one answer, so a captured authentication
    was accepted twice: the replay marker is per exact challenge, and the twin is another one."""
    chip = await chip_of(client, card)
    challenge = bytes.fromhex("A1B2C3D4E5F60718")
    twin = challenge + b"\x80" + bytes(7)
    captured = answers_for(chip, challenge)
    assert (await relay(client, hospital, captured)).status_code == 200
    replayed = await relay(client, hospital, {**captured, "challenge": twin.hex()})
    assert (replayed.status_code, replayed.json()["code"]) == (403, "card_authentication_failed")

    captured_twin = answers_for(
        chip, challenge[::-1] + b"\x80" + bytes(7)
    )  # and the other way round
    assert (await relay(client, hospital, captured_twin)).status_code == 200
    shortened = await relay(client, hospital, {**captured_twin, "challenge": challenge[::-1].hex()})
    assert (shortened.status_code, shortened.json()["code"]) == (403, "card_authentication_failed")
    again = await relay(client, hospital, captured_twin)
    assert (again.status_code, again.json()["code"]) == (409, "card_challenge_replayed")


async def test_malformed_card_answers_get_the_codec_reason(
    client: httpx.AsyncClient, hospital: RegisteredTerminal, card: RegistryCard
) -> None:
    good = card_answers(await chip_of(client, card), bytes(range(2, 10)))
    cases = {
        "apdu_truncated": {**good, "answer": "90"},
        "apdu_too_long": {**good, "answer": "00" * (65_536 + 3)},
        "bad_record": {**good, "card_record": "0110" + "00" * 3 + "9000"},
        "bad_challenge": {**good, "challenge": "0011"},
    }
    for reason, body in cases.items():
        response = await relay(client, hospital, body)
        assert (response.status_code, response.json()["code"]) == (400, "terminal_apdu_invalid"), (
            reason
        )
        assert response.json()["detail"].startswith(reason)
    refused = await relay(client, hospital, {**good, "answer": "6A82"})
    assert (refused.status_code, refused.json()["code"]) == (400, "card_answer_refused")
    assert "6A82" in refused.json()["detail"]


async def test_requests_must_be_signed_fresh_and_single_use(
    client: httpx.AsyncClient, world: World, hospital: RegisteredTerminal, card: RegistryCard
) -> None:
    import time

    body = card_answers(await chip_of(client, card), bytes(range(3, 11)))
    raw = json.dumps(body).encode()
    unsigned = await client.post(PATH, content=raw)
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "terminal_signature_invalid")
    stale = await relay(client, hospital, body, now=int(time.time()) - 600)
    assert stale.json()["code"] == "terminal_request_stale"

    header = signed_authorization(hospital.key, hospital.id, "POST", PATH, raw, int(time.time()))
    tampered = await client.post(
        PATH, content=raw.replace(b"challenge", b"challengE"), headers={"Authorization": header}
    )
    assert tampered.json()["code"] == "terminal_signature_invalid"
    assert (
        await client.post(
            PATH, content=raw, headers={"Authorization": header, "Content-Type": "application/json"}
        )
    ).status_code == 200
    replay = await client.post(
        PATH, content=raw, headers={"Authorization": header, "Content-Type": "application/json"}
    )
    assert replay.json()["code"] == "terminal_request_replayed"

    stranger = RegisteredTerminal(hospital.id, (await register_terminal(world, PHARMACY)).key)
    assert (await relay(client, stranger, body)).json()["code"] == "terminal_signature_invalid"


async def test_a_disabled_terminal_is_refused_everything(
    client: httpx.AsyncClient, world: World, hospital: RegisteredTerminal, card: RegistryCard
) -> None:
    disabled = await client.post(
        f"/operator/v1/terminals/{hospital.id}/status",
        json={"status": "disabled", "reason": "stolen"},
        headers=world.op(),
    )
    assert disabled.status_code == 200 and disabled.json()["status"] == "disabled"
    terminal = reference_terminal(client, hospital)
    response = await terminal.authenticate_card_online(await chip_of(client, card))
    assert (response.status_code, response.json()["code"]) == (403, "terminal_disabled")
    upload = await terminal.upload()
    assert (upload.status_code, upload.json()["code"]) == (403, "terminal_disabled")


async def test_the_platform_cryptogram_opens_personal_data_for_entitled_terminals_only(
    client: httpx.AsyncClient, world: World, hospital: RegisteredTerminal, card: RegistryCard
) -> None:
    chip = await chip_of(client, card)
    chip.transmit(SELECT_SSSE)
    assert chip.transmit(bytes.fromhex("00B2083000"))[-2:] == b"\x69\x82"  # EF06 closed
    assert await reference_terminal(client, hospital).open_personal_data(chip) == 0x9000
    data = chip.transmit(bytes.fromhex("00B2083000"))  # item 08, EF06
    assert data[-2:] == b"\x90\x00" and data[2:-2].decode() == card.person["identity_number"]

    pharmacy = reference_terminal(client, await register_terminal(world, PHARMACY))
    try:
        await pharmacy.open_personal_data(await chip_of(client, card))
    except httpx.HTTPStatusError as error:
        assert error.response.json()["code"] == "forbidden"
    else:
        raise AssertionError("an unentitled terminal got a cryptogram")


async def test_wrong_pins_count_down_to_the_lock(
    client: httpx.AsyncClient, card: RegistryCard
) -> None:
    chip = await chip_of(client, card, pin="246810")
    chip.transmit(SELECT_SSSE)
    words = [chip.transmit(bytes.fromhex("0020000003123456"))[-2:].hex().upper() for _ in range(4)]
    assert words == ["63C2", "63C1", "63C0", "6983"]
    assert chip.transmit(bytes.fromhex("0020000003246810"))[-2:].hex().upper() == "6983"


async def test_unknown_commands_and_malformed_apdus_get_their_status_words(
    client: httpx.AsyncClient, card: RegistryCard
) -> None:
    chip = await chip_of(client, card)
    for command, word in (
        ("80B2012C00", "6E00"),
        ("00FF000000", "6D00"),
        ("00A404", "6700"),
        ("00A404000F7378", "6700"),
    ):
        assert chip.transmit(bytes.fromhex(command))[-2:].hex().upper() == word


async def test_operators_search_and_page_the_terminals(world: World) -> None:
    hangzhou = await register_terminal(world, [], region="330000")
    beijing = await register_terminal(world, [], region="110000")
    await world.client.post(
        f"/operator/v1/terminals/{beijing.id}/status",
        json={"status": "disabled", "reason": "retired"},
        headers=world.op(),
    )

    async def ids(**params) -> list[str]:
        response = await world.client.get(
            "/operator/v1/terminals", params=params, headers=world.op("readonly")
        )
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert hangzhou.id in await ids(region="330000")
    assert beijing.id not in await ids(region="330000")
    assert beijing.id in await ids(status="disabled")
    assert hangzhou.id not in await ids(status="disabled")
    assert {hangzhou.id, beijing.id} <= set(await ids(q="人民医院", limit=200))
    page = await world.client.get("/operator/v1/terminals", params={"limit": 1}, headers=world.op())
    assert len(page.json()["items"]) == 1 and page.json()["total"] >= 2
    for bad in ({"region": "33"}, {"limit": 0}, {"status": "lost"}, {"q": ""}):
        assert (
            await world.client.get("/operator/v1/terminals", params=bad, headers=world.op())
        ).status_code == 400
