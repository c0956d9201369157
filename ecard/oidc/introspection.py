"""Token introspection (RFC 7662), for the client's own tokens only."""

from __future__ import annotations

import time

from ecard.oidc import schemas, tokens
from ecard.oidc.provider import Provider
from ecard.oidc.service import RelyingParty
from ecard.oidc.tables import OidcTokenFamily


async def introspect(op: Provider, client: RelyingParty, token: str) -> schemas.Introspection:
    """Active only for a live token of this client (another client's token reads as inactive)."""
    record = await tokens.access_record(op, token)
    if record is not None and record.client_id == client.id:
        return schemas.Introspection(
            active=True,
            scope=record.scope,
            client_id=client.id,
            token_type="Bearer",  # noqa: S106 - a token type, not a secret
            exp=record.expires_at,
            iat=record.issued_at,
            sub=record.subject,
            aud=client.id,
            iss=op.issuer,
            sid=record.family_id,
        )
    parsed = tokens.parse_refresh(op, token)
    if parsed is not None:
        family = await OidcTokenFamily.select().where(OidcTokenFamily.id == parsed[0]).first()
        if (
            family is not None
            and family["client"] == client.id
            and not family["revoked"]
            and family["generation"] == parsed[1]
            and family["expires_at"] > time.time()
        ):
            return schemas.Introspection(
                active=True,
                scope=family["scope"],
                client_id=client.id,
                token_type="refresh_token",  # noqa: S106 - a token type
                exp=family["expires_at"],
                sub=family["subject"],
                aud=client.id,
                iss=op.issuer,
                sid=family["id"],
            )
    return schemas.Introspection(active=False)
