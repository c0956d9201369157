"""The refresh token grant (RFC 6749 §6, RFC 9700 §4.14.2): rotation on every use; presenting an
older generation revokes the whole family; a refresh may narrow the scope, never widen it.  A
login that was granted data answers with that grant's ``authorization_details`` as they stand
(RFC 9396 §7): the same grant while it lives, an empty list once the holder revoked it or it
expired (the login itself goes on: login and data are ended apart)."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ecard.consent.service import live_grant
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
        authorization_details=await standing_details(client, family["consent_id"]),
    )


async def standing_details(
    client: RelyingParty, consent_id: str | None
) -> list[schemas.AuthorizationDetail] | None:
    """The login's grant as it stands now (None: the login was granted no data)."""
    if consent_id is None:
        return None
    grant = await live_grant(client.id, consent_id)
    if grant is None:
        return []
    return [
        schemas.AuthorizationDetail(
            type=schemas.CONSENT_DETAIL_TYPE,
            datatypes=grant["granted_scopes"],
            purpose_code=grant["purpose_code"],
            purpose=grant["purpose"],
            duration_seconds=grant["duration_seconds"],
            grant_id=consent_id,
        )
    ]
