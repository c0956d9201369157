"""The card's life as operations (the rules are :mod:`ecard.registry.lifecycle`).

Every status change goes through :meth:`CardLifeService.move`, which keeps, in this order:
- the move is allowed, and allowed to this kind of actor;
- a card that stops being usable stops at once on every worker: its holders' access tokens and
  its codes are revoked in the shared store *before* the database changes (see
  :func:`ecard.auth.revoke_holder_access`);
- in one transaction: the card row (optimistic concurrency on ``status_version``), its status
  event, its holder sessions (suspended, or ended with the card), its e-cards (ended when the card
  is cancelled or its holder died), its HCE device certificates (revoked when the card ends), a
  signed webhook to every channel holding one of its e-cards, and the audit row.

The replacement (补领/换领) moves the old card's e-cards to the new card with the same ids:
"电子社保卡无需重新申领".  Holder sessions continue: the app's next refresh gets tokens for the
new card.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ecard.auth import DpopContext, HolderPrincipal, reinstate_card_access, revoke_holder_access
from ecard.codes.trust import withdraw_codes
from ecard.crypto.fields import secret_digest
from ecard.errors import AppError
from ecard.platform import Platform
from ecard.registry import holder_password, lifecycle, schemas, sessions
from ecard.registry.audit import audit, new_id
from ecard.registry.lifecycle import CardStatus, TransitionRefused
from ecard.registry.tables import Card, CardStatusEvent, ECard, HolderSession, Person
from ecard.settings import CardPolicy
from ecard.store.db import is_unique_violation
from ecard.terminal.card_model import chip_reference
from ecard.terminal.tables import HceCertificate
from ecard.webhooks.outbox import enqueue

log = logging.getLogger("ecard.registry")


def _refused(error: TransitionRefused) -> AppError:
    return AppError(error.code, error.message)


def _now() -> float:
    return time.time()


@dataclass
class CardLifeService:
    platform: Platform

    def policy(self, region: str) -> CardPolicy:
        return lifecycle.policy_for(self.platform.settings.card_policies, region, CardPolicy())

    async def card_row(self, card_id: str) -> dict[str, Any]:
        row = await Card.select().where(Card.id == card_id).first()
        if row is None:
            raise AppError("card_not_found")
        return row

    # --- the one path of every status change ---------------------------------------------------
    async def move(
        self,
        row: dict[str, Any],
        target: CardStatus,
        *,
        actor: str,
        actor_kind: lifecycle.Actor,
        reason: str,
        expected_version: int | None = None,
        updates: dict[Any, Any] | None = None,
    ) -> None:
        """Move ``row``'s card to ``target`` with every effect of the move (module docstring).
        Raises ``invalid_status_transition`` / ``forbidden`` for a move the rules refuse, and
        ``status_changed_concurrently`` when another change won the race."""
        source = row["status"]
        try:
            lifecycle.check_transition(source, target, actor_kind)
        except TransitionRefused as error:
            raise _refused(error) from None
        version = row["status_version"] if expected_version is None else expected_version
        if target == CardStatus.ACTIVE and source in lifecycle.STOCK:
            await self._check_no_other_held_card(row)
        if lifecycle.leaves_usable(source, target):
            await revoke_holder_access(self.platform, card_id=row["id"])
            await withdraw_codes(self.platform, row["id"])
        async with self.platform.engine.transaction():
            await self._write_move(row, source, target, version, actor, reason, updates or {})
        if target == CardStatus.ACTIVE and source != CardStatus.ACTIVE:  # after the commit
            # its sessions' next tokens work at once; codes issued before the card stopped stay
            # refused (the withdrawal marker is left as it is, so codes of the first second or
            # two after the change are refused too: codes carry whole seconds)
            await reinstate_card_access(self.platform, row["id"])

    async def _write_move(
        self,
        row: dict[str, Any],
        source: str,
        target: CardStatus,
        version: int,
        actor: str,
        reason: str,
        updates: dict[Any, Any],
    ) -> list[str]:
        """The move's database effects (module docstring); returns, per HCE certificate it
        revoked, the e-card it belonged to."""
        card_id = row["id"]
        changed = (
            await Card.update(
                {
                    Card.status: target.value,
                    Card.status_version: version + 1,
                    Card.updated_at: dt.datetime.now(dt.UTC),
                    **({Card.loss_lapses_at: None} if target != CardStatus.LOST_TEMPORARY else {}),
                    **updates,
                }
            )
            .where(
                (Card.id == card_id) & (Card.status_version == version) & (Card.status == source)
            )
            .returning(Card.id)
        )
        if not changed:
            raise AppError("status_changed_concurrently")
        await CardStatusEvent.insert(
            CardStatusEvent(
                card=card_id, from_status=source, to_status=target.value, actor=actor, reason=reason
            )
        ).run()
        if lifecycle.ends_sessions(target):
            await sessions.end_card_sessions(self.platform, card_id, "card_ended")
            await ECard.update(
                {ECard.status: "ended", ECard.unbound_at: dt.datetime.now(dt.UTC)}
            ).where((ECard.card == card_id) & (ECard.status == "active"))
        elif lifecycle.leaves_usable(source, target):
            await sessions.suspend_card_sessions(self.platform, card_id)
        revoked = await self._revoke_hce(card_id) if target in lifecycle.FINAL else []
        if target != CardStatus.REPLACED:  # a replacement announces itself (card.replaced)
            await self._announce_status(card_id, target)
        await audit(
            actor, "card.status", "card", card_id, reason, to=target.value, **{"from": source}
        )
        return revoked

    async def _check_no_other_held_card(self, row: dict[str, Any]) -> None:
        """Rule: a person holds at most one card (a stock card is activated only by a replacement
        when they hold another)."""
        if await Card.exists().where(
            (Card.person == row["person"])
            & Card.status.is_in(sorted(lifecycle.HELD))
            & (Card.id != row["id"])
        ):
            raise AppError(
                "card_already_active", "the person holds another card: replace it instead"
            )

    async def _revoke_hce(self, card_id: str) -> list[str]:
        """Revoke the card's live HCE certificates; the e-card of each."""
        now = int(_now())
        revoked = (
            await HceCertificate.update({HceCertificate.revoked_at: now})
            .where(
                (HceCertificate.card == card_id)
                & HceCertificate.revoked_at.is_null()
                & (HceCertificate.not_after > now)
            )
            .returning(HceCertificate.ecard)
        )
        return [r["ecard"] for r in revoked]

    async def _announce_status(self, card_id: str, target: CardStatus) -> None:
        """``card.status_changed`` to every channel holding an e-card of the card (ids only)."""
        rows = await ECard.select(ECard.id, ECard.channel, ECard.status).where(
            ECard.card == card_id
        )
        for row in rows:
            if row["status"] == "unbound":
                continue
            ecard_status = (
                row["status"]
                if row["status"] != "active"
                else ("active" if target == CardStatus.ACTIVE else "suspended")
            )
            await enqueue(
                "card.status_changed",
                row["channel"],
                {
                    "ecard_id": row["id"],
                    "card_status": target.value,
                    "ecard_status": ecard_status,
                },
            )

    # --- operators ---------------------------------------------------------------------------
    async def change_status(self, card_id: str, change: schemas.StatusChange, actor: str) -> None:
        """An operator's status change (挂失, 解挂, 冻结, 注销 …).  ``replacement_pending`` and
        ``replaced`` have their own operations (:meth:`request_replacement`, :meth:`replace`)."""
        target = CardStatus(change.status)
        if target in (CardStatus.REPLACED, CardStatus.REPLACEMENT_PENDING):
            raise AppError(
                "invalid_status_transition", "use the replacement operations for this status"
            )
        row = await self.card_row(card_id)
        updates: dict[Any, Any] = {}
        if target == CardStatus.LOST_TEMPORARY:
            updates[Card.loss_lapses_at] = self._lapse_time(row)
        await self.move(
            row,
            target,
            actor=actor,
            actor_kind="operator",
            reason=change.reason,
            expected_version=change.expected_version,
            updates=updates,
        )

    def _lapse_time(self, row: dict[str, Any]) -> int:
        days = self.policy(row["region"]).temporary_loss_days
        return int(lifecycle.temporary_loss_lapses_at(_now(), days))

    async def request_replacement(
        self, card_id: str, data: schemas.ReplacementRequest, actor: str
    ) -> None:
        """补领/换领 requested: the card becomes ``replacement_pending`` and cannot be 解挂 any
        more."""
        row = await self.card_row(card_id)
        await self.move(
            row,
            CardStatus.REPLACEMENT_PENDING,
            actor=actor,
            actor_kind="operator",
            reason=f"replacement requested: {data.reason}"
            + (f" ({data.note})" if data.note else ""),
            expected_version=data.expected_version,
            updates={Card.replacement_reason: data.reason},
        )

    async def replace(
        self, card_id: str, data: schemas.Replacement, actor: str
    ) -> schemas.ReplacementDone:
        """The replacement, in one transaction: the new card active (made now, or a stock card of
        the same person), the old card ``replaced`` (final, naming the new one), every e-card of the
        old card bound to the new card with its id unchanged, the old card's HCE certificates
        revoked, ``card.replaced`` to each channel.  Consent grants and pairwise subjects are per
        person and continue; the new card has a new pseudonym, so the old codes and chip stay
        refused (the old card is on the revocation list and the chip blacklist for good)."""
        if (data.new_card is None) == (data.stock_card_id is None):
            raise AppError("validation_failed", "give exactly one of new_card and stock_card_id")
        old = await self.card_row(card_id)
        if old["status"] != CardStatus.REPLACEMENT_PENDING:
            raise AppError("replacement_not_requested", f"the card is {old['status']}")
        stock = await self._stock_card(old, data.stock_card_id) if data.stock_card_id else None
        if data.new_card is not None and data.new_card.expiry_date <= data.new_card.issue_date:
            raise AppError("validation_failed", "expiry_date must be after issue_date")
        try:
            async with self.platform.engine.transaction():
                new_id = await self._activate_replacing_card(old, data.new_card, stock, actor)
                revoked_hce = await self._write_move(
                    old,
                    old["status"],
                    CardStatus.REPLACED,
                    old["status_version"],
                    actor,
                    f"replaced by {new_id}",
                    {Card.replaced_by: new_id},
                )
                moved = (
                    await ECard.update({ECard.card: new_id})
                    .where((ECard.card == card_id) & (ECard.status == "active"))
                    .returning(ECard.id, ECard.channel)
                )
                for ecard in moved:
                    await enqueue(
                        "card.replaced",
                        ecard["channel"],
                        {
                            "ecard_id": ecard["id"],
                            "reason": old["replacement_reason"] or "other",
                            "ecard_status": "active",
                            "hce_reprovision": ecard["id"] in revoked_hce,
                        },
                    )
                await audit(
                    actor,
                    "card.replace",
                    "card",
                    card_id,
                    old["replacement_reason"] or "",
                    new_card=new_id,
                    ecards=len(moved),
                )
        except Exception as exc:
            if is_unique_violation(exc):
                raise AppError("card_exists") from None
            raise
        return schemas.ReplacementDone(
            old_card_id=card_id,
            new_card_id=new_id,
            ecards_moved=len(moved),
            hce_certificates_revoked=len(revoked_hce),
        )

    async def _stock_card(self, old: dict[str, Any], stock_card_id: str) -> dict[str, Any]:
        stock = await Card.select().where(Card.id == stock_card_id).first()
        if (
            stock is None
            or stock["person"] != old["person"]
            or stock["status"] not in lifecycle.STOCK
        ):
            raise AppError("stock_card_invalid")
        return stock

    async def _activate_replacing_card(
        self,
        old: dict[str, Any],
        new: schemas.NewCard | None,
        stock: dict[str, Any] | None,
        actor: str,
    ) -> str:
        if stock is not None:
            done = (
                await Card.update(
                    {
                        Card.status: CardStatus.ACTIVE.value,
                        Card.status_version: stock["status_version"] + 1,
                        Card.replaces: old["id"],
                        Card.updated_at: dt.datetime.now(dt.UTC),
                    }
                )
                .where((Card.id == stock["id"]) & (Card.status_version == stock["status_version"]))
                .returning(Card.id)
            )
            if not done:
                raise AppError("status_changed_concurrently")
            await CardStatusEvent.insert(
                CardStatusEvent(
                    card=stock["id"],
                    from_status=stock["status"],
                    to_status="active",
                    actor=actor,
                    reason=f"replaces {old['id']}",
                )
            ).run()
            return stock["id"]
        if new is None:  # the caller checked: exactly one of new_card and stock_card_id
            raise AppError("validation_failed", "give exactly one of new_card and stock_card_id")
        card_id = new_id()
        region = new.region or old["region"]
        await Card.insert(
            Card(
                id=card_id,
                person=old["person"],
                card_number=new.card_number,
                region=region,
                chip_serial=new.chip_serial,
                identification_code=new.identification_code,
                chip_reference=chip_reference(region, new.identification_code),
                issue_date=new.issue_date,
                expiry_date=new.expiry_date,
                status="active",
                replaces=old["id"],
            )
        ).run()
        await CardStatusEvent.insert(
            CardStatusEvent(
                card=card_id,
                from_status=None,
                to_status="active",
                actor=actor,
                reason=f"replaces {old['id']}",
            )
        ).run()
        return card_id

    async def record_death(
        self,
        person_id: str,
        died_on: dt.date,
        actor: str,
        reason: str,
        actor_kind: lifecycle.Actor = "operator",
    ) -> list[str]:
        """死亡人员: the person is marked deceased and every card they have that is not final yet
        becomes ``deceased`` with every effect (e-cards ended, sessions ended, codes and chip
        refused, HCE certificates revoked, channels told).  Returns the cards it ended; recording
        the same death again changes nothing."""
        person = (
            await Person.select(Person.id, Person.deceased_on).where(Person.id == person_id).first()
        )
        if person is None:
            raise AppError("person_not_found")
        if person["deceased_on"] is None:
            await Person.update(
                {Person.deceased_on: died_on, Person.updated_at: dt.datetime.now(dt.UTC)}
            ).where(Person.id == person_id)
        ended: list[str] = []
        rows = await Card.select().where(
            (Card.person == person_id) & Card.status.not_in(sorted(lifecycle.FINAL))
        )
        for row in rows:
            for _ in range(3):  # a concurrent change of the same card: read it again and retry
                try:
                    await self.move(
                        row, CardStatus.DECEASED, actor=actor, actor_kind=actor_kind, reason=reason
                    )
                    ended.append(row["id"])
                    break
                except AppError as error:
                    if error.code != "status_changed_concurrently":
                        raise
                    row = await self.card_row(row["id"])
                    if row["status"] in lifecycle.FINAL:
                        break
        return ended

    # --- holders -----------------------------------------------------------------------------
    async def report_loss(self, holder: HolderPrincipal) -> schemas.LossReported:
        """临时挂失 in the app: the card and every e-card stop at once; it lapses by itself after
        the province's period unless made formal at an outlet, and the holder can undo it with the
        电子社保卡密码 (:meth:`undo_loss`)."""
        row = await self.card_row(holder.card_id)
        lapses = self._lapse_time(row)
        await self.move(
            row,
            CardStatus.LOST_TEMPORARY,
            actor=holder.actor,
            actor_kind="holder",
            reason="temporary loss reported by the holder in the app",
            updates={Card.loss_lapses_at: lapses},
        )
        return schemas.LossReported(card_status=CardStatus.LOST_TEMPORARY.value, lapses_at=lapses)

    async def undo_loss(
        self, data: schemas.LossUndo, dpop: DpopContext | None = None
    ) -> schemas.LossReported:
        """Undo a 临时挂失 from the app.  The access token ended with the loss, so the session is
        proven by its refresh token (and its DPoP key, where bound); the person by the password.
        A formal loss is undone only at an outlet."""
        session = await self._suspended_session(data.refresh_token, dpop)
        row = await self.card_row(session["ecard.card.id"])
        if row["status"] == CardStatus.LOST:
            raise AppError("loss_is_formal")
        if row["status"] != CardStatus.LOST_TEMPORARY:
            raise AppError(
                "invalid_status_transition", f"the card is {row['status']}, not temporarily lost"
            )
        await holder_password.verify_holder_password(self.platform, row["person"], data.password)
        await self.move(
            row,
            CardStatus.ACTIVE,
            actor=f"holder:{session['ecard.id']}",
            actor_kind="holder",
            reason="temporary loss undone by the holder",
        )
        return schemas.LossReported(card_status=CardStatus.ACTIVE.value, lapses_at=0)

    async def _suspended_session(
        self, refresh_token: str, dpop: DpopContext | None
    ) -> dict[str, Any]:
        row = (
            await HolderSession.select(
                HolderSession.id,
                HolderSession.refresh_expires,
                HolderSession.revoked,
                HolderSession.ended_reason,
                HolderSession.jkt,
                HolderSession.ecard.id,
                HolderSession.ecard.status,
                HolderSession.ecard.card.id,
            )
            .where(HolderSession.refresh_digest == secret_digest(refresh_token))
            .first()
        )
        live = (
            row is not None
            and row["refresh_expires"] >= _now()
            and row["ecard.status"] == "active"
            and (not row["revoked"] or row["ended_reason"] == "card_suspended")
        )
        if row is None or not live:
            raise AppError("token_invalid")
        await sessions.verify_session_key(self.platform, row, dpop)
        return row

    async def lapse_temporary_losses(self, now: float | None = None, limit: int = 500) -> int:
        """Every 临时挂失 whose period is over becomes active again (by the system); returns how
        many."""
        due = int(_now() if now is None else now)
        rows = (
            await Card.select()
            .where((Card.status == CardStatus.LOST_TEMPORARY.value) & (Card.loss_lapses_at <= due))
            .limit(limit)
        )
        lapsed = 0
        for row in rows:
            try:
                await self.move(
                    row,
                    CardStatus.ACTIVE,
                    actor="system:loss-lapse",
                    actor_kind="system",
                    reason="temporary loss lapsed",
                )
                lapsed += 1
            except AppError as error:
                if error.code not in ("status_changed_concurrently", "invalid_status_transition"):
                    raise
        return lapsed


#: How often each process looks for lapsed temporary losses.
LAPSE_SWEEP_SECONDS = 60.0


async def run_lapse_sweep(
    platform: Platform, stop: asyncio.Event, interval: float = LAPSE_SWEEP_SECONDS
) -> None:
    """Lapse due temporary losses every ``interval`` seconds until ``stop`` (several processes
    may run it: a card lapses once, the others lose the race on ``status_version``)."""
    service = CardLifeService(platform)
    while not stop.is_set():
        try:
            await service.lapse_temporary_losses()
        except Exception:  # the database is briefly away: the next sweep catches up
            log.warning("card_life.lapse_sweep_failed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


@contextlib.asynccontextmanager
async def background(platform: Platform) -> AsyncIterator[None]:
    """The registry's background work for one process: the temporary-loss lapse sweep."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_lapse_sweep(platform, stop), name="card-loss-lapse")
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
