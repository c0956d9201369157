"""The 电子社保卡密码: six digits, set once per person, valid on every channel; trivial ones
refused; wrong attempts lock it with growing delays that survive restarts; reset only through a
channel's 实人 evidence; never logged, never audited."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from ecard.errors import AppError
from ecard.registry import holder_password
from ecard.registry.holder_password import lock_seconds, verify_holder_password
from ecard.registry.tables import AuditEvent, HolderCredential, LivenessEvidence
from tests.front_door.conftest import Clock
from tests.helpers import World, bearer, platform_of

SECRET = "739164"  # no birth date has it as MMDD, YYMMDD or DDMMYY (months 39, 91, 73 …)


async def holder_without_password(
    world: World, channel: dict[str, str] | None = None
) -> tuple[dict, dict[str, str]]:
    person = await world.person_with_card()
    issued = await world.issue(person, channel, password=None)
    return person, bearer(issued["session"]["access_token"])


async def set_password(world: World, headers: dict[str, str], password: str = SECRET):
    return await world.client.post(
        "/holder/v1/password", json={"password": password}, headers=headers
    )


async def attempt(world: World, person: dict, password: str) -> AppError | None:
    try:
        await verify_holder_password(platform_of(world.client), person["person_id"], password)
    except AppError as exc:
        return exc
    return None


async def test_a_holder_sets_the_password_once_and_it_holds_on_every_channel(world: World) -> None:
    person, headers = await holder_without_password(world)
    assert (await world.client.get("/holder/v1/password", headers=headers)).json() == {
        "set": False,
        "locked_until": None,
    }
    assert (await set_password(world, headers)).status_code == 201
    assert (await world.client.get("/holder/v1/password", headers=headers)).json() == {
        "set": True,
        "locked_until": None,
    }
    again = await set_password(world, headers, "582047")
    assert again.status_code == 409 and again.json()["code"] == "password_already_set"
    # another channel's session of the same person: the same password, already set
    other_channel = await world.new_client("channel")
    issued = await world.issue(person, other_channel, password=None)
    other = bearer(issued["session"]["access_token"])
    assert (await world.client.get("/holder/v1/password", headers=other)).json()["set"] is True
    assert (await set_password(world, other, "582047")).status_code == 409
    assert await attempt(world, person, SECRET) is None


async def test_racing_first_sets_leave_one_password(world: World) -> None:
    _, headers = await holder_without_password(world)
    answers = await asyncio.gather(
        *(set_password(world, headers, p) for p in ("582047", "739164", "264810"))
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409]


async def test_trivial_and_malformed_passwords_are_refused(world: World) -> None:
    person, headers = await holder_without_password(world)
    birth = person["identity_number"][6:14]  # YYYYMMDD
    yymmdd, mmdd, ddmmyy = birth[2:], birth[4:], birth[6:] + birth[4:6] + birth[2:4]
    for trivial in (
        "000000",
        "888888",
        "123456",
        "456789",
        "654321",
        "890123",
        yymmdd,
        ddmmyy,
        mmdd + "37",
        "5" + mmdd + "1",
    ):
        response = await set_password(world, headers, trivial)
        assert response.status_code == 400 and response.json()["code"] == "password_too_weak", (
            trivial
        )
        assert trivial not in response.json().get("detail", "")
    for malformed in ("12345", "1234567", "12a456", "", "１２３４５６"):
        response = await set_password(world, headers, malformed)
        assert response.status_code == 400 and response.json()["code"] == "validation_failed", (
            malformed
        )
    assert (await world.client.get("/holder/v1/password", headers=headers)).json()["set"] is False


def test_the_lock_grows_from_a_minute_to_a_day() -> None:
    assert [lock_seconds(n) for n in range(1, 9)] == [0, 0, 60, 120, 240, 480, 960, 1920]
    assert lock_seconds(15) == 86_400 and lock_seconds(10_000) == 86_400


async def test_wrong_attempts_lock_with_growing_delays_and_a_right_one_resets(
    world: World, clock: Clock
) -> None:
    person, headers = await holder_without_password(world)
    assert (await attempt(world, person, SECRET)).code == "password_not_set"
    await set_password(world, headers)
    first, second = await attempt(world, person, "000001"), await attempt(world, person, "000002")
    assert (first.code, first.status, first.extra["left"]) == ("password_invalid", 403, 2)
    assert (second.code, second.extra["left"]) == ("password_invalid", 1)
    third = await attempt(world, person, "000003")
    assert (
        third.code == "password_locked"
        and third.status == 429
        and third.headers["Retry-After"] == "60"
    )
    # locked: even the right password is not checked
    locked = await attempt(world, person, SECRET)
    assert locked.code == "password_locked" and int(locked.headers["Retry-After"]) <= 61
    state = (await world.client.get("/holder/v1/password", headers=headers)).json()
    assert state["set"] and state["locked_until"] >= clock.now + 59
    # the lock lives in the database: a restarted worker sees it too
    [row] = await HolderCredential.select().where(HolderCredential.person == person["person_id"])
    assert row["failures"] == 3 and row["locked_until"] >= clock.now + 59
    clock.advance(61)
    fourth = await attempt(world, person, "000004")
    assert fourth.code == "password_locked" and fourth.headers["Retry-After"] == "120"  # doubled
    clock.advance(60)
    assert (await attempt(world, person, SECRET)).code == "password_locked"  # still locked
    clock.advance(61)
    assert await attempt(world, person, SECRET) is None  # right: the count starts again
    again = await attempt(world, person, "000005")
    assert again.code == "password_invalid" and again.extra["left"] == 2


async def test_racing_wrong_guesses_cannot_pass_the_limit(world: World, clock: Clock) -> None:
    person, headers = await holder_without_password(world)
    await set_password(world, headers)
    answers = await asyncio.gather(*(attempt(world, person, f"10{n:04d}") for n in range(12)))
    codes = [a.code for a in answers]
    assert codes.count("password_invalid") <= 2 and codes.count("password_locked") >= 10
    [row] = await HolderCredential.select().where(HolderCredential.person == person["person_id"])
    assert row["failures"] == 3  # three were checked; the rest were refused unchecked


async def test_reset_through_the_channels_live_person_check(world: World, clock: Clock) -> None:
    person, headers = await holder_without_password(world)
    await set_password(world, headers)
    for n in range(3):
        await attempt(world, person, f"00000{n}")
    assert (await attempt(world, person, SECRET)).code == "password_locked"
    no_evidence = await world.client.post(
        "/holder/v1/password/reset", json={"password": "582047"}, headers=headers
    )
    assert no_evidence.status_code == 400 and no_evidence.json()["code"] == "evidence_required"
    issuance_evidence = world.evidence_for(person, purpose="issuance")
    wrong_purpose = await world.client.post(
        "/holder/v1/password/reset",
        json={"password": "582047", "evidence": issuance_evidence},
        headers=headers,
    )
    assert wrong_purpose.status_code == 400 and wrong_purpose.json()["code"] == "evidence_invalid"
    # evidence signed by another channel than the session's is not this session's check
    other_channel = await world.new_client("channel")
    foreign = world.evidence_for(person, other_channel, purpose="password_reset")
    refused = await world.client.post(
        "/holder/v1/password/reset",
        json={"password": "582047", "evidence": foreign},
        headers=headers,
    )
    assert refused.status_code == 400 and refused.json()["code"] == "evidence_invalid"
    trivial = await world.client.post(
        "/holder/v1/password/reset",
        json={
            "password": "123456",
            "evidence": world.evidence_for(person, purpose="password_reset"),
        },
        headers=headers,
    )
    assert trivial.status_code == 400 and trivial.json()["code"] == "password_too_weak"
    reset = await world.client.post(
        "/holder/v1/password/reset",
        json={
            "password": "582047",
            "evidence": world.evidence_for(person, method="face_compare_police"),
        },
        headers=headers,
    )
    assert reset.status_code == 200, reset.text
    assert reset.json() == {"set": True, "locked_until": None}
    assert (
        await attempt(world, person, SECRET)
    ).code == "password_invalid"  # the old one is gone, the lock too
    assert await attempt(world, person, "582047") is None
    [row] = await LivenessEvidence.select().where(LivenessEvidence.purpose == "password_reset")
    assert row["card"] == person["card_id"] and row["method"] == "face_compare_police"


async def test_the_password_is_never_logged_nor_audited(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    person, headers = await holder_without_password(world)
    await set_password(world, headers)
    await attempt(world, person, "582047")
    await attempt(world, person, SECRET)
    await world.client.post(
        "/holder/v1/password/reset",
        json={
            "password": "264810",
            "evidence": world.evidence_for(person, purpose="password_reset"),
        },
        headers=headers,
    )
    await world.client.post(
        "/holder/v1/password", json={"password": "264810"}, headers=headers
    )  # 409
    rows = await AuditEvent.select()
    text = json.dumps(rows, default=str, ensure_ascii=False)
    actions = {r["action"] for r in rows}
    assert {"holder.password.set", "holder.password.wrong", "holder.password.reset"} <= actions
    [row] = await HolderCredential.select().where(HolderCredential.person == person["person_id"])
    for secret in (SECRET, "582047", "264810"):
        assert secret not in text and secret not in caplog.text
        assert secret not in row["password_hash"]
    assert row["password_hash"].startswith("$argon2id$")


async def test_a_holder_session_is_needed(world: World) -> None:
    assert (await world.client.get("/holder/v1/password")).status_code == 401
    assert (
        await world.client.post("/holder/v1/password", json={"password": SECRET})
    ).status_code == 401


def test_strength_rules_name_the_birth_date() -> None:
    import datetime as dt

    birth = dt.date(1990, 3, 7)
    for trivial in ("900307", "070390", "030712", "120307", "003071"):
        with pytest.raises(AppError) as refused:
            holder_password.check_strength(trivial, birth)
        assert refused.value.code == "password_too_weak", trivial
    holder_password.check_strength("482915", birth)
