"""The platform's side of the offline kit: the trust list from the keyring, the revocation list
from the registry (kept as a versioned log), and the offline package, each signed with the root key.

A revocation list version is signed with the time it was published and nothing else, so it is the
same document (byte for byte: signatures are deterministic) whenever and wherever it is fetched:
an old version is never stamped afresh, and an offline verifier refuses it once it is stale.  A
new version (the same set, if nothing changed) is published every :data:`REPUBLISH_SECONDS` to
keep the latest list fresh.  The trust list and the offline package (which only ever carry the
latest state) are re-signed once per :data:`RESIGN_SECONDS` bucket.  Signed documents are cached
per worker, so a burst of downloads costs one signature and the ETag stays put.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.auth import put_revocation
from ecard.codes.federation import Federation
from ecard.codes.tables import RevocationChange, RevocationHead, RevocationVersion
from ecard.crypto.fields import keyed_digest
from ecard.crypto.keyring import KeyRecord, Keyring
from ecard.crypto.provider.files import private_key_of  # noqa: F401 - scripts sign with PEMs
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
from ecard.registry import lifecycle
from ecard.registry.tables import Card, CardStatusEvent
from ecard.store.db import is_unique_violation

PSEUDONYM_BYTES = 16
RESIGN_SECONDS = 300  # the trust list and the offline package are signed afresh this often
#: A new revocation list version (the same set, if nothing changed) is published once the latest
#: is this old, when lists are fetched: a version's list keeps its publication time for ever, so
#: the latest must be young enough for verifiers (it is valid REVOCATION_LIST_VALIDITY from then).
REPUBLISH_SECONDS = 300
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
REVOKED_STATUSES = tuple(sorted(lifecycle.REVOKED))  # on the revocation list and the chip blacklist
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


def build_trust_list(
    ring: Keyring, issued_at: int, validity: int = TRUST_LIST_VALIDITY
) -> TrustList:
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


def _entry(region: str, pseudonym: bytes) -> RevokedCard:
    """A card on the public list: its region and pseudonym, nothing about why or when."""
    return RevokedCard(region=region, pseudonym=pseudonym)


@dataclass(frozen=True, slots=True)
class RevocationState:
    version: int
    entries: dict[CardRef, RevokedCard]
    published_at: int  # when this version was published: its list's issued_at, for ever

    def as_list(self, validity: int, issued_at: int | None = None) -> RevocationList:
        """The version's list, stamped with its publication time (``issued_at`` only for the
        offline package, which always carries the latest version)."""
        issued = self.published_at if issued_at is None else issued_at
        return build_revocation_list(
            self.entries.values(),
            version=self.version,
            issued_at=issued,
            next_update=issued + validity,
        )


_CARD_STATUS_COLUMNS = (Card.id, Card.region, Card.status)


def _revoked_card(pseudonym_key: bytes, row: dict) -> RevokedCard:
    """A non-active card's list entry (``row`` holds :data:`_CARD_STATUS_COLUMNS`)."""
    return _entry(row["region"], card_pseudonym(pseudonym_key, row["id"]))


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


async def _state_at(version: int, published_at: int) -> RevocationState:
    rows = (
        await RevocationChange.select()
        .where(RevocationChange.version <= version)
        .order_by(RevocationChange.id)
    )
    return RevocationState(version=version, entries=_fold({}, rows), published_at=published_at)


async def revocation_state_at(version: int) -> RevocationState:
    """The published set at ``version`` (the fold of the log up to it) with its publication time.
    Versions published before list format 2 recorded no time and are not served."""
    row = (
        await RevocationVersion.select(RevocationVersion.published_at)
        .where(RevocationVersion.version == version)
        .first()
    )
    if row is None:
        raise AppError("revocation_version_not_found", f"version {version} is not served")
    return await _state_at(version, row["published_at"])


def _fold(entries: dict[CardRef, RevokedCard], rows: list[dict]) -> dict[CardRef, RevokedCard]:
    """Apply revocation log rows, in log order, to ``entries`` (changed in place)."""
    for row in rows:
        ref = (row["region"], bytes.fromhex(row["pseudonym"]))
        if row["reason"] is None:
            entries.pop(ref, None)
        else:
            entries[ref] = _entry(*ref)
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


Changes = dict[CardRef, bool]  # True: the card is on the list; False: it leaves it


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


async def _touched_cards(after_event: int, pseudonym_key: bytes) -> Changes:
    """The registry's word now on every card with a status event above ``after_event``."""
    ids = [
        r["card"]
        for r in await CardStatusEvent.raw(
            "SELECT DISTINCT card FROM card_status_event WHERE id > {}", after_event
        )
    ]
    found: Changes = {}
    for start in range(0, len(ids), 500):
        for row in await Card.select(*_CARD_STATUS_COLUMNS).where(
            Card.id.is_in(ids[start : start + 500])
        ):
            found[_revoked_card(pseudonym_key, row).ref] = row["status"] in REVOKED_STATUSES
    return found


async def _published_at_head(known: RevocationState | None, head: dict | None) -> RevocationState:
    """The published set at the head version, folding only the versions ``known`` lacks."""
    if head is None:
        return RevocationState(version=0, entries={}, published_at=0)
    if known is None or known.version > head["version"]:
        return await _state_at(head["version"], head["published_at"])
    if known.version == head["version"]:
        return known
    rows = (
        await RevocationChange.select()
        .where(
            (RevocationChange.version > known.version)
            & (RevocationChange.version <= head["version"])
        )
        .order_by(RevocationChange.id)
    )
    return RevocationState(
        version=head["version"],
        entries=_fold(dict(known.entries), rows),
        published_at=head["published_at"],
    )


def _due(head: dict | None, now: float) -> bool:
    """Whether the latest version is old enough that a new one (maybe the same set) is published:
    its list must stay fresh for verifiers, and a version's list is never stamped afresh."""
    return head is None or now - head["published_at"] >= REPUBLISH_SECONDS


async def _publish(
    platform: Platform,
    known: RevocationState | None,
    wanted: Callable[[RevocationState], Changes],
    now: float,
) -> RevocationState:
    """Publish ``wanted(published)`` as the next version, unless it changes nothing and the latest
    version is younger than :data:`REPUBLISH_SECONDS`.  Safe from every worker at once: the head
    moves by compare-and-set, and a loser looks again."""
    for _ in range(5):
        head = await RevocationHead.select().where(RevocationHead.id == _HEAD_ID).first()
        published = await _published_at_head(known, head)
        changes = {
            ref: on for ref, on in wanted(published).items() if (ref in published.entries) != on
        }
        if not changes and not _due(head, now):
            return published
        entries = dict(published.entries)
        for ref, on in changes.items():
            if on:
                entries[ref] = _entry(*ref)
            else:
                entries.pop(ref, None)
        version, digest = published.version + 1, set_digest(entries.values()).hex()
        published_at = max(int(now), published.published_at)  # never before the version it follows
        try:
            async with platform.engine.transaction():
                if head is None:
                    await RevocationHead.insert(
                        RevocationHead(
                            id=_HEAD_ID, version=version, digest=digest, published_at=published_at
                        )
                    ).run()
                else:
                    moved = (
                        await RevocationHead.update(
                            {
                                RevocationHead.version: version,
                                RevocationHead.digest: digest,
                                RevocationHead.published_at: published_at,
                            }
                        )
                        .where(
                            (RevocationHead.id == _HEAD_ID)
                            & (RevocationHead.version == head["version"])
                        )
                        .returning(RevocationHead.id)
                    )
                    if not moved:
                        continue  # another worker published first: look again
                await RevocationVersion.insert(
                    RevocationVersion(version=version, published_at=published_at, digest=digest)
                ).run()
                if changes:
                    await RevocationChange.insert(*_change_rows(changes, version)).run()
        except Exception as exc:
            if is_unique_violation(exc):
                continue
            raise
        return RevocationState(version=version, entries=entries, published_at=published_at)
    raise AppError("status_changed_concurrently", "the revocation list is being published; retry")


def _change_rows(changes: Changes, version: int) -> list[RevocationChange]:
    return [
        RevocationChange(
            version=version,
            region=region,
            pseudonym=pseudonym.hex(),
            reason="revoked" if on else None,
            revoked_at=0,
        )
        for (region, pseudonym), on in changes.items()
    ]


async def follow_registry(
    platform: Platform, view: RegistryView | None = None, *, now: float | None = None
) -> RegistryView:
    """The latest published revocation state, after publishing a new version if the registry
    changed since ``view`` (or the latest version is :data:`REPUBLISH_SECONDS` old).  When nothing
    changed this costs three index lookups, not a read of every non-active card: the card status
    events (written in the same transaction as every status change) say which cards to look at.
    Every :data:`RECONCILE_SECONDS`, and on a worker's first call, the whole registry is read
    instead.  ``now``: the wall clock (epoch seconds) that stamps a new version."""
    wall = time.time() if now is None else now
    mono = time.monotonic()
    if view is None or mono - view.mark.rebuilt_at >= RECONCILE_SECONDS:
        newest = await CardStatusEvent.raw("SELECT MAX(id) AS newest FROM card_status_event")
        mark = await _mark(int(newest[0]["newest"] or 0), mono)
        current = await _registry_revocations(platform.pseudonym_key)

        def everything(published: RevocationState) -> Changes:
            gone: Changes = {ref: False for ref in published.entries if ref not in current}
            return {**gone, **dict.fromkeys(current, True)}

        return RegistryView(
            await _publish(platform, view.state if view else None, everything, wall), mark
        )
    newest, recent = await _event_window(view.mark.last_event)
    if (newest, recent) == (view.mark.last_event, view.mark.window_count):
        head = (
            await RevocationHead.select(RevocationHead.version, RevocationHead.published_at)
            .where(RevocationHead.id == _HEAD_ID)
            .first()
        )
        if _due(head, wall):
            return RegistryView(
                await _publish(platform, view.state, lambda _published: {}, wall), view.mark
            )
        if head is not None and head["version"] == view.state.version:
            return view
        return RegistryView(await _published_at_head(view.state, head), view.mark)
    mark = await _mark(newest, view.mark.rebuilt_at)
    touched = await _touched_cards(view.mark.last_event - EVENT_WINDOW, platform.pseudonym_key)
    return RegistryView(
        await _publish(platform, view.state, lambda _published: touched, wall), mark
    )


# --- signed documents, cached per worker -----------------------------------------------------


def _bucket(now: float) -> int:
    return int(now) - int(now) % RESIGN_SECONDS


@dataclass
class TrustPublisher:
    """Builds and signs the trust list, revocation list, deltas and offline package for one
    worker, and keeps the online verifier's :class:`TrustStore` in step with the keyring."""

    platform: Platform
    clock: Callable[[], float] = time.time  # the wall clock that stamps new revocation versions
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

    def _trust_list(
        self, ring: Keyring, issued_at: int, validity: int = TRUST_LIST_VALIDITY
    ) -> TrustList:
        """Our keys and, when peers are configured, theirs (each only for its own regions)."""
        own = build_trust_list(ring, issued_at, validity)
        ours = {key.kid for key in own.keys}
        peers = [key for key in self.federation.keys if key.kid not in ours]
        if not peers:
            return own
        return msgspec.structs.replace(own, version=self._version(ring), keys=[*own.keys, *peers])

    @property
    def _root(self) -> ec.EllipticCurvePrivateKey:
        keys = self.platform.keys
        return keys.private_key(keys.ring.root)

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
            previous = self._revocations[1] if self._revocations else None
            view = await follow_registry(self.platform, previous, now=self.clock())
            self._revocations = (now, view)
        return self._revocations[1].state

    async def _state(self, version: int | None) -> RevocationState:
        latest = await self.revocations()
        if version is None or version == latest.version:
            return latest
        if not 1 <= version < latest.version:
            raise AppError(
                "revocation_version_not_found", f"the latest version is {latest.version}"
            )
        return await revocation_state_at(version)

    async def revocation_list_token(self, version: int | None = None) -> str:
        """A version's list as it was published: stamped with its publication time and signed
        deterministically, so every fetch of a version, on any worker and at any time, gets the
        same bytes (until the root key changes); an old version is as stale as it ever was."""
        root = self.platform.keys.ring.root.kid
        if version is not None and (token := self._signed.get(("revocations", version, root))):
            return token
        state = await self._state(version)
        return self._cached(
            ("revocations", state.version, root),
            lambda: sign_revocation_list(state.as_list(REVOCATION_LIST_VALIDITY), self._root),
        )

    async def revocation_delta_token(self, from_version: int) -> str:
        """From ``from_version`` to the latest, stamped (like the latest list) with the latest
        version's publication time."""
        latest, root = await self.revocations(), self.platform.keys.ring.root.kid
        if not 1 <= from_version < latest.version:
            raise AppError(
                "revocation_version_not_found",
                f"a delta starts from a version before the latest ({latest.version})",
            )
        key = ("delta", from_version, latest.version, root)
        if (token := self._signed.get(key)) is not None:
            return token
        old = await revocation_state_at(from_version)

        def sign() -> str:
            delta = build_revocation_delta(
                old.as_list(REVOCATION_LIST_VALIDITY), latest.as_list(REVOCATION_LIST_VALIDITY)
            )
            return sign_revocation_delta(delta, self._root)

        return self._cached(key, sign)

    async def offline_package_token(self) -> str:
        """Lists valid for the whole offline period, bound to the terminal limits, with the chip
        cards' blacklist (physical cards carry no code pseudonym)."""
        state, ring, bucket = (
            await self.revocations(),
            self.platform.keys.ring,
            _bucket(time.time()),
        )
        validity = OFFLINE_LIMITS.max_offline_seconds
        key = ("package", self._version(ring), state.version, bucket)
        revoked_cards = [] if key in self._signed else await revoked_card_references()

        def sign() -> str:
            package = OfflinePackage(
                version=bucket,
                issued_at=bucket,
                trust_list=sign_trust_list(self._trust_list(ring, bucket, validity), self._root),
                # the latest version, valid for the offline period from this package's signing
                revocation_list=sign_revocation_list(
                    state.as_list(validity, issued_at=max(bucket, state.published_at)), self._root
                ),
                limits=OFFLINE_LIMITS,
                revoked_cards=revoked_cards,
            )
            return sign_offline_package(package, self._root)

        return self._cached(key, sign)


#: Online verification checks live card status instead of a list (built once: frozen, and its
#: index is never written).
NO_REVOCATIONS = RevocationSet(
    version=1, issued_at=0, next_update=2**62, digest=set_digest([]), by_card={}
)
