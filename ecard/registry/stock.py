"""Stock cards (库存卡): personalised cards made in batches for one outlet (网点), delivered there,
handed over to their holders and activated.

::

    POST card-batches ─→ produced ─deliver─→ in_stock ─hand-over─→ issued ─activate─→ active
                                                 └────────── activate (立等可取) ──────────┘

A batch is written whole or not at all: every card is checked first (:func:`batch_problems`, one
named rule per check) and a batch with any bad card is refused with the list of its bad cards by
index.  Which batch a card came in is kept in ``card_batch_item`` (the card table is unchanged).
Every status change after creation goes through :meth:`CardLifeService.move`, which also refuses
to activate a stock card of a person who holds another card (``card_already_active``: that is a
replacement, ``POST /operator/v1/cards/{id}/replace`` with ``stock_card_id``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ecard.errors import AppError
from ecard.platform import Platform
from ecard.registry import lifecycle, schemas
from ecard.registry.audit import audit, new_id
from ecard.registry.card_life import CardLifeService
from ecard.registry.lifecycle import CardStatus
from ecard.registry.service import check_region
from ecard.registry.tables import Card, CardBatch, CardBatchItem, CardStatusEvent, Person
from ecard.store.db import is_unique_violation
from ecard.terminal.card_model import chip_reference

#: rows written per INSERT statement (well under SQLite's bound-variable limit)
_INSERT_ROWS = 100


# --- the pure core: which cards of a batch are bad, and why ------------------------------------


@dataclass(frozen=True, slots=True)
class PersonFacts:
    """What the registry knows of a person a batch names."""

    deceased: bool
    has_stock_card: bool


@dataclass(frozen=True, slots=True)
class RowProblem:
    index: int  # the card's position in the request's ``cards`` (from 0)
    field: str
    code: str

    def as_error(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "code": self.code}


def _dates_in_order(card: schemas.StockCard) -> str | None:
    """Rule: a card expires after it is issued."""
    return "expiry_not_after_issue" if card.expiry_date <= card.issue_date else None


def _person_known(person: PersonFacts | None) -> str | None:
    """Rule: a card is made for a person of the registry."""
    return "person_not_found" if person is None else None


def _person_alive(person: PersonFacts | None) -> str | None:
    """Rule: no card is made for a person recorded deceased."""
    return "person_deceased" if person is not None and person.deceased else None


def _no_other_stock_card(person: PersonFacts | None) -> str | None:
    """Rule: a person has at most one stock card (produced, in stock or issued)."""
    return "stock_card_exists" if person is not None and person.has_stock_card else None


def _first_in_batch(value: str, first_index: dict[str, int], index: int, code: str) -> str | None:
    """Rule: a value that must be unique appears once in the batch (its first card keeps it)."""
    return code if first_index.setdefault(value, index) != index else None


def _free(value: str, taken: set[str], code: str) -> str | None:
    """Rule: a unique value is not already the registry's."""
    return code if value in taken else None


def batch_problems(
    cards: Sequence[schemas.StockCard],
    persons: dict[str, PersonFacts],
    taken_card_numbers: set[str],
    taken_identification_codes: set[str],
) -> list[RowProblem]:
    """Every problem of every card of a batch (empty: the batch may be written), given what the
    registry holds: the persons named (absent when unknown), card numbers and 卡识别码 in use."""
    first_person: dict[str, int] = {}
    first_number: dict[str, int] = {}
    first_code: dict[str, int] = {}
    problems: list[RowProblem] = []
    for index, card in enumerate(cards):
        person = persons.get(card.person_id)
        checks: Iterable[tuple[str, str | None]] = (
            ("expiry_date", _dates_in_order(card)),
            ("person_id", _person_known(person)),
            ("person_id", _person_alive(person)),
            ("person_id", _no_other_stock_card(person)),
            ("person_id", _first_in_batch(card.person_id, first_person, index, "duplicate_person")),
            (
                "card_number",
                _first_in_batch(card.card_number, first_number, index, "duplicate_card_number"),
            ),
            ("card_number", _free(card.card_number, taken_card_numbers, "card_number_taken")),
            (
                "identification_code",
                _first_in_batch(
                    card.identification_code, first_code, index, "duplicate_identification_code"
                ),
            ),
            (
                "identification_code",
                _free(
                    card.identification_code,
                    taken_identification_codes,
                    "identification_code_taken",
                ),
            ),
        )
        problems += [RowProblem(index, name, code) for name, code in checks if code is not None]
    return problems


# --- the service -------------------------------------------------------------------------------


@dataclass
class StockService:
    platform: Platform

    async def create_batch(
        self, data: schemas.CardBatchCreate, actor: str
    ) -> schemas.CardBatchView:
        """Write the batch and its cards (``produced``), all or nothing: ``card_batch_invalid``
        (with ``errors``: index, field, code of each bad card) when any card breaks a rule."""
        check_region(data.region)
        problems = batch_problems(data.cards, *await self._registry_facts(data.cards))
        if problems:
            bad = len({p.index for p in problems})
            raise AppError(
                "card_batch_invalid",
                f"{bad} of {len(data.cards)} cards are invalid; nothing was written",
                extra={"errors": [p.as_error() for p in problems]},
            )
        batch_id = new_id()
        cards = [self._card(card, data.region) for card in data.cards]
        try:
            async with self.platform.engine.transaction():
                await CardBatch.insert(
                    CardBatch(
                        id=batch_id,
                        outlet=data.outlet,
                        region=data.region,
                        status="produced",
                        card_count=len(cards),
                        created_by=actor,
                    )
                ).run()
                for start in range(0, len(cards), _INSERT_ROWS):
                    part = cards[start : start + _INSERT_ROWS]
                    await Card.insert(*part).run()
                    await CardStatusEvent.insert(
                        *[
                            CardStatusEvent(
                                card=c.id,
                                from_status=None,
                                to_status=CardStatus.PRODUCED.value,
                                actor=actor,
                                reason=f"produced in batch {batch_id}",
                            )
                            for c in part
                        ]
                    ).run()
                    await CardBatchItem.insert(
                        *[CardBatchItem(batch=batch_id, card=c.id) for c in part]
                    ).run()
                for card in cards:
                    await audit(actor, "card.create", "card", card.id, "stock card", batch=batch_id)
                await audit(
                    actor, "card_batch.create", "card_batch", batch_id, "", cards=len(cards)
                )
        except Exception as exc:
            if is_unique_violation(exc):  # a card written concurrently took a number
                raise AppError(
                    "card_exists",
                    "a card number or 卡识别码 was taken meanwhile; nothing was written",
                ) from None
            raise
        return await self.get_batch(batch_id)

    @staticmethod
    def _card(card: schemas.StockCard, region: str) -> Card:
        return Card(
            id=new_id(),
            person=card.person_id,
            card_number=card.card_number,
            region=region,
            chip_serial=card.chip_serial,
            identification_code=card.identification_code,
            chip_reference=chip_reference(region, card.identification_code),
            issue_date=card.issue_date,
            expiry_date=card.expiry_date,
            status=CardStatus.PRODUCED.value,
        )

    @staticmethod
    async def _registry_facts(
        cards: Sequence[schemas.StockCard],
    ) -> tuple[dict[str, PersonFacts], set[str], set[str]]:
        person_ids = sorted({c.person_id for c in cards})
        found = await Person.select(Person.id, Person.deceased_on).where(
            Person.id.is_in(person_ids)
        )
        stocked = {
            r["person"]
            for r in await Card.select(Card.person).where(
                Card.person.is_in(person_ids) & Card.status.is_in(sorted(lifecycle.STOCK))
            )
        }
        persons = {
            r["id"]: PersonFacts(
                deceased=r["deceased_on"] is not None, has_stock_card=r["id"] in stocked
            )
            for r in found
        }
        numbers = await Card.select(Card.card_number).where(
            Card.card_number.is_in([c.card_number for c in cards])
        )
        codes = await Card.select(Card.identification_code).where(
            Card.identification_code.is_in([c.identification_code for c in cards])
        )
        return (
            persons,
            {r["card_number"] for r in numbers},
            {r["identification_code"] for r in codes},
        )

    async def _batch_row(self, batch_id: str) -> dict[str, Any]:
        row = await CardBatch.select().where(CardBatch.id == batch_id).first()
        if row is None:
            raise AppError("card_batch_not_found")
        return row

    async def get_batch(self, batch_id: str) -> schemas.CardBatchView:
        """The batch with how many of its cards are in each status now."""
        row = await self._batch_row(batch_id)
        items = (
            await CardBatchItem.select(CardBatchItem.card.id, CardBatchItem.card.status)
            .where(CardBatchItem.batch == batch_id)
            .order_by(CardBatchItem.id)
        )
        return schemas.CardBatchView(
            id=row["id"],
            outlet=row["outlet"],
            region=row["region"],
            status=row["status"],
            card_count=row["card_count"],
            counts=dict(sorted(Counter(i["card.status"] for i in items).items())),
            card_ids=[i["card.id"] for i in items],
            created_by=row["created_by"],
            created_at=row["created_at"],
            delivered_at=row["delivered_at"],
        )

    async def deliver(self, batch_id: str, actor: str) -> schemas.CardBatchView:
        """Every card of the batch still ``produced`` becomes ``in_stock`` at the batch's outlet,
        one move each (with every effect of :meth:`CardLifeService.move`); the batch is then
        ``delivered``.  Delivering again moves what is left and changes nothing else."""
        batch = await self._batch_row(batch_id)
        life = CardLifeService(self.platform)
        card_ids = [
            r["card"]
            for r in await CardBatchItem.select(CardBatchItem.card).where(
                CardBatchItem.batch == batch_id
            )
        ]
        rows = await Card.select().where(
            Card.id.is_in(card_ids or [""]) & (Card.status == CardStatus.PRODUCED.value)
        )
        moved = 0
        for row in rows:
            moved += await self._deliver_card(
                life, row, actor, f"delivered to outlet {batch['outlet']}"
            )
        if batch["status"] != "delivered":
            await CardBatch.update(
                {
                    CardBatch.status: "delivered",
                    CardBatch.delivered_by: actor,
                    CardBatch.delivered_at: dt.datetime.now(dt.UTC),
                }
            ).where((CardBatch.id == batch_id) & (CardBatch.status == "produced"))
        if moved or batch["status"] != "delivered":
            await audit(actor, "card_batch.deliver", "card_batch", batch_id, "", cards=moved)
        return await self.get_batch(batch_id)

    @staticmethod
    async def _deliver_card(
        life: CardLifeService, row: dict[str, Any], actor: str, reason: str
    ) -> int:
        for _ in range(3):  # a concurrent change of the same card: read it again and retry
            try:
                await life.move(
                    row, CardStatus.IN_STOCK, actor=actor, actor_kind="operator", reason=reason
                )
                return 1
            except AppError as error:
                if error.code != "status_changed_concurrently":
                    raise
                row = await life.card_row(row["id"])
                if row["status"] != CardStatus.PRODUCED:
                    return 0
        return 0

    async def hand_over(self, card_id: str, step: schemas.StockCardStep, actor: str) -> None:
        """The stock card is handed to its holder: ``in_stock`` → ``issued``."""
        life = CardLifeService(self.platform)
        row = await life.card_row(card_id)
        await life.move(
            row,
            CardStatus.ISSUED,
            actor=actor,
            actor_kind="operator",
            reason=_reason("handed over to the holder", step),
            expected_version=step.expected_version,
        )

    async def activate(self, card_id: str, step: schemas.StockCardStep, actor: str) -> None:
        """The stock card is activated (启用): ``issued`` → ``active``, or ``in_stock`` → ``active``
        at once (立等可取).  Only a stock card is activated here (解挂 and the rest are status
        changes); a person who holds another card needs a replacement (``card_already_active``)."""
        life = CardLifeService(self.platform)
        row = await life.card_row(card_id)
        if row["status"] not in (CardStatus.IN_STOCK, CardStatus.ISSUED):
            raise AppError(
                "invalid_status_transition",
                f"the card is {row['status']}, not a stock card in stock or issued",
            )
        how = (
            "activated at the counter (立等可取)"
            if row["status"] == CardStatus.IN_STOCK
            else "activated"
        )
        await life.move(
            row,
            CardStatus.ACTIVE,
            actor=actor,
            actor_kind="operator",
            reason=_reason(how, step),
            expected_version=step.expected_version,
        )


def _reason(what: str, step: schemas.StockCardStep) -> str:
    return f"{what}: {step.note}" if step.note else what
