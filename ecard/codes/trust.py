"""The platform's side of the offline kit: the trust list from the keyring, the revocation list
from the registry (kept as a versioned log), and the offline package, each signed with the root key.

Signed documents are cached per worker and re-signed once per :data:`RESIGN_SECONDS` bucket, so a
burst of downloads costs one signature and the ETag stays put between re-signings.
"""

from __future__ import annotations

import csv
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources

import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.auth import put_revocation
from ecard.codes.federation import Federation
from ecard.codes.tables import RevocationChange, RevocationHead
from ecard.crypto.fields import keyed_digest
from ecard.crypto.keyring import KeyRecord, Keyring
from ecard.errors import AppError
from ecard.offline import (
    DEFAULT_SKEW_SECONDS,
    OfflineLimits,
    OfflinePackage,
    RevocationList,
    RevocationSet,
    RevokedCard,
    TrustedKey,
    TrustList,
    TrustStore,
    build_revocation_delta,
    build_revocation_list,
    sign_offline_package,
    sign_revocation_delta,
    sign_revocation_list,
    sign_trust_list,
)
from ecard.offline.code_format import MAX_LIFETIME
from ecard.offline.revocation import CardRef, set_digest
from ecard.platform import Platform
from ecard.registry.tables import Card, CardStatusEvent
from ecard.store.db import is_unique_violation

PSEUDONYM_BYTES = 16
RESIGN_SECONDS = 300  # a signed list is reused for this long, then signed afresh
TRUST_LIST_VALIDITY = 86_400  # next_update = issued_at + this
REVOCATION_LIST_VALIDITY = 3_600  # verifiers online now and then refresh at least hourly
ACTIVE_KEY_VALIDITY = 5 * 365 * 86_400  # nominal window of an active issuer key
REVOCATION_REFRESH_SECONDS = 1.0  # the registry is looked at at most this often per worker
#: Status events that may commit out of id order (concurrent transactions); they are re-read at
#: every change, far more than ever commit while one status change is in flight.
EVENT_WINDOW = 1_000
#: Every this long a worker rebuilds its view from every non-active card, whatever the events said.
RECONCILE_SECONDS = 600.0
OFFLINE_LIMITS = OfflineLimits(
    max_offline_seconds=3 * 86_400, max_offline_acceptances=500, accepted_kinds=["card", "code"]
)
REVOKED_STATUSES = ("lost", "frozen", "cancelled", "deceased")
_HEAD_ID = 1


def card_pseudonym(pseudonym_key: bytes, card_id: str) -> bytes:
    """The card's pseudonym in codes and lists: keyed HMAC of the card id, 16 bytes."""
    return keyed_digest(pseudonym_key, "card-pseudonym", card_id)[:PSEUDONYM_BYTES]


def code_withdrawal_key(pseudonym: bytes) -> str:
    """Shared-store key of the time after which a card's codes are accepted again online."""
    return f"code-off:{pseudonym.hex()}"


async def withdraw_codes(platform: Platform, card_id: str) -> None:
    """Refuse online, at once and on every worker, every code issued so far for the card: a
    verification reads this marker instead of the card's row.  Call it *before* the status change
    it reflects (as ``revoke_holder_access``); the marker outlives every code issued before it."""
    key = code_withdrawal_key(card_pseudonym(platform.pseudonym_key, card_id))
    await put_revocation(platform, key, MAX_LIFETIME + DEFAULT_SKEW_SECONDS)


@lru_cache(maxsize=64)
def private_key_of(private_pem: str) -> ec.EllipticCurvePrivateKey:
    """Parsing a PEM costs more than a signature; keys are parsed once per worker."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("issuer and root keys are P-256")
    return key


@cache
def region_names() -> dict[str, str]:
    with resources.files("ecard.registry").joinpath("regions.csv").open(encoding="utf-8") as f:
        return {row["code"]: row["name_zh"] for row in csv.DictReader(f)}


# --- trust list ------------------------------------------------------------------------------


def _trusted_key(record: KeyRecord) -> TrustedKey:
    region = record.region or ""
    if record.status == "withdrawn":
        not_after = max(record.withdrawn_at or record.created_at, record.created_at)
    elif record.status == "retired":
        not_after = record.verify_until or record.created_at
    else:
        not_after = record.created_at + ACTIVE_KEY_VALIDITY
    jwk = {k: v for k, v in record.public_jwk().items() if k in ("crv", "kty", "x", "y")}
    return TrustedKey(
        region=region,
        kid=record.kid,
        jwk=jwk,
        not_before=record.created_at,
        not_after=not_after,
        status=record.status,
        issuer_name=region_names().get(region, ""),
    )


def trust_list_version(ring: Keyring) -> int:
    """Moves forward whenever a key is added, retired or withdrawn (the latest such moment)."""
    moments = [
        moment
        for key in ring.issuer_keys()
        for moment in (key.created_at, key.retired_at, key.withdrawn_at)
        if moment is not None
    ]
    return max(moments, default=1)


def build_trust_list(ring: Keyring, issued_at: int, validity: int = TRUST_LIST_VALIDITY) -> TrustList:
    """Every issuer key a verifier may meet: active, retired (until its window ends) and withdrawn
    (so codes it signed fail as ``key_withdrawn`` rather than ``unknown_key``)."""
    keys = [
        _trusted_key(record)
        for record in ring.issuer_keys()
        if record.status != "retired" or (record.verify_until or 0) > issued_at
    ]
    return TrustList(
        version=trust_list_version(ring),
        issued_at=issued_at,
        next_update=issued_at + validity,
        keys=keys,
    )


# --- revocation log --------------------------------------------------------------------------


def _entry(region: str, pseudonym_hex: str, reason: str, revoked_at: int) -> RevokedCard:
    return RevokedCard(
        region=region, pseudonym=bytes.fromhex(pseudonym_hex), reason=reason, revoked_at=revoked_at
    )


@dataclass(frozen=True, slots=True)
class RevocationState:
    version: int
    entries: dict[CardRef, RevokedCard]

    def as_list(self, issued_at: int, validity: int) -> RevocationList:
        return build_revocation_list(
            self.entries.values(),
            version=self.version,
            issued_at=issued_at,
            next_update=issued_at + validity,
        )


_CARD_STATUS_COLUMNS = (Card.id, Card.region, Card.status, Card.updated_at)


def _revoked_card(pseudonym_key: bytes, row: dict) -> RevokedCard:
    """A non-active card's list entry (``row`` holds :data:`_CARD_STATUS_COLUMNS`)."""
    return RevokedCard(
        region=row["region"],
        pseudonym=card_pseudonym(pseudonym_key, row["id"]),
        reason=row["status"],
        revoked_at=_epoch(row["updated_at"]),
    )


async def _registry_revocations(pseudonym_key: bytes) -> dict[CardRef, RevokedCard]:
    """The truth: every card whose status is not active, as the registry says right now."""
    rows = await Card.select(*_CARD_STATUS_COLUMNS).where(Card.status.is_in(list(REVOKED_STATUSES)))
    entries = [_revoked_card(pseudonym_key, row) for row in rows]
    return {entry.ref: entry for entry in entries}


async def revoked_card_references() -> list[str]:
    """The chip blacklist: ``card_reference`` of every non-active card's 卡识别码, sorted."""
    rows = await Card.select(Card.chip_reference).where(
        Card.status.is_in(list(REVOKED_STATUSES)) & Card.chip_reference.is_not_null()
    )
    return sorted(row["chip_reference"] for row in rows)


def _epoch(value: object) -> int:
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    return int(time.time())


async def revocation_state_at(version: int) -> RevocationState:
    """The published set at ``version``: the fold of the log up to it."""
    rows = (
        await RevocationChange.select()
        .where(RevocationChange.version <= version)
        .order_by(RevocationChange.id)
    )
    return RevocationState(version=version, entries=_fold({}, rows))


def _fold(entries: dict[CardRef, RevokedCard], rows: list[dict]) -> dict[CardRef, RevokedCard]:
    """Apply revocation log rows, in log order, to ``entries`` (changed in place)."""
    for row in rows:
        ref = (row["region"], bytes.fromhex(row["pseudonym"]))
        if row["reason"] is None:
            entries.pop(ref, None)
        else:
            entries[ref] = _entry(row["region"], row["pseudonym"], row["reason"], row["revoked_at"])
    return entries


@dataclass(frozen=True, slots=True)
class RegistryMark:
    """How far a worker's view has followed the registry's card status events: the newest event
    id, and how many events lay above ``last_event - EVENT_WINDOW`` (a late commit there changes
    the count even when the newest id stays)."""

    last_event: int
    window_count: int
    rebuilt_at: float  # monotonic time of the last full rebuild


@dataclass(frozen=True, slots=True)
class RegistryView:
    """The published revocation state, equal to the registry as of ``mark``."""

    state: RevocationState
    mark: RegistryMark


Changes = dict[CardRef, RevokedCard | None]  # None: the card leaves the list


async def _event_window(last_event: int) -> tuple[int, int]:
    """(newest event id, events above ``last_event - EVENT_WINDOW``): two index lookups."""
    rows = await CardStatusEvent.raw(
        "SELECT (SELECT MAX(id) FROM card_status_event) AS newest,"
        " (SELECT COUNT(*) FROM card_status_event WHERE id > {}) AS recent",
        last_event - EVENT_WINDOW,
    )
    return int(rows[0]["newest"] or 0), int(rows[0]["recent"])


async def _mark(newest: int, rebuilt_at: float) -> RegistryMark:
    return RegistryMark(newest, (await _event_window(newest))[1], rebuilt_at)


async def _touched_cards(after_event: int, pseudonym_key: bytes) -> dict[CardRef, RevokedCard | None]:
    """The registry's word now on every card with a status event above ``after_event``."""
    ids = [r["card"] for r in await CardStatusEvent.raw(
        "SELECT DISTINCT card FROM card_status_event WHERE id > {}", after_event
    )]
    found: dict[CardRef, RevokedCard | None] = {}
    for start in range(0, len(ids), 500):
        for row in await Card.select(*_CARD_STATUS_COLUMNS).where(Card.id.is_in(ids[start : start + 500])):
            entry = _revoked_card(pseudonym_key, row)
            found[entry.ref] = entry if row["status"] in REVOKED_STATUSES else None
    return found


async def _published_at_head(known: RevocationState | None, head: dict | None) -> RevocationState:
    """The published set at the head version, folding only the versions ``known`` lacks."""
    if head is None:
        return RevocationState(version=0, entries={})
    if known is None or known.version > head["version"]:
        return await revocation_state_at(head["version"])
    if known.version == head["version"]:
        return known
    rows = await RevocationChange.select().where(
        (RevocationChange.version > known.version) & (RevocationChange.version <= head["version"])
    ).order_by(RevocationChange.id)
    return RevocationState(version=head["version"], entries=_fold(dict(known.entries), rows))


async def _publish(
    platform: Platform, known: RevocationState | None, wanted: Callable[[RevocationState], Changes]
) -> RevocationState:
    """Publish ``wanted(published)`` as the next version, unless it changes nothing.  Safe from
    every worker at once: the head moves by compare-and-set, and a loser looks again."""
    for _ in range(5):
        head = await RevocationHead.select().where(RevocationHead.id == _HEAD_ID).first()
        published = await _published_at_head(known, head)
        changes = {ref: e for ref, e in wanted(published).items() if published.entries.get(ref) != e}
        if not changes and head is not None:
            return published
        entries = dict(published.entries)
        for ref, entry in changes.items():
            if entry is None:
                entries.pop(ref, None)
            else:
                entries[ref] = entry
        version, digest = published.version + 1, set_digest(entries.values()).hex()
        try:
            async with platform.engine.transaction():
                if head is None:
                    await RevocationHead.insert(
                        RevocationHead(id=_HEAD_ID, version=version, digest=digest, published_at=int(time.time()))
                    ).run()
                else:
                    moved = await RevocationHead.update(
                        {
                            RevocationHead.version: version,
                            RevocationHead.digest: digest,
                            RevocationHead.published_at: int(time.time()),
                        }
                    ).where(
                        (RevocationHead.id == _HEAD_ID) & (RevocationHead.version == head["version"])
                    ).returning(RevocationHead.id)
                    if not moved:
                        continue  # another worker published first: look again
                if changes:
                    await RevocationChange.insert(*_change_rows(changes, version)).run()
        except Exception as exc:
            if is_unique_violation(exc):
                continue
            raise
        return RevocationState(version=version, entries=entries)
    raise AppError("status_changed_concurrently", "the revocation list is being published; retry")


def _change_rows(changes: Changes, version: int) -> list[RevocationChange]:
    return [
        RevocationChange(
            version=version, region=region, pseudonym=pseudonym.hex(),
            reason=entry.reason if entry else None, revoked_at=entry.revoked_at if entry else 0,
        )
        for (region, pseudonym), entry in changes.items()
    ]


async def follow_registry(platform: Platform, view: RegistryView | None = None) -> RegistryView:
    """The latest published revocation state, after publishing a new version if the registry
    changed since ``view``.  When nothing changed this costs three index lookups, not a read of
    every non-active card: the card status events (written in the same transaction as every
    status change) say which cards to look at.  Every :data:`RECONCILE_SECONDS`, and on a
    worker's first call, the whole registry is read instead."""
    now = time.monotonic()
    if view is None or now - view.mark.rebuilt_at >= RECONCILE_SECONDS:
        newest = await CardStatusEvent.raw("SELECT MAX(id) AS newest FROM card_status_event")
        mark = await _mark(int(newest[0]["newest"] or 0), now)
        current = await _registry_revocations(platform.pseudonym_key)

        def everything(published: RevocationState) -> Changes:
            gone: Changes = {ref: None for ref in published.entries if ref not in current}
            return {**gone, **current}

        return RegistryView(await _publish(platform, view.state if view else None, everything), mark)
    newest, recent = await _event_window(view.mark.last_event)
    if (newest, recent) == (view.mark.last_event, view.mark.window_count):
        head = await RevocationHead.select(RevocationHead.version).where(RevocationHead.id == _HEAD_ID).first()
        if head is not None and head["version"] == view.state.version:
            return view
        return RegistryView(await _published_at_head(view.state, head), view.mark)
    mark = await _mark(newest, view.mark.rebuilt_at)
    touched = await _touched_cards(view.mark.last_event - EVENT_WINDOW, platform.pseudonym_key)
    return RegistryView(await _publish(platform, view.state, lambda _published: touched), mark)


# --- signed documents, cached per worker -----------------------------------------------------


def _bucket(now: float) -> int:
    return int(now) - int(now) % RESIGN_SECONDS


@dataclass
class TrustPublisher:
    """Builds and signs the trust list, revocation list, deltas and offline package for one
    worker, and keeps the online verifier's :class:`TrustStore` in step with the keyring."""

    platform: Platform
    _signed: dict[tuple, str] = field(default_factory=dict)
    _store: tuple[Keyring, tuple[int, int], TrustStore] | None = None
    _revocations: tuple[float, RegistryView] | None = None
    _federation: Federation | None = None

    @property
    def federation(self) -> Federation:
        """Other provinces' deployments, whose issuer keys join ours in the national trust list."""
        if self._federation is None:
            self._federation = Federation(self.platform.settings.peers)
        return self._federation

    def _version(self, ring: Keyring) -> int:
        return max(trust_list_version(ring), self.federation.version)

    def _trust_list(self, ring: Keyring, issued_at: int, validity: int = TRUST_LIST_VALIDITY) -> TrustList:
        """Our keys and, when peers are configured, theirs (each only for its own regions)."""
        own = build_trust_list(ring, issued_at, validity)
        ours = {key.kid for key in own.keys}
        peers = [key for key in self.federation.keys if key.kid not in ours]
        if not peers:
            return own
        return msgspec.structs.replace(own, version=self._version(ring), keys=[*own.keys, *peers])

    @property
    def _root(self) -> ec.EllipticCurvePrivateKey:
        return private_key_of(self.platform.keys.ring.root.private_pem)

    def _cached(self, key: tuple, make) -> str:  # type: ignore[no-untyped-def]
        token = self._signed.get(key)
        if token is None:
            if len(self._signed) > 256:
                self._signed.clear()
            token = self._signed[key] = make()
        return token

    def trust_store(self, now: float | None = None) -> TrustStore:
        """The keyring as a verifier sees it, re-indexed when the keyring changes."""
        ring = self.platform.keys.ring
        bucket = _bucket(time.time() if now is None else now)
        moment = (bucket, self.federation.version)
        if self._store is None or self._store[0] is not ring or self._store[1] != moment:
            self._store = (ring, moment, TrustStore.from_list(self._trust_list(ring, bucket)))
        return self._store[2]

    def trust_list_token(self, now: float | None = None) -> str:
        ring, bucket = self.platform.keys.ring, _bucket(time.time() if now is None else now)
        return self._cached(
            ("trust", self._version(ring), bucket),
            lambda: sign_trust_list(self._trust_list(ring, bucket), self._root),
        )

    async def revocations(self) -> RevocationState:
        now = time.monotonic()
        if self._revocations is None or now - self._revocations[0] >= REVOCATION_REFRESH_SECONDS:
            view = await follow_registry(self.platform, self._revocations[1] if self._revocations else None)
            self._revocations = (now, view)
        return self._revocations[1].state

    async def _state(self, version: int | None) -> RevocationState:
        latest = await self.revocations()
        if version is None or version == latest.version:
            return latest
        if not 1 <= version < latest.version:
            raise AppError("revocation_version_not_found", f"the latest version is {latest.version}")
        return await revocation_state_at(version)

    async def revocation_list_token(self, version: int | None = None) -> str:
        state, bucket = await self._state(version), _bucket(time.time())
        return self._cached(
            ("revocations", state.version, bucket),
            lambda: sign_revocation_list(
                state.as_list(bucket, REVOCATION_LIST_VALIDITY), self._root
            ),
        )

    async def revocation_delta_token(self, from_version: int) -> str:
        latest, bucket = await self.revocations(), _bucket(time.time())
        if not 1 <= from_version < latest.version:
            raise AppError(
                "revocation_version_not_found",
                f"a delta starts from a version before the latest ({latest.version})",
            )
        old = await revocation_state_at(from_version)

        def sign() -> str:
            delta = build_revocation_delta(
                old.as_list(bucket, REVOCATION_LIST_VALIDITY),
                latest.as_list(bucket, REVOCATION_LIST_VALIDITY),
            )
            return sign_revocation_delta(delta, self._root)

        return self._cached(("delta", from_version, latest.version, bucket), sign)

    async def offline_package_token(self) -> str:
        """Lists valid for the whole offline period, bound to the terminal limits, with the chip
        cards' blacklist (physical cards carry no code pseudonym)."""
        state, ring, bucket = await self.revocations(), self.platform.keys.ring, _bucket(time.time())
        validity = OFFLINE_LIMITS.max_offline_seconds
        key = ("package", self._version(ring), state.version, bucket)
        revoked_cards = [] if key in self._signed else await revoked_card_references()

        def sign() -> str:
            package = OfflinePackage(
                version=bucket,
                issued_at=bucket,
                trust_list=sign_trust_list(self._trust_list(ring, bucket, validity), self._root),
                revocation_list=sign_revocation_list(state.as_list(bucket, validity), self._root),
                limits=OFFLINE_LIMITS,
                revoked_cards=revoked_cards,
            )
            return sign_offline_package(package, self._root)

        return self._cached(key, sign)


#: Online verification checks live card status instead of a list (built once: frozen, and its
#: index is never written).
NO_REVOCATIONS = RevocationSet(version=1, issued_at=0, next_update=2**62, digest=set_digest([]), by_card={})
