"""Holder sessions: issued with an e-card, rotated by refresh, bound to a device key (DPoP,
RFC 9449), listed and ended by the holder, suspended and ended with their card.

A session is a chain of rows: each refresh ends its row (``ended_reason = "rotated"``) and
inserts the next one, carrying ``family`` (the chain's first row id: what the holder sees as the
session's id), ``started_at``, ``jkt`` and ``last_used`` (the time of the refresh).

Rules kept here:
- a session bound to a device key (``jkt``) is refreshed only with a DPoP proof of that key,
  used once; its tokens stay bound (token_type ``DPoP``);
- a refresh token is single use: one that comes back after its rotation (``ended_reason`` is
  ``rotated``, and only then) ends every session of its e-card (``session.refresh_reuse``);
- a session suspended with its card (``card_suspended``) continues when the card is active again;
  while it is not, a refresh answers ``card_not_active`` and changes nothing; every other ended
  session is over for good (``token_invalid``);
- what ends tokens is revoked in the shared store first (``revoke_holder_access``), then written
  to the database, then audited (ids only);
- an e-card has at most ``holder_max_sessions_per_ecard`` live sessions: a new one ends the oldest
  (``session.evicted``).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from piccolo.columns.combination import Or

from ecard.auth import (
    HOLDER_REFRESH_PREFIX,
    DpopContext,
    HolderAccess,
    HolderPrincipal,
    check_holder_proof,
    consume_proof,
    dpop_context,
    holder_access_token,
    new_token,
    revoke_holder_access,
)
from ecard.crypto.dpop import DpopProof
from ecard.crypto.fields import secret_digest
from ecard.errors import AppError
from ecard.platform import Platform
from ecard.registry import lifecycle, schemas
from ecard.registry.audit import audit, new_id
from ecard.registry.tables import ECard, HolderSession

__all__ = [
    "ENDED_REASONS",
    "DpopContext",
    "check_session_key",
    "dpop_context",
    "end_card_sessions",
    "end_session",
    "list_sessions",
    "new_session",
    "refresh_session",
    "revoke_ecard_sessions",
    "revoke_session",
    "suspend_card_sessions",
    "verify_session_key",
]

#: Why a session row ended (``HolderSession.ended_reason``).
ENDED_REASONS = frozenset(
    {
        "rotated",
        "logout",
        "revoked_by_holder",
        "evicted",
        "reuse",
        "card_suspended",
        "card_ended",
        "unbound",
    }
)
#: How many characters of the device key's thumbprint the holder's list shows.
DEVICE_KEY_PREFIX = 8


def _live() -> Or:
    """A row whose tokens may still be refreshed: not ended, or suspended with its card."""
    return HolderSession.revoked.eq(False) | (HolderSession.ended_reason == "card_suspended")


def _of_card(card_id: str) -> Any:
    return HolderSession.ecard.is_in(ECard.select(ECard.id).where(ECard.card == card_id))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- the device key ---------------------------------------------------------------------------


def check_session_key(
    platform: Platform, row: dict[str, Any], dpop: DpopContext | None
) -> DpopProof | None:
    """Rule: a session bound to a device key (``row["jkt"]``) is used only with a DPoP proof of
    that key for this request (every rule but the replay one: :func:`verify_session_key` adds
    it).  None for an unbound session, whatever the request carries.  Raises
    ``invalid_dpop_proof`` / ``use_dpop_nonce``."""
    jkt = row.get("jkt")
    if jkt is None:
        return None
    return check_holder_proof(platform, dpop, jkt=jkt)


async def verify_session_key(
    platform: Platform, row: dict[str, Any], dpop: DpopContext | None
) -> None:
    """:func:`check_session_key`, and the proof used once."""
    proof = check_session_key(platform, row, dpop)
    if proof is not None:
        await consume_proof(platform, proof)


# --- issuance and refresh -----------------------------------------------------------------------


async def new_session(
    platform: Platform,
    ecard_id: str,
    card_id: str,
    channel_id: str,
    *,
    jkt: str | None = None,
    family: str | None = None,
    started_at: dt.datetime | None = None,
    last_used: dt.datetime | None = None,
    evict: bool = True,
) -> schemas.TokenPair:
    """A new session row and its token pair (bound to ``jkt`` when given); ``family`` and
    ``started_at`` continue a chain (a refresh).  With ``evict``, the e-card's live sessions
    beyond ``holder_max_sessions_per_ecard`` end, oldest first.  Run it in the caller's
    transaction."""
    settings = platform.settings
    session_id, issued_at = new_id(), time.time()
    now = int(issued_at)
    access = holder_access_token(
        platform,
        HolderAccess(
            session_id,
            ecard_id,
            card_id,
            channel_id,
            issued_at,
            now + settings.holder_access_ttl,
            jkt,
        ),
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
            jkt=jkt,
            family=family,
            started_at=started_at or _now(),
            last_used=last_used,
        )
    ).run()
    if evict:
        await _evict_beyond_cap(platform, ecard_id, channel_id)
    return schemas.TokenPair(
        access_token=access,
        refresh_token=refresh,
        token_type="DPoP" if jkt else "Bearer",
        expires_in=settings.holder_access_ttl,
        refresh_expires_in=settings.holder_refresh_ttl,
    )


async def _evict_beyond_cap(platform: Platform, ecard_id: str, channel_id: str) -> None:
    """Rule: at most ``holder_max_sessions_per_ecard`` live sessions per e-card; the oldest go.
    (Two issuances racing may leave one more for a while: the next issuance trims it.)"""
    rows = await HolderSession.select(
        HolderSession.id, HolderSession.started_at, HolderSession.created_at
    ).where(
        (HolderSession.ecard == ecard_id)
        & _live()
        & (HolderSession.refresh_expires >= int(time.time()))
    )
    cap = platform.settings.holder_max_sessions_per_ecard
    if len(rows) <= cap:
        return
    rows.sort(key=lambda r: (_aware(r["started_at"] or r["created_at"]), r["id"]))
    victims = [r["id"] for r in rows[: len(rows) - cap]]
    for victim in victims:
        await revoke_holder_access(platform, session_id=victim)
    await HolderSession.update(
        {HolderSession.revoked: True, HolderSession.ended_reason: "evicted"}
    ).where(HolderSession.id.is_in(victims) & _live())
    for victim in victims:
        await audit(
            f"channel:{channel_id}",
            "session.evicted",
            "holder_session",
            victim,
            "session cap",
            ecard=ecard_id,
        )


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite may give naive datetimes (UTC); PostgreSQL aware ones: compare them alike."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def refresh_session(
    platform: Platform, refresh_token: str, dpop: DpopContext | None = None
) -> schemas.TokenPair:
    """Rotate a session's tokens, one rule at a time:

    1. the refresh token names a session whose refresh lifetime is not over (``token_invalid``);
    2. a bound session comes with a DPoP proof of its key, used once (``invalid_dpop_proof``);
    3. an ended session: reused after its rotation ends every session of the e-card
       (``token_invalid``, audited ``session.refresh_reuse``); suspended with its card goes on;
       any other reason is final (``token_invalid``, nothing audited);
    4. the card is usable (``card_not_active``: :func:`ecard.registry.lifecycle.card_usable`)
       and the e-card too (``ecard_not_active``); nothing is rotated otherwise;
    5. the row is rotated (exactly one of two racing refreshes wins) and the next row issued for
       the card the e-card belongs to now (after a replacement: the new card)."""
    row = (
        await HolderSession.select(
            HolderSession.id,
            HolderSession.revoked,
            HolderSession.ended_reason,
            HolderSession.refresh_expires,
            HolderSession.jkt,
            HolderSession.family,
            HolderSession.started_at,
            HolderSession.created_at,
            HolderSession.ecard.id,
            HolderSession.ecard.status,
            HolderSession.ecard.channel,
            HolderSession.ecard.card.id,
            HolderSession.ecard.card.status,
            HolderSession.ecard.card.expiry_date,
            HolderSession.ecard.card.region,
        )
        .where(HolderSession.refresh_digest == secret_digest(refresh_token))
        .first()
    )
    if row is None or row["refresh_expires"] < time.time():
        raise AppError("token_invalid")
    await verify_session_key(platform, row, dpop)
    if row["revoked"]:
        if row["ended_reason"] == "rotated":
            # a rotated token came back: someone holds a copy, so end the legitimate session too
            await revoke_ecard_sessions(platform, row["ecard.id"], "session.refresh_reuse")
            raise AppError("token_invalid", "refresh token reuse detected; sessions revoked")
        if row["ended_reason"] != "card_suspended":
            raise AppError("token_invalid", "this session has ended")
    # active, and not expired where the province suspends expired cards
    if not lifecycle.card_usable(
        platform.settings.card_policies,
        row["ecard.card.status"],
        row["ecard.card.expiry_date"],
        row["ecard.card.region"],
    ):
        raise AppError("card_not_active")
    if row["ecard.status"] != "active":
        raise AppError("ecard_not_active")
    await revoke_holder_access(platform, session_id=row["id"])
    async with platform.engine.transaction():
        rotated = (
            await HolderSession.update(
                {HolderSession.revoked: True, HolderSession.ended_reason: "rotated"}
            )
            .where((HolderSession.id == row["id"]) & _live())
            .returning(HolderSession.id)
        )
        if not rotated:  # a concurrent refresh with the same token won
            raise AppError("token_invalid")
        return await new_session(
            platform,
            row["ecard.id"],
            row["ecard.card.id"],
            row["ecard.channel"],
            jkt=row["jkt"],
            family=row["family"] or row["id"],
            started_at=row["started_at"] or row["created_at"],
            last_used=_now(),
            evict=False,
        )


# --- ending sessions ----------------------------------------------------------------------------


async def revoke_ecard_sessions(
    platform: Platform, ecard_id: str, action: str, reason: str = "reuse"
) -> None:
    """End every live session of an e-card (``reason``), audited as ``action``."""
    await revoke_holder_access(platform, ecard_id=ecard_id)
    async with platform.engine.transaction():
        await HolderSession.update(
            {HolderSession.revoked: True, HolderSession.ended_reason: reason}
        ).where((HolderSession.ecard == ecard_id) & _live())
        await audit(f"holder:{ecard_id}", action, "ecard", ecard_id)


async def end_session(platform: Platform, holder: HolderPrincipal) -> None:
    """Logout: the holder's current session ends (``logout``)."""
    await revoke_holder_access(platform, session_id=holder.session_id)
    await HolderSession.update(
        {HolderSession.revoked: True, HolderSession.ended_reason: "logout"}
    ).where((HolderSession.id == holder.session_id) & _live())


async def suspend_card_sessions(platform: Platform, card_id: str) -> None:
    """The card stopped being usable (lost, frozen …): its live sessions are suspended; they
    continue (refresh) once the card is active again.  Database only, in the caller's
    transaction; the caller has called ``revoke_holder_access(card_id=...)`` before."""
    await HolderSession.update(
        {HolderSession.revoked: True, HolderSession.ended_reason: "card_suspended"}
    ).where(_of_card(card_id) & HolderSession.revoked.eq(False))


async def end_card_sessions(platform: Platform, card_id: str, reason: str) -> None:
    """The card's live and suspended sessions end for good with ``reason`` (``card_ended``, …).
    Database only, in the caller's transaction; the caller has called
    ``revoke_holder_access(card_id=...)`` before."""
    if reason not in ENDED_REASONS:
        raise ValueError(f"unknown session end reason {reason!r}")
    await HolderSession.update(
        {HolderSession.revoked: True, HolderSession.ended_reason: reason}
    ).where(_of_card(card_id) & _live())


# --- the holder's own sessions ------------------------------------------------------------------


async def _card_of(holder: HolderPrincipal) -> str | None:
    """The card the holder's e-card belongs to now (a replacement moves e-cards to the new card)."""
    row = await ECard.select(ECard.card).where(ECard.id == holder.ecard_id).first()
    return row["card"] if row else None


async def list_sessions(
    platform: Platform, holder: HolderPrincipal
) -> list[schemas.HolderSessionView]:
    """The live sessions of every active e-card of the holder's card (every channel app), the
    newest first; ``current`` marks the one of this request."""
    card_id = await _card_of(holder)
    if card_id is None:
        return []
    rows = await HolderSession.select(
        HolderSession.id,
        HolderSession.family,
        HolderSession.jkt,
        HolderSession.created_at,
        HolderSession.started_at,
        HolderSession.last_used,
        HolderSession.ecard.channel.id,
        HolderSession.ecard.channel.name,
    ).where(
        (HolderSession.ecard.card == card_id)
        & (HolderSession.ecard.status == "active")
        & _live()
        & (HolderSession.refresh_expires >= int(time.time()))
    )
    views = [
        schemas.HolderSessionView(
            id=row["family"] or row["id"],
            channel_id=row["ecard.channel.id"],
            channel_name=row["ecard.channel.name"],
            created_at=_aware(row["started_at"] or row["created_at"]),
            current=row["id"] == holder.session_id,
            last_used=_aware(row["last_used"]) if row["last_used"] else None,
            device_key=row["jkt"][:DEVICE_KEY_PREFIX] if row["jkt"] else None,
        )
        for row in rows
    ]
    views.sort(key=lambda view: (view.created_at, view.id), reverse=True)
    return views


async def revoke_session(platform: Platform, holder: HolderPrincipal, session_id: str) -> None:
    """End one of the holder's sessions (any channel app of the same card; the current one too).
    Another person's session, an ended one or an unknown id: ``session_not_found``, alike.
    Revoked in the store first, then the database, then audited (ids only)."""
    card_id = await _card_of(holder)
    rows = (
        []
        if card_id is None or len(session_id) > 64
        else await HolderSession.select(HolderSession.id).where(
            (HolderSession.ecard.card == card_id)
            & _live()
            & (
                (HolderSession.family == session_id)
                | (HolderSession.family.is_null() & (HolderSession.id == session_id))
            )
        )
    )
    if not rows:
        raise AppError("session_not_found")
    ids = [row["id"] for row in rows]
    for row_id in ids:
        await revoke_holder_access(platform, session_id=row_id)
    async with platform.engine.transaction():
        await HolderSession.update(
            {HolderSession.revoked: True, HolderSession.ended_reason: "revoked_by_holder"}
        ).where(HolderSession.id.is_in(ids) & _live())
        await audit(holder.actor, "session.revoke", "holder_session", session_id)
