"""Token issuance: the family row of a login, access tokens, ID tokens, refresh-token MACs, and
revoking a family.

A login's tokens form a family (``oidc_token_family``, whose id is the ID token's ``sid``).  The
ordering rules that keep a replayed code or a reused refresh token from leaving a live family
are argued in :func:`ecard.oidc.grants.authorization_code.redeem`; this module keeps its half:
the access token is stored before the family's revocation mark is read, and revocation writes
mark, row, mark.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt

from ecard.crypto.fields import keyed_digest, secret_digest
from ecard.crypto.jwk import b64url
from ecard.errors import AppError
from ecard.oidc import schemas
from ecard.oidc.policy import (
    ACCESS_TOKEN_PREFIX,
    ACR_SCAN_LOGIN,
    AMR_SCAN_LOGIN,
    REFRESH_TOKEN_PREFIX,
)
from ecard.oidc.provider import Provider
from ecard.oidc.records import ACCESS, encode, family_revoked_key
from ecard.oidc.service import RelyingParty
from ecard.oidc.tables import OidcTokenFamily

#: Claims beyond the protocol's, computed only once the issuance is known to go ahead.
ExtraClaims = Callable[[], Awaitable[dict[str, Any]]]

#: A new token family, written only while the card and e-card are active (one statement, so a
#: card reported lost after the approval gets no tokens and the check costs no extra query).
_NEW_FAMILY_SQL = (
    "INSERT INTO oidc_token_family"
    " (id, client, ecard_id, subject, scope, auth_time, expires_at, consent_id)"
    " SELECT CAST({} AS VARCHAR), CAST({} AS VARCHAR), e.id, CAST({} AS VARCHAR), CAST({} AS TEXT),"
    " CAST({} AS BIGINT), CAST({} AS BIGINT), CAST({} AS VARCHAR)"
    " FROM ecard e JOIN card c ON c.id = e.card"
    " WHERE e.id = {} AND e.status = 'active' AND c.status = 'active' RETURNING id"
)


async def issue_new_family(
    op: Provider,
    client: RelyingParty,
    family_id: str,
    ecard_id: str,
    subject: str,
    scope: str,
    auth_time: int,
    nonce: str | None,
    started: float,
    extra_claims: ExtraClaims | None = None,
    authorization_details: list[schemas.AuthorizationDetail] | None = None,
    consent_id: str | None = None,
) -> schemas.TokenResponse:
    """Tokens of a new login, only while its card and e-card are still active (``started``:
    :func:`time.monotonic` before the grant was consumed; see :func:`issue`).  ``consent_id``:
    the grant the login's approval made, which the family's refreshes report."""
    expires_at = int(time.time()) + op.policy.refresh_token_ttl
    written = await OidcTokenFamily.raw(
        _NEW_FAMILY_SQL,
        family_id,
        client.id,
        subject,
        scope,
        auth_time,
        expires_at,
        consent_id,
        ecard_id,
    )
    if not written:
        await op.refused(
            f"oidc_client:{client.id}", "token", client.id, "card or e-card not active"
        )
        raise AppError("invalid_grant", "the card or e-card is no longer active")
    return await issue(
        op,
        client,
        family_id,
        ecard_id,
        subject,
        scope,
        auth_time,
        0,
        nonce,
        started,
        extra_claims=extra_claims,
        authorization_details=authorization_details,
    )


async def issue(
    op: Provider,
    client: RelyingParty,
    family_id: str,
    ecard_id: str,
    subject: str,
    scope: str,
    auth_time: int,
    generation: int,
    nonce: str | None,
    started: float,
    extra_claims: ExtraClaims | None = None,
    authorization_details: list[schemas.AuthorizationDetail] | None = None,
) -> schemas.TokenResponse:
    """Tokens of a family whose row was just created or rotated (``started``: before that).

    The access token is stored first and the family's revocation mark read after it: a
    revocation that raced this issuance is either seen here (nothing is handed out) or wrote
    its mark later than the access token, so the mark outlives it.  An issuance slower than half
    an access token's life is refused, so a mark written after it started cannot have expired
    before it is read."""
    now = int(time.time())
    access_token = ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = schemas.AccessRecord(
        family_id=family_id,
        client_id=client.id,
        ecard_id=ecard_id,
        subject=subject,
        scope=scope,
        issued_at=now,
        expires_at=now + op.policy.access_token_ttl,
    )
    access_key = f"oidc:at:{secret_digest(access_token)}"
    await op.store.put(access_key, encode(record), op.policy.access_token_ttl)
    revoked = await op.store.get(family_revoked_key(family_id)) is not None
    if revoked or time.monotonic() - started >= op.policy.access_token_ttl / 2:
        await op.store.delete(access_key)
        await revoke_family(
            op, family_id, "revoked_during_issuance" if revoked else "issuance_too_slow"
        )
        raise AppError(
            "invalid_grant", "the login's tokens were revoked while they were being issued"
        )
    claims: dict[str, Any] = await extra_claims() if extra_claims is not None else {}
    claims |= {
        "iss": op.issuer,
        "sub": subject,
        "aud": client.id,
        "azp": client.id,
        "exp": now + op.policy.id_token_ttl,
        "iat": now,
        "auth_time": auth_time,
        "acr": ACR_SCAN_LOGIN,
        "amr": AMR_SCAN_LOGIN,
        "sid": family_id,
    }
    if nonce is not None:
        claims["nonce"] = nonce
    return schemas.TokenResponse(
        access_token=access_token,
        token_type="Bearer",  # noqa: S106 - a token type, not a secret
        expires_in=op.policy.access_token_ttl,
        scope=scope,
        id_token=sign(op, claims),
        refresh_token=refresh_token(op, family_id, generation),
        authorization_details=authorization_details,
    )


def sign(op: Provider, claims: dict[str, Any]) -> str:
    """A JWT of ``claims`` signed ES256 with this region's current issuer key (``kid`` set)."""
    record = op.platform.keys.ring.signing_key(op.platform.settings.region_code)
    key = op.platform.keys.private_key(record)
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": record.kid, "typ": "JWT"})


# --- refresh tokens: MAC over (family, generation) ------------------------------------------------


def _refresh_mac(op: Provider, family_id: str, generation: int) -> str:
    return b64url(
        keyed_digest(op.platform.pseudonym_key, "oidc-refresh", f"{family_id}.{generation}")
    )


def refresh_token(op: Provider, family_id: str, generation: int) -> str:
    """The refresh token of ``generation`` of a family: nothing of it is stored but the counter."""
    mac = _refresh_mac(op, family_id, generation)
    return f"{REFRESH_TOKEN_PREFIX}{family_id}.{generation}.{mac}"


def parse_refresh(op: Provider, token: str) -> tuple[str, int] | None:
    """(family, generation) of a refresh token this issuer minted, else None."""
    if not token.startswith(REFRESH_TOKEN_PREFIX):
        return None
    family_id, _, rest = token[len(REFRESH_TOKEN_PREFIX) :].partition(".")
    generation, _, mac = rest.partition(".")
    if not generation.isdigit() or len(generation) > 9:
        return None
    if not hmac.compare_digest(mac.encode(), _refresh_mac(op, family_id, int(generation)).encode()):
        return None
    return family_id, int(generation)


# --- revocation and use --------------------------------------------------------------------------


async def revoke_family(op: Provider, family_id: str, reason: str) -> None:
    """Mark, row, mark again: the order the code grant relies on.  The first mark stops an
    issuance that has not yet read it; the second one is written after the row is revoked, so it
    outlives every access token of an issuance that rotated the row before that."""
    marker = family_revoked_key(family_id)
    await op.store.put(marker, b"1", op.policy.access_token_ttl)
    await OidcTokenFamily.update(
        {OidcTokenFamily.revoked: True, OidcTokenFamily.revoked_reason: reason}
    ).where((OidcTokenFamily.id == family_id) & (OidcTokenFamily.revoked == False))
    await op.store.put(marker, b"1", op.policy.access_token_ttl)


async def access_record(op: Provider, token: str) -> schemas.AccessRecord | None:
    """The record of a live access token of ours (unexpired, its family not revoked), else None."""
    if not token.startswith(ACCESS_TOKEN_PREFIX):
        return None
    raw = await op.store.get(f"oidc:at:{secret_digest(token)}")
    if raw is None:
        return None
    record = ACCESS.decode(raw)
    if record.expires_at < time.time() or await op.store.get(family_revoked_key(record.family_id)):
        return None
    return record
