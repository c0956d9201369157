"""Consent (精准授权): requests, the holder's answer, grants, revocation and the consented data API.

Rules kept here:
- a relying party may ask only for catalogue scopes its entitlements list, for a catalogue purpose
  and a duration within bounds (:func:`check_ask`); it names the holder by the identity number or
  by the pairwise ``sub`` it received when the holder logged in to it (resolved only among the
  subjects issued to that same filing); it cannot learn from the answer whether the person is a
  holder;
- a login may carry a request (``authorization_details``, :mod:`ecard.oidc.authorization`): the
  holder answers it in the login's approval and :func:`answer_at_login` records the request and
  its answer together;
- an answer, a revocation and an access are each one conditional UPDATE of the consent row, so
  a request is answered once, and an access that starts after a revocation committed fails;
- every change writes its ledger event to the outbox in the same transaction; the entry carries
  only the grant's salted commitment, the relying party's id, the event and the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import msgspec

from ecard.auth import ClientPrincipal, HolderPrincipal
from ecard.consent import schemas
from ecard.consent.ledger_bridge import (
    consent_ledger,
    decode_receipt,
    wake_relay,
    write_transaction,
)
from ecard.consent.scopes import (
    MAX_DURATION_SECONDS,
    MIN_DURATION_SECONDS,
    PURPOSES,
    REQUEST_TTL_SECONDS,
    SCOPES,
    unknown_scopes,
)
from ecard.consent.tables import (
    BenefitPayment,
    Consent,
    ConsentAccess,
    ConsentEvent,
    EmploymentRecord,
    InsuranceEnrollment,
)
from ecard.crypto.fields import blind_index
from ecard.crypto.identity import InvalidIdentityNumber, mask_card_number, normalize_identity_number
from ecard.errors import AppError
from ecard.partners import credentials
from ecard.partners.workflow import works
from ecard.platform import Platform
from ecard.registry.holder_password import verify_holder_password
from ecard.registry.tables import ApiClient, Card, Person
from ledger import Event, NotYetSealed, Unavailable, commit
from ledger.verify import verify_history

logger = logging.getLogger("ecard.consent")
_ENDED = {
    "denied": "consent_not_granted",
    "pending": "consent_not_granted",
    "revoked": "consent_revoked",
    "expired": "consent_expired",
}
_BENEFIT_HISTORY = 24
_SWEEP_BATCH = 500


def now_ms() -> int:
    return int(time.time() * 1000)


def _at(ms: int | None) -> dt.datetime | None:
    return None if ms is None else dt.datetime.fromtimestamp(ms / 1000, dt.UTC)


def _json_list(value: Any) -> list[str]:
    return json.loads(value) if isinstance(value, str) else list(value or [])


def _scope_views(scope_ids: list[str]) -> list[schemas.ScopeView]:
    return [
        schemas.ScopeView(s, SCOPES[s].zh, SCOPES[s].en, list(SCOPES[s].fields)) for s in scope_ids
    ]


def effective_status(row: dict[str, Any], at_ms: int) -> str:
    """The status now: a grant or request past its end is expired even before the sweep runs."""
    if row["status"] == "granted" and row["expires_ms"] <= at_ms:
        return "expired"
    if row["status"] == "pending" and row["request_expires_ms"] <= at_ms:
        return "expired"
    return row["status"]


def canonical_bytes(row: dict[str, Any]) -> bytes:
    """The request's canonical form, which the salted ledger commitment binds."""
    return msgspec.json.encode(
        schemas.CanonicalConsent(
            v=1,
            id=row["id"],
            relying_party=row["relying_party"],
            person=row["person"],
            scopes=sorted(_json_list(row["requested_scopes"])),
            purpose_code=row["purpose_code"],
            purpose=row["purpose"],
            recipient=row["recipient"],
            duration_seconds=row["duration_seconds"],
            created_ms=row["created_ms"],
        )
    )


def _new_row(
    party_id: str,
    person_id: str | None,
    scopes: list[str],
    purpose_code: str,
    purpose: str,
    recipient: str,
    duration_seconds: int,
) -> dict[str, Any]:
    """A pending request's row, its salted commitment included."""
    created = now_ms()
    salt = os.urandom(32)
    row: dict[str, Any] = {
        "id": secrets.token_hex(16),
        "relying_party": party_id,
        "person": person_id,
        "requested_scopes": json.dumps(scopes),
        "granted_scopes": "[]",
        "purpose": purpose.strip(),
        "purpose_code": purpose_code,
        "recipient": recipient.strip(),
        "duration_seconds": duration_seconds,
        "status": "pending",
        "created_ms": created,
        "request_expires_ms": created + REQUEST_TTL_SECONDS * 1000,
        "salt": salt,
    }
    row["commitment"] = commit(canonical_bytes(row), salt)
    return row


def catalogue() -> schemas.Catalogue:
    return schemas.Catalogue(
        scopes=_scope_views(list(SCOPES)),
        purposes=[schemas.PurposeView(code, zh, en) for code, (zh, en) in PURPOSES.items()],
        min_duration_seconds=MIN_DURATION_SECONDS,
        max_duration_seconds=MAX_DURATION_SECONDS,
    )


async def _record(
    consent_id: str, event: Event, relying_party: str, commitment: bytes, at_ms: int
) -> int:
    """Queue the ledger entry of a change, inside the change's own transaction (the outbox)."""
    rows = await ConsentEvent.insert(
        ConsentEvent(
            consent=consent_id,
            event=event.value,
            time_ms=at_ms,
            relying_party=relying_party,
            commitment=commitment,
        )
    ).returning(ConsentEvent.id)
    return rows[0]["id"]


def check_ask(
    entitlements: tuple[str, ...] | list[str],
    scopes: list[str],
    purpose_code: str,
    purpose: str,
    duration_seconds: int,
    filed_purposes: Collection[str] = (),
) -> list[str]:
    """The rules every request obeys, in order; the scopes without repeats (in asked order).
    ``filed_purposes``: the purposes the party's filing names (``data.purposes``); when it names
    any, the request's purpose must be one of them (filings of the older path name none)."""
    scopes = list(dict.fromkeys(scopes))
    if unknown := unknown_scopes(scopes):
        raise AppError("consent_scope_unknown", f"unknown scope {unknown[0][:64]!r}")
    if not_allowed := [s for s in scopes if s not in entitlements]:
        raise AppError("consent_scope_not_allowed", f"not entitled to ask for {not_allowed[0]}")
    if purpose_code not in PURPOSES or (purpose_code == "other" and len(purpose.strip()) < 4):
        raise AppError("consent_purpose_unknown")
    if filed_purposes and purpose_code not in filed_purposes:
        raise AppError("consent_purpose_not_filed", f"not filed for the purpose {purpose_code}")
    if not MIN_DURATION_SECONDS <= duration_seconds <= MAX_DURATION_SECONDS:
        raise AppError(
            "consent_duration_out_of_range",
            f"duration_seconds must be {MIN_DURATION_SECONDS}..{MAX_DURATION_SECONDS}",
        )
    return scopes


async def data_party(party_id: str) -> credentials.FilingRecord | None:
    """The filing ``party_id`` as a party that may ask for data: live and filed for ``data``;
    None otherwise (unknown, not live, or filed for other capabilities only)."""
    record = await credentials.filing(party_id)
    if record is None or not works(record.status) or "data" not in record.capabilities:
        return None
    return record


def filed_purposes(record: credentials.FilingRecord | None) -> tuple[str, ...]:
    """The purposes a filing's ``data`` capability names (none: any catalogue purpose)."""
    data = (record.capabilities.get("data") if record is not None else None) or {}
    return tuple(data.get("purposes") or ())


#: the person behind a pairwise ``sub``, among the logins of one filing (its latest login wins;
#: an e-card follows its person's current card, so the card's person is the person)
_PERSON_BY_SUBJECT_SQL = (
    "SELECT c.person FROM oidc_token_family f JOIN ecard e ON e.id = f.ecard_id"
    " JOIN card c ON c.id = e.card WHERE f.client = {} AND f.subject = {}"
    " ORDER BY f.auth_time DESC LIMIT 1"
)


async def live_grant_scopes(platform: Platform, relying_party_id: str, person_id: str) -> set[str]:
    """Scopes this relying party holds a live grant for, for this person (for scan-to-login and
    any other caller that releases data beyond the basic login claims).  Reading data under them
    must still go through :meth:`ConsentService.access` so the access is recorded."""
    at = now_ms()
    rows = await Consent.select(Consent.granted_scopes).where(
        (Consent.relying_party == relying_party_id)
        & (Consent.person == person_id)
        & (Consent.status == "granted")
        & (Consent.expires_ms > at)
    )
    return {scope for row in rows for scope in _json_list(row["granted_scopes"])}


async def live_grant(relying_party_id: str, consent_id: str) -> dict[str, Any] | None:
    """The grant ``consent_id`` of this relying party while it is live (granted, not expired):
    its ``granted_scopes`` (a list), ``purpose_code``, ``purpose`` and ``duration_seconds``;
    None once it was revoked, expired or never granted, or when it is another party's."""
    row = await (
        Consent.select(
            Consent.granted_scopes,
            Consent.purpose_code,
            Consent.purpose,
            Consent.duration_seconds,
        )
        .where(
            (Consent.id == consent_id)
            & (Consent.relying_party == relying_party_id)
            & (Consent.status == "granted")
            & (Consent.expires_ms > now_ms())
        )
        .first()
    )
    if row is None:
        return None
    return {**row, "granted_scopes": _json_list(row["granted_scopes"])}


@dataclass
class ConsentService:
    platform: Platform

    # --- relying party: ask -----------------------------------------------------------------------

    async def create_request(
        self, party: ClientPrincipal, data: schemas.RequestCreate
    ) -> schemas.RequestCreated:
        scopes = check_ask(
            party.entitlements,
            data.scopes,
            data.purpose_code,
            data.purpose,
            data.duration_seconds,
            filed_purposes(await credentials.filing(party.id)),
        )
        if (data.holder.identity_number is None) == (data.holder.sub is None):
            raise AppError(
                "validation_failed", "name the holder by exactly one of sub and identity_number"
            )
        if data.holder.sub is not None:
            person_id = await self._person_by_subject(party.id, data.holder.sub)
        else:
            person_id = await self._person_by_identity_number(data.holder.identity_number or "")
        row = _new_row(
            party.id,
            person_id,
            scopes,
            data.purpose_code,
            data.purpose,
            (data.recipient or party.name),
            data.duration_seconds,
        )
        async with write_transaction(self.platform.engine):
            await Consent.insert(Consent(**row))
            await _record(
                row["id"], Event.REQUESTED, party.id, row["commitment"], row["created_ms"]
            )
        wake_relay(self.platform)
        return schemas.RequestCreated(row["id"], "pending", _at(row["request_expires_ms"]))  # type: ignore[arg-type]

    @staticmethod
    async def _person_by_subject(party_id: str, sub: str) -> str | None:
        """The person this filing's logins know as ``sub``; None when it issued no such subject
        (the request is then kept, reaching nobody, as for an unknown identity number)."""
        rows = await Consent.raw(_PERSON_BY_SUBJECT_SQL, party_id, sub)
        return str(rows[0]["person"]) if rows else None

    async def _person_by_identity_number(self, raw: str) -> str | None:
        try:
            number = normalize_identity_number(raw)
        except InvalidIdentityNumber as exc:
            raise AppError("invalid_identity_number", str(exc)) from None
        index = blind_index(self.platform.index_key, number)
        row = await Person.select(Person.id).where(Person.id_number_index == index).first()
        return None if row is None else row["id"]

    async def request_for_party(
        self, party: ClientPrincipal, consent_id: str
    ) -> schemas.ConsentView:
        row = await self._row(consent_id)
        if row["relying_party"] != party.id:
            raise AppError("consent_not_found")
        return await self._view(row, with_accesses=False)

    # --- holder: answer, list, revoke -------------------------------------------------------------

    async def holder_person(self, holder: HolderPrincipal) -> str:
        row = await Card.select(Card.person).where(Card.id == holder.card_id).first()
        if row is None:
            raise AppError("card_not_found")
        return row["person"]

    async def _holder_row(self, holder: HolderPrincipal, consent_id: str) -> dict[str, Any]:
        """The consent, only if it is addressed to this holder (else: not found, nothing leaks)."""
        row = await self._row(consent_id)
        if row["person"] is None or row["person"] != await self.holder_person(holder):
            raise AppError("consent_not_found")
        return row

    async def pending_for_holder(self, holder: HolderPrincipal) -> list[schemas.ConsentView]:
        at = now_ms()
        rows = (
            await Consent.select()
            .where(
                (Consent.person == await self.holder_person(holder))
                & (Consent.status == "pending")
                & (Consent.request_expires_ms > at)
            )
            .order_by(Consent.created_ms, ascending=False)
        )
        return [await self._view(row, with_accesses=False) for row in rows]

    async def approve(
        self, holder: HolderPrincipal, consent_id: str, approval: schemas.Approval
    ) -> schemas.ConsentView:
        row = await self._holder_row(holder, consent_id)
        requested = _json_list(row["requested_scopes"])
        granted = requested if approval.scopes is None else list(dict.fromkeys(approval.scopes))
        if not set(granted) <= set(requested):
            raise AppError("consent_scopes_not_requested")
        if await data_party(row["relying_party"]) is None:
            raise AppError("client_not_live", "the relying party is no longer live")
        if not approval.password:  # step-up: the 电子社保卡密码, checked before anything is granted
            raise AppError("password_required")
        await verify_holder_password(
            self.platform, row["person"], approval.password, actor=holder.actor
        )
        at = now_ms()
        granted = [s for s in requested if s in granted]  # the request's order
        async with write_transaction(self.platform.engine):
            updated = await Consent.raw(
                "UPDATE consent SET status = 'granted', granted_scopes = {}, answered_ms = {},"
                " starts_ms = {}, expires_ms = {}"
                " WHERE id = {} AND status = 'pending' AND request_expires_ms > {} RETURNING id",
                json.dumps(granted),
                at,
                at,
                at + row["duration_seconds"] * 1000,
                consent_id,
                at,
            )
            if updated:
                await _record(
                    consent_id, Event.GRANTED, row["relying_party"], bytes(row["commitment"]), at
                )
        if not updated:
            raise self._not_pending(row, at)
        wake_relay(self.platform)
        return await self._view(await self._row(consent_id), with_accesses=True)

    async def deny(self, holder: HolderPrincipal, consent_id: str) -> schemas.ConsentView:
        row = await self._holder_row(holder, consent_id)
        at = now_ms()
        async with write_transaction(self.platform.engine):
            updated = await Consent.raw(
                "UPDATE consent SET status = 'denied', answered_ms = {}, ended_ms = {} "
                "WHERE id = {} AND status = 'pending' AND request_expires_ms > {} RETURNING id",
                at,
                at,
                consent_id,
                at,
            )
            if updated:
                await _record(
                    consent_id, Event.DENIED, row["relying_party"], bytes(row["commitment"]), at
                )
        if not updated:
            raise self._not_pending(row, at)
        wake_relay(self.platform)
        return await self._view(await self._row(consent_id), with_accesses=True)

    @staticmethod
    def _not_pending(row: dict[str, Any], at: int) -> AppError:
        if row["status"] == "pending" and row["request_expires_ms"] <= at:
            return AppError("consent_request_expired")
        return AppError("consent_already_answered")

    async def revoke(self, holder: HolderPrincipal, consent_id: str) -> schemas.ConsentView:
        """Effective for the very next access: the access path re-checks the row in its update."""
        row = await self._holder_row(holder, consent_id)
        at = now_ms()
        async with write_transaction(self.platform.engine):
            updated = await Consent.raw(
                "UPDATE consent SET status = 'revoked', ended_ms = {} "
                "WHERE id = {} AND status = 'granted' AND expires_ms > {} RETURNING id",
                at,
                consent_id,
                at,
            )
            if updated:
                await _record(
                    consent_id, Event.REVOKED, row["relying_party"], bytes(row["commitment"]), at
                )
        if not updated:
            raise AppError(
                "consent_not_revocable",
                f"the grant is {effective_status(await self._row(consent_id), at)}",
            )
        wake_relay(self.platform)
        return await self._view(await self._row(consent_id), with_accesses=True)

    async def holder_grants(
        self, holder: HolderPrincipal, status: str | None = None
    ) -> list[schemas.ConsentView]:
        rows = (
            await Consent.select()
            .where(
                (Consent.person == await self.holder_person(holder)) & (Consent.status != "pending")
            )
            .order_by(Consent.created_ms, ascending=False)
        )
        views = [await self._view(row, with_accesses=True) for row in rows]
        return [v for v in views if status is None or v.status == status]

    async def holder_grant(self, holder: HolderPrincipal, consent_id: str) -> schemas.ConsentView:
        return await self._view(await self._holder_row(holder, consent_id), with_accesses=True)

    async def receipts(self, holder: HolderPrincipal, consent_id: str) -> schemas.GrantReceipts:
        row = await self._holder_row(holder, consent_id)
        events = (
            await ConsentEvent.select(
                ConsentEvent.event, ConsentEvent.time_ms, ConsentEvent.seq, ConsentEvent.receipt
            )
            .where(ConsentEvent.consent == consent_id)
            .order_by(ConsentEvent.id)
        )
        ledger = await consent_ledger(self.platform)
        return schemas.GrantReceipts(
            grant_id=consent_id,
            commitment=bytes(row["commitment"]),
            salt=bytes(row["salt"]),
            canonical=canonical_bytes(row),
            log_key_id=ledger.key_id,
            events=[
                schemas.EventReceipt(
                    e["event"], e["time_ms"], e["seq"], decode_receipt(e["receipt"])
                )
                for e in events
            ],
        )

    # --- relying party: read data under a grant ---------------------------------------------------

    async def access(
        self, party: ClientPrincipal, grant_id: str, scopes: list[str] | None
    ) -> schemas.DataView:
        """Serve the fields of ``scopes`` (all granted ones by default) if a live grant covers
        them."""
        return await self._access(party.id, grant_id, scopes)

    async def _access(
        self, party_id: str, grant_id: str, scopes: list[str] | None
    ) -> schemas.DataView:
        if scopes is not None and (unknown := unknown_scopes(scopes)):
            raise AppError("consent_scope_unknown", f"unknown scope {unknown[0][:64]!r}")
        at = now_ms()
        access_id = secrets.token_hex(16)
        async with write_transaction(self.platform.engine):
            rows = await Consent.raw(
                "UPDATE consent SET access_count = access_count + 1 "
                "WHERE id = {} AND relying_party = {} AND status = 'granted' AND expires_ms > {} "
                "RETURNING person, granted_scopes, commitment",
                grant_id,
                party_id,
                at,
            )
            if rows:
                granted = _json_list(rows[0]["granted_scopes"])
                served = granted if scopes is None else list(dict.fromkeys(scopes))
                if not set(served) <= set(granted):
                    raise AppError(
                        "consent_scope_not_granted", "ask only for scopes the grant covers"
                    )
                event_id = await _record(
                    grant_id, Event.ACCESSED, party_id, bytes(rows[0]["commitment"]), at
                )
                await ConsentAccess.insert(
                    ConsentAccess(
                        id=access_id,
                        consent=grant_id,
                        scopes=json.dumps(served),
                        at_ms=at,
                        event=event_id,
                    )
                )
        if not rows:
            row = await Consent.select().where(Consent.id == grant_id).first()
            if row is None or row["relying_party"] != party_id:
                raise AppError("consent_not_found")
            raise AppError(_ENDED[effective_status(row, at)])
        wake_relay(self.platform)
        data = await self._release(rows[0]["person"], served)
        return schemas.DataView(grant_id, access_id, served, _at(at), data)  # type: ignore[arg-type]

    # --- a login that carries a request, and the claims a grant releases at login -----------------

    async def answer_at_login(
        self,
        party_id: str,
        person_id: str,
        asked: list[str],
        purpose_code: str,
        purpose: str,
        duration_seconds: int,
        granted: list[str],
    ) -> str:
        """Record a request a login carried and the holder's answer in that login's approval, in
        one transaction: ``requested``, then ``granted`` (some scopes) or ``denied`` (none) on the
        ledger.  The holder's password was checked by the approval; the party and the request are
        checked again here (live, filed for data, entitled, catalogue purpose and duration).
        Returns the consent id (a grant, or a denied request)."""
        party = await data_party(party_id)
        if party is None:
            raise AppError("client_not_live", "the relying party is no longer live")
        scopes = check_ask(
            party.entitlements,
            asked,
            purpose_code,
            purpose,
            duration_seconds,
            filed_purposes(party),
        )
        if not set(granted) <= set(scopes):
            raise AppError("consent_scopes_not_requested")
        kept = [s for s in scopes if s in set(granted)]  # the request's order
        row = _new_row(
            party_id, person_id, scopes, purpose_code, purpose, party.name, duration_seconds
        )
        at = row["created_ms"]
        if kept:
            row |= {
                "status": "granted",
                "granted_scopes": json.dumps(kept),
                "answered_ms": at,
                "starts_ms": at,
                "expires_ms": at + duration_seconds * 1000,
            }
        else:
            row |= {"status": "denied", "answered_ms": at, "ended_ms": at}
        answer = Event.GRANTED if kept else Event.DENIED
        async with write_transaction(self.platform.engine):
            await Consent.insert(Consent(**row))
            await _record(row["id"], Event.REQUESTED, party_id, row["commitment"], at)
            await _record(row["id"], answer, party_id, row["commitment"], at)
        wake_relay(self.platform)
        return row["id"]

    async def release_at_login(
        self, party_id: str, person_id: str, scope: str
    ) -> dict[str, Any] | None:
        """The fields of ``scope`` for a login's claims (ID token, userinfo), if a live grant of
        this party for this person covers it; the read is recorded as an access of that grant
        (``consent_access`` and an ``accessed`` ledger event), exactly as a read through the data
        API is.  None when no live grant covers it (also when the last one ended meanwhile)."""
        rows = (
            await Consent.select(Consent.id, Consent.granted_scopes)
            .where(
                (Consent.relying_party == party_id)
                & (Consent.person == person_id)
                & (Consent.status == "granted")
                & (Consent.expires_ms > now_ms())
            )
            .order_by(Consent.expires_ms, ascending=False)
        )
        for row in rows:
            if scope not in _json_list(row["granted_scopes"]):
                continue
            try:
                served = await self._access(party_id, row["id"], [scope])
            except AppError:  # revoked or lapsed since the select: try the next grant
                continue
            return served.data[scope]
        return None

    async def _release(self, person_id: str, scopes: list[str]) -> dict[str, Any]:
        """Only the catalogue fields of each scope, read fresh."""
        readers = {
            "identity.basic": self._identity,
            "card.status": self._card_status,
            "insurance.enrollment": self._enrollment,
            "employment.status": self._employment,
            "benefit.payments": self._payments,
        }
        return {scope: await readers[scope](person_id) for scope in scopes}

    async def _identity(self, person_id: str) -> dict[str, Any]:
        row = await Person.select().where(Person.id == person_id).first()
        number = self.platform.field_cipher.decrypt(row["id_number_enc"], f"person:{person_id}")
        return {
            "name": row["name"],
            "gender": row["gender"],
            "birth_date": row["birth_date"].isoformat(),
            "identity_number": number,
        }

    @staticmethod
    async def _card_status(person_id: str) -> dict[str, Any] | None:
        row = (
            await Card.select()
            .where(Card.person == person_id)
            .order_by(Card.created_at, ascending=False)
            .first()
        )
        if row is None:
            return None
        return {
            "card_number_masked": mask_card_number(row["card_number"]),
            "card_status": row["status"],
            "issuer_region": row["region"],
            "expiry_date": row["expiry_date"].isoformat(),
        }

    @staticmethod
    async def _enrollment(person_id: str) -> list[dict[str, Any]]:
        rows = (
            await InsuranceEnrollment.select()
            .where(InsuranceEnrollment.person == person_id)
            .order_by(InsuranceEnrollment.id)
        )
        return [
            {
                "insurance_type": r["insurance_type"],
                "status": r["status"],
                "region": r["region"],
                "since": r["since"].isoformat(),
            }
            for r in rows
        ]

    @staticmethod
    async def _employment(person_id: str) -> dict[str, Any] | None:
        row = (
            await EmploymentRecord.select()
            .where(EmploymentRecord.person == person_id)
            .order_by(EmploymentRecord.since, ascending=False)
            .first()
        )
        return (
            None
            if row is None
            else {
                "status": row["status"],
                "employer": row["employer"],
                "since": row["since"].isoformat(),
            }
        )

    @staticmethod
    async def _payments(person_id: str) -> list[dict[str, Any]]:
        rows = (
            await BenefitPayment.select()
            .where(BenefitPayment.person == person_id)
            .order_by(BenefitPayment.paid_on, ascending=False)
            .limit(_BENEFIT_HISTORY)
        )
        return [
            {
                "benefit_type": r["benefit_type"],
                "period": r["period"],
                "amount_fen": r["amount_fen"],
                "paid_on": r["paid_on"].isoformat(),
            }
            for r in rows
        ]

    async def access_proof(self, party: ClientPrincipal, access_id: str) -> schemas.AccessProof:
        """The grant's ledger history up to this access, checked here as the relying party would."""
        row = (
            await ConsentAccess.select(ConsentAccess.consent.relying_party, ConsentAccess.event)
            .where(ConsentAccess.id == access_id)
            .first()
        )
        if row is None or row["consent.relying_party"] != party.id:
            raise AppError("consent_not_found")
        event = (
            await ConsentEvent.select(ConsentEvent.seq)
            .where(ConsentEvent.id == row["event"])
            .first()
        )
        if event is None or event["seq"] is None:
            raise AppError("ledger_entry_pending", headers={"Retry-After": "1"})
        ledger = await consent_ledger(self.platform)
        try:
            history = await ledger.history_proof(event["seq"])
        except NotYetSealed:
            raise AppError("ledger_entry_pending", headers={"Retry-After": "1"}) from None
        except Unavailable:  # e.g. stored tiles missing: logged by the ledger, fixed by an operator
            raise AppError("ledger_unavailable", headers={"Retry-After": "60"}) from None
        standing = verify_history(history, ledger.public_key)
        return schemas.AccessProof(access_id, event["seq"], history, standing)

    # --- shared -----------------------------------------------------------------------------------

    @staticmethod
    async def _row(consent_id: str) -> dict[str, Any]:
        row = await Consent.select().where(Consent.id == consent_id).first()
        if row is None:
            raise AppError("consent_not_found")
        return row

    async def _view(self, row: dict[str, Any], *, with_accesses: bool) -> schemas.ConsentView:
        party = (
            await ApiClient.select(ApiClient.id, ApiClient.name)
            .where(ApiClient.id == row["relying_party"])
            .first()
        )
        accesses = None
        if with_accesses:
            access_rows = (
                await ConsentAccess.select()
                .where(ConsentAccess.consent == row["id"])
                .order_by(ConsentAccess.at_ms)
            )
            accesses = [
                schemas.AccessView(a["id"], _at(a["at_ms"]), _json_list(a["scopes"]))
                for a in access_rows
            ]  # type: ignore[arg-type]
        return schemas.ConsentView(
            id=row["id"],
            status=effective_status(row, now_ms()),  # type: ignore[arg-type]
            relying_party=schemas.PartyView(party["id"], party["name"]),
            requested_scopes=_scope_views(_json_list(row["requested_scopes"])),
            granted_scopes=_scope_views(_json_list(row["granted_scopes"])),
            purpose_code=row["purpose_code"],
            purpose=row["purpose"],
            recipient=row["recipient"],
            duration_seconds=row["duration_seconds"],
            created_at=_at(row["created_ms"]),  # type: ignore[arg-type]
            request_expires_at=_at(row["request_expires_ms"]),  # type: ignore[arg-type]
            answered_at=_at(row["answered_ms"]),
            starts_at=_at(row["starts_ms"]),
            expires_at=_at(row["expires_ms"]),
            ended_at=_at(row["ended_ms"]),
            access_count=row["access_count"],
            accesses=accesses,
        )


# --- expiry ---------------------------------------------------------------------------------------


async def expire_due(platform: Platform, limit: int = _SWEEP_BATCH) -> int:
    """Record the end of grants (and unanswered requests) past their time: status and ledger
    event.  (The SQL is built from constants; every value is a bound parameter.)"""
    at = now_ms()
    due = (
        "((status = 'granted' AND expires_ms <= {})"
        " OR (status = 'pending' AND request_expires_ms <= {}))"
    )
    if not await Consent.raw(f"SELECT id FROM consent WHERE {due} LIMIT 1", at, at):  # noqa: S608
        return 0  # a read first: an idle sweep never takes SQLite's write lock
    async with write_transaction(platform.engine):
        # the outer condition again: a row answered meanwhile is left alone
        rows = await Consent.raw(
            f"UPDATE consent SET status = 'expired', ended_ms = {{}} WHERE {due} AND id IN ("  # noqa: S608
            f"SELECT id FROM consent WHERE {due} LIMIT {int(limit)})"
            " RETURNING id, relying_party, commitment",
            at,
            at,
            at,
            at,
            at,
        )
        for row in rows:
            await _record(
                row["id"], Event.EXPIRED, row["relying_party"], bytes(row["commitment"]), at
            )
    if rows:
        wake_relay(platform)
    return len(rows)


async def run_expiry_sweep(platform: Platform, stop: asyncio.Event, interval: float) -> None:
    while not stop.is_set():
        try:
            while await expire_due(platform) == _SWEEP_BATCH:
                pass
        except Exception:  # the database is briefly away: the next sweep catches up
            logger.exception("expiry sweep failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)


# --- demo data ------------------------------------------------------------------------------------


async def seed_demo_data(platform: Platform, person_id: str) -> None:
    """Enrollment, employment and a year of pension payments for the demo holder (idempotent)."""
    if await InsuranceEnrollment.exists().where(InsuranceEnrollment.person == person_id):
        return
    person = await Person.select(Person.region).where(Person.id == person_id).first()
    if person is None:
        raise AppError("person_not_found")
    region, since = person["region"], dt.date(2015, 7, 1)
    async with platform.engine.transaction():
        await InsuranceEnrollment.insert(
            *(
                InsuranceEnrollment(
                    person=person_id,
                    insurance_type=kind,
                    status="contributing",
                    region=region,
                    since=since,
                )
                for kind in ("pension", "medical", "unemployment", "injury", "maternity")
            )
        )
        await EmploymentRecord.insert(
            EmploymentRecord(
                person=person_id,
                status="employed",
                employer="演示科技有限公司 (Demo Tech Ltd.)",
                since=since,
            )
        )
        today = dt.date.today()
        await BenefitPayment.insert(
            *(
                BenefitPayment(
                    person=person_id,
                    benefit_type="medical_reimbursement",
                    period=f"{year:04d}-{month:02d}",
                    amount_fen=12_345 + 100 * month,
                    paid_on=dt.date(year, month, 15),
                )
                for year, month in (
                    (
                        (today.year * 12 + today.month - 1 - back) // 12,
                        (today.month - 1 - back) % 12 + 1,
                    )
                    for back in range(1, 13)
                )
            )
        )
