"""The offline package a terminal carries: trust list + revocation list + its offline limits.

One root-signed document, so the limits cannot be separated from the lists they came with.  The
inner lists are the platform's signed tokens themselves and are checked as such.  A terminal
refuses a package with a bad signature, of another kind, or OLDER than the one it holds (and
likewise for the lists inside).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.offline.documents import (
    DEFAULT_SKEW_SECONDS,
    OFFLINE_PACKAGE_TYPE,
    check_not_older,
    open_document,
    sign_document,
)
from ecard.offline.es256 import b64url_encode
from ecard.offline.reasons import OfflineError, Reason
from ecard.offline.revocation import RevocationSet, load_revocation_list
from ecard.offline.trust import EpochSeconds, TrustStore, Version, load_trust_list

#: ``card``: the physical chip card; ``code``: the e-card's signed QR code.
CardKind = Literal["card", "code"]
Positive = Annotated[int, msgspec.Meta(ge=1)]


class OfflineLimits(msgspec.Struct, frozen=True, kw_only=True):
    max_offline_seconds: Positive  # counted from the package's issued_at
    max_offline_acceptances: Positive  # acceptances before the terminal must sync again
    accepted_kinds: list[CardKind]


class OfflinePackage(msgspec.Struct, frozen=True, kw_only=True):
    version: Version
    issued_at: EpochSeconds
    trust_list: str  # the signed trust list (JWS)
    revocation_list: str  # the signed full revocation list (JWS)
    limits: OfflineLimits
    #: ``card_reference`` of every physical card that is not active (lost, frozen, cancelled …):
    #: the chip's blacklist, since a chip card carries no code pseudonym
    revoked_cards: list[str] = []


_CARD_REFERENCE_DOMAIN = b"ecard/card-reference\x00"


def card_reference(card_identification_code: str) -> str:
    """A physical card's reference: a digest of its 卡识别码 (never the code itself), base64url."""
    digest = hashlib.sha256(_CARD_REFERENCE_DOMAIN + card_identification_code.upper().encode())
    return b64url_encode(digest.digest()[:16])


@dataclass(frozen=True, slots=True)
class LoadedPackage:
    content: OfflinePackage
    trust: TrustStore
    revocations: RevocationSet
    revoked_cards: frozenset[str] = frozenset()


def sign_offline_package(
    package: OfflinePackage, root_private_key: ec.EllipticCurvePrivateKey
) -> str:
    return sign_document(package, OFFLINE_PACKAGE_TYPE, root_private_key)


def load_offline_package(
    token: str,
    root_public_key: ec.EllipticCurvePublicKey,
    now: int,
    *,
    held: LoadedPackage | None = None,
    skew_seconds: int = DEFAULT_SKEW_SECONDS,
) -> LoadedPackage:
    package = open_document(token, OFFLINE_PACKAGE_TYPE, OfflinePackage, root_public_key)
    if held is not None:
        check_not_older(package.version, held.content.version)
    if package.issued_at > now + skew_seconds:
        raise OfflineError(Reason.NOT_YET_VALID, "package issued in the future")
    if now > package.issued_at + package.limits.max_offline_seconds + skew_seconds:
        raise OfflineError(Reason.OFFLINE_TOO_LONG, "package is past its offline period")
    trust = load_trust_list(
        package.trust_list,
        root_public_key,
        now,
        skew_seconds=skew_seconds,
        held_version=held.trust.content.version if held else 0,
    )
    revocations = load_revocation_list(
        package.revocation_list,
        root_public_key,
        now,
        skew_seconds=skew_seconds,
        held_version=held.revocations.version if held else 0,
    )
    return LoadedPackage(
        content=package,
        trust=trust,
        revocations=revocations,
        revoked_cards=frozenset(package.revoked_cards),
    )


def check_offline_acceptance(
    package: LoadedPackage, kind: CardKind, acceptances_since_sync: int, now: int
) -> Reason | None:
    """Whether the terminal may accept one more ``kind`` offline; the reason if it may not.

    The terminal counts its acceptances since it last synced and passes the count in.
    """
    limits = package.content.limits
    if kind not in limits.accepted_kinds:
        return Reason.KIND_NOT_ACCEPTED
    if now > package.content.issued_at + limits.max_offline_seconds:
        return Reason.OFFLINE_TOO_LONG
    if acceptances_since_sync >= limits.max_offline_acceptances:
        return Reason.OFFLINE_LIMIT_REACHED
    return None
