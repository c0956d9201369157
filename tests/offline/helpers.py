"""Keys, trust lists and codes for the offline-kit and code tests (a fixed clock, real keys)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from ecard.codes.format import CodeSigner
from ecard.offline import (
    RevocationSet,
    RevokedCard,
    TrustedKey,
    TrustList,
    TrustStore,
    build_revocation_list,
    public_jwk,
    thumbprint,
)
from ecard.offline.trust import KeyStatus

NOW = 1_800_000_000
DAY = 86_400
ZHEJIANG, BEIJING, SHANGHAI = "330000", "110000", "310000"
PSEUDONYM = bytes.fromhex("8f3a61c2d4e5f60718293a4b5c6d7e8f")


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def trusted(
    key: ec.EllipticCurvePrivateKey,
    region: str,
    *,
    status: KeyStatus = "active",
    not_before: int = NOW - 30 * DAY,
    not_after: int = NOW + 365 * DAY,
) -> TrustedKey:
    public = key.public_key()
    return TrustedKey(
        region=region,
        kid=thumbprint(public),
        jwk=public_jwk(public),
        not_before=not_before,
        not_after=not_after,
        status=status,
    )


def trust_list(*entries: TrustedKey, version: int = 1, next_update: int = NOW + DAY) -> TrustList:
    return TrustList(
        version=version, issued_at=NOW - 60, next_update=next_update, keys=list(entries)
    )


def trust_store(*entries: TrustedKey, next_update: int = NOW + DAY) -> TrustStore:
    return TrustStore.from_list(trust_list(*entries, next_update=next_update))


def revocations(
    *entries: RevokedCard, version: int = 1, next_update: int = NOW + DAY
) -> RevocationSet:
    return RevocationSet.from_list(
        build_revocation_list(entries, version=version, issued_at=NOW - 60, next_update=next_update)
    )


def sign_code(signer: CodeSigner, *, issued_at: int = NOW - 5, **fields: object) -> str:
    values: dict[str, object] = {
        "pseudonym": PSEUDONYM,
        "serial": 4_000_000_001,
        "issued_at": issued_at,
        "masked_name": "张*三",
        "card_last4": "1234",
    }
    values.update(fields)
    return signer.sign(signer.claims(**values))  # type: ignore[arg-type]
