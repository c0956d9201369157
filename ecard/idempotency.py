"""``Idempotency-Key`` for creating POSTs: a retried request gets the first response, not a twin.

The operation and the record of its response commit in one transaction, so two racing retries
cannot both create: the loser's transaction rolls back and it answers with the winner's response.

Those responses carry secrets (a new client's secret, a holder's access and refresh tokens, full
identity numbers), so a record keeps its body only encrypted with the platform's field key
(AES-256-GCM), the associated data binding it to its record key (caller and Idempotency-Key),
request digest and status: a body moved to another row, or another caller's, does not decrypt.
Records are replayed for ``ECARD_IDEMPOTENCY_TTL`` seconds (a day by default); an expired one is
ignored and deleted, and writers purge every expired record at most once a minute.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable

import msgspec
from litestar import Response

from ecard.crypto.fields import FieldDecryptionError
from ecard.errors import AppError
from ecard.platform import Platform
from ecard.registry.tables import IdempotencyRecord
from ecard.store.db import is_unique_violation

logger = logging.getLogger(__name__)

_KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")
#: at most one purge of expired records per engine this often (seconds)
SWEEP_INTERVAL = 60.0
_next_sweep: dict[int, float] = {}


def _now_ms() -> int:
    return int(time.time() * 1000)


def _context(record_key: str, digest: str, status_code: int) -> str:
    """Associated data of a stored body: unambiguous (JSON), so no two records share it."""
    return msgspec.json.encode(
        ["idempotency_record.body", record_key, digest, status_code]
    ).decode()


async def _forget(record_key: str, expires_ms: int) -> None:
    """Delete this record as it was read (a fresh one written meanwhile by a retry stays)."""
    await IdempotencyRecord.delete().where(
        (IdempotencyRecord.key == record_key) & (IdempotencyRecord.expires_ms == expires_ms)
    )


async def _stored(platform: Platform, record_key: str, digest: str) -> Response | None:
    row = await IdempotencyRecord.select().where(IdempotencyRecord.key == record_key).first()
    if row is None:
        return None
    if row["expires_ms"] <= _now_ms():
        await _forget(record_key, row["expires_ms"])
        return None
    if row["request_digest"] != digest:
        raise AppError("idempotency_conflict")
    try:
        body = platform.field_cipher.decrypt(
            bytes(row["body"]), _context(record_key, digest, row["status_code"])
        )
    except FieldDecryptionError:  # another key, a moved or damaged row: never replay it
        logger.warning(
            "idempotency record did not decrypt; dropped",
            extra={"record": record_key.split("|")[0]},
        )
        await _forget(record_key, row["expires_ms"])
        return None
    return Response(
        content=body.encode(),
        status_code=row["status_code"],
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


async def purge_expired(platform: Platform) -> int:
    """Delete every expired record; returns how many (a read first: an idle purge takes no lock)."""
    now = _now_ms()
    if not await IdempotencyRecord.exists().where(IdempotencyRecord.expires_ms <= now):
        return 0
    rows = (
        await IdempotencyRecord.delete()
        .where(IdempotencyRecord.expires_ms <= now)
        .returning(IdempotencyRecord.key)
    )
    return len(rows)


async def _sweep_now_and_then(platform: Platform) -> None:
    engine = id(platform.engine)
    now = time.monotonic()
    if _next_sweep.get(engine, 0.0) > now:
        return
    _next_sweep[engine] = now + SWEEP_INTERVAL
    try:
        await purge_expired(platform)
    except Exception:  # the response is already committed; the next sweep catches up
        logger.exception("purging expired idempotency records failed")


async def idempotent(
    platform: Platform,
    caller: str,
    key: str | None,
    body: bytes,
    operation: Callable[[], Awaitable[msgspec.Struct]],
    status_code: int = 201,
) -> Response:
    if key is None:
        return Response(await operation(), status_code=status_code)
    if not _KEY.match(key):
        raise AppError(
            "validation_failed", "Idempotency-Key must be 8–128 characters of [A-Za-z0-9_.:-]"
        )
    record_key = f"{caller}|{key}"
    digest = hashlib.sha256(body).hexdigest()
    if (replay := await _stored(platform, record_key, digest)) is not None:
        return replay
    try:
        async with platform.engine.transaction():
            encoded = msgspec.json.encode(await operation())
            sealed = platform.field_cipher.encrypt(
                encoded.decode(), _context(record_key, digest, status_code)
            )
            expires_ms = _now_ms() + platform.settings.idempotency_ttl * 1000
            await IdempotencyRecord.insert(
                IdempotencyRecord(
                    key=record_key,
                    request_digest=digest,
                    status_code=status_code,
                    body=sealed,
                    expires_ms=expires_ms,
                )
            ).run()
    except Exception as exc:
        if (
            is_unique_violation(exc)
            and (replay := await _stored(platform, record_key, digest)) is not None
        ):
            return replay
        raise
    await _sweep_now_and_then(platform)
    return Response(content=encoded, status_code=status_code, media_type="application/json")
