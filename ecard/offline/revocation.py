"""The revocation list (黑名单): cards that must no longer be accepted, full and as deltas.

A card is named by its issuer region and pseudonym (pseudonyms are per issuer), and by nothing
else: a list says *that* a card is revoked as of the list's ``issued_at``, never why or exactly
when (a pseudonym is in every code and e-license of its holder, so a reason such as ``deceased``
next to it would tell every past verifier of a death).  Format 2: the format 1 list of earlier
releases carried ``reason`` and ``revoked_at`` per entry; format 2 has its own ``typ`` and digest
domain, so neither format's documents load as the other's.

Every list carries the SHA-256 digest of its canonical set, so a holder of version N that applies
the signed delta N -> M can prove it now holds exactly version M's set.

Canonical set (input of the digest): ``b"ecard/revocations/v2" 0x00``, then per entry, sorted by
(region, pseudonym): region (6 ASCII digits) || len(pseudonym) (1) || pseudonym.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.offline.code_format import MAX_PSEUDONYM_BYTES
from ecard.offline.documents import (
    DEFAULT_SKEW_SECONDS,
    REVOCATION_DELTA_TYPE,
    REVOCATION_LIST_TYPE,
    check_fresh,
    check_not_older,
    check_not_too_old,
    open_document,
    sign_document,
)
from ecard.offline.reasons import OfflineError, Reason
from ecard.offline.trust import EpochSeconds, RegionCode, Version

Pseudonym = Annotated[bytes, msgspec.Meta(min_length=1, max_length=MAX_PSEUDONYM_BYTES)]
Digest = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
CardRef = tuple[str, bytes]  # (region, pseudonym)

_DIGEST_DOMAIN = b"ecard/revocations/v2\x00"


class RevokedCard(msgspec.Struct, frozen=True, kw_only=True):
    """A card on the list: revoked as of the list's (or delta's) ``issued_at``, no more said."""

    region: RegionCode
    pseudonym: Pseudonym

    @property
    def ref(self) -> CardRef:
        return (self.region, self.pseudonym)


class CardId(msgspec.Struct, frozen=True, kw_only=True):
    region: RegionCode
    pseudonym: Pseudonym


class RevocationList(msgspec.Struct, frozen=True, kw_only=True):
    version: Version
    issued_at: EpochSeconds
    next_update: EpochSeconds
    digest: Digest
    entries: list[RevokedCard]


class RevocationDelta(msgspec.Struct, frozen=True, kw_only=True):
    """What changed from ``from_version`` to ``to_version``: cards added and cards removed."""

    from_version: Version
    from_digest: Digest
    to_version: Version
    to_digest: Digest
    issued_at: EpochSeconds
    next_update: EpochSeconds
    added: list[RevokedCard]
    removed: list[CardId]


def _index(entries: Iterable[RevokedCard]) -> dict[CardRef, RevokedCard]:
    index: dict[CardRef, RevokedCard] = {}
    for entry in entries:
        if entry.ref in index:
            raise OfflineError(Reason.MALFORMED, "a card appears twice in a revocation list")
        index[entry.ref] = entry
    return index


def set_digest(entries: Iterable[RevokedCard]) -> bytes:
    digest = hashlib.sha256(_DIGEST_DOMAIN)
    for entry in sorted(entries, key=lambda e: e.ref):
        digest.update(entry.region.encode())
        digest.update(bytes([len(entry.pseudonym)]) + entry.pseudonym)
    return digest.digest()


@dataclass(frozen=True, slots=True)
class RevocationSet:
    """A checked revocation list state, indexed for lookups."""

    version: int
    issued_at: int
    next_update: int
    digest: bytes
    by_card: dict[CardRef, RevokedCard]

    @classmethod
    def from_list(cls, revocation_list: RevocationList) -> RevocationSet:
        by_card = _index(revocation_list.entries)
        if set_digest(by_card.values()) != revocation_list.digest:
            raise OfflineError(Reason.MALFORMED, "the digest does not match the entries")
        return cls(
            version=revocation_list.version,
            issued_at=revocation_list.issued_at,
            next_update=revocation_list.next_update,
            digest=revocation_list.digest,
            by_card=by_card,
        )

    def lookup(self, region: str, pseudonym: bytes) -> RevokedCard | None:
        return self.by_card.get((region, pseudonym))


# --- platform side -----------------------------------------------------------------------------


def build_revocation_list(
    entries: Iterable[RevokedCard], *, version: int, issued_at: int, next_update: int
) -> RevocationList:
    by_card = _index(entries)
    ordered = sorted(by_card.values(), key=lambda e: e.ref)
    return RevocationList(
        version=version,
        issued_at=issued_at,
        next_update=next_update,
        digest=set_digest(ordered),
        entries=ordered,
    )


def build_revocation_delta(old: RevocationList, new: RevocationList) -> RevocationDelta:
    if new.version <= old.version:
        raise ValueError("a delta goes from an older version to a newer one")
    old_index, new_index = _index(old.entries), _index(new.entries)
    return RevocationDelta(
        from_version=old.version,
        from_digest=old.digest,
        to_version=new.version,
        to_digest=new.digest,
        issued_at=new.issued_at,
        next_update=new.next_update,
        added=[e for ref, e in new_index.items() if ref not in old_index],
        removed=[
            CardId(region=region, pseudonym=pseudonym)
            for region, pseudonym in old_index.keys() - new_index.keys()
        ],
    )


def sign_revocation_list(
    revocation_list: RevocationList, root_private_key: ec.EllipticCurvePrivateKey
) -> str:
    RevocationSet.from_list(revocation_list)  # refuse to sign what no verifier would load
    return sign_document(revocation_list, REVOCATION_LIST_TYPE, root_private_key)


def sign_revocation_delta(
    delta: RevocationDelta, root_private_key: ec.EllipticCurvePrivateKey
) -> str:
    return sign_document(delta, REVOCATION_DELTA_TYPE, root_private_key)


# --- verifier side -----------------------------------------------------------------------------


def load_revocation_list(
    token: str,
    root_public_key: ec.EllipticCurvePublicKey,
    now: int,
    *,
    skew_seconds: int = DEFAULT_SKEW_SECONDS,
    held_version: int = 0,
    max_age_seconds: int | None = None,
) -> RevocationSet:
    """Check a signed full list (signature, type, digest, freshness, no rollback) and index it.

    A list keeps the time it was published: an old version fetched today is as stale as it was
    then.  ``max_age_seconds`` is the verifier's own bound on a list's age (its ``issued_at``)."""
    revocation_list = open_document(token, REVOCATION_LIST_TYPE, RevocationList, root_public_key)
    check_fresh(
        revocation_list.issued_at,
        revocation_list.next_update,
        now,
        skew_seconds,
        Reason.STALE_REVOCATION_LIST,
    )
    check_not_too_old(revocation_list.issued_at, now, max_age_seconds, Reason.STALE_REVOCATION_LIST)
    check_not_older(revocation_list.version, held_version)
    return RevocationSet.from_list(revocation_list)


def apply_revocation_delta(
    current: RevocationSet,
    token: str,
    root_public_key: ec.EllipticCurvePublicKey,
    now: int,
    *,
    skew_seconds: int = DEFAULT_SKEW_SECONDS,
    max_age_seconds: int | None = None,
) -> RevocationSet:
    """The state after a signed delta; refused unless it starts from exactly ``current`` and ends
    in exactly the set whose digest the platform signed (and is fresh, as a full list)."""
    delta = open_document(token, REVOCATION_DELTA_TYPE, RevocationDelta, root_public_key)
    if delta.to_version <= delta.from_version:
        raise OfflineError(Reason.MALFORMED, "a delta must move to a newer version")
    if delta.from_version != current.version or delta.from_digest != current.digest:
        raise OfflineError(
            Reason.DELTA_BASE_MISMATCH, f"delta is from version {delta.from_version}"
        )
    check_fresh(delta.issued_at, delta.next_update, now, skew_seconds, Reason.STALE_REVOCATION_LIST)
    check_not_too_old(delta.issued_at, now, max_age_seconds, Reason.STALE_REVOCATION_LIST)
    by_card = dict(current.by_card)
    for card in delta.removed:
        by_card.pop((card.region, card.pseudonym), None)
    for entry in _index(delta.added).values():
        by_card[entry.ref] = entry
    if set_digest(by_card.values()) != delta.to_digest:
        raise OfflineError(Reason.DELTA_DIGEST_MISMATCH, "the result is not the signed set")
    return RevocationSet(
        version=delta.to_version,
        issued_at=delta.issued_at,
        next_update=delta.next_update,
        digest=delta.to_digest,
        by_card=by_card,
    )
