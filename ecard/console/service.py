"""What the console shows that no single API service answers as it is: the audit trail filtered
by actor and time as well, the offline package terminals hold now, and the ledger's anchors.

Everything else the console shows comes straight from the services the API uses
(:class:`ecard.registry.service.RegistryService`, :class:`ecard.partners.service.PartnerService`,
:class:`ecard.terminal.service.TerminalService`, :class:`ecard.directory.service.DirectoryService`,
:func:`ecard.consent.ledger_bridge.verify_ledger`), with their permission checks, field masking and
audit of reads.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

from ecard.codes.service import CodeService
from ecard.errors import AppError
from ecard.offline.package import load_offline_package
from ecard.platform import Platform
from ecard.registry import schemas
from ecard.registry.service import RegistryService
from ledger.tables import LedgerAnchor

AUDIT_PAGE = 50
ANCHORS_SHOWN = 50
_ACTOR_KINDS = ("operator", "holder", "channel", "department", "verifier", "terminal", "system")


@dataclass(frozen=True)
class AuditFilters:
    """The audit trail's filters as the console's form sends them, checked."""

    actor: str = ""  # ``kind:id`` or a bare id
    subject: str = ""  # a target id
    action: str = ""
    since: dt.date | None = None
    until: dt.date | None = None

    @property
    def used(self) -> bool:
        return bool(self.actor or self.subject or self.action or self.since or self.until)


def _date(raw: str, name: str) -> dt.date | None:
    if not raw:
        return None
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise AppError("validation_failed", f"{name}: a date as YYYY-MM-DD") from None


def _short(raw: str, name: str, limit: int = 80) -> str:
    value = raw.strip()
    if len(value) > limit or any(ord(c) < 0x20 for c in value):
        raise AppError("validation_failed", f"{name}: at most {limit} printable characters")
    return value


def parse_audit_filters(form: dict[str, str]) -> AuditFilters:
    filters = AuditFilters(
        actor=_short(form.get("actor", ""), "actor"),
        subject=_short(form.get("subject", ""), "subject"),
        action=_short(form.get("action", ""), "action", 40),
        since=_date(form.get("since", ""), "since"),
        until=_date(form.get("until", ""), "until"),
    )
    if filters.since and filters.until and filters.until < filters.since:
        raise AppError("validation_failed", "until is before since")
    return filters


async def audit_trail(platform: Platform, filters: AuditFilters, page: int) -> schemas.Page:
    """A page of the audit trail, newest first, as ``GET /operator/v1/audit`` shapes it
    (``AuditEventView``, the same :meth:`RegistryService.audit_trail`), filtered by actor, subject
    (target id), action and UTC dates."""
    since = dt.datetime.combine(filters.since, dt.time(), dt.UTC) if filters.since else None
    until = (
        dt.datetime.combine(filters.until + dt.timedelta(days=1), dt.time(), dt.UTC)
        if filters.until
        else None
    )
    return await RegistryService(platform).audit_trail(
        target_id=filters.subject or None,
        action=filters.action or None,
        actor=filters.actor or None,
        since=since,
        until=until,
        limit=AUDIT_PAGE,
        offset=(page - 1) * AUDIT_PAGE,
    )


@dataclass(frozen=True)
class PackageSummary:
    """The offline package as a terminal fetches it now, opened with the root public key."""

    version: int
    issued_at: int
    trust_list_version: int
    issuers: list[tuple[str, str, str]]  # (region, key id, state)
    revocation_list_version: int
    revoked_pseudonyms: int
    revoked_cards: int
    max_offline_seconds: int
    max_offline_acceptances: int
    accepted_kinds: list[str]


async def offline_package(codes: CodeService) -> PackageSummary:
    """The signed package ``GET /offline/v1/package`` serves, checked as a terminal checks it."""
    await codes.publisher.federation.refresh()
    token = await codes.publisher.offline_package_token()
    root = codes.platform.keys.ring.root.public_key()
    loaded = load_offline_package(token, root, int(time.time()))
    content = loaded.content
    trust = loaded.trust.content
    return PackageSummary(
        version=content.version,
        issued_at=content.issued_at,
        trust_list_version=trust.version,
        issuers=[(k.region, k.kid, k.status) for k in trust.keys],
        revocation_list_version=loaded.revocations.version,
        revoked_pseudonyms=len(loaded.revocations.by_card),
        revoked_cards=len(loaded.revoked_cards),
        max_offline_seconds=content.limits.max_offline_seconds,
        max_offline_acceptances=content.limits.max_offline_acceptances,
        accepted_kinds=list(content.limits.accepted_kinds),
    )


async def recent_anchors() -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The newest anchoring jobs (one per sealed block) and how many there are by status."""
    rows = (
        await LedgerAnchor.select(
            LedgerAnchor.block_number,
            LedgerAnchor.tree_size,
            LedgerAnchor.status,
            LedgerAnchor.tx_hash,
            LedgerAnchor.chain_block,
            LedgerAnchor.confirmations,
            LedgerAnchor.attempts,
            LedgerAnchor.updated_ms,
        )
        .order_by(LedgerAnchor.block_number, ascending=False)
        .limit(ANCHORS_SHOWN)
    )
    counts: dict[str, int] = {}
    for status in ("pending", "sent", "confirmed", "conflict"):
        counts[status] = await LedgerAnchor.count().where(LedgerAnchor.status == status)
    return rows, counts
