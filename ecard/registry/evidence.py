"""实人 evidence: a channel's signed statement that it checked, just now, that a live person is the
applicant (``docs/front-door.md``).  No evidence, no e-card; no evidence, no password reset.

The evidence is a compact JWS (ES256) signed with the channel's registered key
(one of its filing's public keys, ``ecard.partners.credentials``).  Its claims:

=========  ==============================================================================
``iss``    the channel's client id
``aud``    the platform's public URL (``settings.public_url``)
``method`` how the channel checked: a name of :data:`METHODS`
``iat``    when the check happened (epoch seconds)
``jti``    unique per check (1–128 characters); used once
``ref``    the channel's own reference of the check, opaque, 1–128 characters
``subject`` base64url(SHA-256(``jti`` + "|" + normalized identity number)): binds the evidence to
           the applicant without carrying the identity number (:func:`subject_binding`)
``purpose`` optional: ``issuance`` or ``password_reset``; when present it must be the use
=========  ==============================================================================

Rules, one function each, checked in this order (every refusal is an :class:`~ecard.errors.AppError`
with a catalogue code and a stable reason that never says which fact about the person differed):

1. ``rule_present``            evidence was sent (``evidence_required``)
2. ``rule_compact_jws``        one compact JWS of bounded size, canonical base64url parts
3. ``rule_header``             the header is a flat JSON object with ``alg`` ES256
4. ``rule_signature``          the signature verifies with the channel's registered key
5. ``rule_claims``             the claims are a flat JSON object, every claim present and well typed
6. ``rule_issuer``             ``iss`` is the presenting channel
7. ``rule_audience``           ``aud`` is this platform's public URL
8. ``rule_issued_at``          ``iat`` is at most ``liveness_max_age_seconds`` old and at most
                               60 s ahead
9. ``rule_purpose``            ``purpose``, when present, is the use it is presented for
10. ``rule_method_known``      ``method`` is in the catalogue
11. ``rule_subject``           ``subject`` binds ``jti`` to the claimed identity number
12. ``rule_method_accepted``   the card's province accepts the method
                               (``evidence_method_not_accepted``)
13. ``jti`` used once (shared store, :func:`accept_evidence`)

:func:`check_evidence` runs rules 1–12 and does no I/O; :func:`accept_evidence` adds the channel's
key, the clock and the single-use ``jti``; :func:`record_evidence` writes the
``liveness_evidence`` row.  :func:`sign_evidence` is what a channel does after its own check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from jwt.exceptions import PyJWTError

from ecard.crypto.identity import InvalidIdentityNumber, normalize_identity_number
from ecard.errors import AppError
from ecard.registry import lifecycle

#: The 实人 check methods a channel may name.  Which of them a province accepts is policy
#: (``settings.liveness_methods``), not code.
METHODS: dict[str, str] = {
    "face_liveness": "人脸活体检测（渠道 App 内，动作/炫彩活体）",
    "face_compare_police": "人像与公安人口库照片比对",
    "bank_card_4factor": "银行卡四要素核验（姓名、身份证号、卡号、预留手机号）",
    "counter_in_person": "柜面人工核验（持证到场）",
    "id_card_nfc": "居民身份证芯片 NFC 读取与人脸比对",
}

Purpose = Literal["issuance", "password_reset"]
PURPOSES: tuple[str, ...] = ("issuance", "password_reset")

ALGORITHM = "ES256"
#: Evidence longer than this is refused before anything is decoded.
MAX_EVIDENCE_LENGTH = 4096
MAX_JTI_LENGTH = 128
MAX_REF_LENGTH = 128
#: How far ahead of the platform's clock an ``iat`` may be (the channel's clock may run fast).
FUTURE_SKEW_SECONDS = 60
#: ``iat`` at or after this (year 2106) is refused as malformed, before any arithmetic on it.
_MAX_IAT = 2**32
#: Header and claims are flat objects (``aud`` may be a list): more brackets than this is junk.
_MAX_BRACKETS = 8
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

#: The clock the checks read (tests replace it to drive time without sleeping).
clock: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True)
class Evidence:
    """Evidence that passed every rule: what the ``liveness_evidence`` row keeps (no
    personal data)."""

    channel_id: str
    method: str
    checked_at: int
    reference: str
    jti: str
    digest: str  # SHA-256 of the compact JWS, hex


def _invalid(reason: str) -> AppError:
    return AppError("evidence_invalid", reason)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str, what: str) -> bytes:
    try:
        raw = text.encode("ascii")
        data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise _invalid(f"the {what} is not base64url") from None
    if b64url(data) != text:  # one spelling per value
        raise _invalid(f"the {what} is not canonical base64url")
    return data


def _flat_json_object(data: bytes, what: str) -> dict[str, Any]:
    if data.count(b"[") + data.count(b"{") > _MAX_BRACKETS:  # bounded nesting before any parsing
        raise _invalid(f"the {what} is not a flat JSON object")
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _invalid(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise _invalid(f"the {what} is not a JSON object")
    return value


def subject_binding(jti: str, identity_number: str) -> str:
    """``subject``: base64url(SHA-256(jti + "|" + the normalized identity number)), no padding.
    Raises :class:`~ecard.crypto.identity.InvalidIdentityNumber` for a malformed number."""
    number = normalize_identity_number(identity_number)
    return b64url(hashlib.sha256(f"{jti}|{number}".encode()).digest())


def accepted_methods(policy: Mapping[str, list[str]], region: str) -> frozenset[str]:
    """The methods the province of ``region`` accepts: its own entry, else ``"*"``, else none
    (:func:`ecard.registry.lifecycle.policy_for`)."""
    return frozenset(lifecycle.policy_for(policy, region, []))


# --- the rules -----------------------------------------------------------------------------


def rule_present(evidence: object) -> None:
    """Evidence was sent at all."""
    if evidence is None or evidence == "":
        raise AppError("evidence_required")


def rule_compact_jws(evidence: object) -> tuple[str, str, str]:
    """One JWS in compact serialisation: a string of bounded size, three base64url parts."""
    if not isinstance(evidence, str) or len(evidence) > MAX_EVIDENCE_LENGTH:
        raise _invalid(
            f"evidence must be a compact JWS of at most {MAX_EVIDENCE_LENGTH} characters"
        )
    parts = evidence.split(".")
    if len(parts) != 3 or not all(parts[:2]) or not all(set(part) <= _B64URL for part in parts):
        raise _invalid("evidence is not a compact JWS (three base64url parts)")
    return parts[0], parts[1], parts[2]


def rule_header(encoded_header: str) -> dict[str, Any]:
    """The protected header is a JSON object whose ``alg`` is ES256 (nothing else is accepted)."""
    header = _flat_json_object(_b64url_decode(encoded_header, "header"), "header")
    if header.get("alg") != ALGORITHM:
        raise _invalid("the evidence must be signed with ES256")
    if "crit" in header:
        raise _invalid("no critical header extensions are understood")
    return header


def load_channel_key(public_jwk: object) -> jwt.PyJWK:
    """The channel's registered key as a verifier; ``evidence_key_missing`` when there is none or
    it is not a public P-256 JWK."""
    try:
        jwk = json.loads(public_jwk) if isinstance(public_jwk, str) else public_jwk
        if (
            not isinstance(jwk, dict)
            or jwk.get("kty") != "EC"
            or jwk.get("crv") != "P-256"
            or "d" in jwk
        ):
            raise ValueError("not a public P-256 JWK")
        return jwt.PyJWK({k: jwk[k] for k in ("kty", "crv", "x", "y")}, algorithm=ALGORITHM)
    except (PyJWTError, ValueError, TypeError, KeyError):
        raise AppError("evidence_key_missing") from None


def rule_signature(signing_input: bytes, encoded_signature: str, key: jwt.PyJWK) -> None:
    """The ES256 signature verifies with the channel's registered key (pyjwt's algorithm)."""
    signature = _b64url_decode(encoded_signature, "signature")
    try:
        ok = key.Algorithm.verify(signing_input, key.key, signature)
    except (PyJWTError, ValueError, TypeError):
        ok = False
    if not ok:
        raise _invalid("the signature does not verify with the channel's registered key")


def rule_claims(encoded_claims: str) -> dict[str, Any]:
    """Every claim is present and well typed: ``iss``, ``method``, ``jti``, ``ref``, ``subject``
    strings (``jti`` and ``ref`` 1–128 characters), ``aud`` a string or a list of strings, ``iat``
    a number of seconds since 1970, ``purpose`` absent or a string."""
    claims = _flat_json_object(_b64url_decode(encoded_claims, "claims"), "claims")
    for name in ("iss", "method", "jti", "ref", "subject"):
        if not isinstance(claims.get(name), str) or not claims[name]:
            raise _invalid(f"claim {name} must be a non-empty string")
    if len(claims["jti"]) > MAX_JTI_LENGTH or len(claims["ref"]) > MAX_REF_LENGTH:
        raise _invalid("claims jti and ref must be at most 128 characters")
    aud = claims.get("aud")
    if not (
        isinstance(aud, str)
        or (isinstance(aud, list) and aud and all(isinstance(a, str) for a in aud))
    ):
        raise _invalid("claim aud must be a string or a list of strings")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)) or not 0 <= iat < _MAX_IAT:
        raise _invalid("claim iat must be a number of seconds since 1970")
    if "purpose" in claims and not isinstance(claims["purpose"], str):
        raise _invalid("claim purpose must be a string")
    return claims


def rule_issuer(claims: dict[str, Any], channel_id: str) -> None:
    """``iss`` is the channel presenting the evidence."""
    if not hmac.compare_digest(claims["iss"].encode(), channel_id.encode()):
        raise _invalid("iss is not the presenting channel")


def rule_audience(claims: dict[str, Any], audience: str) -> None:
    """``aud`` names this platform (its public URL)."""
    aud = claims["aud"]
    if audience not in ([aud] if isinstance(aud, str) else aud):
        raise _invalid("aud is not this platform's public URL")


def rule_issued_at(claims: dict[str, Any], now: float, max_age: int) -> int:
    """The check happened at most ``max_age`` seconds ago and at most 60 s in the future."""
    iat = int(claims["iat"])
    if iat > now + FUTURE_SKEW_SECONDS:
        raise _invalid("iat is in the future")
    if now - iat > max_age:
        raise _invalid(f"the check is older than {max_age} s")
    return iat


def rule_purpose(claims: dict[str, Any], purpose: str) -> None:
    """``purpose``, when the channel states one, is the use the evidence is presented for."""
    if "purpose" in claims and claims["purpose"] != purpose:
        raise _invalid("the evidence was made for another purpose")


def rule_method_known(claims: dict[str, Any]) -> str:
    """``method`` is one of :data:`METHODS`."""
    if claims["method"] not in METHODS:
        raise _invalid("method is not in the catalogue")
    return claims["method"]


def rule_subject(claims: dict[str, Any], identity_number: str) -> None:
    """``subject`` is the binding of this ``jti`` to the claimed identity number (compared in
    constant time; the refusal does not say what differed)."""
    try:
        expected = subject_binding(claims["jti"], identity_number)
    except InvalidIdentityNumber:
        raise _invalid("subject does not bind the evidence to the applicant") from None
    if not hmac.compare_digest(claims["subject"].encode(), expected.encode()):
        raise _invalid("subject does not bind the evidence to the applicant")


def rule_method_accepted(method: str, region: str, policy: Mapping[str, list[str]]) -> None:
    """The card's province accepts this method (``settings.liveness_methods``)."""
    if method not in accepted_methods(policy, region):
        raise AppError(
            "evidence_method_not_accepted", f"method {method} is not accepted for region {region}"
        )


def check_evidence(
    evidence: object,
    public_jwk: object,
    *,
    channel_id: str,
    audience: str,
    identity_number: str,
    region: str,
    policy: Mapping[str, list[str]],
    purpose: str,
    now: float,
    max_age: int,
) -> Evidence:
    """Rules 1–12, in order; pure (the caller gives the key, the clock and the policy).  Raises
    :class:`~ecard.errors.AppError` (``evidence_required``, ``evidence_invalid``,
    ``evidence_key_missing``, ``evidence_method_not_accepted``) and nothing else, whatever the
    input."""
    rule_present(evidence)
    encoded_header, encoded_claims, encoded_signature = rule_compact_jws(evidence)
    compact = f"{encoded_header}.{encoded_claims}.{encoded_signature}"  # the evidence, as a str
    rule_header(encoded_header)
    key = load_channel_key(public_jwk)
    rule_signature(f"{encoded_header}.{encoded_claims}".encode("ascii"), encoded_signature, key)
    claims = rule_claims(encoded_claims)
    rule_issuer(claims, channel_id)
    rule_audience(claims, audience)
    checked_at = rule_issued_at(claims, now, max_age)
    rule_purpose(claims, purpose)
    method = rule_method_known(claims)
    rule_subject(claims, identity_number)
    rule_method_accepted(method, region, policy)
    return Evidence(
        channel_id=channel_id,
        method=method,
        checked_at=checked_at,
        reference=claims["ref"],
        jti=claims["jti"],
        digest=hashlib.sha256(compact.encode("ascii")).hexdigest(),
    )


# --- with the platform: the key, the clock, the single-use jti, the record -------------------


async def accept_evidence(
    platform: Any,
    evidence: str | None,
    *,
    channel_id: str,
    identity_number: str,
    region: str,
    purpose: Purpose,
) -> Evidence:
    """Check ``evidence`` presented by ``channel_id`` for the applicant with ``identity_number``
    and a card of ``region``, then spend its ``jti`` (once, on every worker: the marker lives
    as long as an ``iat`` could still pass).  Refusals as :func:`check_evidence`; a replayed
    ``jti`` is ``evidence_invalid``."""
    from ecard.partners.credentials import public_keys

    settings = platform.settings
    rule_present(evidence)
    # the channel filing's usable keys, newest first (a rotation overlaps the old key)
    keys = await public_keys(channel_id)
    if not keys:
        raise AppError("evidence_key_missing")
    refusal: AppError | None = None
    accepted: Evidence | None = None
    for key in keys:
        try:
            accepted = check_evidence(
                evidence,
                key,
                channel_id=channel_id,
                audience=settings.public_url,
                identity_number=identity_number,
                region=region,
                policy=settings.liveness_methods,
                purpose=purpose,
                now=clock(),
                max_age=settings.liveness_max_age_seconds,
            )
            break
        except AppError as error:
            refusal = refusal or error
    if accepted is None:
        raise refusal or AppError("evidence_key_missing")
    ttl = settings.liveness_max_age_seconds + 2 * FUTURE_SKEW_SECONDS
    marker = "evidence-jti:" + hashlib.sha256(f"{channel_id}|{accepted.jti}".encode()).hexdigest()
    if not await platform.store.put_if_absent(marker, b"1", ttl):
        raise _invalid("this evidence (jti) was already used")
    return accepted


async def record_evidence(
    evidence: Evidence, *, ecard_id: str, card_id: str, purpose: Purpose
) -> str:
    """Write the ``liveness_evidence`` row (inside the caller's transaction); its id.  The same
    JWS twice (its single-use marker lost with an emptied store) is ``evidence_invalid``: the
    digest is unique."""
    from ecard.registry.audit import new_id
    from ecard.registry.tables import LivenessEvidence
    from ecard.store.db import is_unique_violation

    evidence_id = new_id()
    try:
        await LivenessEvidence.insert(
            LivenessEvidence(
                id=evidence_id,
                ecard=ecard_id,
                card=card_id,
                channel=evidence.channel_id,
                method=evidence.method,
                checked_at=evidence.checked_at,
                channel_reference=evidence.reference,
                jti=evidence.jti,
                jws_digest=evidence.digest,
                purpose=purpose,
            )
        ).run()
    except Exception as exc:
        if is_unique_violation(exc):
            raise _invalid("this evidence (jti) was already used") from None
        raise
    return evidence_id


# --- what a channel does -------------------------------------------------------------------


def sign_evidence(
    private_key: Any,
    *,
    channel_id: str,
    audience: str,
    identity_number: str,
    method: str,
    reference: str,
    checked_at: int | None = None,
    jti: str | None = None,
    purpose: str | None = None,
) -> str:
    """What a channel does right after its own 实人 check of the applicant: sign the evidence with
    the private key whose public JWK the platform registered for it (a P-256
    ``cryptography`` key, or its PEM).  ``audience`` is the platform's public URL; ``checked_at``
    defaults to now and ``jti`` to a fresh random id."""
    jti = jti or uuid.uuid4().hex
    claims: dict[str, Any] = {
        "iss": channel_id,
        "aud": audience,
        "method": method,
        "iat": int(time.time()) if checked_at is None else checked_at,
        "jti": jti,
        "ref": reference,
        "subject": subject_binding(jti, identity_number),
    }
    if purpose is not None:
        claims["purpose"] = purpose
    return jwt.encode(claims, private_key, algorithm=ALGORITHM, headers={"typ": "JWT"})
