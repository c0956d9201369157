"""The holder's timeline: the whole record of use of every card the person ever held.

A person's cards form a lineage (a lost card replaced by a new one, with a new card id and a new
pseudonym; the e-card keeps its id and moves to the new card).  The timeline reads, for all of
them, the records the other domains keep:

=====================  ===================================================================
kind                   source, and how it is found
=====================  ===================================================================
verification           ``code_verification`` by each card's pseudonym (as the code names it)
terminal_acceptance    ``terminal_record`` by reference: a card's ``chip_reference`` (kind
                       ``card``) or the id of an HCE certificate provisioned for one of the
                       cards (kind ``hce``).  An offline ``qr`` record names only its code,
                       which the platform cannot tie to a card, so it is not shown.
login                  the audit rows of the holder's answers to a scan-to-login
                       (``oidc.login.approve`` / ``oidc.login.deny``), by the person's e-cards
consent_access         ``consent_access`` of the person's consents
card_event             ``card_status_event`` of each card
=====================  ===================================================================

Each source is asked for the ``limit + 1`` newest rows older than the cursor, with an indexed
condition (migration ``terminal_2026_12_03t14_40_00``), and the pages are merged
(:func:`ecard.timeline.cursor.newest`): a page costs a few small indexed reads, never the whole
history.  Reading one's own record is not audited: the caller is the holder.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from piccolo.columns import Column
from piccolo.custom_types import Combinable

from ecard.auth import HolderPrincipal
from ecard.codes.tables import CodeVerification
from ecard.codes.trust import card_pseudonym
from ecard.consent.tables import ConsentAccess
from ecard.crypto.identity import mask_card_number
from ecard.errors import AppError
from ecard.oidc.tables import OidcClient
from ecard.platform import Platform
from ecard.registry.tables import ApiClient, AuditEvent, Card, CardStatusEvent, ECard
from ecard.terminal.tables import HceCertificate, Terminal, TerminalRecord
from ecard.timeline import schemas
from ecard.timeline.cursor import (
    CursorInvalid,
    Position,
    bounds,
    decode_cursor,
    encode_cursor,
    from_micros,
    micros,
    newest,
)

PAGE_MAX = 100
LOGIN_ACTIONS = {"oidc.login.approve": "approved", "oidc.login.deny": "denied"}

# Ranks break ties between sources at the same microsecond (higher first); each source's row ids
# are of one type, which a cursor must match.
RANK_CARD_EVENT, RANK_VERIFICATION, RANK_TERMINAL, RANK_LOGIN, RANK_CONSENT = 4, 3, 2, 1, 0
ID_TYPES: dict[int, type] = {
    RANK_CARD_EVENT: int,
    RANK_VERIFICATION: int,
    RANK_TERMINAL: int,
    RANK_LOGIN: int,
    RANK_CONSENT: str,
}
SECOND, MILLISECOND, MICRO = 1_000_000, 1_000, 1  # microseconds per stored unit of each time column

Entry = tuple[Position, Any]  # a position and a partly built item: the page's names are added last


@dataclass(frozen=True)
class Lineage:
    """Every card of one person, and what records name them by."""

    person_id: str
    masked: dict[str, str]  # card id -> masked card number
    pseudonyms: dict[str, str]  # pseudonym (hex) -> card id
    chip_references: dict[str, str]  # chip reference -> card id
    hce_certificates: dict[str, str]  # HCE certificate id -> card id
    ecards: tuple[str, ...]


def _after(
    condition: Combinable,
    time_column: Column,
    id_column: Column,
    cursor: Position | None,
    rank: int,
    unit: int,
) -> Combinable:
    """``condition``, narrowed to the rows that come after ``cursor`` in the timeline's order."""
    return (
        condition
        if cursor is None
        else condition & _older(time_column, id_column, cursor, rank, unit)
    )


def _older(
    time_column: Column, id_column: Column, cursor: Position, rank: int, unit: int
) -> Combinable:
    """Rows of one source that come after ``cursor`` in the timeline's order: older, or as old
    and lower in (rank, id).  Always led by a plain range on the time (``<`` or ``<=``), which the
    database uses as the index condition: a deep page starts where the cursor is, it does not
    skip every newer row."""
    b = bounds(cursor, rank, unit)
    as_db: Callable[[int], Any] = from_micros if unit == MICRO else int
    older = time_column < as_db(b.strict)
    if b.exact is None or b.same_time == "none":
        return older
    if b.same_time == "all":
        return time_column <= as_db(b.exact)
    same = (time_column == as_db(b.exact)) & (id_column < cursor.id)
    return (time_column <= as_db(b.exact)) & (older | same)


def _utc(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


class TimelineService:
    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def lineage(self, holder: HolderPrincipal) -> Lineage:
        """The cards of the person whose e-card the holder uses (e-card → its card → the person)."""
        row = (
            await ECard.select(ECard.card.person.as_alias("person"))
            .where(ECard.id == holder.ecard_id)
            .first()
        )
        if row is None:
            raise AppError("ecard_not_found")
        person_id = row["person"]
        cards = await Card.select(Card.id, Card.card_number, Card.chip_reference).where(
            Card.person == person_id
        )
        card_ids = [c["id"] for c in cards]
        ecards = await ECard.select(ECard.id).where(ECard.card.is_in(card_ids)) if card_ids else []
        certificates = (
            await HceCertificate.select(HceCertificate.id, HceCertificate.card).where(
                HceCertificate.card.is_in(card_ids)
            )
            if card_ids
            else []
        )
        key = self.platform.pseudonym_key
        return Lineage(
            person_id=person_id,
            masked={c["id"]: mask_card_number(c["card_number"]) for c in cards},
            pseudonyms={card_pseudonym(key, c["id"]).hex(): c["id"] for c in cards},
            chip_references={c["chip_reference"]: c["id"] for c in cards if c["chip_reference"]},
            hce_certificates={c["id"]: c["card"] for c in certificates},
            ecards=tuple(e["id"] for e in ecards),
        )

    async def timeline(
        self, holder: HolderPrincipal, limit: int, before: str | None
    ) -> schemas.TimelinePage:
        """The ``limit`` newest items older than ``before`` (a ``next`` of an earlier page), newest
        first, and the cursor of the page after, if any.  Raises ``validation_failed`` for a limit
        outside 1..100 and ``timeline_cursor_invalid`` for a cursor this service did not give."""
        if not 1 <= limit <= PAGE_MAX:
            raise AppError("validation_failed", f"limit must be 1..{PAGE_MAX}")
        try:
            cursor = decode_cursor(before, ID_TYPES) if before is not None else None
        except CursorInvalid as exc:
            raise AppError("timeline_cursor_invalid", str(exc)) from None
        lineage = await self.lineage(holder)
        fetch = limit + 1
        readers: list[Awaitable[list[Entry]]] = [
            *(
                self._verifications(lineage, pseudonym, cursor, fetch)
                for pseudonym in lineage.pseudonyms
            ),
            self._terminal_acceptances(lineage, cursor, fetch),
            self._logins(lineage, cursor, fetch),
            self._consent_accesses(lineage, cursor, fetch),
            self._card_events(lineage, cursor, fetch),
        ]
        # one after the other: a page holds one pooled connection at a time, however many cards
        page, more = newest([await read for read in readers], limit)
        items = await self._named([item for _, item in page])
        return schemas.TimelinePage(
            items=items, limit=limit, next=encode_cursor(page[-1][0]) if more and page else None
        )

    # --- the sources: each reads its ``fetch`` newest rows after the cursor, by an indexed
    # condition
    @staticmethod
    async def _verifications(
        lineage: Lineage, pseudonym: str, cursor: Position | None, fetch: int
    ) -> list[Entry]:
        """One card at a time: ``(pseudonym, at, id)`` is indexed, so each read is a range scan."""
        v = CodeVerification
        rows = (
            await v.select(v.id, v.at, v.verifier, v.result, v.region)
            .where(_after(v.pseudonym == pseudonym, v.at, v.id, cursor, RANK_VERIFICATION, MICRO))
            .order_by(v.at, v.id, ascending=False)
            .limit(fetch)
        )
        card = lineage.masked[lineage.pseudonyms[pseudonym]]
        return [
            (
                Position(micros(_utc(r["at"])), RANK_VERIFICATION, r["id"]),
                schemas.TimelineVerification(
                    at=_utc(r["at"]),
                    card=card,
                    verifier_id=r["verifier"],
                    verifier_name=None,
                    result=r["result"],
                    region=r["region"],
                ),
            )
            for r in rows
        ]

    @staticmethod
    async def _terminal_acceptances(
        lineage: Lineage, cursor: Position | None, fetch: int
    ) -> list[Entry]:
        t = TerminalRecord
        mine: list[Combinable] = []
        if lineage.chip_references:
            mine.append((t.kind == "card") & t.reference.is_in(sorted(lineage.chip_references)))
        if lineage.hce_certificates:
            mine.append((t.kind == "hce") & t.reference.is_in(sorted(lineage.hce_certificates)))
        if not mine:
            return []
        condition = mine[0] if len(mine) == 1 else mine[0] | mine[1]
        rows = (
            await t.select(t.id, t.accepted_at, t.terminal, t.reference, t.kind, t.result, t.reason)
            .where(_after(condition, t.accepted_at, t.id, cursor, RANK_TERMINAL, SECOND))
            .order_by(t.accepted_at, t.id, ascending=False)
            .limit(fetch)
        )
        entries: list[Entry] = []
        for r in rows:
            by_reference = (
                lineage.chip_references if r["kind"] == "card" else lineage.hce_certificates
            )
            at = from_micros(r["accepted_at"] * SECOND)
            entries.append(
                (
                    Position(r["accepted_at"] * SECOND, RANK_TERMINAL, r["id"]),
                    schemas.TimelineTerminalAcceptance(
                        at=at,
                        card=lineage.masked[by_reference[r["reference"]]],
                        terminal_id=r["terminal"],
                        terminal_name=None,
                        institution=None,
                        medium=r["kind"],
                        result=r["result"],
                        reason=r["reason"] or None,
                    ),
                )
            )
        return entries

    @staticmethod
    async def _logins(lineage: Lineage, cursor: Position | None, fetch: int) -> list[Entry]:
        """The audit rows of the holder's answers; ``(actor_id, at, id)`` is indexed."""
        if not lineage.ecards:
            return []
        a = AuditEvent
        rows = (
            await a.select(a.id, a.at, a.action, a.target_id, a.detail)
            .where(
                _after(
                    a.actor_id.is_in(list(lineage.ecards))
                    & (a.actor_kind == "holder")
                    & a.action.is_in(sorted(LOGIN_ACTIONS)),
                    a.at,
                    a.id,
                    cursor,
                    RANK_LOGIN,
                    MICRO,
                )
            )
            .order_by(a.at, a.id, ascending=False)
            .limit(fetch)
        )
        return [
            (
                Position(micros(_utc(r["at"])), RANK_LOGIN, r["id"]),
                schemas.TimelineLogin(
                    at=_utc(r["at"]),
                    relying_party_id=r["target_id"],
                    relying_party_name=None,
                    result=LOGIN_ACTIONS[r["action"]],
                    device=bool(_json(r["detail"], {}).get("device")),
                ),
            )
            for r in rows
        ]

    @staticmethod
    async def _consent_accesses(
        lineage: Lineage, cursor: Position | None, fetch: int
    ) -> list[Entry]:
        c = ConsentAccess
        rows = (
            await c.select(
                c.id,
                c.at_ms,
                c.scopes,
                c.consent,
                c.consent.relying_party.as_alias("relying_party"),
            )
            .where(
                _after(
                    c.consent.person == lineage.person_id,
                    c.at_ms,
                    c.id,
                    cursor,
                    RANK_CONSENT,
                    MILLISECOND,
                )
            )
            .order_by(c.at_ms, c.id, ascending=False)
            .limit(fetch)
        )
        return [
            (
                Position(r["at_ms"] * MILLISECOND, RANK_CONSENT, r["id"]),
                schemas.TimelineConsentAccess(
                    at=from_micros(r["at_ms"] * MILLISECOND),
                    consent_id=r["consent"],
                    relying_party_id=r["relying_party"],
                    relying_party_name=None,
                    scopes=[str(s) for s in _json(r["scopes"], [])],
                ),
            )
            for r in rows
        ]

    @staticmethod
    async def _card_events(lineage: Lineage, cursor: Position | None, fetch: int) -> list[Entry]:
        e = CardStatusEvent
        rows = (
            (
                await e.select(e.id, e.at, e.card, e.from_status, e.to_status)
                .where(
                    _after(
                        e.card.is_in(sorted(lineage.masked)),
                        e.at,
                        e.id,
                        cursor,
                        RANK_CARD_EVENT,
                        MICRO,
                    )
                )
                .order_by(e.at, e.id, ascending=False)
                .limit(fetch)
            )
            if lineage.masked
            else []
        )
        return [
            (
                Position(micros(_utc(r["at"])), RANK_CARD_EVENT, r["id"]),
                schemas.TimelineCardEvent(
                    at=_utc(r["at"]),
                    card=lineage.masked[r["card"]],
                    status=r["to_status"],
                    from_status=r["from_status"],
                ),
            )
            for r in rows
        ]

    # --- names: one read per kind of party, for the page only ------------------------------
    @staticmethod
    async def _named(items: list[Any]) -> list[schemas.TimelineItem]:
        client_ids = {i.verifier_id for i in items if isinstance(i, schemas.TimelineVerification)}
        client_ids |= {
            i.relying_party_id for i in items if isinstance(i, schemas.TimelineConsentAccess)
        }
        terminal_ids = {
            i.terminal_id for i in items if isinstance(i, schemas.TimelineTerminalAcceptance)
        }
        oidc_ids = {i.relying_party_id for i in items if isinstance(i, schemas.TimelineLogin)}
        clients = _by_id(
            await ApiClient.select(ApiClient.id, ApiClient.name).where(
                ApiClient.id.is_in(sorted(client_ids))
            )
            if client_ids
            else []
        )
        terminals = {
            r["id"]: r
            for r in (
                await Terminal.select(
                    Terminal.id, Terminal.institution, Terminal.client.name.as_alias("name")
                ).where(Terminal.id.is_in(sorted(terminal_ids)))
                if terminal_ids
                else []
            )
        }
        relying_parties = _by_id(
            await OidcClient.select(OidcClient.id, OidcClient.name).where(
                OidcClient.id.is_in(sorted(oidc_ids))
            )
            if oidc_ids
            else []
        )
        for item in items:
            if isinstance(item, schemas.TimelineVerification):
                item.verifier_name = clients.get(item.verifier_id)
            elif isinstance(item, schemas.TimelineConsentAccess):
                item.relying_party_name = clients.get(item.relying_party_id)
            elif isinstance(item, schemas.TimelineLogin):
                item.relying_party_name = relying_parties.get(item.relying_party_id)
            elif (
                isinstance(item, schemas.TimelineTerminalAcceptance)
                and item.terminal_id in terminals
            ):
                item.terminal_name = terminals[item.terminal_id]["name"]
                item.institution = terminals[item.terminal_id]["institution"]
        return items


def _by_id(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {r["id"]: r["name"] for r in rows}


def _json(value: object, default: Any) -> Any:
    """A JSON column as read (text on both backends, already decoded on some drivers)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return default
    return value if value is not None else default
