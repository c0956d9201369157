"""``Idempotency-Key`` for creating POSTs: a retried request gets the first response, not a twin.

The operation and the record of its response commit in one transaction, so two racing retries
cannot both create: the loser's transaction rolls back and it answers with the winner's response.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable

import msgspec
from litestar import Response

from ecard.errors import AppError
from ecard.platform import Platform
from ecard.registry.tables import IdempotencyRecord
from ecard.store.db import is_unique_violation

_KEY = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")


async def _stored(record_key: str, digest: str) -> Response | None:
    row = await IdempotencyRecord.select().where(IdempotencyRecord.key == record_key).first()
    if row is None:
        return None
    if row["request_digest"] != digest:
        raise AppError("idempotency_conflict")
    return Response(
        content=bytes(row["body"]),
        status_code=row["status_code"],
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


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
        raise AppError("validation_failed", "Idempotency-Key must be 8–128 characters of [A-Za-z0-9_.:-]")
    record_key = f"{caller}|{key}"
    digest = hashlib.sha256(body).hexdigest()
    if (replay := await _stored(record_key, digest)) is not None:
        return replay
    try:
        async with platform.engine.transaction():
            encoded = msgspec.json.encode(await operation())
            await IdempotencyRecord.insert(
                IdempotencyRecord(key=record_key, request_digest=digest, status_code=status_code, body=encoded)
            ).run()
    except Exception as exc:
        if is_unique_violation(exc) and (replay := await _stored(record_key, digest)) is not None:
            return replay
        raise
    return Response(content=encoded, status_code=status_code, media_type="application/json")
