"""The device authorization grant (RFC 8628): the device's request (§3.1-3.2), and the
device code at the token endpoint (§3.4-3.5): pending, slow_down, denied, expired, single use."""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping

from ecard.crypto.fields import secret_digest
from ecard.errors import AppError
from ecard.oidc import login_session, schemas, tokens
from ecard.oidc.consented_claims import consented_claims_of_ecard
from ecard.oidc.provider import Provider
from ecard.oidc.records import DEVICE, LOGIN, encode, login_key, new_user_code, with_query
from ecard.oidc.scopes import parse_scope
from ecard.oidc.service import RelyingParty
from ecard.registry.audit import new_id


async def authorize_device(
    op: Provider,
    client: RelyingParty,
    scope: str | None,
    origin: schemas.LoginOrigin,
    authorization_details: str | None = None,
) -> schemas.DeviceAuthorization:
    """A device login: its session (found in the app by the user code) and its device code.
    A device login asks for no data: ``authorization_details`` is refused, not ignored."""
    if authorization_details is not None:
        raise AppError(
            "invalid_authorization_details", "the device grant does not take authorization_details"
        )
    await op.limit(f"oidc:login-ip:{origin.ip}", 60, op.policy.login_sessions_per_ip_minute)
    request = schemas.AuthorizationRequest(
        client_id=client.id,
        redirect_uri="",
        scope=parse_scope(scope, client.scopes),
        state=None,
        nonce=None,
        code_challenge=None,
    )
    ttl = op.policy.device_session_ttl
    for _ in range(5):
        user_code = new_user_code()
        flow = schemas.LoginFlow(request=request, browser_digest="", origin=origin)
        session_id = await login_session.new_session(op, flow, None, user_code)
        if await op.store.put_if_absent(f"oidc:user-code:{user_code}", session_id.encode(), ttl):
            break
    else:  # pragma: no cover - 20^8 codes; five collisions in a row means the store is full
        raise AppError("store_unavailable")
    device_code = secrets.token_urlsafe(32)
    grant = schemas.DeviceGrant(client_id=client.id, session_id=session_id)
    await op.store.put(f"oidc:device:{secret_digest(device_code)}", encode(grant), ttl)
    return schemas.DeviceAuthorization(
        device_code=device_code,
        user_code=user_code,
        verification_uri=f"{op.issuer}/oidc/device",
        verification_uri_complete=with_query(f"{op.issuer}/oidc/device", {"user_code": user_code}),
        expires_in=ttl,
        interval=op.policy.device_interval,
    )


async def redeem(
    op: Provider, client: RelyingParty, form: Mapping[str, str]
) -> schemas.TokenResponse:
    """Tokens once the holder approved; the RFC 8628 §3.5 error while they have not."""
    device_digest = secret_digest(form.get("device_code", ""))
    started = time.monotonic()
    raw = await op.store.get(f"oidc:device:{device_digest}")
    if raw is None:
        raise AppError("expired_token")
    grant = DEVICE.decode(raw)
    if grant.client_id != client.id:
        raise AppError("invalid_grant", "the device code was issued to another client")
    if not await op.store.put_if_absent(
        f"oidc:device-poll:{device_digest}", b"1", op.policy.device_interval
    ):
        raise AppError("slow_down")
    try:
        _, session = await login_session.session(op, grant.session_id)
    except AppError:
        raise AppError("expired_token") from None
    if session.state not in ("approved", "denied"):
        raise AppError("authorization_pending")
    taken = await op.store.take(login_key(grant.session_id))
    await op.store.delete(f"oidc:device:{device_digest}")
    if taken is None:
        raise AppError("invalid_grant", "the device code was already redeemed")
    session = LOGIN.decode(taken)
    if session.state == "denied":
        raise AppError("access_denied")
    ecard_id = session.ecard_id or ""
    return await tokens.issue_new_family(
        op,
        client,
        new_id(),
        ecard_id,
        session.subject or "",
        session.request.scope,
        session.auth_time or 0,
        None,
        started,
        extra_claims=lambda: consented_claims_of_ecard(op, client.id, ecard_id),
    )
