"""Offline verification of a scanned code: format, issuer, signature, key state, time, revocation.

Each step is one named check; the first that fails gives the result's reason.  Nothing here
raises on bad input: every code, however broken, gets a :class:`VerificationResult`.
"""

from __future__ import annotations

from collections.abc import Collection

import msgspec

from ecard.offline.code_format import CodeClaims, Usage, parse_code
from ecard.offline.documents import DEFAULT_SKEW_SECONDS
from ecard.offline.es256 import verify_raw
from ecard.offline.reasons import OfflineError, Reason
from ecard.offline.revocation import RevocationSet, RevokedCard
from ecard.offline.trust import TrustedKey, TrustStore


class VerificationResult(msgspec.Struct, frozen=True, kw_only=True):
    reason: Reason | None  # None: the code is genuine, current and not revoked
    claims: CodeClaims | None = None  # set once the code parsed (even if it then failed)
    code_id: str | None = None  # for single-use markers (see ParsedCode.code_id)
    issuer: TrustedKey | None = None  # the trust list entry of the signing key, once known
    revocation: RevokedCard | None = None  # the revocation entry when reason is REVOKED

    @property
    def ok(self) -> bool:
        return self.reason is None


def verify(
    code_text: str | bytes,
    trust_list: TrustStore,
    revocation_list: RevocationSet,
    now: int,
    skew_seconds: int = DEFAULT_SKEW_SECONDS,
    *,
    usages: Collection[Usage] | None = None,
) -> VerificationResult:
    """Verify a code against checked lists.  ``usages``: the usages this verifier accepts
    (None: any)."""
    try:
        parsed = parse_code(code_text)
    except OfflineError as error:
        return VerificationResult(reason=error.reason)
    claims = parsed.claims

    def refuse(
        reason: Reason,
        *,
        issuer: TrustedKey | None = None,
        revocation: RevokedCard | None = None,
    ) -> VerificationResult:
        return VerificationResult(
            reason=reason,
            claims=claims,
            code_id=parsed.code_id,
            issuer=issuer,
            revocation=revocation,
        )

    key = trust_list.by_short_id.get(claims.key_id)
    if key is None:
        return refuse(
            Reason.UNKNOWN_KEY if claims.region in trust_list.regions else Reason.UNKNOWN_ISSUER
        )
    if key.entry.region != claims.region:
        return refuse(Reason.ISSUER_MISMATCH, issuer=key.entry)
    if not verify_raw(key.public_key, parsed.signature, parsed.signature_input):
        return refuse(Reason.BAD_SIGNATURE, issuer=key.entry)
    key_refusal = key.refusal(claims.issued_at, now, skew_seconds)
    if key_refusal is not None:
        return refuse(key_refusal, issuer=key.entry)
    if claims.issued_at > now + skew_seconds:
        return refuse(Reason.NOT_YET_VALID, issuer=key.entry)
    if now >= claims.expires_at + skew_seconds:
        return refuse(Reason.EXPIRED, issuer=key.entry)
    if usages is not None and claims.usage not in usages:
        return refuse(Reason.WRONG_USAGE, issuer=key.entry)
    if now > trust_list.content.next_update + skew_seconds:
        return refuse(Reason.STALE_TRUST_LIST, issuer=key.entry)
    if now > revocation_list.next_update + skew_seconds:
        return refuse(Reason.STALE_REVOCATION_LIST, issuer=key.entry)
    revoked = revocation_list.lookup(claims.region, claims.pseudonym)
    if revoked is not None:
        return refuse(Reason.REVOKED, issuer=key.entry, revocation=revoked)
    return VerificationResult(reason=None, claims=claims, code_id=parsed.code_id, issuer=key.entry)
