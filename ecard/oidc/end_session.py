"""RP-Initiated Logout 1.0: the end-session endpoint revokes the login an ID token names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from ecard.errors import AppError
from ecard.oidc import tokens
from ecard.oidc.provider import Provider
from ecard.oidc.records import with_query
from ecard.oidc.tables import OidcTokenFamily
from ecard.registry.audit import audit


async def end_session(op: Provider, params: Mapping[str, str]) -> str | None:
    """Revoke the login named by a genuine ID token of ours; where to go next (a filed
    post-logout URI) or None for our own "signed out" page."""
    claims = verify_id_token_hint(op, params.get("id_token_hint", ""))
    client = await op.clients.client(claims["aud"] if isinstance(claims["aud"], str) else "")
    if params.get("client_id", client.id) != client.id:
        raise AppError("invalid_request", "client_id does not match the ID token")
    target = params.get("post_logout_redirect_uri")
    if target is not None and target not in client.post_logout_redirect_uris:
        raise AppError(
            "invalid_redirect_uri", "post_logout_redirect_uri is not filed for this client"
        )
    family = (
        await OidcTokenFamily.select(OidcTokenFamily.client)
        .where(OidcTokenFamily.id == claims.get("sid", ""))
        .first()
    )
    if family is not None and family["client"] == client.id:
        await tokens.revoke_family(op, claims["sid"], "logout")
        await audit(f"oidc_client:{client.id}", "oidc.logout", "oidc_client", client.id)
    return with_query(target, {"state": params.get("state")}) if target else None


def verify_id_token_hint(op: Provider, token: str) -> dict[str, Any]:
    """Our signature (ES256 only: alg=none and HMAC-keyed-with-our-public-key are refused) and
    issuer; an expired hint is still a valid hint."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        record = next(k for k in op.platform.keys.ring.verification_keys() if k.kid == kid)
        return jwt.decode(
            token,
            record.public_key(),
            algorithms=["ES256"],
            issuer=op.issuer,
            options={
                "verify_exp": False,
                "verify_aud": False,
                "require": ["iss", "aud", "sub", "sid"],
            },
        )
    except (jwt.PyJWTError, StopIteration):
        raise AppError("invalid_request", "id_token_hint is not an ID token issued here") from None
