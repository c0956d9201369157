"""Verifier page sessions end when the verifier is disabled (within the client row cache's window,
the same rule as every client credential) and at logout, on every worker."""

from __future__ import annotations

import time

import pytest

from ecard import auth
from ecard.codes.service import CodeService
from ecard.errors import AppError
from ecard.registry.tables import ApiClient
from tests.codes_service.conftest import PHARMACY, Holder, Verifier, fetch_code, new_verifier
from tests.helpers import World, bearer, platform_of


async def open_session(world: World, verifier: Verifier) -> dict[str, str]:
    response = await world.client.post("/verifier/v1/session", headers=verifier.headers())
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


async def verify_with(world: World, session: dict[str, str], holder: Holder) -> int:
    code = (await fetch_code(world.client, holder))["code"]
    response = await world.client.post(
        "/verifier/v1/verifications", json={"code": code}, headers=session
    )
    if response.status_code == 401:
        assert response.json()["code"] == "token_invalid"
    return response.status_code


def expire_client_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every cached client row past its CLIENT_CACHE_SECONDS, without waiting for it."""
    ahead = auth.CLIENT_CACHE_SECONDS + 0.5
    monkeypatch.setattr(auth._client_cache, "_clock", lambda: time.monotonic() + ahead)


async def test_disabling_the_verifier_ends_its_page_sessions(world: World, holder: Holder) -> None:
    verifier = await new_verifier(world, PHARMACY)
    session = await open_session(world, verifier)
    assert await verify_with(world, session, holder) == 200
    disabled = await world.client.post(
        f"/operator/v1/clients/{verifier.client_id}/status",
        json={"status": "disabled", "reason": "contract ended"},
        headers=world.op(),
    )
    assert disabled.status_code == 200, disabled.text
    assert (
        await verify_with(world, session, holder) == 401
    )  # at once on the worker that disabled it


async def test_another_workers_disabling_is_seen_within_the_cache_window(
    world: World, holder: Holder, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = await new_verifier(world, PHARMACY)
    session = await open_session(world, verifier)
    assert await verify_with(world, session, holder) == 200
    # another worker disabled it: this worker's cached row still says active, for at most the window
    await ApiClient.update({ApiClient.status: "suspended"}).where(
        ApiClient.id == verifier.client_id
    )
    expire_client_cache(monkeypatch)
    assert await verify_with(world, session, holder) == 401
    # enabled again: the same session works again (it never outlives its 15 minutes)
    await ApiClient.update({ApiClient.status: "live"}).where(ApiClient.id == verifier.client_id)
    auth.forget_client(verifier.client_id)
    assert await verify_with(world, session, holder) == 200


async def test_logout_ends_the_session_on_every_worker(world: World, holder: Holder) -> None:
    verifier = await new_verifier(world, PHARMACY)
    session, other = await open_session(world, verifier), await open_session(world, verifier)
    assert await verify_with(world, session, holder) == 200
    ended = await world.client.delete("/verifier/v1/session", headers=session)
    assert ended.status_code == 204
    assert await verify_with(world, session, holder) == 401
    another_worker = CodeService(platform_of(world.client))  # no state but the shared store
    with pytest.raises(AppError) as refused:
        await another_worker.verifier_of_session(session["Authorization"].removeprefix("Bearer "))
    assert refused.value.code == "token_invalid"
    assert (await world.client.delete("/verifier/v1/session", headers=session)).status_code == 204
    assert await verify_with(world, other, holder) == 200  # only that session ended
    for headers in ({}, verifier.headers(), bearer("echa_not-a-page-session")):
        refused_logout = await world.client.delete("/verifier/v1/session", headers=headers)
        assert (
            refused_logout.status_code == 401 and "www-authenticate" not in refused_logout.headers
        )
