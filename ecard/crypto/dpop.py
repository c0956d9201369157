"""DPoP proofs (RFC 9449), checked one named rule at a time, in the order of RFC 9449 §4.3.

Pure: no I/O, no clock of its own (the caller passes ``now``), no framework.  What needs shared
state — a ``jti`` used once, a server nonce's key — is the caller's (``ecard.auth``): this module
returns the proof's ``jti`` and key thumbprint so the caller can record them.

Every refusal is a :class:`DpopError` naming the rule it broke; nothing else escapes
:func:`check_proof`, whatever the input (tests/holder_sessions feed it malformed proofs).

Rules, each one function below:

1. ``rule_one_compact_jws``     one JWS in compact serialisation, of bounded size, base64url parts
2. ``rule_typ``                 header ``typ`` is ``dpop+jwt``
3. ``rule_alg``                 header ``alg`` is asymmetric and in the allowed list (ES256; EdDSA)
4. ``rule_jwk_public``          header ``jwk`` is a public key of the algorithm's type, no private
                                members (checked before the key is loaded: a private key is never
                                even parsed)
5. ``rule_signature``           the signature verifies with that ``jwk``
6. ``rule_claims``              ``jti``, ``htm``, ``htu``, ``iat`` present and well typed
7. ``rule_htm``                 ``htm`` is the request's method
8. ``rule_htu``                 ``htu`` is the request's URL, query and fragment ignored (scheme,
                                host, port and path compared after normalisation)
9. ``rule_nonce``               ``nonce`` is one the server gave, when the server asks for nonces
10. ``rule_iat``                ``iat`` is within the window around ``now``
11. ``rule_ath``                ``ath`` is base64url(SHA-256(access token)) when a token comes
                                with it
12. ``rule_key_binding``        the key's RFC 7638 thumbprint is the one the token is bound to
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt.exceptions import PyJWTError

#: What a DPoP proof's header says its type is.
DPOP_TYP = "dpop+jwt"
#: Algorithms a proof may be signed with: ES256 (P-256, what phones' secure enclaves and
#: keystores make) and EdDSA (Ed25519).
ALLOWED_ALGORITHMS: tuple[str, ...] = ("ES256", "EdDSA")
#: What key type and curve each allowed algorithm takes.
_KEY_TYPES: dict[str, tuple[str, str]] = {"ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519")}
#: The members of each key type's public key (RFC 7638 §3.2: the thumbprint's input).
_PUBLIC_MEMBERS: dict[str, tuple[str, ...]] = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}
#: Members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
#: A proof longer than this is refused before anything is decoded.
MAX_PROOF_LENGTH = 4096
#: A ``jti`` longer than this is refused (RFC 9449 asks for 96 bits of randomness or more).
MAX_JTI_LENGTH = 128
#: ``iat`` at or after this (year 2112) is refused as malformed, before any arithmetic on it.
MAX_IAT = 2**32
#: A nonce's time step: a nonce is good in its step and the next.
DEFAULT_NONCE_PERIOD = 300


class DpopError(Exception):
    """A proof refused by ``rule``; ``message`` says what is wrong without echoing the proof."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message


class DpopNonceRequired(DpopError):
    """The proof carries no nonce, or a stale one, while the server asks for nonces
    (RFC 9449 §8: answered with ``use_dpop_nonce`` and a fresh ``DPoP-Nonce``)."""


@dataclass(frozen=True, slots=True)
class DpopProof:
    """A proof that passed every rule: what the caller still needs for the replay check."""

    jkt: str  # RFC 7638 thumbprint of the proof's key
    jti: str
    iat: int
    htm: str
    htu: str


# --- helpers -------------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str, rule: str, what: str) -> bytes:
    try:
        raw = text.encode("ascii")
        data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise DpopError(rule, f"{what} is not base64url") from None
    if b64url(data) != text:  # one spelling per value: no padding, no spare bits
        raise DpopError(rule, f"{what} is not canonical base64url")
    return data


def _json_object(data: bytes, rule: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DpopError(rule, f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise DpopError(rule, f"{what} is not a JSON object")
    return value


def access_token_hash(access_token: str) -> str:
    """RFC 9449 §4.2 ``ath``: base64url(SHA-256(the access token's ASCII))."""
    return b64url(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url) of a public EC or OKP JWK: the required members
    in lexicographic order, no whitespace.  Raises :class:`DpopError` for another key type."""
    kty = jwk.get("kty")
    members = _PUBLIC_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None or not all(isinstance(jwk.get(name), str) for name in members):
        raise DpopError("jwk", "not a public EC or OKP key")
    return _thumbprint(tuple((name, jwk[name]) for name in members))


@lru_cache(maxsize=4096)
def _thumbprint(members: tuple[tuple[str, str], ...]) -> str:
    canonical = json.dumps(dict(members), separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


@lru_cache(maxsize=1024)
def normalize_url(url: str) -> tuple[str, str, str]:
    """(scheme, host[:port], path) of an absolute http(s) URL, query and fragment dropped, the
    scheme and host lowercased, a default port left out, an empty path as ``/`` (RFC 9449 §4.3
    point 9, with RFC 3986 §6.2.2–6.2.3 normalisation).  Raises ``ValueError`` for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if (
        scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
    ):
        raise ValueError("not an absolute http(s) URL")
    port = parts.port  # ValueError when not a number or out of range
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    return scheme, host, parts.path or "/"


# --- the rules, in RFC 9449 §4.3 order --------------------------------------------------------


def rule_one_compact_jws(proof: object) -> tuple[str, str, str]:
    """One JWS in compact serialisation: three base64url parts, at most :data:`MAX_PROOF_LENGTH`."""
    if not isinstance(proof, str) or not proof:
        raise DpopError("jws", "no proof")
    if len(proof) > MAX_PROOF_LENGTH:
        raise DpopError("jws", "the proof is too long")
    parts = proof.split(".")
    if len(parts) != 3 or not all(parts):
        raise DpopError("jws", "not a JWS in compact serialisation")
    header_text, payload_text, signature_text = parts
    return header_text, payload_text, signature_text


def rule_typ(header: dict[str, Any]) -> None:
    """The header's ``typ`` is ``dpop+jwt`` (compared exactly, as RFC 9449 §4.2 spells it)."""
    if header.get("typ") != DPOP_TYP:
        raise DpopError("typ", "the header's typ is not dpop+jwt")


def rule_alg(header: dict[str, Any], algorithms: tuple[str, ...] = ALLOWED_ALGORITHMS) -> str:
    """The header's ``alg`` is an asymmetric algorithm this server accepts (never ``none``, never
    a MAC)."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms or alg not in _KEY_TYPES:
        raise DpopError(
            "alg", f"alg must be one of {', '.join(a for a in algorithms if a in _KEY_TYPES)}"
        )
    return alg


def rule_jwk_public(header: dict[str, Any], alg: str) -> dict[str, Any]:
    """The header's ``jwk`` is a public key of the type ``alg`` needs, with no private member."""
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise DpopError("jwk", "the header has no jwk object")
    if PRIVATE_MEMBERS & jwk.keys():
        raise DpopError("jwk", "the jwk holds private key material")
    kty, crv = _KEY_TYPES[alg]
    if jwk.get("kty") != kty or jwk.get("crv") != crv:
        raise DpopError("jwk", f"{alg} needs a {kty} {crv} key")
    if not all(isinstance(jwk.get(name), str) for name in _PUBLIC_MEMBERS[kty]):
        raise DpopError("jwk", "the jwk lacks a public member")
    return jwk


def rule_signature(signing_input: bytes, signature: bytes, jwk: dict[str, Any], alg: str) -> None:
    """The JWS signature verifies with the header's ``jwk`` (loaded with pyjwt's ``PyJWK``)."""
    try:
        verifier = _verifier(alg, *(jwk[name] for name in _PUBLIC_MEMBERS[jwk["kty"]]))
        ok = verifier.Algorithm.verify(signing_input, verifier.key, signature)
    except (PyJWTError, ValueError, TypeError):
        raise DpopError("jwk", "the jwk is not a valid public key") from None
    if not ok:
        raise DpopError("signature", "the signature does not verify with the jwk")


@lru_cache(maxsize=4096)
def _verifier(alg: str, *members: str) -> jwt.PyJWK:
    """A public key loaded once per key (a device sends the same key with every request; loading
    checks the point is on the curve, which costs about as much as a verification)."""
    kty = _KEY_TYPES[alg][0]
    return jwt.PyJWK(dict(zip(_PUBLIC_MEMBERS[kty], members, strict=True)), algorithm=alg)


def rule_claims(claims: dict[str, Any]) -> tuple[str, str, str, int]:
    """``jti`` (1–128 characters), ``htm``, ``htu`` (strings) and ``iat`` (a whole number of
    seconds) are present."""
    jti, htm, htu, iat = claims.get("jti"), claims.get("htm"), claims.get("htu"), claims.get("iat")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise DpopError("claims", "jti must be a string of 1 to 128 characters")
    if not isinstance(htm, str) or not isinstance(htu, str):
        raise DpopError("claims", "htm and htu must be strings")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)) or not 0 <= iat < MAX_IAT:
        raise DpopError("claims", "iat must be a number of seconds since 1970")
    return jti, htm, htu, int(iat)


def rule_htm(htm: str, method: str) -> None:
    """``htm`` is the HTTP method of the request (case-sensitive, RFC 9110 §9.1)."""
    if htm != method:
        raise DpopError("htm", "htm is not this request's method")


def rule_htu(htu: str, url: str) -> None:
    """``htu`` is the request's URL without query and fragment: scheme, host, port and path
    compared after normalisation (:func:`normalize_url`)."""
    try:
        same = len(htu) <= 2048 and normalize_url(htu) == normalize_url(url)
    except ValueError:
        same = False
    if not same:
        raise DpopError("htu", "htu is not this request's URL")


def rule_nonce(claims: dict[str, Any], nonce_key: bytes | None, now: float, period: int) -> None:
    """When the server asks for nonces (``nonce_key`` given), ``nonce`` is one it made for this
    step or the previous one (:func:`make_nonce`)."""
    if nonce_key is None:
        return
    nonce = claims.get("nonce")
    if not isinstance(nonce, str) or not nonce_is_fresh(nonce_key, nonce, now, period):
        raise DpopNonceRequired("nonce", "this server asks for a fresh DPoP nonce")


def rule_iat(iat: int, now: float, window: float) -> None:
    """``iat`` is no more than ``window`` seconds before or after ``now``."""
    if abs(iat - now) > window:
        raise DpopError("iat", "iat is outside the accepted window")


def rule_ath(claims: dict[str, Any], access_token: str | None) -> None:
    """With an access token, ``ath`` is base64url(SHA-256(token)), compared in constant time."""
    if access_token is None:
        return
    ath = claims.get("ath")
    if not isinstance(ath, str) or not hmac.compare_digest(
        ath.encode("ascii", "replace"), access_token_hash(access_token).encode()
    ):
        raise DpopError("ath", "ath is not the hash of the access token presented")


def rule_key_binding(jkt: str, expected_jkt: str | None) -> None:
    """The proof's key is the one the token (or session) is bound to."""
    if expected_jkt is not None and not hmac.compare_digest(
        jkt.encode(), expected_jkt.encode("ascii", "replace")
    ):
        raise DpopError("jkt", "the proof is signed by another key than the token is bound to")


# --- the checker ---------------------------------------------------------------------------


def check_proof(
    proof: object,
    *,
    method: str,
    url: str,
    now: float,
    window: float = 60.0,
    access_token: str | None = None,
    expected_jkt: str | None = None,
    algorithms: tuple[str, ...] = ALLOWED_ALGORITHMS,
    nonce_key: bytes | None = None,
    nonce_period: int = DEFAULT_NONCE_PERIOD,
) -> DpopProof:
    """Every rule of the module docstring but the replay check, in order; the proof's key
    thumbprint and ``jti`` for that check.  Raises :class:`DpopError` (or its
    :class:`DpopNonceRequired`) and nothing else."""
    header_text, payload_text, signature_text = rule_one_compact_jws(proof)
    header = _json_object(_b64url_decode(header_text, "jws", "the header"), "jws", "the header")
    rule_typ(header)
    alg = rule_alg(header, algorithms)
    jwk = rule_jwk_public(header, alg)
    payload = _b64url_decode(payload_text, "jws", "the payload")
    signature = _b64url_decode(signature_text, "jws", "the signature")
    rule_signature(f"{header_text}.{payload_text}".encode("ascii"), signature, jwk, alg)
    claims = _json_object(payload, "claims", "the payload")
    jti, htm, htu, iat = rule_claims(claims)
    rule_htm(htm, method)
    rule_htu(htu, url)
    rule_nonce(claims, nonce_key, now, nonce_period)
    rule_iat(iat, now, window)
    rule_ath(claims, access_token)
    jkt = jwk_thumbprint(jwk)
    rule_key_binding(jkt, expected_jkt)
    return DpopProof(jkt=jkt, jti=jti, iat=iat, htm=htm, htu=htu)


# --- server nonces (RFC 9449 §8), stateless --------------------------------------------------


def make_nonce(key: bytes, now: float, period: int = DEFAULT_NONCE_PERIOD) -> str:
    """A nonce for the time step of ``now``: the step number and a MAC over it (no state kept;
    any worker with ``key`` can check it)."""
    step = struct.pack(">Q", int(now // period))
    return b64url(step + hmac.digest(key, b"dpop-nonce" + step, "sha256")[:16])


def nonce_is_fresh(key: bytes, nonce: str, now: float, period: int = DEFAULT_NONCE_PERIOD) -> bool:
    """Whether ``nonce`` is :func:`make_nonce`'s for the current or the previous time step."""
    try:
        raw = _b64url_decode(nonce, "nonce", "the nonce") if len(nonce) <= 64 else b""
    except DpopError:
        return False
    if len(raw) != 24:
        return False
    step, tag = raw[:8], raw[8:]
    if not hmac.compare_digest(hmac.digest(key, b"dpop-nonce" + step, "sha256")[:16], tag):
        return False
    return int(now // period) - struct.unpack(">Q", step)[0] in (0, 1)


def make_proof(
    private_key: Any,
    public_jwk: dict[str, str],
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
    now: float,
    jti: str,
) -> str:
    """What a client (the channel app on the phone) sends in the ``DPoP`` header: an ES256 proof
    for ``method`` ``url``, with ``ath`` when it presents ``access_token``.  ``private_key`` is the
    device key (a ``cryptography`` P-256 key), ``public_jwk`` its public JWK."""
    claims: dict[str, Any] = {"jti": jti, "htm": method, "htu": url, "iat": int(now)}
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    return jwt.encode(
        claims, private_key, algorithm="ES256", headers={"typ": DPOP_TYP, "jwk": public_jwk}
    )
