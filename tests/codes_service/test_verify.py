"""Online verification (扫码亮证): entitled fields, every reason code, status checked live, the
holder's history, verifier authentication, and any text answered with a reason, never a 500."""

from __future__ import annotations

import asyncio
import time

import base45
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecard.codes import CodeSigner
from ecard.codes.piccolo_migrations.codes_2026_11_30t05_30_01_000000 import backfill
from ecard.codes.service import CodeService
from ecard.codes.tables import CodeVerification
from ecard.codes.trust import card_pseudonym, private_key_of
from ecard.offline import parse_code
from ecard.offline.code_format import PREFIX
from ecard.store.db import DatabaseUnavailable
from ecard.store.group_insert import GroupInsert
from tests.codes_service.conftest import (
    SERVICE_HALL,
    Holder,
    Verifier,
    fetch_code,
    new_holder,
    new_verifier,
    present,
    report,
)
from tests.helpers import World, bearer, platform_of

REASONS = {
    "malformed",
    "wrong_prefix",
    "unsupported_version",
    "too_long",
    "unknown_issuer",
    "unknown_key",
    "issuer_mismatch",
    "bad_signature",
    "key_withdrawn",
    "key_not_valid",
    "expired",
    "not_yet_valid",
    "wrong_usage",
    "already_used",
    "card_not_active",
    "unknown_card",
}


def signer(world: World, region: str = "330000") -> CodeSigner:
    """The platform's own issuer key, to sign codes a phone would never get (past, future)."""
    record = platform_of(world.client).keys.ring.signing_key(region)
    return CodeSigner(region, private_key_of(record.private_pem))


def forge(world: World, holder: Holder, code_signer: CodeSigner, **changes: object) -> str:
    pseudonym = card_pseudonym(platform_of(world.client).pseudonym_key, holder.card_id)
    fields = {
        "pseudonym": pseudonym,
        "serial": 7,
        "issued_at": int(time.time()),
        "masked_name": "张*三",
        "card_last4": holder.person["card_number"][-4:],
    } | changes
    return code_signer.sign(code_signer.claims(**fields))  # type: ignore[arg-type]


def flip(code: str, byte_index: int) -> str:
    raw = bytearray(base45.b45decode(code.removeprefix(PREFIX)))
    raw[byte_index] ^= 0x01
    return PREFIX + base45.b45encode(bytes(raw)).decode()


def refused(result: dict, reason: str) -> None:
    assert result["valid"] is False and result["reason"] == reason, result
    assert result["fields"] == {} and result["message"]["zh-CN"] and result["message"]["en"]


async def test_a_pharmacy_sees_only_the_masked_name_and_status(
    world: World, holder: Holder, pharmacy: Verifier
) -> None:
    issued = await fetch_code(world.client, holder)
    result = await present(world.client, pharmacy, issued["code"])
    assert result["valid"] is True and result["reason"] is None
    assert result["fields"] == {"masked_name": "张*三", "card_status": "active"}
    assert (
        result["issuer_region"] == "330000"
        and result["issuer_name"]
        and result["expires_at"] == issued["expires_at"]
    )


async def test_a_service_hall_sees_exactly_its_entitled_fields(
    world: World, holder: Holder, hall: Verifier
) -> None:
    result = await present(world.client, hall, (await fetch_code(world.client, holder))["code"])
    assert result["valid"] is True
    assert result["fields"] == {
        "full_name": holder.person["name"],
        "identity_number": holder.person["identity_number"],
        "card_number": holder.person["card_number"],
        "card_status": "active",
        "region": "330000",
    }
    assert set(result["fields"]) == set(SERVICE_HALL)


async def test_masked_identity_entitlements(world: World, holder: Holder) -> None:
    masked = await new_verifier(world, ["masked_identity_number", "masked_card_number"])
    result = await present(world.client, masked, (await fetch_code(world.client, holder))["code"])
    number, card = holder.person["identity_number"], holder.person["card_number"]
    assert set(result["fields"]) == {"masked_identity_number", "masked_card_number"}
    assert result["fields"]["masked_identity_number"].endswith(number[-4:]) and number not in str(
        result
    )
    assert "*" in result["fields"]["masked_card_number"] and card not in str(result)


async def test_broken_codes_get_their_reason(
    world: World, holder: Holder, pharmacy: Verifier
) -> None:
    code = (await fetch_code(world.client, holder))["code"]
    body_length = len(parse_code(code).body)
    other = CodeSigner("330000", ec.generate_private_key(ec.SECP256R1()))
    stranger = CodeSigner("650000", ec.generate_private_key(ec.SECP256R1()))
    cases = {
        "": "wrong_prefix",
        "garbage": "wrong_prefix",
        "https://example.com/?EC1:": "wrong_prefix",
        "EC1:": "malformed",
        "EC1:~~~~": "malformed",
        "EC1:ABC": "malformed",
        code[:-9]: "malformed",  # truncated
        code[: len(code) // 2]: "malformed",
        "EC2:" + code[4:]: "unsupported_version",
        PREFIX
        + base45.b45encode(
            b"\x02" + base45.b45decode(code[4:])[1:]
        ).decode(): "unsupported_version",
        code + "A" * 400: "too_long",
        "EC1:" + "0" * 100_000: "too_long",
        flip(code, body_length + 10): "bad_signature",  # a bit of the signature
        flip(code, 16): "bad_signature",  # a bit of the serial
        flip(code, 4): "unknown_key",  # a bit of the key id
        forge(world, holder, other): "unknown_key",  # re-signed with a key nobody trusts
        forge(world, holder, stranger): "unknown_issuer",
    }
    for text, reason in cases.items():
        response = await world.client.post(
            "/verifier/v1/verifications", json={"code": text}, headers=pharmacy.headers()
        )
        assert response.status_code == 200, (text[:40], response.text)
        refused(response.json(), reason)
    # none of them used the genuine code up
    assert (await present(world.client, pharmacy, code))["valid"] is True


async def test_time_and_reuse(world: World, holder: Holder, pharmacy: Verifier) -> None:
    await fetch_code(world.client, holder)  # maps the card's pseudonym
    ours, now = signer(world), int(time.time())
    refused(
        await present(world.client, pharmacy, forge(world, holder, ours, issued_at=now - 400)),
        "expired",
    )
    refused(
        await present(world.client, pharmacy, forge(world, holder, ours, issued_at=now + 600)),
        "not_yet_valid",
    )
    # a few seconds of clock skew between the phone and the platform are allowed
    assert (await present(world.client, pharmacy, forge(world, holder, ours, issued_at=now + 3)))[
        "valid"
    ] is True
    code = (await fetch_code(world.client, holder))["code"]
    assert (await present(world.client, pharmacy, code))["valid"] is True
    refused(await present(world.client, pharmacy, code), "already_used")
    other = await new_verifier(world, ["masked_name"])
    refused(await present(world.client, other, code), "already_used")


async def test_a_card_reported_lost_a_second_ago_is_refused(
    world: World, holder: Holder, pharmacy: Verifier
) -> None:
    warm = (await fetch_code(world.client, holder))["code"]
    assert (await present(world.client, pharmacy, warm))["valid"] is True  # caches are warm
    code = (await fetch_code(world.client, holder))["code"]
    await report(world, holder, "lost")
    refused(await present(world.client, pharmacy, code), "card_not_active")


async def test_a_verifier_entitled_to_what_the_code_shows_is_answered_without_the_registry(
    world: World,
    holder: Holder,
    pharmacy: Verifier,
    hall: Verifier,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The code proves its card was active when issued; the shared store's withdrawal marker,
    written before any status change, says whether it still is.  The card's row is read only for
    a verifier entitled to more than the code carries."""
    reads: list[bytes] = []
    read_card = CodeService._card_of

    async def counted(pseudonym: bytes) -> dict | None:
        reads.append(pseudonym)
        return await read_card(pseudonym)

    monkeypatch.setattr(CodeService, "_card_of", staticmethod(counted))
    codes = [(await fetch_code(world.client, holder))["code"] for _ in range(3)]
    assert (await present(world.client, pharmacy, codes[0]))["fields"] == {
        "masked_name": "张*三",
        "card_status": "active",
    }
    assert reads == []
    assert (await present(world.client, hall, codes[1]))["fields"]["full_name"] == holder.person[
        "name"
    ]
    assert len(reads) == 1
    await report(world, holder, "lost")
    refused(await present(world.client, pharmacy, codes[2]), "card_not_active")
    assert len(reads) == 1


async def test_a_code_whose_record_could_not_be_written_is_not_used_up(
    world: World, holder: Holder, pharmacy: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database fails while a valid code is being recorded: the verifier gets 503 with
    Retry-After (never "valid" without its record), and its retry still finds the code unused."""
    add = GroupInsert.add

    async def failing(self: GroupInsert, row: tuple) -> None:
        raise DatabaseUnavailable("the database went away")

    code = (await fetch_code(world.client, holder))["code"]
    monkeypatch.setattr(GroupInsert, "add", failing)
    answer = await world.client.post(
        "/verifier/v1/verifications", json={"code": code}, headers=pharmacy.headers()
    )
    assert answer.status_code == 503 and answer.headers["retry-after"], answer.text
    assert answer.json()["code"] == "database_unavailable"
    monkeypatch.setattr(GroupInsert, "add", add)
    assert (await present(world.client, pharmacy, code))["valid"] is True
    refused(await present(world.client, pharmacy, code), "already_used")


async def test_the_history_names_the_card_by_its_pseudonym(
    world: World, holder: Holder, pharmacy: Verifier
) -> None:
    await present(world.client, pharmacy, (await fetch_code(world.client, holder))["code"])
    rows = await CodeVerification.select(
        CodeVerification.pseudonym, CodeVerification.card, CodeVerification.result
    )
    pseudonym = card_pseudonym(platform_of(world.client).pseudonym_key, holder.card_id).hex()
    assert rows == [{"pseudonym": pseudonym, "card": None, "result": "valid"}]


async def test_the_migration_names_earlier_verifications_by_pseudonym(
    world: World, holder: Holder, hall: Verifier
) -> None:
    """Rows recorded before the pseudonym column (card only) stay in their holder's history."""
    await present(
        world.client, hall, (await fetch_code(world.client, holder))["code"]
    )  # maps the pseudonym
    await CodeVerification.update({CodeVerification.pseudonym: None}, force=True)
    await backfill()
    history = (await world.client.get("/holder/v1/verifications", headers=holder.headers())).json()
    assert [item["result"] for item in history["items"]] == ["valid"]


async def test_a_frozen_card_is_refused_and_a_thawed_one_accepted(
    world: World, holder: Holder, pharmacy: Verifier
) -> None:
    """Freezing voids what was issued before it, as it ends the holder's session: a code shown
    before the freeze stays refused after the thaw, and a code issued after it is accepted."""
    first, second = (
        (await fetch_code(world.client, holder))["code"],
        (await fetch_code(world.client, holder))["code"],
    )
    await report(world, holder, "frozen")
    refused(await present(world.client, pharmacy, first), "card_not_active")
    await report(world, holder, "active")
    refused(await present(world.client, pharmacy, second), "card_not_active")
    after_thaw = forge(world, holder, signer(world), issued_at=int(time.time()) + 2)
    assert (await present(world.client, pharmacy, after_thaw))["valid"] is True


async def test_every_verification_is_in_the_holders_history(world: World, holder: Holder) -> None:
    hall = await new_verifier(world, SERVICE_HALL)
    code = (await fetch_code(world.client, holder))["code"]
    await present(world.client, hall, code)
    await present(world.client, hall, code)
    history = await world.client.get("/holder/v1/verifications", headers=holder.headers())
    assert history.status_code == 200, history.text
    page = history.json()
    assert page["total"] == 2 and [item["result"] for item in page["items"]] == [
        "already_used",
        "valid",
    ]
    assert all(
        item["verifier"].startswith("verifier-") for item in page["items"]
    )  # the institution's name
    paged = await world.client.get(
        "/holder/v1/verifications", params={"limit": 1, "offset": 1}, headers=holder.headers()
    )
    assert [item["result"] for item in paged.json()["items"]] == ["valid"]
    assert (
        await world.client.get(
            "/holder/v1/verifications", params={"limit": 0}, headers=holder.headers()
        )
    ).status_code == 400
    # another holder sees none of it
    other = await world.client.get(
        "/holder/v1/verifications", headers=(await new_holder(world, name="李四")).headers()
    )
    assert other.json()["total"] == 0


async def test_verifiers_must_authenticate(
    world: World, holder: Holder, pharmacy: Verifier
) -> None:
    code = (await fetch_code(world.client, holder))["code"]
    url = "/verifier/v1/verifications"
    cases = [
        ({}, 401, "unauthenticated"),
        (Verifier(pharmacy.client_id, "eccs_wrong").headers(), 401, "invalid_credentials"),
        (Verifier("ve_nobody", "eccs_wrong").headers(), 401, "invalid_credentials"),
        ({"Authorization": "Basic !!!"}, 401, "unauthenticated"),
        (bearer("ecvs_forged"), 401, "token_invalid"),
        (bearer(holder.access_token), 401, "invalid_credentials"),
        (
            Verifier(world.channel["client_id"], world.channel["client_secret"]).headers(),
            403,
            "forbidden",
        ),
    ]
    for headers, status, code_name in cases:
        response = await world.client.post(url, json={"code": code}, headers=headers)
        assert response.status_code == status, (headers, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == code_name
    # none of the refused calls used the code up
    assert (await present(world.client, pharmacy, code))["valid"] is True


async def test_bad_request_bodies_are_problems(world: World, pharmacy: Verifier) -> None:
    url = "/verifier/v1/verifications"
    for body in (
        b"",
        b"not json",
        b"[]",
        b'{"code": 5}',
        b'{"text": "EC1:"}',
        b'{"code": "x", "extra": 1}',
    ):
        response = await world.client.post(
            url, content=body, headers={**pharmacy.headers(), "Content-Type": "application/json"}
        )
        assert response.status_code == 400, (body, response.text)
        assert response.json()["code"] in ("malformed_request", "validation_failed")


async def test_a_page_session_verifies_with_the_verifiers_entitlements(
    world: World, holder: Holder, hall: Verifier
) -> None:
    session = await world.client.post("/verifier/v1/session", headers=hall.headers())
    assert session.status_code == 200 and session.headers["cache-control"].startswith("no-store")
    token = session.json()["access_token"]
    assert token.startswith("ecvs_") and session.json()["entitlements"] == SERVICE_HALL
    response = await world.client.post(
        "/verifier/v1/verifications",
        json={"code": (await fetch_code(world.client, holder))["code"]},
        headers=bearer(token),
    )
    assert response.json()["fields"]["full_name"] == holder.person["name"]
    assert (await world.client.post("/verifier/v1/session")).status_code == 401


async def test_two_verifiers_at_once_exactly_one_wins(
    world: World, holder: Holder, pharmacy: Verifier, hall: Verifier
) -> None:
    for _ in range(5):
        code = (await fetch_code(world.client, holder))["code"]
        results = await asyncio.gather(
            *(present(world.client, v, code) for v in (pharmacy, hall, pharmacy, hall))
        )
        assert sorted(r["valid"] for r in results) == [False, False, False, True]
        assert {r["reason"] for r in results if not r["valid"]} == {"already_used"}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:", max_size=240).map(
            lambda t: PREFIX + t
        ),
        st.binary(min_size=20, max_size=200).map(lambda b: PREFIX + base45.b45encode(b).decode()),
    )
)
async def test_any_text_gets_a_reason_never_a_500(
    world: World, pharmacy: Verifier, text: str
) -> None:
    response = await world.client.post(
        "/verifier/v1/verifications", json={"code": text}, headers=pharmacy.headers()
    )
    assert response.status_code == 200, response.text
    assert response.json()["valid"] is False and response.json()["reason"] in REASONS


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(index=st.integers(0, 10_000), bit=st.integers(0, 7))
async def test_any_bit_flip_is_refused(
    world: World, holder: Holder, pharmacy: Verifier, index: int, bit: int
) -> None:
    code = (await fetch_code(world.client, holder))["code"]
    raw = bytearray(base45.b45decode(code.removeprefix(PREFIX)))
    raw[index % len(raw)] ^= 1 << bit
    result = await present(world.client, pharmacy, PREFIX + base45.b45encode(bytes(raw)).decode())
    assert result["valid"] is False and result["reason"] in REASONS and result["fields"] == {}
