"""Operator accounts (issue 16): tokens that can be ended, a lockout nobody else can cause,
argon2id passwords with transparent re-hashing, and refusals audited per burst, not per request.
On both backends (SQLite + memory store, PostgreSQL + Redis)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from argon2 import PasswordHasher

from ecard.crypto.passwords import legacy_scrypt_hash, needs_rehash, verify_password
from ecard.registry import throttle
from ecard.registry.service import REFUSAL_BURSTS_PER_ACTION, AccessService, refusal_key
from ecard.registry.tables import AuditEvent, Operator
from tests.helpers import World, basic, bearer, platform_of

PASSWORD = "correct horse battery"


@asynccontextmanager
async def from_address(client: httpx.AsyncClient, ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """The same app, as seen from another client address."""
    transport = httpx.ASGITransport(app=client.app, client=(ip, 40000))  # type: ignore[attr-defined]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as other:
        yield other


async def new_operator(world: World, role: str = "registry_admin") -> tuple[str, str]:
    username = f"op-{uuid.uuid4().hex[:8]}"
    operator_id = await AccessService(platform_of(world.client)).create_operator(
        username, PASSWORD, role
    )
    return username, operator_id


async def login(
    client: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.post(
        "/operator/v1/login", json={"username": username, "password": password}
    )


async def token_of(client: httpx.AsyncClient, username: str) -> str:
    response = await login(client, username)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def works(client: httpx.AsyncClient, token: str) -> bool:
    response = await client.get("/operator/v1/cards", headers=bearer(token))
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


async def trail(world: World, **params: str) -> list[dict]:
    response = await world.client.get(
        "/operator/v1/audit", params={"limit": 200, **params}, headers=world.op("auditor")
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


class Clock:
    """Moves the login backoff's clock without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


# --- revocation ---------------------------------------------------------------------------------


async def test_logout_ends_the_calling_token_only(world: World) -> None:
    username, operator_id = await new_operator(world)
    first, second = await token_of(world.client, username), await token_of(world.client, username)
    assert await works(world.client, first) and await works(world.client, second)

    out = await world.client.post("/operator/v1/logout", headers=bearer(first))
    assert out.status_code == 204, out.text
    refused = await world.client.get("/operator/v1/cards", headers=bearer(first))
    assert refused.status_code == 401 and refused.json()["code"] == "token_invalid"
    assert await works(world.client, second)  # the other session of the same operator goes on
    again = await world.client.post("/operator/v1/logout", headers=bearer(first))
    assert again.status_code == 401
    assert any(e["action"] == "operator.logout" for e in await trail(world, target_id=operator_id))


async def test_an_admin_revokes_every_token_of_another_operator_at_once(world: World) -> None:
    username, operator_id = await new_operator(world)
    tokens = [await token_of(world.client, username) for _ in range(2)]
    path = f"/operator/v1/operators/{operator_id}/revoke-tokens"
    body = {"reason": "laptop lost"}

    for role in ("registry_admin", "auditor", "readonly"):  # only admins may
        denied = await world.client.post(path, json=body, headers=world.op(role))
        assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
    assert all([await works(world.client, t) for t in tokens])

    revoked = await world.client.post(path, json=body, headers=world.op())
    assert revoked.status_code == 200, revoked.text
    assert revoked.json() == {"operator_id": operator_id, "revoked_tokens": 2}
    assert not any([await works(world.client, t) for t in tokens])  # the very next request
    events = [
        e
        for e in await trail(world, target_id=operator_id)
        if e["action"] == "operator.tokens.revoke"
    ]
    assert (
        len(events) == 1
        and events[0]["reason"] == "laptop lost"
        and events[0]["detail"]["revoked"] == 2
    )
    assert events[0]["actor_kind"] == "operator"

    assert await works(world.client, await token_of(world.client, username))  # a new login works
    unknown = await world.client.post(
        f"/operator/v1/operators/{uuid.uuid4().hex}/revoke-tokens", json=body, headers=world.op()
    )
    assert unknown.status_code == 404
    no_reason = await world.client.post(path, json={}, headers=world.op())
    assert no_reason.status_code == 400


async def test_a_disabled_operators_tokens_and_password_stop_working(world: World) -> None:
    username, operator_id = await new_operator(world)
    token = await token_of(world.client, username)
    await Operator.update({Operator.status: "disabled"}).where(Operator.id == operator_id)
    assert not await works(world.client, token)
    refused = await login(world.client, username)
    assert refused.status_code == 401 and refused.json()["code"] == "invalid_credentials"
    await Operator.update({Operator.status: "active"}).where(Operator.id == operator_id)
    assert await works(world.client, token)  # not revoked, only suspended while disabled


# --- lockout ------------------------------------------------------------------------------------


async def test_wrong_passwords_from_one_address_cannot_lock_the_owner_out(
    world: World, monkeypatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(throttle, "clock", clock)
    username, _ = await new_operator(world, "admin")
    async with (
        from_address(world.client, "203.0.113.7") as attacker,
        from_address(world.client, "198.51.100.20") as owner,
    ):
        answers = [await login(attacker, username, "wrong") for _ in range(8)]
        assert [a.status_code for a in answers[:5]] == [401] * 5
        assert [a.status_code for a in answers[5:]] == [429] * 3
        assert (
            answers[-1].json()["code"] == "rate_limited"
            and answers[-1].headers["retry-after"] == "1"
        )

        # the owner, elsewhere, is not held: a mistake answers 401, the right password a token
        mistake = await login(owner, username, "typo")
        assert mistake.status_code == 401 and mistake.json()["code"] == "invalid_credentials"
        assert await works(owner, await token_of(owner, username))


async def test_the_delay_doubles_per_failure_and_a_success_resets_it(
    world: World, monkeypatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(throttle, "clock", clock)
    username, _ = await new_operator(world)
    async with (
        from_address(world.client, "2001:db8:7:7::1") as guesser,
        from_address(world.client, "2001:db8:7:7::beef") as same_64,
    ):
        for _ in range(5):
            assert (await login(guesser, username, "wrong")).status_code == 401
        waits = []
        for _ in range(5):
            refused = await login(guesser, username, "wrong")
            assert refused.status_code == 429, refused.text
            waits.append(int(refused.headers["retry-after"]))
            # another address of the same IPv6 /64 is the same guesser
            assert (await login(same_64, username, "wrong")).status_code == 429
            clock.offset += waits[-1] + 0.1
            assert (await login(guesser, username, "wrong")).status_code == 401
        assert waits == [1, 2, 4, 8, 16]
        assert throttle.backoff_delay(1000) == throttle.MAX_DELAY

        refused = await login(guesser, username)  # even the right password waits its turn
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) == 32
        clock.offset += 33
        assert (await login(guesser, username)).status_code == 200
        # the success cleared the pair: five free attempts again
        assert [(await login(guesser, username, "wrong")).status_code for _ in range(5)] == [
            401
        ] * 5


async def test_distributed_guessing_meets_a_ceiling_that_spares_known_addresses(
    world: World, monkeypatch
) -> None:
    monkeypatch.setattr(throttle, "ACCOUNT_LIMIT", 4)
    username, _ = await new_operator(world, "admin")
    async with from_address(world.client, "192.0.2.1") as office:
        assert (await login(office, username)).status_code == 200  # the office address is now known
    statuses = []
    for n in range(6):
        async with from_address(world.client, f"198.18.0.{n + 1}") as bot:
            statuses.append((await login(bot, username, "guess")).status_code)
    assert statuses[:3] == [401] * 3 and statuses[-1] == 429
    async with from_address(world.client, "192.0.2.1") as office:
        assert (await login(office, username)).status_code == 200
        assert (await login(office, username, "typo")).status_code == 401


# --- passwords ----------------------------------------------------------------------------------


async def test_a_scrypt_hash_is_upgraded_to_argon2id_at_the_next_login(world: World) -> None:
    username, operator_id = await new_operator(world)
    legacy = legacy_scrypt_hash(PASSWORD, os.urandom(16))
    assert (
        verify_password(PASSWORD, legacy)
        and not verify_password("wrong", legacy)
        and needs_rehash(legacy)
    )
    await Operator.update({Operator.password_hash: legacy}).where(Operator.id == operator_id)

    assert (await login(world.client, username, "wrong")).status_code == 401
    stored = (
        await Operator.select(Operator.password_hash).where(Operator.id == operator_id).first()
    )["password_hash"]
    assert stored == legacy  # a wrong password changes nothing
    assert (await login(world.client, username)).status_code == 200
    stored = (
        await Operator.select(Operator.password_hash).where(Operator.id == operator_id).first()
    )["password_hash"]
    assert (
        stored.startswith("$argon2id$")
        and not needs_rehash(stored)
        and verify_password(PASSWORD, stored)
    )
    assert (await login(world.client, username)).status_code == 200


async def test_an_argon2id_hash_with_old_parameters_is_rehashed(world: World) -> None:
    username, operator_id = await new_operator(world)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    assert verify_password(PASSWORD, weak) and needs_rehash(weak)
    await Operator.update({Operator.password_hash: weak}).where(Operator.id == operator_id)
    assert (await login(world.client, username)).status_code == 200
    stored = (
        await Operator.select(Operator.password_hash).where(Operator.id == operator_id).first()
    )["password_hash"]
    assert stored != weak and not needs_rehash(stored)


def test_malformed_stored_hashes_fail_closed() -> None:
    for stored in (
        "",
        "plain",
        "scrypt$x",
        "scrypt$4194304$8$1$AAAA$AAAA",
        "$argon2id$v=19$m=1$bad",
        "$2b$12$bcrypt",
    ):
        assert verify_password(PASSWORD, stored) is False
        assert needs_rehash(stored)


# --- audit aggregation --------------------------------------------------------------------------


async def file_live_client(world: World) -> dict[str, str]:
    filed = await world.client.post(
        "/operator/v1/oidc/clients",
        json={
            "name": f"rp-{uuid.uuid4().hex[:8]}",
            "redirect_uris": ["https://rp.example.test/callback"],
            "scopes": ["openid"],
            "client_type": "confidential",
            "token_endpoint_auth_method": "client_secret_basic",
        },
        headers=world.op(),
    )
    assert filed.status_code == 201, filed.text
    for status in ("approved", "live"):
        changed = await world.client.post(
            f"/operator/v1/oidc/clients/{filed.json()['client_id']}/status",
            json={"status": status},
            headers=world.op(),
        )
        assert changed.status_code == 200, changed.text
    return filed.json()


async def test_a_flood_of_bogus_token_requests_is_audited_per_burst(
    world: World, monkeypatch
) -> None:
    monkeypatch.setenv(
        "ECARD_OIDC_POLICY", json.dumps({"failed_client_auth_per_client_5min": 1000})
    )
    rp = await file_live_client(world)
    form = {
        "grant_type": "authorization_code",
        "code": "x",
        "redirect_uri": "https://rp.example.test/callback",
    }
    for _ in range(200):
        answer = await world.client.post(
            "/oidc/token", data=form, headers=basic(rp["client_id"], "eccs_wrong")
        )
        assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"
    rows = await trail(world, action="oidc.client_auth.refused", target_id=rp["client_id"])
    assert len(rows) == 1 and rows[0]["detail"]["suppressed"] == 0

    # the burst's window ends: the next refusal writes a row carrying the count of the last one
    await platform_of(world.client).store.delete(
        refusal_key(
            "client:-",
            "oidc.client_auth.refused",
            "oidc_client",
            rp["client_id"],
            "method client_secret_basic",
        )
    )
    await world.client.post("/oidc/token", data=form, headers=basic(rp["client_id"], "eccs_wrong"))
    rows = await trail(world, action="oidc.client_auth.refused", target_id=rp["client_id"])
    assert len(rows) == 2 and rows[0]["detail"]["suppressed"] == 199


async def test_a_flood_with_a_new_client_id_each_time_is_folded_into_one_overflow_row(
    world: World,
) -> None:
    form = {
        "grant_type": "authorization_code",
        "code": "x",
        "redirect_uri": "https://rp.example.test/callback",
    }
    last = await AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id, ascending=False).first()
    for _ in range(200):
        answer = await world.client.post(
            "/oidc/token", data=form, headers=basic(f"rp_{uuid.uuid4().hex[:24]}", "eccs_x")
        )
        assert answer.status_code == 401
    rows = await AuditEvent.select().where(
        (AuditEvent.id > (last["id"] if last else 0))
        & (AuditEvent.action == "oidc.client_auth.refused")
    )
    assert len(rows) <= REFUSAL_BURSTS_PER_ACTION + 1
    overflow = [r for r in rows if r["actor_id"] == "refusal-overflow"]
    assert len(overflow) == 1 and overflow[0]["target_id"] == "*"


async def test_login_refusals_are_audited_per_burst(world: World, monkeypatch) -> None:
    monkeypatch.setattr(throttle, "clock", Clock())
    username, operator_id = await new_operator(world)
    async with from_address(world.client, "203.0.113.99") as guesser:
        statuses = [(await login(guesser, username, "wrong")).status_code for _ in range(20)]
    assert statuses.count(401) == 5 and statuses.count(429) == 15
    rows = [
        e
        for e in await trail(world, target_id=operator_id)
        if e["action"] == "operator.login.refused"
    ]
    assert sorted(r["reason"] for r in rows) == ["invalid credentials", "throttled"]
    assert {r["actor_kind"] + ":" + r["actor_id"] for r in rows} == {"address:203.0.113.99"}


async def test_ended_tokens_are_removed_when_the_operator_logs_in_again(world: World) -> None:
    """The token table holds live tokens only: a login removes the operator's expired and revoked
    ones (not anybody else's)."""
    from ecard.registry.tables import OperatorToken

    username, operator_id = await new_operator(world)
    other, other_id = await new_operator(world)
    ended, live = await token_of(world.client, username), await token_of(world.client, username)
    await token_of(world.client, other)
    assert (
        await world.client.post("/operator/v1/logout", headers=bearer(ended))
    ).status_code == 204
    await OperatorToken.update({OperatorToken.expires_at: 0}).where(
        OperatorToken.operator == other_id
    )
    expired_rows = await OperatorToken.count().where(OperatorToken.operator == other_id)

    fresh = await token_of(world.client, username)
    rows = await OperatorToken.select(OperatorToken.revoked, OperatorToken.expires_at).where(
        OperatorToken.operator == operator_id
    )
    assert len(rows) == 2 and not any(r["revoked"] for r in rows)  # ``live`` and ``fresh``
    assert await works(world.client, live) and await works(world.client, fresh)
    assert (
        await OperatorToken.count().where(OperatorToken.operator == other_id) == expired_rows == 1
    )
