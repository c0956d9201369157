"""Sequences of card-life operations against the real service, on both backends: whatever
order operators, holders and the system act in, no e-card stays bound to a dead card, no person
holds two cards, e-card ids never change, and every refusal is a catalogue error.

Hypothesis draws the sequences (its edge-biased generation, no I/O); each is then run against the
database.  Shrinking does not reach into the database run: a failure reports the whole sequence."""

from __future__ import annotations

import datetime as dt
import time
import uuid

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecard.errors import AppError
from ecard.registry import lifecycle
from ecard.registry.card_life import CardLifeService
from ecard.registry.schemas import NewCard, Replacement, ReplacementRequest, StatusChange
from ecard.registry.tables import Card, ECard
from tests.helpers import HOLDER_PASSWORD, World, bearer, platform_of

OPERATOR_TARGETS = [
    "active",
    "lost_temporary",
    "lost",
    "frozen",
    "cancelled",
    "deceased",
    "replaced",
    "in_stock",
]
OPERATIONS = st.one_of(
    st.tuples(st.just("status"), st.sampled_from(OPERATOR_TARGETS)),
    st.tuples(
        st.just("request_replacement"), st.sampled_from(sorted(lifecycle.REPLACEMENT_REASONS))
    ),
    st.tuples(st.just("replace"), st.none()),
    st.tuples(st.just("holder_loss"), st.none()),
    st.tuples(st.just("holder_undo"), st.none()),
    st.tuples(st.just("lapse"), st.none()),
    st.tuples(st.just("death"), st.none()),
    st.tuples(st.just("issue_again"), st.none()),
)


def _sequences(count: int) -> list[list[tuple[str, str | None]]]:
    drawn: list[list[tuple[str, str | None]]] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(st.lists(OPERATIONS, min_size=3, max_size=12))
    def draw(sequence: list[tuple[str, str | None]]) -> None:
        drawn.append(sequence)

    draw()
    return drawn


def _new_card() -> NewCard:
    return NewCard(
        card_number="S" + uuid.uuid4().hex[:10].upper(),
        chip_serial=uuid.uuid4().hex[:16].upper(),
        identification_code=uuid.uuid4().hex[:24].upper(),
        issue_date=dt.date(2026, 12, 1),
        expiry_date=dt.date(2036, 12, 1),
    )


async def _check_invariants(person_id: str, ecard_ids: set[str]) -> None:
    cards = await Card.select().where(Card.person == person_id)
    held = [c for c in cards if c["status"] in lifecycle.HELD]
    assert len(held) <= 1, f"two cards held at once: {[(c['id'], c['status']) for c in held]}"
    by_id = {c["id"]: c for c in cards}
    ecards = await ECard.select().where(ECard.card.is_in(list(by_id)))
    assert {e["id"] for e in ecards} == ecard_ids, "an e-card id changed or vanished"
    for ecard in ecards:
        if ecard["status"] == "active":
            card = by_id[ecard["card"]]
            assert card["status"] not in lifecycle.FINAL, (
                f"e-card {ecard['id']} bound to a {card['status']} card"
            )
    for card in cards:
        if card["status"] == "replaced":
            assert (
                card["replaced_by"] in by_id
                and by_id[card["replaced_by"]]["replaces"] == card["id"]
            )


async def test_no_sequence_of_operations_breaks_the_card_life(
    client: httpx.AsyncClient, world: World
) -> None:
    platform = platform_of(client)
    life = CardLifeService(platform)
    reached: set[str] = set()
    for sequence in _sequences(10):
        holder = await world.person_with_card()
        issued = await world.issue(holder)
        session = dict(issued["session"])
        ecard_ids = {issued["ecard"]["id"]}
        for operation, argument in sequence:
            current = (
                await Card.select()
                .where(
                    (Card.person == holder["person_id"]) & Card.status.is_in(sorted(lifecycle.HELD))
                )
                .first()
                or await Card.select()
                .where(Card.person == holder["person_id"])
                .order_by(Card.created_at, ascending=False)
                .first()
            )
            try:
                if operation == "status":
                    await life.change_status(
                        current["id"], StatusChange(status=argument, reason="test"), "operator:t"
                    )
                elif operation == "request_replacement":
                    await life.request_replacement(
                        current["id"], ReplacementRequest(reason=argument), "operator:t"
                    )
                elif operation == "replace":
                    await life.replace(
                        current["id"], Replacement(new_card=_new_card()), "operator:t"
                    )
                elif operation == "holder_loss":
                    response = await client.post(
                        "/holder/v1/card/loss-report", headers=bearer(session["access_token"])
                    )
                    assert response.status_code in (200, 401, 403, 409), response.text
                elif operation == "holder_undo":
                    response = await client.post(
                        "/holder/v1/card/loss-report/undo",
                        json={
                            "refresh_token": session["refresh_token"],
                            "password": HOLDER_PASSWORD,
                        },
                    )
                    assert response.status_code in (200, 401, 403, 409), response.text
                elif operation == "lapse":
                    await life.lapse_temporary_losses(now=time.time() + 400 * 86_400)
                elif operation == "death":
                    await life.record_death(
                        holder["person_id"], dt.date.today(), "operator:t", "record"
                    )
                elif operation == "issue_again" and current["status"] == "active":
                    again = await world.issue(
                        {**holder, "card_number": current["card_number"]}, password=None
                    )
                    ecard_ids.add(again["ecard"]["id"])
                    session = dict(again["session"])
            except AppError as refusal:
                assert refusal.code in {
                    "invalid_status_transition",
                    "forbidden",
                    "replacement_not_requested",
                    "card_already_active",
                    "status_changed_concurrently",
                    "validation_failed",
                }, refusal.code
            refreshed = await client.post(
                "/holder/v1/session/refresh", json={"refresh_token": session["refresh_token"]}
            )
            if refreshed.status_code == 200:
                session = refreshed.json()
            else:
                assert refreshed.json()["code"] in (
                    "card_not_active",
                    "token_invalid",
                    "ecard_not_active",
                ), refreshed.text
            await _check_invariants(holder["person_id"], ecard_ids)
            reached.update(
                c["status"]
                for c in await Card.select(Card.status).where(Card.person == holder["person_id"])
            )
    assert len(reached) >= 4, (
        f"the sequences hardly moved a card: {reached}"
    )  # the run exercised the rules
