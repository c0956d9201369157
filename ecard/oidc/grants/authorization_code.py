"""The authorization code grant at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6,
RFC 9700 §4.2.4 and §4.5): single use, bound to the client, the redirect URI and the verifier."""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Mapping

from ecard.crypto.fields import secret_digest
from ecard.errors import AppError
from ecard.oidc import schemas, tokens
from ecard.oidc.consented_claims import consented_claims_of_ecard
from ecard.oidc.provider import Provider
from ecard.oidc.records import CODE, s256
from ecard.oidc.service import RelyingParty
from ecard.registry.audit import new_id

_PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")

Form = Mapping[str, str]


async def redeem(op: Provider, client: RelyingParty, form: Form) -> schemas.TokenResponse:
    """Single use; a replay revokes what the first redemption issued (RFC 6749 §4.1.2, RFC 9700
    §4.2.4); bound to the client, the exact redirect URI and the PKCE verifier.

    Why a replay never leaves a live family, whatever the interleaving (redeemer A, replayer B,
    on any workers; every store operation is atomic, every SQL statement commits on its own):

    1. The family's id is decided before consumption and written *by* the consumption: A's
       ``put_if_absent(code-spent, family id)`` both decides "first use" (exactly one caller
       wins) and records which family a replay must revoke.  There is no moment at which the
       code is consumed but its family unknown, so B, which loses the ``put_if_absent`` (or
       finds the code gone and the marker present), always learns A's family id.  A code read
       as absent with no marker was never redeemed (or expired unredeemed): "unknown".
    2. B revokes with :func:`~ecard.oidc.tokens.revoke_family`: store mark (b1), then the
       database row (b2), then the store mark again (b3).  b1 comes after A's consumption (a0).
    3. A creates the row (a1, INSERT), stores the access token (a2), then reads the mark (a3),
       refusing (and revoking its own row) when it is set; A also refuses when a0..a3 took
       longer than half the access-token lifetime (:func:`~ecard.oidc.tokens.issue`), so
       a3 < b1 + ttl and a mark written at b1 is still live at a3.
       - b1 before a3: A sees the mark and hands out nothing (its row is revoked by A).
       - a3 before b1: then a1 < a3 < b1 < b2, so B's UPDATE (b2) finds A's row and revokes it:
         the refresh token is dead.  a2 < b1, so the mark (same lifetime as the access token,
         written later) outlives the access token, which
         :func:`~ecard.oidc.tokens.access_record` therefore refuses.
       Under PostgreSQL's READ COMMITTED, "b2 finds the row" holds whenever A's INSERT
       committed before b2's statement began; if it did not, b2 began after b1 and before
       A's commit, hence b1 < a3: the first case.
    The refresh grant (:mod:`ecard.oidc.grants.refresh_token`) keeps the same order (rotate the
    row, store the access token, read the mark) and refuses a revoked row, so it can neither
    revive the family.
    """
    code_digest = secret_digest(form.get("code", ""))
    started = time.monotonic()
    family_id = new_id()
    raw = await op.store.get(f"oidc:code:{code_digest}")
    first = raw is not None and await op.store.put_if_absent(
        f"oidc:code-spent:{code_digest}", family_id.encode(), op.policy.spent_code_memory
    )
    if raw is None or not first:
        spent_family = await op.store.get(f"oidc:code-spent:{code_digest}")
        if spent_family is not None:
            await tokens.revoke_family(op, spent_family.decode(), "code_replay")
            await op.refused(
                f"oidc_client:{client.id}", "code", client.id, "code replayed; family revoked"
            )
            raise AppError(
                "invalid_grant",
                "authorization code already used; tokens issued with it are revoked",
            )
        raise AppError("invalid_grant", "unknown or expired authorization code")
    await op.store.delete(f"oidc:code:{code_digest}")  # spent: the marker alone decides now
    grant = CODE.decode(raw)
    try:
        check_code(grant, client, form)
    except AppError as error:
        await op.refused(f"oidc_client:{client.id}", "code", client.id, error.detail or error.code)
        raise
    return await tokens.issue_new_family(
        op,
        client,
        family_id,
        grant.ecard_id,
        grant.subject,
        grant.request.scope,
        grant.auth_time,
        grant.request.nonce,
        started,
        extra_claims=lambda: consented_claims_of_ecard(op, client.id, grant.ecard_id),
        authorization_details=granted_details(grant),
        consent_id=grant.consent_id,
    )


def granted_details(grant: schemas.CodeGrant) -> list[schemas.AuthorizationDetail] | None:
    """RFC 9396 §7: what the holder granted of the login's data request (None: it made none)."""
    ask = grant.request.consent
    if ask is None:
        return None
    if not grant.granted_data:
        return []
    return [
        schemas.AuthorizationDetail(
            type=schemas.CONSENT_DETAIL_TYPE,
            datatypes=list(grant.granted_data),
            purpose_code=ask.purpose_code,
            purpose=ask.purpose,
            duration_seconds=ask.duration_seconds,
            grant_id=grant.consent_id,
        )
    ]


# --- the rules a spent code is held to ------------------------------------------------------------


def issued_to_this_client(grant: schemas.CodeGrant, client: RelyingParty, form: Form) -> None:
    """RFC 6749 §4.1.3: the code was issued to the authenticated client."""
    if grant.request.client_id != client.id:
        raise AppError("invalid_grant", "the code was issued to another client")


def same_redirect_uri(grant: schemas.CodeGrant, client: RelyingParty, form: Form) -> None:
    """RFC 6749 §4.1.3: identical to the authorization request's."""
    if form.get("redirect_uri") != grant.request.redirect_uri:
        raise AppError("invalid_grant", "redirect_uri differs from the authorization request")


def verifier_matches_challenge(grant: schemas.CodeGrant, client: RelyingParty, form: Form) -> None:
    """RFC 7636 §4.6; RFC 9700 §4.8.2: no verifier without a challenge, and none missing."""
    verifier = form.get("code_verifier")
    if grant.request.code_challenge is None:
        if verifier is not None:
            raise AppError("invalid_grant", "code_verifier sent but no code_challenge was")
        return
    if verifier is None or not _PKCE_VERIFIER.match(verifier):
        raise AppError("invalid_grant", "a valid code_verifier is required")
    if not hmac.compare_digest(s256(verifier), grant.request.code_challenge):
        raise AppError("invalid_grant", "code_verifier does not match code_challenge")


CODE_CHECKS: tuple[Callable[[schemas.CodeGrant, RelyingParty, Form], None], ...] = (
    issued_to_this_client,
    same_redirect_uri,
    verifier_matches_challenge,
)


def check_code(grant: schemas.CodeGrant, client: RelyingParty, form: Form) -> None:
    """Run :data:`CODE_CHECKS` in order; the first broken rule is reported."""
    for check in CODE_CHECKS:
        check(grant, client, form)
