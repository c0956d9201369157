"""The refresh token grant (RFC 6749 §6, RFC 9700 §4.14.2): rotation on every use; presenting an
older generation revokes the whole family; a refresh may narrow the scope, never widen it."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ecard.errors import AppError
from ecard.oidc import holders, schemas, tokens
from ecard.oidc.provider import Provider
from ecard.oidc.scopes import parse_scope
from ecard.oidc.service import RelyingParty
from ecard.oidc.tables import OidcTokenFamily


async def refresh(
    op: Provider, client: RelyingParty, form: Mapping[str, str]
) -> schemas.TokenResponse:
    """New tokens of the family the presented refresh token belongs to, its generation bumped."""
    parsed = tokens.parse_refresh(op, form.get("refresh_token", ""))
    if parsed is None:
        raise AppError("invalid_grant", "unknown refresh token")
    family_id, generation = parsed
    started = time.monotonic()
    family = await OidcTokenFamily.select().where(OidcTokenFamily.id == family_id).first()
    if family is None or family["client"] != client.id:
        raise AppError("invalid_grant", "unknown refresh token")
    if family["revoked"] or family["expires_at"] < time.time():
        raise AppError("invalid_grant", "the refresh token is revoked or expired")
    rotated = (
        await OidcTokenFamily.update({OidcTokenFamily.generation: generation + 1})
        .where(
            (OidcTokenFamily.id == family_id)
            & (OidcTokenFamily.generation == generation)
            & (OidcTokenFamily.revoked == False)
        )
        .returning(OidcTokenFamily.id)
    )
    if not rotated:
        await tokens.revoke_family(op, family_id, "refresh_reuse")
        await op.refused(
            f"oidc_client:{client.id}", "refresh", client.id, "refresh token reused; family revoked"
        )
        raise AppError(
            "invalid_grant", "refresh token reuse detected; the login's tokens are revoked"
        )
    scope = family["scope"]
    if "scope" in form:
        scope = parse_scope(form["scope"], frozenset(scope.split()))
    if await holders.facts(family["ecard_id"]) is None:
        await tokens.revoke_family(op, family_id, "card_not_active")
        raise AppError("invalid_grant", "the card or e-card is no longer active")
    return await tokens.issue(
        op,
        client,
        family_id,
        family["ecard_id"],
        family["subject"],
        scope,
        family["auth_time"],
        generation + 1,
        None,
        started,
    )
