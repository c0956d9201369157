"""The social security card e-license (电子证照, 亮证): a document signed by the issuer's key.

A compact ES256 JWS, ``typ`` ``ecard-elicense+jwt``, ``kid`` the issuer key's RFC 7638
thumbprint; anyone holding the trust list (and optionally the revocation list) verifies it
offline with :func:`verify_elicense`.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from ecard.offline.documents import DEFAULT_SKEW_SECONDS, ELICENSE_TYPE, open_document
from ecard.offline.es256 import jws_header
from ecard.offline.reasons import OfflineError, Reason
from ecard.offline.revocation import Pseudonym, RevocationSet
from ecard.offline.trust import EpochSeconds, RegionCode, TrustedKey, TrustStore

CardStatus = Literal[  # as the registry spells them (ecard/registry/lifecycle.py)
    "produced",
    "in_stock",
    "issued",
    "active",
    "lost_temporary",
    "lost",
    "frozen",
    "replacement_pending",
    "replaced",
    "cancelled",
    "deceased",
]
IsoDate = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]


class ElicenseClaims(msgspec.Struct, frozen=True, kw_only=True):
    masked_name: str  # 张*三
    masked_id_number: str  # 3301**********1234
    card_number: str
    region: RegionCode  # the issuer region; must be the signing key's region
    card_issued_on: IsoDate  # the card's issue date
    card_status: CardStatus  # at the time of signing
    pseudonym: Pseudonym  # the card's pseudonym, so verifiers can check the revocation list
    issued_at: EpochSeconds = msgspec.field(name="iat")
    expires_at: EpochSeconds = msgspec.field(name="exp")


def check_elicense_claims(claims: ElicenseClaims) -> None:
    """Only masked forms of the name and identity number may ever be signed into a document."""
    masked = (("masked_name", claims.masked_name), ("masked_id_number", claims.masked_id_number))
    for name, value in masked:
        if "*" not in value or not value.isprintable():
            raise OfflineError(Reason.MALFORMED, f"{name} must be masked with '*'")
    if claims.expires_at <= claims.issued_at:
        raise OfflineError(Reason.MALFORMED, "an e-license must expire after it is issued")


class ElicenseResult(msgspec.Struct, frozen=True, kw_only=True):
    reason: Reason | None
    claims: ElicenseClaims | None = None
    issuer: TrustedKey | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def verify_elicense(
    token: str,
    trust_list: TrustStore,
    revocation_list: RevocationSet | None,
    now: int,
    skew_seconds: int = DEFAULT_SKEW_SECONDS,
) -> ElicenseResult:
    """Signature against the trust list, issuer region, key state, validity period, revocation
    (with a revocation list that is still fresh; ``None``: the caller checks status otherwise)."""
    try:
        kid = jws_header(token).get("kid")
        key = trust_list.by_kid.get(kid) if isinstance(kid, str) else None
        if key is None:
            return ElicenseResult(reason=Reason.UNKNOWN_KEY)
        claims = open_document(token, ELICENSE_TYPE, ElicenseClaims, key.public_key)
        check_elicense_claims(claims)
    except OfflineError as error:
        return ElicenseResult(reason=error.reason)
    if key.entry.region != claims.region:
        reason: Reason | None = Reason.ISSUER_MISMATCH
    elif (key_refusal := key.refusal(claims.issued_at, now, skew_seconds)) is not None:
        reason = key_refusal
    elif claims.issued_at > now + skew_seconds:
        reason = Reason.NOT_YET_VALID
    elif now >= claims.expires_at + skew_seconds:
        reason = Reason.EXPIRED
    elif revocation_list is not None and now > revocation_list.next_update + skew_seconds:
        reason = Reason.STALE_REVOCATION_LIST  # a list past its time cannot vouch for the card
    elif (
        revocation_list is not None
        and revocation_list.lookup(claims.region, claims.pseudonym) is not None
    ):
        reason = Reason.REVOKED
    else:
        reason = None
    return ElicenseResult(reason=reason, claims=claims, issuer=key.entry)
