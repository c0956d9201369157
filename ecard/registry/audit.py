"""The audit trail's writer and the registry's id maker (shared by every registry module)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from ecard.registry.tables import AuditEvent


def new_id() -> str:
    """A random 128-bit id, hex: never sequential, never derived from personal data."""
    return secrets.token_hex(16)


async def audit(
    actor: str, action: str, target_kind: str, target_id: str, reason: str = "", **detail: Any
) -> None:
    """One row of who (``kind:id``) did what to which record, and why.  Ids and field names only,
    never personal data.  Runs inside the caller's transaction when one is open."""
    kind, _, actor_id = actor.partition(":")
    await AuditEvent.insert(
        AuditEvent(
            actor_kind=kind,
            actor_id=actor_id,
            action=action,
            target_kind=target_kind,
            target_id=target_id,
            reason=reason,
            detail=json.dumps(detail, ensure_ascii=False),
        )
    ).run()
