"""The cardholder registry (持卡库): persons, cards and their status lifecycle, e-cards bound to
channels, holder sessions, and the real-person-card check (实名实人实卡核验).

Rules kept here:
- an identity number is validated (GB 11643), stored encrypted and looked up by blind index;
- a card changes status only along :data:`ecard.registry.lifecycle.TRANSITIONS`, through
  :class:`ecard.registry.card_life.CardLifeService` (optimistic concurrency, every effect of the
  change in one transaction, audited); a card that stops being usable ends its holders' access
  tokens and codes at once, on every worker;
- an e-card is issued only when name, identity number and card number match an active card,
  to a channel serving the card's region (checked first, so a channel outside it learns nothing
  about the match);
- an operator sees each field of a view as :mod:`ecard.registry.visibility` says for its role,
  and every operator read of personal data is audited (ids and field names, never the values).
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import functools
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ecard.auth import (
    OPERATOR_TOKEN_PREFIX,
    ClientPrincipal,
    HolderPrincipal,
    OperatorPrincipal,
    forget_client,
    new_token,
    revoke_holder_access,
)
from ecard.crypto.fields import blind_index, secret_digest
from ecard.crypto.identity import (
    InvalidIdentityNumber,
    birth_date_of,
    mask_card_number,
    mask_identity_number,
    mask_name,
    normalize_identity_number,
)
from ecard.crypto.passwords import hash_password, needs_rehash, verify_password
from ecard.errors import AppError, rate_limited
from ecard.partners import workflow
from ecard.platform import Platform
from ecard.registry import evidence, lifecycle, schemas, sessions, throttle, visibility
from ecard.registry.audit import audit, new_id
from ecard.registry.card_life import CardLifeService
from ecard.registry.tables import (
    ApiClient,
    AuditEvent,
    Card,
    CardStatusEvent,
    ECard,
    HolderSession,
    Operator,
    OperatorToken,
    Person,
)
from ecard.store.db import as_date, is_unique_violation
from ecard.store.ephemeral import StoreUnavailable
from ecard.terminal.card_model import chip_reference
from ecard.webhooks.outbox import enqueue

#: Statuses in which a card belongs to its holder or waits for them (one such card per person).
IN_USE = tuple(sorted(lifecycle.HELD | lifecycle.STOCK))

MAX_PAGE = 200


@cache
def region_codes() -> frozenset[str]:
    with resources.files("ecard.registry").joinpath("regions.csv").open(encoding="utf-8") as f:
        return frozenset(row["code"] for row in csv.DictReader(f))


def check_region(region: str) -> None:
    if region not in region_codes():
        raise AppError("invalid_region_code", f"{region} is not a province-level region code")


def normalize_id_number(raw: str) -> str:
    try:
        return normalize_identity_number(raw)
    except InvalidIdentityNumber as exc:
        raise AppError("invalid_identity_number", str(exc)) from None


#: Refusals are audited once per burst: the first refusal of an (actor, action, target, reason)
#: in this many seconds writes a row, the rest are counted and the count goes into the next row
#: of the same key (``detail.suppressed``).  At most :data:`REFUSAL_BURSTS_PER_ACTION` such keys
#: get a row of their own per action and window; refusals beyond that (say, a flood with a new
#: client id each time) share one overflow key per action (actor ``system:refusal-overflow``).
REFUSAL_WINDOW = 60.0
REFUSAL_BURSTS_PER_ACTION = 10
_SUPPRESSED_TTL = 7 * 86_400.0  # counts of a key that never recurs are lost after this long
_OVERFLOW_ACTOR = "system:refusal-overflow"


def refusal_key(actor: str, action: str, target_kind: str, target_id: str, reason: str) -> str:
    """The store key naming one burst (tests read it to end a window early)."""
    name = f"{actor}\x00{action}\x00{target_kind}\x00{target_id}\x00{reason}".encode()
    return "audit-burst:" + hashlib.sha256(name).hexdigest()[:32]


async def audit_refusal(
    platform: Platform,
    actor: str,
    action: str,
    target_kind: str,
    target_id: str,
    reason: str = "",
    **detail: Any,
) -> None:
    """Audit a refusal of an unauthenticated or failing caller without letting a flood of them
    flood the trail: one row per burst (see :data:`REFUSAL_WINDOW`), the suppressed count in the
    next row.  When the store is unavailable every refusal is written."""
    store = platform.store
    key = refusal_key(actor, action, target_kind, target_id, reason)
    try:
        if not await store.put_if_absent(key, b"own", REFUSAL_WINDOW):
            if await store.get(key) == b"overflow":
                key = refusal_key(_OVERFLOW_ACTOR, action, target_kind, "*", "")
            await _count_suppressed(platform, key + ":n")
            return
        if not (
            await store.hit(f"audit-bursts:{action}", REFUSAL_WINDOW, REFUSAL_BURSTS_PER_ACTION)
        ).allowed:
            await store.put(key, b"overflow", REFUSAL_WINDOW)
            actor, target_id, reason, detail = _OVERFLOW_ACTOR, "*", "", {}
            key = refusal_key(actor, action, target_kind, target_id, reason)
            if not await store.put_if_absent(key, b"own", REFUSAL_WINDOW):
                await _count_suppressed(platform, key + ":n")
                return
        suppressed = int(await store.take(key + ":n") or b"0")
    except StoreUnavailable:
        suppressed = 0
    await audit(
        actor, action, target_kind, target_id[:40] or "-", reason, suppressed=suppressed, **detail
    )


async def _count_suppressed(platform: Platform, key: str) -> None:
    store = platform.store
    for _ in range(32):
        current = await store.get(key)
        if current is None:
            if await store.put_if_absent(key, b"1", _SUPPRESSED_TTL):
                return
        elif await store.compare_and_set(
            key, current, str(int(current) + 1).encode(), _SUPPRESSED_TTL
        ):
            return


def _union_levels(
    shaped: list[tuple[Any, dict[str, visibility.Level]]],
) -> dict[str, visibility.Level]:
    """The fields a list returned, at their levels (the same for every item of one view and
    role)."""
    levels: dict[str, visibility.Level] = {}
    for _, item_levels in shaped:
        levels.update(item_levels)
    return levels


async def _audit_list(
    actor: str,
    action: str,
    target_kind: str,
    subjects: list[str],
    shaped: list[tuple[Any, dict[str, visibility.Level]]],
    **detail: Any,
) -> None:
    """One audit row for a page of records: the ids returned and the fields shown.  The target is
    the one subject when there is exactly one (so the trail of that id finds the read), else
    ``-``."""
    target = subjects[0] if len(subjects) == 1 else "-"
    await audit(
        actor,
        action,
        target_kind,
        target,
        subjects=subjects,
        fields=_union_levels(shaped),
        **detail,
    )


#: how many matches past the page's offset a person search counts exactly (``Page.total_exact``)
COUNT_CAP = 10_000


def _page(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise AppError("validation_failed", f"limit must be 1..{MAX_PAGE} and offset ≥ 0")
    return limit, offset


@dataclass
class RegistryService:
    platform: Platform

    # --- persons -------------------------------------------------------------------------
    def _person_view(
        self, row: dict, role: str
    ) -> tuple[schemas.PersonView, dict[str, visibility.Level]]:
        """The person as ``role`` may see it, and which fields that returns (for the audit)."""
        values = {
            "id": row["id"],
            "name": row["name"],
            "gender": row["gender"],
            "ethnicity": row["ethnicity"],
            "birth_date": row["birth_date"],
            "region": row["region"],
            "identity_number": None,
            "created_at": row["created_at"],
        }
        if (
            visibility.level("person", "identity_number", role) != visibility.ABSENT
        ):  # decrypt only to show
            values["identity_number"] = self.platform.field_cipher.decrypt(
                bytes(row["id_number_enc"]), f"person:{row['id']}"
            )
        shown, levels = visibility.shape("person", role, values)
        return schemas.PersonView(**shown), levels

    def _index(self, identity_number: str) -> str:
        return blind_index(self.platform.index_key, identity_number)

    async def create_person(
        self, data: schemas.PersonCreate, actor: OperatorPrincipal
    ) -> schemas.PersonView:
        number = normalize_id_number(data.identity_number)
        check_region(data.region)
        person_id = new_id()
        row = {
            "id": person_id,
            "name": data.name.strip(),
            "gender": data.gender,
            "ethnicity": data.ethnicity,
            "birth_date": birth_date_of(number),
            "region": data.region,
            "id_number_enc": self.platform.field_cipher.encrypt(number, f"person:{person_id}"),
            "id_number_index": self._index(number),
        }
        try:
            async with self.platform.engine.transaction():
                await Person.insert(Person(**row)).run()
                await audit(actor.actor, "person.create", "person", person_id)
        except Exception as exc:
            if is_unique_violation(exc):
                raise AppError("person_exists") from None
            raise
        return await self.get_person(person_id, actor)

    async def _person_row(self, person_id: str) -> dict:
        row = await Person.select().where(Person.id == person_id).first()
        if row is None:
            raise AppError("person_not_found")
        return row

    async def get_person(self, person_id: str, actor: OperatorPrincipal) -> schemas.PersonView:
        """One person, shaped for the operator's role; the read is audited before it is returned."""
        view, levels = self._person_view(await self._person_row(person_id), actor.role)
        await audit(actor.actor, "person.read", "person", person_id, fields=levels)
        return view

    async def update_person(
        self, person_id: str, data: schemas.PersonUpdate, actor: OperatorPrincipal
    ) -> schemas.PersonView:
        changes = {
            k: v
            for k, v in {
                "name": data.name,
                "gender": data.gender,
                "region": data.region,
                "ethnicity": data.ethnicity,
            }.items()
            if v is not None
        }
        if data.region:
            check_region(data.region)
        await self._person_row(person_id)
        if changes:
            async with self.platform.engine.transaction():
                await (
                    Person.update({**changes, "updated_at": dt.datetime.now(dt.UTC)})
                    .where(Person.id == person_id)
                    .run()
                )
                await audit(
                    actor.actor, "person.update", "person", person_id, fields=sorted(changes)
                )
        return await self.get_person(person_id, actor)

    async def search_persons(
        self,
        actor: OperatorPrincipal,
        *,
        identity_number: str | None = None,
        name: str | None = None,
        region: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> schemas.Page:
        """A page of persons, shaped for the operator's role.  Filtering by identity number or by
        name singles a person out, so it needs ``pii:full`` (a masked answer would still confirm
        the one candidate); the refusal and every answered search are audited, with the names of
        the filters used and the ids returned, never the values searched for."""
        filters = [
            f
            for f, v in (("identity_number", identity_number), ("name", name), ("region", region))
            if v
        ]
        exact = [f for f in filters if f in visibility.EXACT_SEARCH_FILTERS]
        if exact and not actor.can(visibility.PII_PERMISSION):
            await audit(
                actor.actor,
                "person.search.refused",
                "person",
                "-",
                f"role {actor.role}",
                filters=filters,
            )
            raise AppError(
                "forbidden", f"searching by {' and '.join(exact)} needs {visibility.PII_PERMISSION}"
            )
        limit, offset = _page(limit, offset)
        query = Person.select()
        counted, count = Person.select(Person.id), Person.count()
        conditions = []
        if identity_number:
            conditions.append(
                Person.id_number_index == self._index(normalize_id_number(identity_number))
            )
        if name:
            conditions.append(Person.name == name.strip())
        if region:
            conditions.append(Person.region == region)
        for condition in conditions:
            query = query.where(condition)
            counted, count = counted.where(condition), count.where(condition)
        rows = (
            await query.order_by(Person.created_at).order_by(Person.id).limit(limit).offset(offset)
        )
        shaped = [self._person_view(r, actor.role) for r in rows]
        # a province's region holds millions: an exact count reads all of them (about 1 s at
        # 2.8 million, docs/CAPACITY.md), so past COUNT_CAP the total is a lower bound
        after = len(await counted.limit(COUNT_CAP + 1).offset(offset))
        total = offset + min(after, COUNT_CAP)
        if after == 0 and offset:  # past the end: how far the matches reach
            total = await count
        page = schemas.Page(
            items=[view for view, _ in shaped],
            total=total,
            limit=limit,
            offset=offset,
            total_exact=after <= COUNT_CAP,
        )
        await _audit_list(
            actor.actor, "person.search", "person", [r["id"] for r in rows], shaped, filters=filters
        )
        return page

    # --- cards ---------------------------------------------------------------------------
    @staticmethod
    def _card_view(row: dict, role: str) -> tuple[schemas.CardView, dict[str, visibility.Level]]:
        shown, levels = visibility.shape(
            "card",
            role,
            {
                "id": row["id"],
                "person_id": row["person"],
                "card_number": row["card_number"],
                "region": row["region"],
                "chip_serial": row["chip_serial"],
                "identification_code": row["identification_code"],
                "issue_date": row["issue_date"],
                "expiry_date": row["expiry_date"],
                "status": row["status"],
                "status_version": row["status_version"],
            },
        )
        return schemas.CardView(**shown), levels

    async def create_card(
        self, data: schemas.CardCreate, actor: OperatorPrincipal
    ) -> schemas.CardView:
        check_region(data.region)
        if data.expiry_date <= data.issue_date:
            raise AppError("validation_failed", "expiry_date must be after issue_date")
        await self._person_row(data.person_id)
        card_id = new_id()
        try:
            async with self.platform.engine.transaction():
                if await Card.exists().where(
                    Card.person == data.person_id, Card.status.is_in(list(IN_USE))
                ):
                    raise AppError(
                        "card_already_active", "replace the person's card instead (补换卡)"
                    )
                await Card.insert(
                    Card(
                        id=card_id,
                        person=data.person_id,
                        card_number=data.card_number,
                        region=data.region,
                        chip_serial=data.chip_serial,
                        identification_code=data.identification_code,
                        chip_reference=chip_reference(data.region, data.identification_code),
                        issue_date=data.issue_date,
                        expiry_date=data.expiry_date,
                        status="active",
                    )
                ).run()
                await CardStatusEvent.insert(
                    CardStatusEvent(
                        card=card_id,
                        from_status=None,
                        to_status="active",
                        actor=actor.actor,
                        reason="issued",
                    )
                ).run()
                await audit(actor.actor, "card.create", "card", card_id)
        except Exception as exc:
            if is_unique_violation(exc):
                raise AppError("card_exists") from None
            raise
        return await self.get_card(card_id, actor)

    async def _card_row(self, card_id: str) -> dict:
        row = await Card.select().where(Card.id == card_id).first()
        if row is None:
            raise AppError("card_not_found")
        return row

    async def get_card(self, card_id: str, actor: OperatorPrincipal) -> schemas.CardView:
        """One card, shaped for the operator's role; the read is audited before it is returned."""
        return await self._read_card(card_id, actor.actor, actor.role)

    async def _read_card(self, card_id: str, actor: str, role: str) -> schemas.CardView:
        row = await self._card_row(card_id)
        view, levels = self._card_view(row, role)
        await audit(actor, "card.read", "card", card_id, person=row["person"], fields=levels)
        return view

    async def list_cards(
        self,
        actor: OperatorPrincipal,
        *,
        person_id: str | None,
        status: str | None,
        limit: int,
        offset: int,
    ) -> schemas.Page:
        limit, offset = _page(limit, offset)
        query, count = Card.select(), Card.count()
        if person_id:
            query, count = (
                query.where(Card.person == person_id),
                count.where(Card.person == person_id),
            )
        if status:
            query, count = query.where(Card.status == status), count.where(Card.status == status)
        rows = await query.order_by(Card.created_at).order_by(Card.id).limit(limit).offset(offset)
        shaped = [self._card_view(r, actor.role) for r in rows]
        page = schemas.Page(
            items=[view for view, _ in shaped], total=await count, limit=limit, offset=offset
        )
        filters = [f for f, v in (("person_id", person_id), ("status", status)) if v]
        await _audit_list(
            actor.actor,
            "card.list",
            "card",
            [r["id"] for r in rows],
            shaped,
            persons=sorted({r["person"] for r in rows}),
            filters=filters,
        )
        return page

    async def change_card_status(
        self,
        card_id: str,
        change: schemas.StatusChange,
        actor: str,
        viewer: OperatorPrincipal | None = None,
    ) -> schemas.CardView:
        """Move a card along an allowed transition (:mod:`ecard.registry.card_life` does it, with
        every effect); exactly one of two racing changes wins.

        The card is returned as ``viewer`` may see it (an internal caller without one gets the
        least a role sees), and that read is audited like any other."""
        await CardLifeService(self.platform).change_status(card_id, change, actor)
        return await self._card_after_change(card_id, actor, viewer)

    async def _card_after_change(
        self, card_id: str, actor: str, viewer: OperatorPrincipal | None
    ) -> schemas.CardView:
        if viewer is not None:
            return await self._read_card(card_id, viewer.actor, viewer.role)
        return await self._read_card(card_id, actor, visibility.LEAST_PRIVILEGED_ROLE)

    async def request_replacement(
        self, card_id: str, data: schemas.ReplacementRequest, viewer: OperatorPrincipal
    ) -> schemas.CardView:
        await CardLifeService(self.platform).request_replacement(card_id, data, viewer.actor)
        return await self._card_after_change(card_id, viewer.actor, viewer)

    async def card_history(
        self, card_id: str, actor: OperatorPrincipal
    ) -> list[schemas.StatusEventView]:
        """A card's status events (a card lost, cancelled, its holder deceased): audited reads."""
        card = await self._card_row(card_id)
        rows = (
            await CardStatusEvent.select()
            .where(CardStatusEvent.card == card_id)
            .order_by(CardStatusEvent.id)
        )
        shaped = []
        for r in rows:
            shown, levels = visibility.shape(
                "card_history",
                actor.role,
                {
                    "from_status": r["from_status"],
                    "to_status": r["to_status"],
                    "actor": r["actor"],
                    "reason": r["reason"],
                    "at": r["at"],
                },
            )
            shaped.append((schemas.StatusEventView(**shown), levels))
        await audit(
            actor.actor,
            "card.history.read",
            "card",
            card_id,
            person=card["person"],
            events=len(rows),
            fields=_union_levels(shaped),
        )
        return [view for view, _ in shaped]

    # --- matching a person to a card (实名实人实卡) -----------------------------------------------
    @staticmethod
    def _claimed_number(identity_number: str) -> str:
        try:
            return normalize_identity_number(identity_number)
        except InvalidIdentityNumber:
            raise AppError("invalid_identity_number") from None

    async def _card_by_number(self, card_number: str) -> dict | None:
        """The card with this number, with its holder's name and identity-number index."""
        return (
            await Card.select(Card.all_columns(), Card.person.name, Card.person.id_number_index)
            .where(Card.card_number == card_number.strip().upper())
            .first()
        )

    def _belongs(self, row: dict | None, name: str, number: str) -> bool:
        """Whether the card's holder has this name and identity number (both compared, always)."""
        if row is None:
            return False
        same_number = hmac.compare_digest(
            row["person.id_number_index"].encode(), self._index(number).encode()
        )
        same_name = hmac.compare_digest(row["person.name"].encode(), name.strip().encode())
        return same_number and same_name

    async def _match(self, name: str, identity_number: str, card_number: str) -> dict | None:
        """The card row when all three belong together, else None (without saying which differs)."""
        number = self._claimed_number(identity_number)
        row = await self._card_by_number(card_number)
        return row if self._belongs(row, name, number) else None

    async def check_identity(
        self, data: schemas.IdentityCheckRequest, department: ClientPrincipal
    ) -> schemas.IdentityCheckResult:
        """Yes/no and the card status, nothing more; every ask is recorded."""
        await self._limit(f"idcheck:{department.id}", 60, 600)
        row = await self._match(data.name, data.identity_number, data.card_number)
        result = schemas.IdentityCheckResult(
            match=row is not None, card_status=row["status"] if row else None
        )
        await audit(
            department.actor,
            "identity.check",
            "card",
            row["id"] if row else "-",
            match=result.match,
        )
        return result

    async def _limit(self, key: str, window: int, limit: int) -> None:
        decision = await self.platform.store.hit(key, window, limit)
        if not decision.allowed:
            raise rate_limited(decision.retry_after)

    # --- e-cards and holder sessions -------------------------------------------------------
    async def issue_ecard(
        self, data: schemas.ECardIssue, channel: ClientPrincipal
    ) -> schemas.ECardIssued:
        """One check per rule, in this order: the claimed identity number is well formed; the card
        (found by its number alone) is in a region the channel serves; name and identity number
        belong to it; it is active.  The region comes first so that a channel outside it gets the
        same answer whether or not the three match: it learns at most that a card with this number
        exists elsewhere, never whose it is.  Then the channel's 实人 evidence for this applicant
        (:mod:`ecard.registry.evidence`; after the match, so a mismatch still answers
        ``identity_mismatch``), recorded in ``liveness_evidence`` in the e-card's transaction.
        Every refusal is audited (ids only)."""
        await self._limit(f"issue:{channel.id}", 60, 1200)
        number = self._claimed_number(data.identity_number)
        card = await self._card_by_number(data.card_number)
        if card is not None and not channel.serves(card["region"]):
            await self._limit(f"issue-miss:{channel.id}", 600, 100)  # probing: as a mismatch
            await audit(
                channel.actor, "ecard.issue.refused", "card", card["id"], "region not served"
            )
            raise AppError("channel_region_not_served")
        row = card if self._belongs(card, data.name, number) else None
        if row is None:
            await self._limit(f"issue-miss:{channel.id}", 600, 100)
            await audit(channel.actor, "ecard.issue.refused", "card", "-", "identity mismatch")
            raise AppError("identity_mismatch")
        if row["status"] != "active":
            await audit(channel.actor, "ecard.issue.refused", "card", row["id"], "card not active")
            raise AppError("card_not_active")
        if lifecycle.is_expired(
            as_date(row["expiry_date"]), dt.date.today()
        ):  # renewal is a replacement
            await audit(channel.actor, "ecard.issue.refused", "card", row["id"], "card expired")
            raise AppError("card_expired")
        # 实人: the channel's signed live-person check of this applicant (ecard.registry.evidence)
        try:
            proof = await evidence.accept_evidence(
                self.platform,
                data.evidence,
                channel_id=channel.id,
                identity_number=number,
                region=row["region"],
                purpose="issuance",
            )
        except AppError as exc:
            await audit(channel.actor, "ecard.issue.refused", "card", row["id"], exc.code)
            raise
        async with self.platform.engine.transaction():
            existing = (
                await ECard.select(ECard.id)
                .where(
                    (ECard.card == row["id"])
                    & (ECard.channel == channel.id)
                    & (ECard.status == "active")
                )
                .first()
            )
            ecard_id = existing["id"] if existing else new_id()
            if not existing:
                await ECard.insert(ECard(id=ecard_id, card=row["id"], channel=channel.id)).run()
                await self._tell_other_channels(row["id"], channel.id)
            evidence_id = await evidence.record_evidence(
                proof, ecard_id=ecard_id, card_id=row["id"], purpose="issuance"
            )
            await audit(
                channel.actor,
                "ecard.issue",
                "ecard",
                ecard_id,
                evidence=evidence_id,
                method=proof.method,
                new=not existing,
            )
            tokens = await self._new_session(ecard_id, row["id"], channel.id, data.dpop_jkt)
        return schemas.ECardIssued(ecard=await self.get_ecard(ecard_id), session=tokens)

    @staticmethod
    async def _tell_other_channels(card_id: str, channel_id: str) -> None:
        """``ecard.issued_elsewhere`` to every other channel holding an e-card of the card: issuing
        on a new channel ends nothing silently (the holder sees it in their other apps)."""
        others = await ECard.select(ECard.id, ECard.channel).where(
            (ECard.card == card_id) & (ECard.channel != channel_id) & (ECard.status == "active")
        )
        for other in others:
            await enqueue(
                "ecard.issued_elsewhere",
                other["channel"],
                {"ecard_id": other["id"], "ecard_status": "active"},
            )

    async def _new_session(
        self, ecard_id: str, card_id: str, channel_id: str, jkt: str | None = None
    ) -> schemas.TokenPair:
        """A holder session (:func:`ecard.registry.sessions.new_session`), bound to the device key
        ``jkt`` when given; without one, refused (``dpop_required``) when ``holder_dpop`` is
        ``required``.  Run it in the issuance's transaction."""
        if jkt is None and self.platform.settings.holder_dpop == "required":
            raise AppError("dpop_required")
        return await sessions.new_session(self.platform, ecard_id, card_id, channel_id, jkt=jkt)

    async def refresh_session(
        self, refresh_token: str, dpop: sessions.DpopContext | None = None
    ) -> schemas.TokenPair:
        """:func:`ecard.registry.sessions.refresh_session`."""
        return await sessions.refresh_session(self.platform, refresh_token, dpop)

    async def _revoke_ecard_sessions(self, ecard_id: str, action: str) -> None:
        await sessions.revoke_ecard_sessions(self.platform, ecard_id, action)

    async def end_session(self, holder: HolderPrincipal) -> None:
        await sessions.end_session(self.platform, holder)

    async def get_ecard(self, ecard_id: str) -> schemas.ECardView:
        rows = await ECard.raw(
            "SELECT e.id, e.channel, e.status, e.created_at, c.status AS card_status,"
            " c.card_number, c.region, p.id AS person_id, p.name, p.id_number_enc"
            " FROM ecard e JOIN card c ON c.id = e.card JOIN person p ON p.id = c.person"
            " WHERE e.id = {}",
            ecard_id,
        )
        row = rows[0] if rows else None
        if row is None:
            raise AppError("ecard_not_found")
        number = self.platform.field_cipher.decrypt(
            bytes(row["id_number_enc"]), f"person:{row['person_id']}"
        )
        effective = (
            row["status"]
            if row["status"] != "active"
            else ("active" if row["card_status"] == "active" else "suspended")
        )
        return schemas.ECardView(
            id=row["id"],
            channel_id=row["channel"],
            status=effective,
            card_status=row["card_status"],
            card_number=mask_card_number(row["card_number"]),
            region=row["region"],
            holder_name=mask_name(row["name"]),
            identity_number=mask_identity_number(number),
            created_at=row["created_at"],
        )

    async def unbind_ecard(self, ecard_id: str, actor: str, reason: str) -> schemas.ECardView:
        await revoke_holder_access(self.platform, ecard_id=ecard_id)
        async with self.platform.engine.transaction():
            updated = (
                await ECard.update(
                    {ECard.status: "unbound", ECard.unbound_at: dt.datetime.now(dt.UTC)}
                )
                .where((ECard.id == ecard_id) & (ECard.status == "active"))
                .returning(ECard.id, ECard.channel)
            )
            if not updated:
                raise AppError("ecard_not_active")
            await HolderSession.update(
                {HolderSession.revoked: True, HolderSession.ended_reason: "unbound"}
            ).where((HolderSession.ecard == ecard_id) & (HolderSession.revoked == False))
            await audit(actor, "ecard.unbind", "ecard", ecard_id, reason)
            channel = updated[0]["channel"]
            if not actor.endswith(f":{channel}"):  # the channel knows its own
                await enqueue(
                    "ecard.unbound", channel, {"ecard_id": ecard_id, "by": actor.partition(":")[0]}
                )
        return await self.get_ecard(ecard_id)

    async def channel_ecard(self, ecard_id: str, channel: ClientPrincipal) -> str:
        """The e-card id if it belongs to this channel (a channel never sees another's e-cards)."""
        row = await ECard.select(ECard.channel).where(ECard.id == ecard_id).first()
        if row is None or row["channel"] != channel.id:
            raise AppError("ecard_not_found")
        return ecard_id

    # --- audit ---------------------------------------------------------------------------
    async def audit_trail(
        self,
        *,
        target_id: str | None,
        action: str | None,
        limit: int,
        offset: int,
        actor: str | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
    ) -> schemas.Page:
        """A page of the audit trail, newest first.  ``actor``: ``kind:id`` or an id of any kind;
        ``since`` included, ``until`` excluded."""
        limit, offset = _page(limit, offset)
        conditions: list[Any] = []
        if target_id:
            conditions.append(AuditEvent.target_id == target_id)
        if action:
            conditions.append(AuditEvent.action == action)
        if actor:
            kind, sep, actor_id = actor.partition(":")
            conditions.append(
                (AuditEvent.actor_kind == kind) & (AuditEvent.actor_id == actor_id)
                if sep
                else AuditEvent.actor_id == actor
            )
        if since is not None:
            conditions.append(AuditEvent.at >= since)
        if until is not None:
            conditions.append(AuditEvent.at < until)
        query, count = AuditEvent.select(), AuditEvent.count()
        for condition in conditions:
            query, count = query.where(condition), count.where(condition)
        rows = await query.order_by(AuditEvent.id, ascending=False).limit(limit).offset(offset)
        items = [
            schemas.AuditEventView(
                at=r["at"],
                actor_kind=r["actor_kind"],
                actor_id=r["actor_id"],
                action=r["action"],
                target_kind=r["target_kind"],
                target_id=r["target_id"],
                reason=r["reason"],
                detail=json.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"],
            )
            for r in rows
        ]
        return schemas.Page(items=items, total=await count, limit=limit, offset=offset)


@dataclass
class AccessService:
    """Operators (accounts, login) and machine clients (registration, secrets, status)."""

    platform: Platform

    async def create_operator(self, username: str, password: str, role: str) -> str:
        if role not in ("admin", "registry_admin", "auditor", "readonly"):
            raise AppError("validation_failed", f"unknown role {role}")
        operator_id = new_id()
        try:
            await Operator.insert(
                Operator(
                    id=operator_id,
                    username=username,
                    password_hash=hash_password(password),
                    role=role,
                )
            ).run()
        except Exception as exc:
            if is_unique_violation(exc):
                raise AppError("operator_exists") from None
            raise
        return operator_id

    async def login(self, data: schemas.LoginRequest, client_ip: str) -> schemas.OperatorToken:
        """Throttled per (account, address) with growing delays, per address and, for addresses
        new to the account, per account (:mod:`ecard.registry.throttle`).  Refusals are audited
        once per burst.  A correct password re-hashes a hash of an older scheme or parameters."""
        store, address = self.platform.store, throttle.address_of(client_ip)
        wait = await throttle.admit(store, data.username, client_ip)
        row = await Operator.select().where(Operator.username == data.username).first()
        target = row["id"] if row else "-"  # an unknown name may be a mistyped password: not kept
        if wait is not None:
            await audit_refusal(
                self.platform,
                f"address:{address}",
                "operator.login.refused",
                "operator",
                target,
                "throttled",
            )
            raise rate_limited(wait)
        stored = row["password_hash"] if row else _dummy_hash()
        # always hash (no user enumeration by timing), off the event loop (tens of ms of CPU)
        ok = await asyncio.to_thread(verify_password, data.password, stored)
        if not row or not ok or row["status"] != "active":
            await audit_refusal(
                self.platform,
                f"address:{address}",
                "operator.login.refused",
                "operator",
                target,
                "invalid credentials" if row is None or not ok else "operator not active",
            )
            raise AppError("invalid_credentials")
        await throttle.succeeded(store, data.username, client_ip)
        if needs_rehash(stored):
            new_hash = await asyncio.to_thread(hash_password, data.password)
            await Operator.update({Operator.password_hash: new_hash}).where(
                (Operator.id == row["id"]) & (Operator.password_hash == stored)
            )
        token = new_token(OPERATOR_TOKEN_PREFIX)
        ttl = self.platform.settings.operator_token_ttl
        now = int(time.time())
        async with self.platform.engine.transaction():
            # the operator's ended tokens (expired or revoked) go as a new one is made: the table
            # holds each operator's live tokens and nothing else
            await OperatorToken.delete().where(
                (OperatorToken.operator == row["id"])
                & ((OperatorToken.expires_at <= now) | (OperatorToken.revoked == True))
            )
            await OperatorToken.insert(
                OperatorToken(digest=secret_digest(token), operator=row["id"], expires_at=now + ttl)
            ).run()
        await audit(f"operator:{row['id']}", "operator.login", "operator", row["id"])
        return schemas.OperatorToken(
            access_token=token,
            token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
            expires_in=ttl,
            role=row["role"],
        )

    async def logout(self, operator: OperatorPrincipal) -> None:
        """End the calling token: the very next request with it fails (tokens are checked against
        the database on every request, no cache)."""
        await OperatorToken.update({OperatorToken.revoked: True}).where(
            OperatorToken.digest == operator.token_digest
        )
        await audit(operator.actor, "operator.logout", "operator", operator.id)

    async def revoke_operator_tokens(
        self, operator_id: str, reason: str, actor: OperatorPrincipal
    ) -> schemas.OperatorTokensRevoked:
        """End every live token of an operator at once (a lost laptop, a leaving employee)."""
        if await Operator.select(Operator.id).where(Operator.id == operator_id).first() is None:
            raise AppError("not_found", "no such operator")
        async with self.platform.engine.transaction():
            live = (
                (OperatorToken.operator == operator_id)
                & OperatorToken.revoked.eq(False)
                & (OperatorToken.expires_at >= int(time.time()))
            )
            count = await OperatorToken.count().where(live)
            await OperatorToken.update({OperatorToken.revoked: True}).where(
                OperatorToken.operator == operator_id
            )
            await audit(
                actor.actor,
                "operator.tokens.revoke",
                "operator",
                operator_id,
                reason,
                revoked=count,
            )
        return schemas.OperatorTokensRevoked(operator_id=operator_id, revoked_tokens=count)

    async def create_client(self, data: schemas.ClientCreate, actor: str) -> schemas.ClientView:
        """The older path (``/operator/v1/clients``): a filing with the one capability of
        ``data.kind``, entitlements checked against its catalogue, taken live at once (every step
        recorded in ``filing_step``, audited once as ``client.create``)."""
        from ecard.partners import capabilities
        from ecard.partners import schemas as partner_schemas
        from ecard.partners.service import PartnerService

        for region in data.regions:
            if region != "*":
                check_region(region)
        filed = capabilities.from_kind(data.kind, data.entitlements)
        filing = partner_schemas.FilingCreate(
            name=data.name,
            regions=data.regions,
            capabilities=capabilities.settings_of(filed),
            jwk=data.public_jwk,
        )
        partners = PartnerService(self.platform)
        try:
            view = await partners.file(filing, actor, audit_action="client.create", kind=data.kind)
        except AppError as error:
            if error.code == "application_exists":
                raise AppError("channel_exists", "a client with this name already exists") from None
            raise
        await partners.walk_to(
            view.id,
            "live",
            "registered through /operator/v1/clients (older path): live at once",
            actor,
            audit_action="client.status",
            to="active",
        )
        client = await self.get_client(view.id)
        client.client_secret = view.client_secret
        return client

    async def get_client(self, client_id: str) -> schemas.ClientView:
        row = await ApiClient.select().where(ApiClient.id == client_id).first()
        if row is None:
            raise AppError("channel_not_found", "no such client")
        return schemas.ClientView(
            id=row["id"],
            kind=row["kind"],
            name=row["name"],
            status=workflow.client_status(row["status"]),
            regions=_json(row["regions"]),
            entitlements=_json(row["entitlements"]),
        )

    async def set_client_status(
        self, client_id: str, change: schemas.ClientStatusChange, actor: str
    ) -> schemas.ClientView:
        """The older path: ``active`` resumes (or takes live) the filing, ``disabled`` suspends a
        live one; a filing already in the asked state is left as it is (audited all the same)."""
        from ecard.partners.service import PartnerService

        row = await ApiClient.select(ApiClient.status).where(ApiClient.id == client_id).first()
        if row is None:
            raise AppError("channel_not_found", "no such client")
        if change.status == workflow.client_status(row["status"]) or (
            change.status == "disabled" and row["status"] != workflow.FilingStatus.LIVE
        ):
            await audit(
                actor, "client.status", "client", client_id, change.reason, to=change.status
            )
        else:
            target = "live" if change.status == "active" else "suspended"
            await PartnerService(self.platform).walk_to(
                client_id,
                target,
                change.reason,
                actor,
                audit_action="client.status",
                to=change.status,
            )
        forget_client(client_id)
        return await self.get_client(client_id)


def _json(value: Any) -> list:
    return json.loads(value) if isinstance(value, str) else list(value or [])


@cache
@functools.cache
def _dummy_hash() -> str:
    """A real hash (today's scheme and parameters) to check unknown usernames against, so timing
    does not reveal them (made once: hashing it per attempt would make an unknown name cost twice
    a known one)."""
    return hash_password(secrets.token_hex(8))
