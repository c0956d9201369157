"""The trust list: every issuer's code-signing keys, signed by the platform root key.

A verifier needs only the root public key; the trust list tells it which issuer keys to accept,
for which region, in which window and in which state:

- ``active``: signs now; verifies inside [not_before, not_after].
- ``retired``: signs no more; still verifies what it signed until not_after.
- ``withdrawn``: compromised; nothing it ever signed verifies, however old.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.offline.documents import (
    DEFAULT_SKEW_SECONDS,
    TRUST_LIST_TYPE,
    check_fresh,
    check_not_older,
    open_document,
    sign_document,
)
from ecard.offline.es256 import public_key_from_jwk, short_key_id, thumbprint
from ecard.offline.reasons import OfflineError, Reason

KeyStatus = Literal["active", "retired", "withdrawn"]
RegionCode = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]
Version = Annotated[int, msgspec.Meta(ge=1)]
EpochSeconds = Annotated[int, msgspec.Meta(ge=0)]


class TrustedKey(msgspec.Struct, frozen=True, kw_only=True):
    region: RegionCode
    kid: str  # RFC 7638 thumbprint of ``jwk``
    jwk: dict[str, str]  # public P-256 JWK (kty, crv, x, y)
    not_before: EpochSeconds
    not_after: EpochSeconds
    status: KeyStatus
    issuer_name: str = ""  # for display, e.g. "浙江省人力资源和社会保障厅"


class TrustList(msgspec.Struct, frozen=True, kw_only=True):
    version: Version
    issued_at: EpochSeconds
    next_update: EpochSeconds
    keys: list[TrustedKey]


@dataclass(frozen=True, slots=True)
class IssuerKey:
    """A trust list entry with its public key loaded, ready for fast verification."""

    entry: TrustedKey
    public_key: ec.EllipticCurvePublicKey
    short_id: bytes

    def refusal(self, issued_at: int, now: int, skew_seconds: int) -> Reason | None:
        """Why this key may not vouch for something it signed at ``issued_at``, if it may not."""
        if self.entry.status == "withdrawn":
            return Reason.KEY_WITHDRAWN
        entry = self.entry
        signed_in_window = entry.not_before - skew_seconds <= issued_at <= entry.not_after
        if not signed_in_window or now > entry.not_after + skew_seconds:
            return Reason.KEY_NOT_VALID
        return None


@dataclass(frozen=True, slots=True)
class TrustStore:
    """A checked trust list, indexed for verification."""

    content: TrustList
    by_short_id: dict[bytes, IssuerKey]
    by_kid: dict[str, IssuerKey]
    regions: frozenset[str]

    @classmethod
    def from_list(cls, trust_list: TrustList) -> TrustStore:
        """Index a trust list (already authenticated, or built locally from the keyring)."""
        by_short_id: dict[bytes, IssuerKey] = {}
        for entry in trust_list.keys:
            public_key = public_key_from_jwk(entry.jwk)
            if thumbprint(public_key) != entry.kid:
                raise OfflineError(Reason.MALFORMED, f"kid {entry.kid} is not its JWK's thumbprint")
            if entry.not_before > entry.not_after:
                raise OfflineError(Reason.MALFORMED, f"key {entry.kid} has an empty window")
            short_id = short_key_id(entry.kid)
            if short_id in by_short_id:
                raise OfflineError(Reason.MALFORMED, f"key id {short_id.hex()} appears twice")
            by_short_id[short_id] = IssuerKey(entry, public_key, short_id)
        return cls(
            content=trust_list,
            by_short_id=by_short_id,
            by_kid={key.entry.kid: key for key in by_short_id.values()},
            regions=frozenset(entry.region for entry in trust_list.keys),
        )


def sign_trust_list(trust_list: TrustList, root_private_key: ec.EllipticCurvePrivateKey) -> str:
    TrustStore.from_list(trust_list)  # refuse to sign what no verifier would load
    return sign_document(trust_list, TRUST_LIST_TYPE, root_private_key)


def load_trust_list(
    token: str,
    root_public_key: ec.EllipticCurvePublicKey,
    now: int,
    *,
    skew_seconds: int = DEFAULT_SKEW_SECONDS,
    held_version: int = 0,
) -> TrustStore:
    """Check a signed trust list (signature, type, freshness, no rollback) and index it."""
    trust_list = open_document(token, TRUST_LIST_TYPE, TrustList, root_public_key)
    check_fresh(
        trust_list.issued_at, trust_list.next_update, now, skew_seconds, Reason.STALE_TRUST_LIST
    )
    check_not_older(trust_list.version, held_version)
    return TrustStore.from_list(trust_list)
