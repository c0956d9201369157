"""What the holder's timeline answers: one page of items, newest first, each tagged by ``kind``.

Items that belong to one card carry ``card``: its masked number (only the last four characters
visible), so the holder sees which card of the lineage a use was made with — before or after a
replacement.  Parties are named by their registered ids and filed names; nothing here names
another person.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import msgspec


class TimelineVerification(msgspec.Struct, kw_only=True, tag_field="kind", tag="verification"):
    """An online verification of one of the holder's codes."""

    at: dt.datetime
    card: str  # masked card number
    verifier_id: str
    verifier_name: str | None  # the institution's filed name
    result: str  # "valid" or a reason code
    region: str | None  # the issuing region the code named


class TimelineTerminalAcceptance(
    msgspec.Struct, kw_only=True, tag_field="kind", tag="terminal_acceptance"
):
    """An acceptance at a terminal, signed offline and uploaded later (time: the
    terminal's clock)."""

    at: dt.datetime
    card: str  # masked card number
    terminal_id: str
    terminal_name: str | None  # the terminal's filed name, if the terminal is registered
    institution: str | None
    medium: Literal["card", "hce"]  # the chip card, or the e-card over NFC
    result: str  # accepted | refused
    reason: str | None  # the refusal code


class TimelineLogin(msgspec.Struct, kw_only=True, tag_field="kind", tag="login"):
    """A scan-to-login (扫码登录) the holder answered in one of their e-card apps."""

    at: dt.datetime
    relying_party_id: str
    relying_party_name: str | None
    result: Literal["approved", "denied"]
    device: bool  # a device login by user code (no browser on the device)


class TimelineConsentAccess(msgspec.Struct, kw_only=True, tag_field="kind", tag="consent_access"):
    """A read of the holder's data under a grant they gave (精准授权)."""

    at: dt.datetime
    consent_id: str
    relying_party_id: str
    relying_party_name: str | None
    scopes: list[str]


class TimelineCardEvent(msgspec.Struct, kw_only=True, tag_field="kind", tag="card_event"):
    """A change of one card's status: issued, lost, replaced, cancelled, …"""

    at: dt.datetime
    card: str  # masked card number
    status: str  # the status the card moved to
    from_status: str | None  # null when the card came into being


TimelineItem = (
    TimelineVerification
    | TimelineTerminalAcceptance
    | TimelineLogin
    | TimelineConsentAccess
    | TimelineCardEvent
)


class TimelinePage(msgspec.Struct, kw_only=True):
    items: list[TimelineItem]
    limit: int
    #: give it back as ``before`` for the next (older) page; null on the last page
    next: str | None
