"""The UserInfo endpoint (OIDC Core §5.3): the claims of the access token's scopes, made of the
holder's facts read now (a card lost since the login answers ``invalid_token``)."""

from __future__ import annotations

from typing import Any

from ecard.errors import AppError
from ecard.oidc import holders, tokens
from ecard.oidc.consented_claims import consented_claims
from ecard.oidc.provider import Provider
from ecard.oidc.scopes import SCOPES


async def userinfo(op: Provider, token: str | None) -> dict[str, Any]:
    """``sub`` and the claims of each scope of a live access token of a live client, and the
    consented claims a live grant allows (:mod:`ecard.oidc.consented_claims`), each recorded."""
    invalid = AppError(
        "invalid_token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )
    record = await tokens.access_record(op, token or "")
    if record is None:
        raise invalid
    client = await op.clients.client(record.client_id)
    facts = await holders.facts(record.ecard_id)
    if facts is None or client.status != "live":
        raise invalid
    claims: dict[str, Any] = {"sub": record.subject}
    for scope in record.scope.split():
        claims.update(SCOPES[scope].claims(facts, op.platform.pseudonym_key, client.sector))
    claims.update(await consented_claims(op, client.id, facts.person_id))
    claims["sub"] = record.subject
    return claims
