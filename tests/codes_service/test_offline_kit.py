"""The offline kit over HTTP: root key, trust list, revocation list (latest, by version, delta)
and the terminal package, each signed by the root key and served with an ETag (304 on a match)."""

from __future__ import annotations

import asyncio
import time

from ecard.offline import (
    apply_revocation_delta,
    load_offline_package,
    load_revocation_list,
    parse_code,
    verify,
)
from tests.codes_service.conftest import (
    Holder,
    fetch_code,
    fetch_revocations,
    report,
    root_public_key,
    trust_store,
)
from tests.helpers import World

KIT = (
    "/offline/v1/root-key",
    "/offline/v1/trust-list",
    "/offline/v1/revocations",
    "/offline/v1/package",
)


async def test_every_document_has_an_etag_and_a_match_gets_304(world: World) -> None:
    for path in KIT:
        first = await world.client.get(path)
        assert first.status_code == 200, (path, first.text)
        tag = first.headers["etag"]
        assert tag.startswith('"') and first.headers["cache-control"].startswith("public, max-age=")
        again = await world.client.get(path)
        assert (
            again.headers["etag"] == tag and again.content == first.content
        )  # stable between re-signings
        cached = await world.client.get(path, headers={"If-None-Match": f'"other", {tag}'})
        assert cached.status_code == 304 and cached.content == b"" and cached.headers["etag"] == tag
        stale = await world.client.get(path, headers={"If-None-Match": '"not-it"'})
        assert stale.status_code == 200 and stale.content == first.content


async def test_the_trust_list_names_every_issuer(world: World, holder: Holder) -> None:
    now = int(time.time())
    store = await trust_store(world.client, now)
    assert {"330000", "110000"} <= store.regions
    code = (await fetch_code(world.client, holder))["code"]
    key = store.by_short_id[parse_code(code).claims.key_id]
    assert key.entry.region == "330000" and key.entry.status == "active" and key.entry.issuer_name


async def test_revocation_versions_and_deltas(world: World, holder: Holder) -> None:
    now = int(time.time())
    code = (await fetch_code(world.client, holder))["code"]
    store, root = await trust_store(world.client, now), await root_public_key(world.client)
    before = await fetch_revocations(world.client, now)
    old_tag = (await world.client.get("/offline/v1/revocations")).headers["etag"]
    assert verify(code, store, before, now).ok
    await report(world, holder, "lost")
    await asyncio.sleep(1.1)  # the published list follows the registry within a second
    after = await fetch_revocations(world.client, now)
    assert after.version == before.version + 1
    assert verify(code, store, after, now).reason == "revoked"
    assert (await world.client.get("/offline/v1/revocations")).headers["etag"] != old_tag
    # the old version is still served, as it was published: the same bytes, so the same ETag
    old = await world.client.get(f"/offline/v1/revocations/{before.version}")
    assert old.status_code == 200
    served = load_revocation_list(old.text, root, now)
    assert (served.version, served.digest, served.by_card) == (
        before.version,
        before.digest,
        before.by_card,
    )
    assert served.issued_at == before.issued_at and old.headers["etag"] == old_tag
    # a terminal holding the old version downloads only the change
    delta = await world.client.get(
        "/offline/v1/revocations/delta", params={"from_version": before.version}
    )
    assert delta.status_code == 200 and delta.headers["content-type"].startswith("application/jose")
    updated = apply_revocation_delta(before, delta.text, root, now)
    assert updated.version == after.version and updated.digest == after.digest
    assert verify(code, store, updated, now).reason == "revoked"
    assert len(delta.content) < 2_000
    cached = await world.client.get(
        "/offline/v1/revocations/delta",
        params={"from_version": before.version},
        headers={"If-None-Match": delta.headers["etag"]},
    )
    assert cached.status_code == 304
    # the card back in use: a new version without it
    await report(world, holder, "active")
    await asyncio.sleep(1.1)
    latest = await fetch_revocations(world.client, now)
    assert latest.version == after.version + 1 and verify(code, store, latest, now).ok


async def test_bad_versions_are_problems(world: World) -> None:
    latest = (await fetch_revocations(world.client, int(time.time()))).version
    cases = {
        f"/offline/v1/revocations/{latest + 5}": (404, "revocation_version_not_found"),
        "/offline/v1/revocations/0": (404, "revocation_version_not_found"),
        f"/offline/v1/revocations/delta?from_version={latest}": (
            404,
            "revocation_version_not_found",
        ),
        "/offline/v1/revocations/delta?from_version=0": (400, "validation_failed"),
        "/offline/v1/revocations/delta?from_version=abc": (400, "validation_failed"),
        "/offline/v1/revocations/delta": (400, "validation_failed"),
        "/offline/v1/revocations/99999999999999999999": (None, None),
    }
    for path, (status, code) in cases.items():
        response = await world.client.get(path)
        assert response.status_code < 500, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json"), path
        if status is not None:
            assert (response.status_code, response.json()["code"]) == (status, code), (
                path,
                response.text,
            )


async def test_the_package_loads_on_a_terminal(world: World, holder: Holder) -> None:
    now = int(time.time())
    code = (await fetch_code(world.client, holder))["code"]
    response = await world.client.get("/offline/v1/package")
    package = load_offline_package(response.text, await root_public_key(world.client), now)
    assert package.content.limits.max_offline_seconds >= 86_400
    assert verify(code, package.trust, package.revocations, now).ok
    # valid for the whole offline period, unlike the hourly list
    later = now + package.content.limits.max_offline_seconds - 3_600
    assert (
        load_offline_package(response.text, await root_public_key(world.client), later).content
        == package.content
    )
