"""The card's life as states and rules (pure: no I/O).

One physical card (社保卡) and every e-card bound to it share one status.  This module is the only
place that says which statuses exist, which moves between them are allowed and by whom, and
whether a card is usable right now; everything else asks it.  ``docs/lifecycle.md`` draws it.

::

    produced ─→ in_stock ─→ issued ─→ active ⇄ lost_temporary (临时挂失, lapses by itself)
                                        │ ⇅        │
                                        │ frozen   ↓
                                        ├──────→ lost (正式挂失) ─→ active (解挂 at an outlet)
                                        ↓          ↓
                               replacement_pending (补领/换领 requested: no 解挂 any more)
                                        ↓
                                     replaced (final; its e-cards now belong to the new card)

    any card a person holds ─→ cancelled (注销) | deceased (死亡): final

``card_number``-less states do not exist: a stock card (库存卡) is a personalised card that was
produced for a person and waits at an outlet to be handed over; 立等可取 creates it ``active``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol, TypeVar

P = TypeVar("P")
D = TypeVar("D")


class CardStatus(StrEnum):
    PRODUCED = "produced"  # made by the card factory, not yet at an outlet
    IN_STOCK = "in_stock"  # at an outlet, waiting for its holder (库存卡)
    ISSUED = "issued"  # handed over, not yet activated (启用)
    ACTIVE = "active"
    LOST_TEMPORARY = "lost_temporary"  # 临时挂失: by the holder, by phone or at a bank; lapses
    LOST = "lost"  # 正式挂失: at an outlet
    FROZEN = "frozen"  # 冻结 by an operator (suspected fraud, a court order)
    REPLACEMENT_PENDING = "replacement_pending"  # 补领/换领 requested
    REPLACED = "replaced"  # final: a newer card of the same person took over
    CANCELLED = "cancelled"  # final: 注销
    DECEASED = "deceased"  # final: the holder died


Actor = Literal["holder", "operator", "system"]

#: Statuses a card never leaves.
FINAL: frozenset[CardStatus] = frozenset(
    {CardStatus.REPLACED, CardStatus.CANCELLED, CardStatus.DECEASED}
)
#: A stock card: made for a person, not yet in their hands and in use.
STOCK: frozenset[CardStatus] = frozenset(
    {CardStatus.PRODUCED, CardStatus.IN_STOCK, CardStatus.ISSUED}
)
#: The card a person holds (at most one per person): it is the one their e-cards are bound to.
HELD: frozenset[CardStatus] = frozenset(
    {
        CardStatus.ACTIVE,
        CardStatus.LOST_TEMPORARY,
        CardStatus.LOST,
        CardStatus.FROZEN,
        CardStatus.REPLACEMENT_PENDING,
    }
)
#: Statuses whose card is on the revocation list and the chip blacklist: a card that was in a
#: holder's hands and must not be accepted now (a stock card never was; it is refused online).
REVOKED: frozenset[CardStatus] = frozenset(HELD - {CardStatus.ACTIVE}) | FINAL
#: Statuses that end the card's e-cards and holder sessions for good.  The others only suspend
#: them; ``replaced`` hands the e-cards, and with them their sessions, to the new card.
ENDS_SESSIONS: frozenset[CardStatus] = frozenset({CardStatus.CANCELLED, CardStatus.DECEASED})

_S = CardStatus
#: Every allowed move, and who may make it.
TRANSITIONS: dict[CardStatus, dict[CardStatus, frozenset[str]]] = {
    _S.PRODUCED: {
        _S.IN_STOCK: frozenset({"operator"}),
        _S.CANCELLED: frozenset({"operator"}),
        _S.DECEASED: frozenset({"operator", "system"}),
    },
    _S.IN_STOCK: {
        _S.ISSUED: frozenset({"operator"}),
        _S.ACTIVE: frozenset({"operator"}),
        _S.CANCELLED: frozenset({"operator"}),
        _S.DECEASED: frozenset({"operator", "system"}),
    },
    _S.ISSUED: {
        _S.ACTIVE: frozenset({"operator", "holder"}),
        _S.CANCELLED: frozenset({"operator"}),
        _S.DECEASED: frozenset({"operator", "system"}),
    },
    _S.ACTIVE: {
        _S.LOST_TEMPORARY: frozenset({"holder", "operator"}),
        _S.LOST: frozenset({"operator"}),
        _S.FROZEN: frozenset({"operator"}),
        _S.REPLACEMENT_PENDING: frozenset({"operator"}),  # 换领: damaged, expired, changed data
        _S.CANCELLED: frozenset({"operator"}),
        _S.DECEASED: frozenset({"operator", "system"}),
    },
    _S.LOST_TEMPORARY: {
        _S.ACTIVE: frozenset({"holder", "operator", "system"}),  # undone, or lapsed
        _S.LOST: frozenset({"operator"}),
        _S.REPLACEMENT_PENDING: frozenset({"operator"}),
        _S.CANCELLED: frozenset({"operator"}),
        _S.DECEASED: frozenset({"operator", "system"}),
    },
    _S.LOST: {
        _S.ACTIVE: frozenset({"operator"}),  # 解挂 at an outlet
        _S.REPLACEMENT_PENDING: frozenset({"operator"}),
        _S.CANCELLED: frozenset({"operator"}),
        _S.DECEASED: frozenset({"operator", "system"}),
    },
    _S.FROZEN: {
        _S.ACTIVE: frozenset({"operator"}),
        _S.REPLACEMENT_PENDING: frozenset({"operator"}),
        _S.CANCELLED: frozenset({"operator"}),
        _S.DECEASED: frozenset({"operator", "system"}),
    },
    _S.REPLACEMENT_PENDING: {
        _S.REPLACED: frozenset({"operator"}),
        _S.LOST: frozenset({"operator"}),  # the request withdrawn: the card stays lost, never 解挂
        _S.CANCELLED: frozenset({"operator"}),
        _S.DECEASED: frozenset({"operator", "system"}),
    },
    _S.REPLACED: {},
    _S.CANCELLED: {},
    _S.DECEASED: {},
}

#: Why a card is replaced (补领 when lost, 换领 otherwise).
ReplacementReason = Literal["lost", "damaged", "expired", "name_changed", "number_changed", "other"]
REPLACEMENT_REASONS: frozenset[str] = frozenset(ReplacementReason.__args__)  # type: ignore[attr-defined]


class TransitionRefused(Exception):
    """A move the rules do not allow; ``code`` is the error catalogue's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def parse_status(value: str) -> CardStatus:
    try:
        return CardStatus(value)
    except ValueError:
        raise TransitionRefused("validation_failed", f"unknown card status {value!r}") from None


def check_transition(current: str, target: str, actor: Actor) -> None:
    """Rule: a card moves only along :data:`TRANSITIONS`, and only by an actor allowed that move."""
    source, goal = parse_status(current), parse_status(target)
    allowed = TRANSITIONS[source].get(goal)
    if allowed is None:
        raise TransitionRefused("invalid_status_transition", f"{source} → {goal} is not allowed")
    if actor not in allowed:
        raise TransitionRefused("forbidden", f"{source} → {goal} cannot be done by a {actor}")


ExpiredCardPolicy = Literal["suspend", "continue"]


@dataclass(frozen=True, slots=True)
class CardFacts:
    status: str
    expiry_date: dt.date


def is_expired(expiry_date: dt.date, today: dt.date) -> bool:
    """A card is valid through its expiry date (inclusive)."""
    return expiry_date < today


def is_usable(
    card: CardFacts, today: dt.date, expired_policy: ExpiredCardPolicy = "continue"
) -> bool:
    """The one answer to "may this card, and every e-card bound to it, be used now":
    active, and — where the province suspends e-cards of expired physical cards — not expired."""
    if card.status != CardStatus.ACTIVE:
        return False
    return expired_policy == "continue" or not is_expired(card.expiry_date, today)


class ExpiryPolicy(Protocol):
    """What :func:`card_usable` reads of a province's policy (``ecard.settings.CardPolicy``)."""

    @property
    def expired_card(self) -> ExpiredCardPolicy: ...


def card_usable(
    policies: Mapping[str, ExpiryPolicy],
    status: str,
    expiry_date: dt.date,
    region: str,
    today: dt.date | None = None,
) -> bool:
    """:func:`is_usable` under the policy of the card's province (``Settings.card_policies``)."""
    policy = policy_for(policies, region, None)
    expired: ExpiredCardPolicy = policy.expired_card if policy is not None else "continue"
    return is_usable(CardFacts(status, expiry_date), today or dt.date.today(), expired)


def is_revoked(status: str) -> bool:
    """Whether a card belongs on the revocation list and the chip blacklist."""
    return status in REVOKED


def ends_sessions(status: str) -> bool:
    return status in ENDS_SESSIONS


def leaves_usable(before: str, after: str) -> bool:
    """A move after which the card's codes, tokens and chip must stop working at once."""
    return before == CardStatus.ACTIVE and after != CardStatus.ACTIVE


def temporary_loss_lapses_at(reported_at: float, lapse_days: int) -> float:
    """When a 临时挂失 lapses by itself (the card is active again unless made formal before)."""
    return reported_at + lapse_days * 86_400.0


def policy_key(policies: Mapping[str, object], region: str) -> str | None:
    """Which entry of a per-province policy map applies to a card of ``region``: the card's own
    region code, else its province (``xx0000``), else ``"*"``; None when none is set."""
    for key in (region, region[:2] + "0000", "*"):
        if key in policies:
            return key
    return None


def policy_for(policies: Mapping[str, P], region: str, default: D) -> P | D:
    """The entry of a per-province policy map that applies to ``region`` (:func:`policy_key`),
    else ``default``: the one way every per-province setting is resolved."""
    key = policy_key(policies, region)
    return policies[key] if key is not None else default
