"""Signed JSON documents (trust list, revocation list and delta, offline package, e-license).

Each is a compact ES256 JWS whose payload is the JSON of one msgspec Struct and whose ``typ``
header names the kind, and each has the freshness rules below.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.offline.es256 import open_jws, sign_jws
from ecard.offline.reasons import OfflineError, Reason

#: Clock difference allowed between signer and verifier, unless the caller says otherwise.
DEFAULT_SKEW_SECONDS = 30

TRUST_LIST_TYPE = "ecard-trust-list+json"
#: Format 2 (no reason, no per-card time); format 1 was ``ecard-revocation-list+json`` and
#: ``ecard-revocation-delta+json`` and is refused as ``wrong_type``.
REVOCATION_LIST_TYPE = "ecard-revocation-list-v2+json"
REVOCATION_DELTA_TYPE = "ecard-revocation-delta-v2+json"
OFFLINE_PACKAGE_TYPE = "ecard-offline-package+json"
ELICENSE_TYPE = "ecard-elicense+jwt"

Document = TypeVar("Document", bound=msgspec.Struct)


def sign_document(
    document: msgspec.Struct, typ: str, private_key: ec.EllipticCurvePrivateKey
) -> str:
    """Sign the document's JSON, after checking it decodes back: never sign what no one can load."""
    payload = msgspec.json.encode(document)
    try:
        msgspec.json.decode(payload, type=type(document))
    except msgspec.ValidationError as exc:
        raise OfflineError(Reason.MALFORMED, f"refusing to sign: {exc}") from None
    return sign_jws(payload, private_key, typ)


def open_document(
    token: str,
    typ: str,
    document_type: type[Document],
    public_key: ec.EllipticCurvePublicKey,
) -> Document:
    """Check the signature and type, then decode the payload strictly into ``document_type``."""
    payload = open_jws(token, typ, public_key)
    try:
        return msgspec.json.decode(payload, type=document_type)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise OfflineError(Reason.MALFORMED, f"payload: {exc}") from None


def check_fresh(
    issued_at: int, next_update: int, now: int, skew_seconds: int, stale: Reason
) -> None:
    """A list is usable from ``issued_at`` until ``next_update``, give or take the clock skew."""
    if issued_at > now + skew_seconds:
        raise OfflineError(Reason.NOT_YET_VALID, "issued in the future")
    if now > next_update + skew_seconds:
        raise OfflineError(stale, "past its next_update")


def check_not_too_old(issued_at: int, now: int, max_age_seconds: int | None, stale: Reason) -> None:
    """The verifier's own staleness bound, whatever ``next_update`` says: a list issued longer
    than ``max_age_seconds`` ago is refused (None: ``next_update`` alone decides)."""
    if max_age_seconds is not None and now - issued_at > max_age_seconds:
        raise OfflineError(stale, f"issued more than {max_age_seconds} s ago")


def check_not_older(version: int, held_version: int) -> None:
    """A holder never goes back to an older version (rollback of a revocation, a withdrawn key)."""
    if version < held_version:
        raise OfflineError(Reason.ROLLBACK, f"version {version} is older than {held_version}")
