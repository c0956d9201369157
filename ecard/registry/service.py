"""The cardholder registry (持卡库): persons, cards and their status lifecycle, e-cards bound to
channels, holder sessions, and the real-person-card check (实名实人实卡核验).

Rules kept here:
- an identity number is validated (GB 11643), stored encrypted and looked up by blind index;
- a card changes status only along :data:`TRANSITIONS`, with optimistic concurrency, and every
  change is audited; a card that stops being active revokes every holder session of its e-cards
  in the same transaction, so the very next request of any of them fails;
- an e-card is issued only when name, identity number and card number match an active card.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from ecard.auth import (
    CLIENT_SECRET_PREFIX,
    HOLDER_REFRESH_PREFIX,
    OPERATOR_TOKEN_PREFIX,
    ClientPrincipal,
    HolderAccess,
    HolderPrincipal,
    OperatorPrincipal,
    forget_client,
    holder_access_token,
    new_token,
    revoke_holder_access,
)
from ecard.codes.trust import withdraw_codes
from ecard.crypto.fields import blind_index, secret_digest
from ecard.crypto.identity import (
    InvalidIdentityNumber,
    birth_date_of,
    mask_card_number,
    mask_identity_number,
    mask_name,
    normalize_identity_number,
)
from ecard.crypto.passwords import hash_password, verify_password
from ecard.errors import AppError
from ecard.platform import Platform
from ecard.registry import schemas
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
from ecard.store.db import is_unique_violation
from ecard.terminal.card_model import chip_reference

#: Allowed card status changes.  Cancelled and deceased are final.
TRANSITIONS: dict[str, frozenset[str]] = {
    "active": frozenset({"lost", "frozen", "cancelled", "deceased"}),
    "lost": frozenset({"active", "cancelled", "deceased"}),
    "frozen": frozenset({"active", "cancelled", "deceased"}),
    "cancelled": frozenset(),
    "deceased": frozenset(),
}
#: Statuses in which a card still belongs to its holder (one such card per person).
IN_USE = ("active", "lost", "frozen")

MAX_PAGE = 200


def new_id() -> str:
    return secrets.token_hex(16)


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


async def audit(
    actor: str, action: str, target_kind: str, target_id: str, reason: str = "", **detail: Any
) -> None:
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


def _page(limit: int, offset: int) -> tuple[int, int]:
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise AppError("validation_failed", f"limit must be 1..{MAX_PAGE} and offset ≥ 0")
    return limit, offset


@dataclass
class RegistryService:
    platform: Platform

    # --- persons -------------------------------------------------------------------------
    def _person_view(self, row: dict, full_identity: bool) -> schemas.PersonView:
        number = self.platform.field_cipher.decrypt(row["id_number_enc"], f"person:{row['id']}")
        return schemas.PersonView(
            id=row["id"],
            name=row["name"] if full_identity else mask_name(row["name"]),
            gender=row["gender"],
            ethnicity=row["ethnicity"],
            birth_date=row["birth_date"],
            region=row["region"],
            identity_number=number if full_identity else mask_identity_number(number),
            created_at=row["created_at"],
        )

    def _index(self, identity_number: str) -> str:
        return blind_index(self.platform.index_key, identity_number)

    async def create_person(self, data: schemas.PersonCreate, actor: OperatorPrincipal) -> schemas.PersonView:
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
        return self._person_view(await self._person_row(person_id), actor.can("pii:full"))

    async def update_person(
        self, person_id: str, data: schemas.PersonUpdate, actor: OperatorPrincipal
    ) -> schemas.PersonView:
        changes = {k: v for k, v in {
            "name": data.name, "gender": data.gender, "region": data.region, "ethnicity": data.ethnicity
        }.items() if v is not None}
        if data.region:
            check_region(data.region)
        await self._person_row(person_id)
        if changes:
            async with self.platform.engine.transaction():
                await Person.update({**changes, "updated_at": dt.datetime.now(dt.UTC)}).where(
                    Person.id == person_id
                ).run()
                await audit(actor.actor, "person.update", "person", person_id, fields=sorted(changes))
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
        limit, offset = _page(limit, offset)
        query = Person.select()
        count = Person.count()
        conditions = []
        if identity_number:
            conditions.append(Person.id_number_index == self._index(normalize_id_number(identity_number)))
        if name:
            conditions.append(Person.name == name.strip())
        if region:
            conditions.append(Person.region == region)
        for condition in conditions:
            query, count = query.where(condition), count.where(condition)
        rows = await query.order_by(Person.created_at).order_by(Person.id).limit(limit).offset(offset)
        full = actor.can("pii:full")
        return schemas.Page(
            items=[self._person_view(r, full) for r in rows], total=await count, limit=limit, offset=offset
        )

    # --- cards ---------------------------------------------------------------------------
    @staticmethod
    def _card_view(row: dict) -> schemas.CardView:
        return schemas.CardView(
            id=row["id"],
            person_id=row["person"],
            card_number=row["card_number"],
            region=row["region"],
            chip_serial=row["chip_serial"],
            identification_code=row["identification_code"],
            issue_date=row["issue_date"],
            expiry_date=row["expiry_date"],
            status=row["status"],
            status_version=row["status_version"],
        )

    async def create_card(self, data: schemas.CardCreate, actor: OperatorPrincipal) -> schemas.CardView:
        check_region(data.region)
        if data.expiry_date <= data.issue_date:
            raise AppError("validation_failed", "expiry_date must be after issue_date")
        await self._person_row(data.person_id)
        card_id = new_id()
        try:
            async with self.platform.engine.transaction():
                if await Card.exists().where(Card.person == data.person_id, Card.status.is_in(list(IN_USE))):
                    raise AppError("card_already_active", "cancel the old card before issuing a new one")
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
                    CardStatusEvent(card=card_id, from_status=None, to_status="active", actor=actor.actor, reason="issued")
                ).run()
                await audit(actor.actor, "card.create", "card", card_id)
        except Exception as exc:
            if is_unique_violation(exc):
                raise AppError("card_exists") from None
            raise
        return await self.get_card(card_id)

    async def _card_row(self, card_id: str) -> dict:
        row = await Card.select().where(Card.id == card_id).first()
        if row is None:
            raise AppError("card_not_found")
        return row

    async def get_card(self, card_id: str) -> schemas.CardView:
        return self._card_view(await self._card_row(card_id))

    async def list_cards(
        self, *, person_id: str | None, status: str | None, limit: int, offset: int
    ) -> schemas.Page:
        limit, offset = _page(limit, offset)
        query, count = Card.select(), Card.count()
        if person_id:
            query, count = query.where(Card.person == person_id), count.where(Card.person == person_id)
        if status:
            query, count = query.where(Card.status == status), count.where(Card.status == status)
        rows = await query.order_by(Card.created_at).order_by(Card.id).limit(limit).offset(offset)
        return schemas.Page(items=[self._card_view(r) for r in rows], total=await count, limit=limit, offset=offset)

    async def change_card_status(
        self, card_id: str, change: schemas.StatusChange, actor: str
    ) -> schemas.CardView:
        """Move a card along an allowed transition; exactly one of two racing changes wins."""
        row = await self._card_row(card_id)
        version = change.expected_version if change.expected_version is not None else row["status_version"]
        if change.status not in TRANSITIONS[row["status"]]:
            raise AppError(
                "invalid_status_transition", f"{row['status']} → {change.status} is not allowed"
            )
        if change.status != "active":  # the holder's tokens and codes end with the card, on every worker
            await revoke_holder_access(self.platform, card_id=card_id)
            await withdraw_codes(self.platform, card_id)
        async with self.platform.engine.transaction():
            updated = await Card.update(
                {
                    Card.status: change.status,
                    Card.status_version: version + 1,
                    Card.updated_at: dt.datetime.now(dt.UTC),
                }
            ).where(
                (Card.id == card_id) & (Card.status_version == version) & (Card.status == row["status"])
            ).returning(Card.id)
            if not updated:
                raise AppError("status_changed_concurrently")
            await CardStatusEvent.insert(
                CardStatusEvent(
                    card=card_id, from_status=row["status"], to_status=change.status, actor=actor, reason=change.reason
                )
            ).run()
            if change.status != "active":
                await HolderSession.update({HolderSession.revoked: True}).where(
                    HolderSession.ecard.is_in(ECard.select(ECard.id).where(ECard.card == card_id))
                )
            await audit(actor, "card.status", "card", card_id, change.reason, to=change.status)
        return await self.get_card(card_id)

    async def card_history(self, card_id: str) -> list[schemas.StatusEventView]:
        await self._card_row(card_id)
        rows = await CardStatusEvent.select().where(CardStatusEvent.card == card_id).order_by(CardStatusEvent.id)
        return [
            schemas.StatusEventView(
                from_status=r["from_status"], to_status=r["to_status"], actor=r["actor"], reason=r["reason"], at=r["at"]
            )
            for r in rows
        ]

    # --- matching a person to a card (实名实人实卡) -----------------------------------------------
    async def _match(self, name: str, identity_number: str, card_number: str) -> dict | None:
        """The card row when all three belong together, else None (without saying which differs)."""
        try:
            number = normalize_identity_number(identity_number)
        except InvalidIdentityNumber:
            raise AppError("invalid_identity_number") from None
        row = (
            await Card.select(Card.all_columns(), Card.person.name)
            .where((Card.card_number == card_number.strip().upper()) & (Card.person.id_number_index == self._index(number)))
            .first()
        )
        if row is None or not hmac.compare_digest(row["person.name"].encode(), name.strip().encode()):
            return None
        return row

    async def check_identity(
        self, data: schemas.IdentityCheckRequest, department: ClientPrincipal
    ) -> schemas.IdentityCheckResult:
        """Yes/no and the card status, nothing more; every ask is recorded."""
        await self._limit(f"idcheck:{department.id}", 60, 600)
        row = await self._match(data.name, data.identity_number, data.card_number)
        result = schemas.IdentityCheckResult(match=row is not None, card_status=row["status"] if row else None)
        await audit(
            department.actor, "identity.check", "card", row["id"] if row else "-", match=result.match
        )
        return result

    async def _limit(self, key: str, window: int, limit: int) -> None:
        decision = await self.platform.store.hit(key, window, limit)
        if not decision.allowed:
            raise AppError("rate_limited", headers={"Retry-After": str(max(1, int(decision.retry_after + 0.999)))})

    # --- e-cards and holder sessions -------------------------------------------------------
    async def issue_ecard(self, data: schemas.ECardIssue, channel: ClientPrincipal) -> schemas.ECardIssued:
        await self._limit(f"issue:{channel.id}", 60, 1200)
        row = await self._match(data.name, data.identity_number, data.card_number)
        if row is None:
            await self._limit(f"issue-miss:{channel.id}", 600, 100)
            await audit(channel.actor, "ecard.issue.refused", "card", "-", "identity mismatch")
            raise AppError("identity_mismatch")
        if row["status"] != "active":
            await audit(channel.actor, "ecard.issue.refused", "card", row["id"], "card not active")
            raise AppError("card_not_active")
        if not channel.serves(row["region"]):
            raise AppError("channel_region_not_served")
        async with self.platform.engine.transaction():
            existing = await ECard.select(ECard.id).where(
                (ECard.card == row["id"]) & (ECard.channel == channel.id) & (ECard.status == "active")
            ).first()
            ecard_id = existing["id"] if existing else new_id()
            if not existing:
                await ECard.insert(ECard(id=ecard_id, card=row["id"], channel=channel.id)).run()
                await audit(channel.actor, "ecard.issue", "ecard", ecard_id)
            tokens = await self._new_session(ecard_id, row["id"], channel.id)
        return schemas.ECardIssued(ecard=await self.get_ecard(ecard_id), session=tokens)

    async def _new_session(self, ecard_id: str, card_id: str, channel_id: str) -> schemas.TokenPair:
        settings = self.platform.settings
        session_id, issued_at = new_id(), time.time()
        now = int(issued_at)
        access = holder_access_token(
            self.platform,
            HolderAccess(session_id, ecard_id, card_id, channel_id, issued_at, now + settings.holder_access_ttl),
        )
        refresh = new_token(HOLDER_REFRESH_PREFIX)
        await HolderSession.insert(
            HolderSession(
                id=session_id,
                ecard=ecard_id,
                access_digest=secret_digest(access),
                refresh_digest=secret_digest(refresh),
                access_expires=now + settings.holder_access_ttl,
                refresh_expires=now + settings.holder_refresh_ttl,
            )
        ).run()
        return schemas.TokenPair(
            access_token=access,
            refresh_token=refresh,
            token_type="Bearer",
            expires_in=settings.holder_access_ttl,
            refresh_expires_in=settings.holder_refresh_ttl,
        )

    async def refresh_session(self, refresh_token: str) -> schemas.TokenPair:
        """Rotate: the old pair dies; a reused refresh token revokes every session of its e-card."""
        row = await HolderSession.select(
            HolderSession.id, HolderSession.revoked, HolderSession.refresh_expires,
            HolderSession.ecard.id, HolderSession.ecard.status, HolderSession.ecard.channel,
            HolderSession.ecard.card.id, HolderSession.ecard.card.status,
        ).where(HolderSession.refresh_digest == secret_digest(refresh_token)).first()
        if row is None or row["refresh_expires"] < time.time():
            raise AppError("token_invalid")
        if row["revoked"]:
            # a rotated token came back: someone holds a copy, so end the legitimate session too
            await self._revoke_ecard_sessions(row["ecard.id"], "session.refresh_reuse")
            raise AppError("token_invalid", "refresh token reuse detected; sessions revoked")
        if row["ecard.card.status"] != "active":
            raise AppError("card_not_active")
        if row["ecard.status"] != "active":
            raise AppError("ecard_not_active")
        await revoke_holder_access(self.platform, session_id=row["id"])
        async with self.platform.engine.transaction():
            rotated = await HolderSession.update({HolderSession.revoked: True}).where(
                (HolderSession.id == row["id"]) & (HolderSession.revoked == False)  # noqa: E712
            ).returning(HolderSession.id)
            if not rotated:  # a concurrent refresh with the same token won
                raise AppError("token_invalid")
            return await self._new_session(row["ecard.id"], row["ecard.card.id"], row["ecard.channel"])

    async def _revoke_ecard_sessions(self, ecard_id: str, action: str) -> None:
        await revoke_holder_access(self.platform, ecard_id=ecard_id)
        async with self.platform.engine.transaction():
            await HolderSession.update({HolderSession.revoked: True}).where(HolderSession.ecard == ecard_id)
            await audit(f"holder:{ecard_id}", action, "ecard", ecard_id)

    async def end_session(self, holder: HolderPrincipal) -> None:
        await revoke_holder_access(self.platform, session_id=holder.session_id)
        await HolderSession.update({HolderSession.revoked: True}).where(HolderSession.id == holder.session_id)

    async def get_ecard(self, ecard_id: str) -> schemas.ECardView:
        rows = await ECard.raw(
            "SELECT e.id, e.channel, e.status, e.created_at, c.status AS card_status, c.card_number,"
            " c.region, p.id AS person_id, p.name, p.id_number_enc"
            " FROM ecard e JOIN card c ON c.id = e.card JOIN person p ON p.id = c.person WHERE e.id = {}",
            ecard_id,
        )
        row = rows[0] if rows else None
        if row is None:
            raise AppError("ecard_not_found")
        number = self.platform.field_cipher.decrypt(bytes(row["id_number_enc"]), f"person:{row['person_id']}")
        effective = row["status"] if row["status"] != "active" else (
            "active" if row["card_status"] == "active" else "suspended"
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
            updated = await ECard.update(
                {ECard.status: "unbound", ECard.unbound_at: dt.datetime.now(dt.UTC)}
            ).where((ECard.id == ecard_id) & (ECard.status == "active")).returning(ECard.id)
            if not updated:
                raise AppError("ecard_not_active")
            await HolderSession.update({HolderSession.revoked: True}).where(HolderSession.ecard == ecard_id)
            await audit(actor, "ecard.unbind", "ecard", ecard_id, reason)
        return await self.get_ecard(ecard_id)

    async def channel_ecard(self, ecard_id: str, channel: ClientPrincipal) -> str:
        """The e-card id if it belongs to this channel (a channel never sees another's e-cards)."""
        row = await ECard.select(ECard.channel).where(ECard.id == ecard_id).first()
        if row is None or row["channel"] != channel.id:
            raise AppError("ecard_not_found")
        return ecard_id

    # --- audit ---------------------------------------------------------------------------
    async def audit_trail(
        self, *, target_id: str | None, action: str | None, limit: int, offset: int
    ) -> schemas.Page:
        limit, offset = _page(limit, offset)
        query, count = AuditEvent.select(), AuditEvent.count()
        if target_id:
            query, count = query.where(AuditEvent.target_id == target_id), count.where(AuditEvent.target_id == target_id)
        if action:
            query, count = query.where(AuditEvent.action == action), count.where(AuditEvent.action == action)
        rows = await query.order_by(AuditEvent.id, ascending=False).limit(limit).offset(offset)
        items = [
            schemas.AuditEventView(
                at=r["at"], actor_kind=r["actor_kind"], actor_id=r["actor_id"], action=r["action"],
                target_kind=r["target_kind"], target_id=r["target_id"], reason=r["reason"],
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
                Operator(id=operator_id, username=username, password_hash=hash_password(password), role=role)
            ).run()
        except Exception as exc:
            if is_unique_violation(exc):
                raise AppError("operator_exists") from None
            raise
        return operator_id

    async def login(self, data: schemas.LoginRequest, client_ip: str) -> schemas.OperatorToken:
        await RegistryService(self.platform)._limit(f"login:{data.username}", 300, 10)
        await RegistryService(self.platform)._limit(f"login-ip:{client_ip}", 300, 50)
        row = await Operator.select().where(Operator.username == data.username).first()
        stored = row["password_hash"] if row else _dummy_hash()
        ok = verify_password(data.password, stored)  # always hash: no user-enumeration by timing
        if not row or not ok or row["status"] != "active":
            raise AppError("invalid_credentials")
        token = new_token(OPERATOR_TOKEN_PREFIX)
        ttl = self.platform.settings.operator_token_ttl
        await OperatorToken.insert(
            OperatorToken(digest=secret_digest(token), operator=row["id"], expires_at=int(time.time()) + ttl)
        ).run()
        await audit(f"operator:{row['id']}", "operator.login", "operator", row["id"])
        return schemas.OperatorToken(access_token=token, token_type="Bearer", expires_in=ttl, role=row["role"])

    async def create_client(self, data: schemas.ClientCreate, actor: str) -> schemas.ClientView:
        for region in data.regions:
            if region != "*":
                check_region(region)
        secret = new_token(CLIENT_SECRET_PREFIX)
        client_id = f"{data.kind[:2]}_{secrets.token_hex(12)}"
        try:
            async with self.platform.engine.transaction():
                await ApiClient.insert(
                    ApiClient(
                        id=client_id,
                        kind=data.kind,
                        name=data.name,
                        secret_digest=secret_digest(secret),
                        public_jwk=json.dumps(data.public_jwk) if data.public_jwk else None,
                        regions=json.dumps(data.regions),
                        entitlements=json.dumps(data.entitlements),
                    )
                ).run()
                await audit(actor, "client.create", "client", client_id, kind=data.kind)
        except Exception as exc:
            if is_unique_violation(exc):
                raise AppError("channel_exists", "a client with this name already exists") from None
            raise
        view = await self.get_client(client_id)
        view.client_secret = secret
        return view

    async def get_client(self, client_id: str) -> schemas.ClientView:
        row = await ApiClient.select().where(ApiClient.id == client_id).first()
        if row is None:
            raise AppError("channel_not_found", "no such client")
        return schemas.ClientView(
            id=row["id"], kind=row["kind"], name=row["name"], status=row["status"],
            regions=_json(row["regions"]), entitlements=_json(row["entitlements"]),
        )

    async def set_client_status(self, client_id: str, change: schemas.ClientStatusChange, actor: str) -> schemas.ClientView:
        await self.get_client(client_id)
        async with self.platform.engine.transaction():
            await ApiClient.update({ApiClient.status: change.status}).where(ApiClient.id == client_id)
            await audit(actor, "client.status", "client", client_id, change.reason, to=change.status)
        forget_client(client_id)
        return await self.get_client(client_id)


def _json(value: Any) -> list:
    return json.loads(value) if isinstance(value, str) else list(value or [])


@cache
@functools.cache
def _dummy_hash() -> str:
    """A real scrypt hash to check unknown usernames against, so timing does not reveal them
    (made once: hashing it per attempt would make an unknown name cost twice a known one)."""
    return hash_password(secrets.token_hex(8))
