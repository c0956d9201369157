"""Where uses are recorded, read for one time window and described by place, scenario, medium,
channel, result and cross-province — plus a holder reference that never leaves the job.

- online code verifications (``code_verification``): medium ``qr_code``, the verifier's place,
  the card (its row, or its pseudonym's);
- uploaded terminal records (``terminal_record``): ``chip_card``, ``nfc_hce`` or ``qr_code``, the
  terminal's place, the card (by chip reference or HCE certificate; a QR record names its code);
- logins (``oidc_token_family``): ``scan_login``, the card's region, the e-card's card;
- consent decisions (``consent_event``, granted or denied): ``consent``, the card's region, the
  person's latest card.

A place is an institution of the directory the terminal or verifier is linked to (its county and
first scenario), else the terminal's registration (region, kind), else the filing's region and its
directory listing's first scenario.  Online uses have no place: they count under the holder's
card region.  Times: verification, login and consent times are the platform's; a terminal
record's is the terminal's acceptance time (uploaded possibly much later; see ``aggregate``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ecard.codes.tables import CodePseudonym, CodeVerification
from ecard.consent.tables import Consent, ConsentEvent
from ecard.directory.tables import DirectoryApplication, DirectoryInstitution, DirectoryTerminal
from ecard.oidc.tables import OidcTokenFamily
from ecard.registry.tables import ApiClient, Card, ECard
from ecard.statistics import dimensions as dims
from ecard.terminal.tables import HceCertificate, Terminal, TerminalRecord

CHUNK = 500
TERMINAL_MEDIUM = {"card": "chip_card", "hce": "nfc_hce", "qr": "qr_code"}
CONSENT_DECISIONS = ("granted", "denied")


@dataclass(frozen=True)
class Use:
    """One use, described; ``holder`` is a reference such as ``card:<id>`` (None: the record
    names no card), read only by the job to feed a keyed pseudonym to the sketch."""

    at: int
    cell: dims.Cell
    holder: str | None


def _codes(text: str) -> list[str]:
    return [v for v in text.split(",") if v]


def _json_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value or "[]")
    return [str(v) for v in value or []]


async def _rows_in(
    table: Any, column: Any, values: Iterable[Any], *columns: Any
) -> list[dict[str, Any]]:
    wanted = sorted({v for v in values if v is not None})
    rows: list[dict[str, Any]] = []
    for start in range(0, len(wanted), CHUNK):
        rows += await table.select(*columns).where(column.is_in(wanted[start : start + CHUNK]))
    return rows


def _epoch(value: Any) -> int:
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    return int(dt.datetime.fromisoformat(str(value)).timestamp())


class Places:
    """Public registrations read once per run: terminals, institutions, listings, filings."""

    def __init__(self, home_region: str) -> None:
        self.home = home_region
        self.places: dict[str, tuple[str, str]] = {}
        self.client_regions: dict[str, str] = {}
        self.listing: dict[str, str] = {}
        self.channels: set[str] = set()

    async def load(self) -> Places:
        institutions = {
            r["id"]: (r["region"], dims.first_scenario(_codes(r["scenarios"])))
            for r in await DirectoryInstitution.select(
                DirectoryInstitution.id, DirectoryInstitution.region, DirectoryInstitution.scenarios
            ).where(DirectoryInstitution.source == "local")
        }
        for r in await DirectoryApplication.select(
            DirectoryApplication.client_id, DirectoryApplication.scenarios
        ).where(DirectoryApplication.source == "local"):
            self.listing[r["client_id"]] = dims.first_scenario(_codes(r["scenarios"]))
        for r in await ApiClient.select(
            ApiClient.id, ApiClient.regions, ApiClient.kind, ApiClient.capabilities
        ):
            regions = [c for c in _json_list(r["regions"]) if dims.is_region(c)]
            self.client_regions[r["id"]] = regions[0] if regions else self.home
            capabilities = r["capabilities"]
            if isinstance(capabilities, str):
                capabilities = json.loads(capabilities or "{}")
            if r["kind"] == "channel" or "channel" in (capabilities or {}):
                self.channels.add(r["id"])
            self.places[r["id"]] = (
                self.client_regions[r["id"]],
                self.listing.get(r["id"], dims.UNSPECIFIED),
            )
        for r in await Terminal.select(Terminal.id, Terminal.region, Terminal.terminal_kind):
            scenario = dims.TERMINAL_KIND_SCENARIO.get(r["terminal_kind"], dims.UNSPECIFIED)
            self.places[r["id"]] = (r["region"], scenario)
        for r in await DirectoryTerminal.select(
            DirectoryTerminal.terminal, DirectoryTerminal.institution
        ):
            if r["institution"] in institutions:
                self.places[r["terminal"]] = institutions[r["institution"]]
        return self

    def regions(self) -> list[str]:
        """The regions of registered places (terminals, institutions, filings): public."""
        return sorted({region for region, _ in self.places.values()})

    def place(self, client_id: str) -> tuple[str, str]:
        return self.places.get(client_id, (self.home, dims.UNSPECIFIED))

    def channel(self, client_id: str | None) -> str:
        if client_id is None:
            return dims.UNKNOWN_CHANNEL
        return client_id if client_id in self.channels else dims.UNKNOWN_CHANNEL


async def _cards(ids: Iterable[str | None]) -> dict[str, dict[str, Any]]:
    rows = await _rows_in(Card, Card.id, ids, Card.id, Card.region, Card.person)
    return {r["id"]: r for r in rows}


async def verification_uses(places: Places, start: int, end: int) -> list[Use]:
    rows = await CodeVerification.select(
        CodeVerification.at,
        CodeVerification.verifier,
        CodeVerification.card,
        CodeVerification.pseudonym,
        CodeVerification.region,
        CodeVerification.result,
    ).where(
        (CodeVerification.at >= dt.datetime.fromtimestamp(start, dt.UTC))
        & (CodeVerification.at < dt.datetime.fromtimestamp(end, dt.UTC))
    )
    pseudonyms = {
        r["pseudonym"]: r["card"]
        for r in await _rows_in(
            CodePseudonym,
            CodePseudonym.pseudonym,
            (r["pseudonym"] for r in rows if r["card"] is None),
            CodePseudonym.pseudonym,
            CodePseudonym.card,
        )
    }
    uses = []
    for r in rows:
        region, scenario = places.place(r["verifier"])
        card = r["card"] or pseudonyms.get(r["pseudonym"])
        holder = (
            f"card:{card}"
            if card
            else (f"pseudonym:{r['region']}:{r['pseudonym']}" if r["pseudonym"] else None)
        )
        cell = dims.Cell(
            region,
            scenario,
            "qr_code",
            dims.UNKNOWN_CHANNEL,
            dims.result_of(r["result"]),
            dims.cross_of(r["region"], region),
        )
        uses.append(Use(_epoch(r["at"]), cell, holder))
    return uses


async def terminal_uses(places: Places, start: int, end: int) -> list[Use]:
    rows = await TerminalRecord.select(
        TerminalRecord.terminal,
        TerminalRecord.reference,
        TerminalRecord.accepted_at,
        TerminalRecord.kind,
        TerminalRecord.result,
    ).where((TerminalRecord.accepted_at >= start) & (TerminalRecord.accepted_at < end))
    chips = {
        r["chip_reference"]: r
        for r in await _rows_in(
            Card,
            Card.chip_reference,
            (r["reference"] for r in rows if r["kind"] == "card"),
            Card.id,
            Card.region,
            Card.chip_reference,
        )
    }
    certificates = {
        r["id"]: r
        for r in await _rows_in(
            HceCertificate,
            HceCertificate.id,
            (r["reference"] for r in rows if r["kind"] == "hce"),
            HceCertificate.id,
            HceCertificate.card,
            HceCertificate.ecard,
        )
    }
    ecards = {
        r["id"]: r["channel"]
        for r in await _rows_in(
            ECard, ECard.id, (c["ecard"] for c in certificates.values()), ECard.id, ECard.channel
        )
    }
    cards = await _cards(c["card"] for c in certificates.values())
    uses = []
    for r in rows:
        region, scenario = places.place(r["terminal"])
        medium = TERMINAL_MEDIUM.get(r["kind"], "chip_card")
        card: dict[str, Any] | None = None
        channel = dims.NO_CHANNEL
        if r["kind"] == "card":
            card = chips.get(r["reference"])
            holder = f"card:{card['id']}" if card else f"chip:{r['reference']}"
        elif r["kind"] == "hce":
            certificate = certificates.get(r["reference"])
            card = cards.get(certificate["card"]) if certificate else None
            channel = places.channel(ecards.get(certificate["ecard"]) if certificate else None)
            holder = f"card:{card['id']}" if card else f"hce:{r['reference']}"
        else:  # a QR code accepted offline names only the code
            channel = dims.UNKNOWN_CHANNEL
            holder = f"code:{r['reference']}"
        cell = dims.Cell(
            region,
            scenario,
            medium,
            channel,
            dims.result_of(r["result"]),
            dims.cross_of(card["region"] if card else None, region),
        )
        uses.append(Use(int(r["accepted_at"]), cell, holder))
    return uses


async def login_uses(places: Places, start: int, end: int) -> list[Use]:
    rows = await OidcTokenFamily.select(
        OidcTokenFamily.client, OidcTokenFamily.ecard_id, OidcTokenFamily.created_at
    ).where(
        (OidcTokenFamily.created_at >= dt.datetime.fromtimestamp(start, dt.UTC))
        & (OidcTokenFamily.created_at < dt.datetime.fromtimestamp(end, dt.UTC))
    )
    ecards = {
        r["id"]: r
        for r in await _rows_in(
            ECard, ECard.id, (r["ecard_id"] for r in rows), ECard.id, ECard.card, ECard.channel
        )
    }
    cards = await _cards(e["card"] for e in ecards.values())
    uses = []
    for r in rows:
        ecard = ecards.get(r["ecard_id"])
        card = cards.get(ecard["card"]) if ecard else None
        client_region = places.client_regions.get(r["client"], places.home)
        region = card["region"] if card else client_region
        cell = dims.Cell(
            region,
            places.listing.get(r["client"], dims.UNSPECIFIED),
            "scan_login",
            places.channel(ecard["channel"] if ecard else None),
            "success",
            dims.cross_of(card["region"] if card else None, client_region),
        )
        uses.append(Use(_epoch(r["created_at"]), cell, f"card:{card['id']}" if card else None))
    return uses


async def consent_uses(places: Places, start: int, end: int) -> list[Use]:
    rows = await ConsentEvent.select(
        ConsentEvent.consent, ConsentEvent.event, ConsentEvent.time_ms, ConsentEvent.relying_party
    ).where(
        (ConsentEvent.time_ms >= start * 1000)
        & (ConsentEvent.time_ms < end * 1000)
        & ConsentEvent.event.is_in(list(CONSENT_DECISIONS))
    )
    persons = {
        r["id"]: r["person"]
        for r in await _rows_in(
            Consent, Consent.id, (r["consent"] for r in rows), Consent.id, Consent.person
        )
    }
    latest: dict[str, dict[str, Any]] = {}
    for card in sorted(
        await _rows_in(
            Card, Card.person, persons.values(), Card.id, Card.region, Card.person, Card.created_at
        ),
        key=lambda c: str(c["created_at"]),
    ):
        latest[card["person"]] = card
    uses = []
    for r in rows:
        held = latest.get(persons.get(r["consent"]) or "")
        client_region = places.client_regions.get(r["relying_party"], places.home)
        cell = dims.Cell(
            held["region"] if held else client_region,
            places.listing.get(r["relying_party"], dims.UNSPECIFIED),
            "consent",
            dims.UNKNOWN_CHANNEL,
            dims.result_of(r["event"]),
            dims.cross_of(held["region"] if held else None, client_region),
        )
        uses.append(Use(int(r["time_ms"]) // 1000, cell, f"card:{held['id']}" if held else None))
    return uses


SOURCES = (verification_uses, terminal_uses, login_uses, consent_uses)


async def uses_between(places: Places, start: int, end: int) -> list[Use]:
    """Every use recorded in [start, end) (epoch seconds)."""
    found: list[Use] = []
    for source in SOURCES:
        found += await source(places, start, end)
    return found


async def terminal_hours_uploaded_after(record_id: int) -> tuple[list[int], int]:
    """The hours (UTC starts) of terminal records uploaded since ``record_id`` — offline records
    arrive late, so those hours are aggregated again — and the latest record id."""
    rows = await TerminalRecord.select(TerminalRecord.id, TerminalRecord.accepted_at).where(
        TerminalRecord.id > record_id
    )
    hours = sorted({dims.hour_start(int(r["accepted_at"])) for r in rows})
    return hours, max((int(r["id"]) for r in rows), default=record_id)
