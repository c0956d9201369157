"""The token endpoint (RFC 6749 §3.2): the client authenticates, then its grant type's handler
runs.  One module per grant type."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from ecard.errors import AppError
from ecard.oidc import schemas
from ecard.oidc.grants import authorization_code, device_code, refresh_token
from ecard.oidc.policy import DEVICE_GRANT
from ecard.oidc.provider import Provider
from ecard.oidc.service import RelyingParty

Handler = Callable[[Provider, RelyingParty, Mapping[str, str]], Awaitable[schemas.TokenResponse]]

#: grant_type → handler; discovery's ``grant_types_supported`` is this table's keys
GRANT_TYPES: dict[str, Handler] = {
    "authorization_code": authorization_code.redeem,
    "refresh_token": refresh_token.refresh,
    DEVICE_GRANT: device_code.redeem,
}


async def token(
    op: Provider, form: Mapping[str, str], basic: tuple[str, str] | None, ip: str
) -> schemas.TokenResponse:
    """Rate-limited per address; the client authenticated before its grant type is looked at."""
    await op.limit(f"oidc:token-ip:{ip}", 60, op.policy.token_requests_per_ip_minute)
    client = await op.clients.authenticate_client(form, basic)
    handler = GRANT_TYPES.get(form.get("grant_type") or "")
    if handler is None:
        raise AppError("unsupported_grant_type")
    return await handler(op, client, form)
