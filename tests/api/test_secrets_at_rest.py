"""Secrets at rest (issue 16 §3, §7): ``Idempotency-Key`` records hold their responses encrypted
and expire; database files are owner-only; a client without a usable stored secret cannot log in."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import httpx
import pytest

from ecard import idempotency
from ecard.crypto.fields import secret_digest, secrets_match
from ecard.partners.tables import PartnerCredential
from ecard.registry.tables import ApiClient, IdempotencyRecord
from ecard.settings import Settings, SettingsError, load_settings
from ecard.store import db
from tests.helpers import World, basic, identity_number


async def _raw_rows() -> list[bytes]:
    """Every idempotency row as raw bytes, every column, as the database returns it."""
    rows = await IdempotencyRecord.raw("SELECT * FROM idempotency_record")
    return [
        b"|".join(
            bytes(v) if isinstance(v, (bytes, bytearray, memoryview)) else str(v).encode()
            for v in row.values()
        )
        for row in rows
    ]


def _database_files(settings: Settings) -> list[Path]:
    path = settings.sqlite_path
    return [
        p
        for p in (path, *(path.with_name(path.name + s) for s in db.SQLITE_COMPANIONS))
        if p.exists()
    ]


async def test_replayable_responses_hold_no_secret_in_cleartext(
    world: World, settings: Settings
) -> None:
    client = world.client
    # a new client's secret
    name = f"rp-{uuid.uuid4().hex[:8]}"
    body = {"kind": "relying_party", "name": name}
    headers = {**world.op(), "Idempotency-Key": f"client-{uuid.uuid4().hex}"}
    first = await client.post("/operator/v1/clients", json=body, headers=headers)
    assert first.status_code == 201, first.text
    client_secret = first.json()["client_secret"]
    # a holder's access and refresh tokens, and a full identity number
    holder = await world.person_with_card()
    issue = {
        **{k: holder[k] for k in ("name", "identity_number", "card_number")},
        "evidence": world.evidence_for(holder),
    }
    channel_headers = {
        **basic(world.channel["client_id"], world.channel["client_secret"]),
        "Idempotency-Key": f"ecard-{uuid.uuid4().hex}",
    }
    issued = await client.post("/channel/v1/ecards", json=issue, headers=channel_headers)
    assert issued.status_code == 201, issued.text
    session = issued.json()["session"]
    number = identity_number()
    person_headers = {**world.op(), "Idempotency-Key": f"person-{uuid.uuid4().hex}"}
    person = await client.post(
        "/operator/v1/persons",
        json={"name": "王五", "gender": "1", "identity_number": number, "region": "330000"},
        headers=person_headers,
    )
    assert person.status_code == 201, person.text

    secrets = [
        client_secret,
        session["access_token"],
        session["refresh_token"],
        number,
        holder["identity_number"],
    ]
    rows = await _raw_rows()
    assert len(rows) >= 3
    for row in rows:
        for secret in secrets:
            assert secret.encode() not in row
    assert not any(b"client_secret" in row or b"refresh_token" in row for row in rows)
    if settings.is_sqlite:  # nor anywhere in the database's files
        for path in _database_files(settings):
            content = path.read_bytes()
            assert not any(secret.encode() in content for secret in secrets[:3]), path

    # replays still answer the first response, byte for byte
    again = await client.post("/operator/v1/clients", json=body, headers=headers)
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") == "true"
    assert again.content == first.content
    again = await client.post("/channel/v1/ecards", json=issue, headers=channel_headers)
    assert again.status_code == 201 and again.content == issued.content
    again = await client.post(
        "/operator/v1/persons",
        json={"name": "王五", "gender": "1", "identity_number": number, "region": "330000"},
        headers=person_headers,
    )
    assert again.status_code == 201 and again.content == person.content
    # the same key with another body is still a conflict, not a replay
    other = await client.post(
        "/operator/v1/clients", json={**body, "name": name + "x"}, headers=headers
    )
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"


async def test_records_expire_after_the_ttl(world: World, settings: Settings) -> None:
    client = world.client
    name = f"rp-{uuid.uuid4().hex[:8]}"
    key = f"exp-{uuid.uuid4().hex}"
    headers = {**world.op(), "Idempotency-Key": key}
    before = idempotency._now_ms()
    first = await client.post(
        "/operator/v1/clients", json={"kind": "relying_party", "name": name}, headers=headers
    )
    assert first.status_code == 201
    (row,) = await IdempotencyRecord.select().where(IdempotencyRecord.key.like(f"%|{key}"))
    ttl_ms = settings.idempotency_ttl * 1000
    assert before + ttl_ms <= row["expires_ms"] <= idempotency._now_ms() + ttl_ms
    assert settings.idempotency_ttl == 86_400

    await IdempotencyRecord.update({IdempotencyRecord.expires_ms: idempotency._now_ms() - 1}).where(
        IdempotencyRecord.key == row["key"]
    )
    # expired: the same request runs again (the name is taken now: 409), it is not replayed
    same = await client.post(
        "/operator/v1/clients", json={"kind": "relying_party", "name": name}, headers=headers
    )
    assert same.headers.get("idempotent-replayed") is None
    assert same.status_code == 409 and first.json()["client_secret"] not in same.text
    # and the key is free for a new request (no conflict with the expired record's body)
    fresh = await client.post(
        "/operator/v1/clients", json={"kind": "relying_party", "name": name + "2"}, headers=headers
    )
    assert fresh.status_code == 201 and fresh.headers.get("idempotent-replayed") is None
    assert fresh.json()["id"] != first.json()["id"]
    replay = await client.post(
        "/operator/v1/clients", json={"kind": "relying_party", "name": name + "2"}, headers=headers
    )
    assert replay.headers.get("idempotent-replayed") == "true" and replay.content == fresh.content


async def test_expired_records_are_purged(world: World) -> None:
    client = world.client
    keys = [f"purge-{uuid.uuid4().hex}" for _ in range(3)]
    for key in keys:
        response = await client.post(
            "/operator/v1/clients",
            json={"kind": "verifier", "name": f"v-{uuid.uuid4().hex[:8]}"},
            headers={**world.op(), "Idempotency-Key": key},
        )
        assert response.status_code == 201
    await IdempotencyRecord.update({IdempotencyRecord.expires_ms: 1}).where(
        IdempotencyRecord.key.like("%|purge-%")
    )
    idempotency._next_sweep.clear()  # the once-a-minute throttle
    response = await client.post(
        "/operator/v1/clients",
        json={"kind": "verifier", "name": f"v-{uuid.uuid4().hex[:8]}"},
        headers={**world.op(), "Idempotency-Key": f"trigger-{uuid.uuid4().hex}"},
    )
    assert response.status_code == 201
    left = await IdempotencyRecord.select(IdempotencyRecord.key).where(
        IdempotencyRecord.expires_ms <= idempotency._now_ms()
    )
    assert left == []
    assert await IdempotencyRecord.count().where(IdempotencyRecord.key.like("%|trigger-%")) == 1


async def test_a_body_moved_to_another_record_is_not_replayed(world: World) -> None:
    client = world.client
    first_body = {"kind": "relying_party", "name": f"rp-{uuid.uuid4().hex[:8]}"}
    first_key, second_key = f"a-{uuid.uuid4().hex}", f"b-{uuid.uuid4().hex}"
    first = await client.post(
        "/operator/v1/clients",
        json=first_body,
        headers={**world.op(), "Idempotency-Key": first_key},
    )
    second = await client.post(
        "/operator/v1/clients",
        json={"kind": "relying_party", "name": f"rp-{uuid.uuid4().hex[:8]}"},
        headers={**world.op(), "Idempotency-Key": second_key},
    )
    assert first.status_code == second.status_code == 201
    (source,) = await IdempotencyRecord.select().where(IdempotencyRecord.key.like(f"%|{first_key}"))
    # the second record takes the first one's digest and sealed body: a swap at rest
    await IdempotencyRecord.update(
        {
            IdempotencyRecord.body: bytes(source["body"]),
            IdempotencyRecord.request_digest: source["request_digest"],
        }
    ).where(IdempotencyRecord.key.like(f"%|{second_key}"))
    swapped = await client.post(
        "/operator/v1/clients",
        json=first_body,
        headers={**world.op(), "Idempotency-Key": second_key},
    )
    assert swapped.headers.get("idempotent-replayed") is None
    assert first.json()["client_secret"] not in swapped.text
    assert swapped.status_code == 409  # it ran again, and the name is taken


def test_idempotency_ttl_setting() -> None:
    assert load_settings({}).idempotency_ttl == 86_400
    assert load_settings({"ECARD_IDEMPOTENCY_TTL": "3600"}).idempotency_ttl == 3600
    for bad in ("0", "59", str(31 * 86_400), "soon"):
        with pytest.raises(SettingsError, match="ECARD_IDEMPOTENCY_TTL"):
            load_settings({"ECARD_IDEMPOTENCY_TTL": bad})


# --- database files are owner-only ----------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_database_files_and_var_are_owner_only(tmp_path: Path, keys_dir: str) -> None:
    from ecard.platform import open_platform

    old = os.umask(0o022)  # a usual umask: without care the files would be 0644, the folder 0755
    try:
        database = tmp_path / "var" / "sub" / "ecard.db"
        settings = load_settings(
            {"ECARD_KEYS_DIR": keys_dir, "ECARD_DATABASE_URL": f"sqlite:///{database}"}
        )
        platform = await open_platform(settings, migrate=True)
        try:
            await IdempotencyRecord.count()
            await ApiClient.count()
            async with (
                platform.engine.transaction()
            ):  # a write: WAL and shared memory files exist now
                await IdempotencyRecord.delete().where(IdempotencyRecord.key == "none")
            assert _mode(tmp_path / "var") == 0o700
            assert _mode(tmp_path / "var" / "sub") == 0o700
            files = _database_files(settings)
            assert database in files and database.with_name("ecard.db-wal") in files
            for path in files:
                assert _mode(path) == 0o600, (path, oct(_mode(path)))
        finally:
            await platform.close()
    finally:
        os.umask(old)


def test_an_existing_readable_database_is_tightened(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)  # noqa: S103 - the readable state this test tightens
    database = shared / "old.db"
    for path in (database, shared / "old.db-wal", shared / "old.db-shm"):
        path.write_bytes(b"")
        os.chmod(path, 0o644)
    db.make_private_sqlite_file(database)
    assert _mode(shared) == 0o755  # an existing folder is not ours to change
    for path in (database, shared / "old.db-wal", shared / "old.db-shm"):
        assert _mode(path) == 0o600


# --- a client without a usable secret fails closed ------------------------------------------------


def test_secrets_match_fails_closed() -> None:
    assert secrets_match("s3cret", secret_digest("s3cret"))
    assert not secrets_match("s3cret", secret_digest("other"))
    for stored in (
        None,
        "",
        "x",
        secret_digest("x" * 64).upper(),
        secret_digest("x" * 64)[:-1],
        " " * 64,
    ):
        assert not secrets_match("x" * 64, stored)
        assert not secrets_match("", stored)


@pytest.mark.parametrize("stored", [None, "", "not-a-digest"])
async def test_client_without_a_stored_secret_cannot_authenticate(
    client: httpx.AsyncClient, stored: str | None
) -> None:
    client_id = f"ch-{uuid.uuid4().hex[:12]}"
    await ApiClient.insert(
        ApiClient(
            id=client_id,
            kind="channel",
            name=f"no-secret-{client_id}",
            capabilities='{"channel": {}}',
            status="live",
            regions='["330000"]',
            entitlements="[]",
        )
    )
    await PartnerCredential.insert(  # a damaged or imported row: the digest missing or malformed
        PartnerCredential(
            id=uuid.uuid4().hex,
            application=client_id,
            kind="secret",
            secret_digest=stored,
            created_at=0,
        )
    )
    body = {"name": "张三", "identity_number": identity_number(), "card_number": "C0000000001"}
    for password in ("x" * 64, "", "x" * 43, "None", "not-a-digest"):
        response = await client.post(
            "/channel/v1/ecards", json=body, headers=basic(client_id, password)
        )
        assert response.status_code == 401, (password, response.text)
        assert response.json()["code"] in {
            "invalid_credentials",
            "unauthenticated",
        }  # "" is no credential at all


def test_a_new_keys_directory_is_owner_only(tmp_path: Path) -> None:
    from ecard.crypto.keyring import Keyring
    from ecard.store.keyfiles import save_keyring

    old = os.umask(0o022)
    try:
        path = save_keyring(tmp_path / "keys" / "province", Keyring.create(["330000"]))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "keys") == 0o700 and _mode(tmp_path / "keys" / "province") == 0o700
    assert _mode(path) == 0o600
