"""ES256 (ECDSA P-256 with SHA-256) keys, raw signatures and compact JWS, for signers and verifiers.

Key ids are RFC 7638 JWK thumbprints; the code format carries only their first 8 bytes.
Signed lists and documents are compact JWS (RFC 7515) made and checked by pyjwt, with a ``typ``
header that says what the payload is, so a validly signed document of one kind can never be
accepted as another.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from functools import cache
from typing import Any

import jwt
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from jwt.algorithms import ECAlgorithm

from ecard.offline.reasons import OfflineError, Reason

SHORT_KEY_ID_BYTES = 8
RAW_SIGNATURE_BYTES = 64
_SCALAR_BYTES = 32
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
_JWS = jwt.PyJWS()


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url (RFC 7515 §2); anything else is malformed."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise OfflineError(Reason.MALFORMED, "not base64url") from None
    if b64url_encode(raw) != text:
        raise OfflineError(Reason.MALFORMED, "not canonical base64url")
    return raw


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The RFC 7638 required members of a P-256 public key."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise TypeError("only P-256 (ES256) keys are supported")
    numbers = key.public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url_encode(numbers.x.to_bytes(_SCALAR_BYTES, "big")),
        "y": b64url_encode(numbers.y.to_bytes(_SCALAR_BYTES, "big")),
    }


def thumbprint(key: ec.EllipticCurvePublicKey) -> str:
    """RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace."""
    canonical = json.dumps(public_jwk(key), sort_keys=True, separators=(",", ":"))
    return b64url_encode(hashlib.sha256(canonical.encode()).digest())


def short_key_id(key_thumbprint: str) -> bytes:
    """The first 8 bytes of a thumbprint's SHA-256 digest: the key id written into codes."""
    digest = b64url_decode(key_thumbprint)
    if len(digest) != hashlib.sha256().digest_size:
        raise OfflineError(Reason.MALFORMED, "a key id is a base64url SHA-256 thumbprint")
    return digest[:SHORT_KEY_ID_BYTES]


def public_key_from_jwk(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """Load a P-256 public JWK; the point is checked to be on the curve."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256" or "d" in jwk:
        raise OfflineError(Reason.MALFORMED, "expected a P-256 public JWK")
    try:
        key = ECAlgorithm.from_jwk(dict(jwk))
    except (jwt.PyJWTError, ValueError, TypeError):
        raise OfflineError(Reason.MALFORMED, "invalid P-256 public JWK") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise OfflineError(Reason.MALFORMED, "expected a P-256 public JWK")
    return key


def sign_raw(private_key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ES256 signature as JWS writes it (RFC 7518 §3.4): r || s, 32 bytes each."""
    r, s = decode_dss_signature(private_key.sign(data, _ECDSA_SHA256))
    return r.to_bytes(_SCALAR_BYTES, "big") + s.to_bytes(_SCALAR_BYTES, "big")


def verify_raw(public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    if len(signature) != RAW_SIGNATURE_BYTES:
        return False
    r = int.from_bytes(signature[:_SCALAR_BYTES], "big")
    s = int.from_bytes(signature[_SCALAR_BYTES:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), data, _ECDSA_SHA256)
    except (InvalidSignature, ValueError):
        return False
    return True


@cache
def _deterministic_ecdsa() -> ec.ECDSA:
    """RFC 6979 ECDSA (cryptography >= 44 with OpenSSL >= 3.2); built on first use, so a verifier
    whose library lacks it can still load this module: only signing needs it."""
    return ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


def sign_jws(payload: bytes, private_key: ec.EllipticCurvePrivateKey, typ: str) -> str:
    """Compact ES256 JWS with ``alg``, ``kid`` (the signer's thumbprint) and ``typ`` headers.

    Deterministic (RFC 6979 nonces, a fixed header spelling): the same payload signed by the same
    key gives the same bytes every time, on every worker, so a document can be re-made from what
    it said (a revocation list version from its publication time) and still be the document that
    was first served.  Any ES256 verifier checks it as usual.

    A key that cannot sign deterministically (a key in an HSM: RFC 6979 is no PKCS#11 mechanism)
    raises ``UnsupportedAlgorithm`` and signs with a random nonce instead: the payload and header
    are still the same bytes, only the signature differs between workers and re-signings, so such
    a document keeps its content and validity but not its ETag across workers."""
    header = {"alg": "ES256", "kid": thumbprint(private_key.public_key()), "typ": typ}
    signing_input = (
        b64url_encode(json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
        + "."
        + b64url_encode(payload)
    )
    try:
        der = private_key.sign(signing_input.encode(), _deterministic_ecdsa())
    except UnsupportedAlgorithm:
        der = private_key.sign(signing_input.encode(), _ECDSA_SHA256)
    r, s = decode_dss_signature(der)
    signature = r.to_bytes(_SCALAR_BYTES, "big") + s.to_bytes(_SCALAR_BYTES, "big")
    return signing_input + "." + b64url_encode(signature)


def jws_header(token: str) -> dict[str, Any]:
    """The unverified protected header, to pick the verification key by ``kid``."""
    try:
        header = _JWS.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise OfflineError(Reason.MALFORMED, "not a compact JWS") from None
    return header


def open_jws(token: str, typ: str, public_key: ec.EllipticCurvePublicKey) -> bytes:
    """The payload of an ES256 JWS of type ``typ``, after its signature checked out."""
    if not isinstance(token, str):
        raise OfflineError(Reason.MALFORMED, "a JWS is text")
    header = jws_header(token)
    if header.get("alg") != "ES256":
        raise OfflineError(Reason.MALFORMED, "only ES256 is accepted")
    try:
        payload: bytes = _JWS.decode(token, public_key, algorithms=["ES256"])
    except jwt.InvalidSignatureError:
        raise OfflineError(Reason.BAD_SIGNATURE) from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise OfflineError(Reason.MALFORMED, "not a valid compact JWS") from None
    # The type is checked only once the signature is known good: unsigned junk is "bad", not
    # "wrong".
    if header.get("typ") != typ:
        raise OfflineError(Reason.WRONG_TYPE, f"expected a {typ}")
    return payload
