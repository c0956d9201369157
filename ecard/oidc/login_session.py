"""Scan-to-login (扫码登录): the page's QR session, the holder's answer in the app, and the
browser's confirmation (draft-ietf-oauth-cross-device-security).

A login flow belongs to one browser page (its cookie secret) and outlives its QR sessions.  A
session is answered once by one holder (compare-and-set in the store), then taken once by the
page (confirm, cancel or continue), so every single-use rule holds across workers.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from typing import Any

import msgspec

from ecard.auth import HolderPrincipal
from ecard.consent import scopes as consent_scopes
from ecard.consent.service import ConsentService
from ecard.crypto.fields import secret_digest
from ecard.crypto.identity import mask_name
from ecard.errors import AppError
from ecard.oidc import holders, schemas
from ecard.oidc.policy import QR_SCHEME
from ecard.oidc.provider import Provider
from ecard.oidc.records import (
    FLOW,
    LOGIN,
    AuthorizationError,
    BrowserSecrets,
    encode,
    flow_key,
    login_key,
    normalize_user_code,
    session_ttl,
    with_query,
)
from ecard.oidc.scopes import SCOPES
from ecard.registry.audit import audit
from ecard.registry.holder_password import verify_holder_password

# --- the page ------------------------------------------------------------------------------------


async def start_flow(
    op: Provider, request: schemas.AuthorizationRequest, origin: schemas.LoginOrigin
) -> tuple[str, str, str]:
    """A page's login flow (its cookie secret) and its first QR session: (flow, secret, session)."""
    await op.limit(f"oidc:login-ip:{origin.ip}", 60, op.policy.login_sessions_per_ip_minute)
    flow_id, browser_secret = secrets.token_urlsafe(16), secrets.token_urlsafe(32)
    flow = schemas.LoginFlow(
        request=request, browser_digest=secret_digest(browser_secret), origin=origin
    )
    await op.store.put(flow_key(flow_id), encode(flow), op.policy.flow_ttl)
    return flow_id, browser_secret, await new_session(op, flow, flow_id)


async def new_session(
    op: Provider, flow: schemas.LoginFlow, flow_id: str | None, user_code: str | None = None
) -> str:
    """A fresh QR session of ``flow`` (a device login's when ``user_code`` is given); its id."""
    session_id = secrets.token_urlsafe(24)
    ttl = op.policy.device_session_ttl if user_code else op.policy.login_session_ttl
    session = schemas.LoginSession(
        request=flow.request,
        browser_digest=flow.browser_digest,
        flow_id=flow_id,
        origin=flow.origin,
        expires_at=int(time.time()) + ttl,
        user_code=user_code,
    )
    await op.store.put(login_key(session_id), encode(session), ttl)
    return session_id


async def renew_session(op: Provider, flow_id: str, browser_secret: str | None) -> str:
    """A fresh QR for a page whose QR expired (the flow, and its cookie, live longer)."""
    raw = await op.store.get(flow_key(flow_id))
    if raw is None:
        raise AppError("login_session_not_found", "this login page expired; reload it")
    flow = FLOW.decode(raw)
    check_browser(flow.browser_digest, browser_secret)
    await op.limit(f"oidc:login-ip:{flow.origin.ip}", 60, op.policy.login_sessions_per_ip_minute)
    return await new_session(op, flow, flow_id)


def check_browser(browser_digest: str, browser_secret: str | None) -> None:
    """Only the browser that started a login may watch or finish it."""
    if not browser_digest or not hmac.compare_digest(
        secret_digest(browser_secret or ""), browser_digest
    ):
        raise AppError("forbidden", "this login belongs to another browser")


async def session(op: Provider, session_id: str) -> tuple[bytes, schemas.LoginSession]:
    """The stored bytes (for compare-and-set) and the session; ``login_session_not_found``."""
    raw = await op.store.get(login_key(session_id))
    if raw is None:
        raise AppError("login_session_not_found")
    return raw, LOGIN.decode(raw)


async def qr_text(op: Provider, session_id: str) -> str:
    """What the login QR says: the scheme the app recognises and a live session's id."""
    await session(op, session_id)
    return f"{QR_SCHEME}{session_id}"


async def poll(
    op: Provider, session_id: str, browser_secret_of: BrowserSecrets, known: str, wait: bool
) -> schemas.LoginPoll:
    """The page's long poll: returns when the state differs from ``known`` or time runs out.
    Polls the store, so it works whichever worker the holder's answer reached.  An approval
    reads as ``approved_pending_confirmation`` with the approving holder's masked name, and
    nothing more about them: the browser must confirm it (:func:`confirm`) before any code."""
    deadline = time.monotonic() + (op.policy.long_poll_seconds if wait else 0)
    checked = False
    while True:
        raw = await op.store.get(login_key(session_id))
        if raw is None:
            return schemas.LoginPoll(state="expired")
        current = LOGIN.decode(raw)
        if not checked:
            check_browser(current.browser_digest, browser_secret_of(current.flow_id))
            checked = True
        polled = page_view(current)
        if polled.state != known or time.monotonic() >= deadline:
            return polled
        await asyncio.sleep(0.25)


def page_view(current: schemas.LoginSession) -> schemas.LoginPoll:
    """What the login page may know of a session: its state and, once approved, the approving
    holder's masked name (张*三) so the person at the browser can tell whether it was them."""
    if current.state == "approved":
        return schemas.LoginPoll(
            state="approved_pending_confirmation", holder_name=current.holder_name or "*"
        )
    return schemas.LoginPoll(state=current.state)


async def browser_checked(
    op: Provider, session_id: str, browser_secret_of: BrowserSecrets
) -> schemas.LoginSession:
    """The session, once the browser asking holds its flow's secret."""
    _, current = await session(op, session_id)
    check_browser(current.browser_digest, browser_secret_of(current.flow_id))
    return current


async def take(op: Provider, session_id: str, state: str | None = None) -> schemas.LoginSession:
    """The session, taken from the store, so at most one of continue, confirm and cancel acts
    on it (``state``: the one it was checked to be in, which an answered session keeps)."""
    raw = await op.store.take(login_key(session_id))
    taken = LOGIN.decode(raw) if raw is not None else None
    if taken is None or (state is not None and taken.state != state):
        raise AppError("login_session_not_found")
    return taken


async def finish(op: Provider, session_id: str, browser_secret_of: BrowserSecrets) -> str:
    """Where the page goes once the holder denied: the redirect URI with error=access_denied,
    ``state`` and ``iss`` (RFC 9207).  An approval goes on only through :func:`confirm`."""
    current = await browser_checked(op, session_id, browser_secret_of)
    if current.state == "approved":
        raise AppError("authorization_pending", "confirm on the login page that this is you first")
    if current.state != "denied":
        raise AppError("authorization_pending")
    current = await take(op, session_id, "denied")
    return denied_location(op, current.request, "the holder declined in the app")


async def confirm(op: Provider, session_id: str, browser_secret_of: BrowserSecrets) -> str:
    """ "是本人 / continue": the browser that started the login accepts the holder shown to it
    (draft-ietf-oauth-cross-device-security); only now is the authorization code issued.  The
    session is taken atomically, so a second confirm (or a cancel) finds nothing."""
    current = await browser_checked(op, session_id, browser_secret_of)
    if current.state != "approved":
        raise AppError("authorization_pending", "the holder has not approved this login")
    current = await take(op, session_id, "approved")
    request = current.request
    code = secrets.token_urlsafe(32)
    grant = schemas.CodeGrant(
        request=request,
        ecard_id=current.ecard_id or "",
        subject=current.subject or "",
        auth_time=current.auth_time or 0,
        consent_id=await record_consent(op, current),
        granted_data=current.granted_data,
    )
    await op.store.put(f"oidc:code:{secret_digest(code)}", encode(grant), op.policy.code_ttl)
    return with_query(
        request.redirect_uri, {"code": code, "state": request.state, "iss": op.issuer}
    )


async def record_consent(op: Provider, approved: schemas.LoginSession) -> str | None:
    """The consent the holder's approval answered, recorded now that the login completes (a
    cancelled or lapsed login records none): the request and its answer, on the ledger."""
    ask = approved.request.consent
    if ask is None:
        return None
    facts = await holders.require_active(
        op, approved.ecard_id or "", approved.request.client_id, "browser:-"
    )
    return await ConsentService(op.platform).answer_at_login(
        approved.request.client_id,
        facts.person_id,
        ask.scopes,
        ask.purpose_code,
        ask.purpose,
        ask.duration_seconds,
        approved.granted_data or [],
    )


async def cancel(op: Provider, session_id: str, browser_secret_of: BrowserSecrets) -> str:
    """ "不是我 / cancel": the browser discards the login (an approval by someone else among
    them); no code is ever issued for it and the client hears ``access_denied``."""
    await browser_checked(op, session_id, browser_secret_of)
    current = await take(op, session_id)
    await audit(
        "browser:-",
        "oidc.login.cancel",
        "oidc_client",
        current.request.client_id,
        "cancelled in the browser",
        after_approval=current.state == "approved",
    )
    return denied_location(op, current.request, "the login was cancelled in the browser")


def denied_location(op: Provider, request: schemas.AuthorizationRequest, detail: str) -> str:
    denied = AppError("access_denied", detail)
    return AuthorizationError(request.redirect_uri, request.state, denied, op.issuer).location


# --- the holder's app ----------------------------------------------------------------------------


async def describe(
    op: Provider, session_id: str, holder: HolderPrincipal
) -> schemas.LoginSessionView:
    """Who asks for what and from where; the first holder to look claims the session."""
    raw, current = await session(op, session_id)
    check_open(current, holder)
    if current.state == "pending":
        scanned = msgspec.structs.replace(current, state="scanned", ecard_id=holder.ecard_id)
        if not await op.store.compare_and_set(
            login_key(session_id), raw, encode(scanned), session_ttl(current)
        ):
            raise AppError("login_session_answered")
        current = scanned
    client = await op.clients.client(current.request.client_id)
    return schemas.LoginSessionView(
        session_id=session_id,
        state=current.state,
        client_name=client.name,
        client_logo_uri=client.logo_uri,
        scopes=[
            schemas.ScopeView(s, SCOPES[s].zh, SCOPES[s].en) for s in current.request.scope.split()
        ],
        origin=current.origin,
        expires_at=current.expires_at,
        data=data_view(current.request.consent),
    )


def data_view(ask: schemas.ConsentAsk | None) -> schemas.DataRequestView | None:
    """The data part of the approval screen: each scope with its fields, the purpose, the time."""
    if ask is None:
        return None
    catalogue = consent_scopes.SCOPES
    purpose_zh, purpose_en = consent_scopes.PURPOSES[ask.purpose_code]
    return schemas.DataRequestView(
        scopes=[
            schemas.DataScopeView(s, catalogue[s].zh, catalogue[s].en, list(catalogue[s].fields))
            for s in ask.scopes
        ],
        purpose_code=ask.purpose_code,
        purpose_zh=purpose_zh,
        purpose_en=purpose_en,
        purpose=ask.purpose,
        duration_seconds=ask.duration_seconds,
    )


async def describe_user_code(
    op: Provider, user_code: str, holder: HolderPrincipal
) -> schemas.LoginSessionView:
    """:func:`describe` of the device login showing ``user_code`` (rate-limited per holder)."""
    await op.limit(
        f"oidc:user-code:{holder.ecard_id}", 60, op.policy.user_code_lookups_per_holder_minute
    )
    code = normalize_user_code(user_code)
    session_id = await op.store.get(f"oidc:user-code:{code}") if code else None
    if session_id is None:
        raise AppError("login_session_not_found")
    return await describe(op, session_id.decode(), holder)


def check_open(current: schemas.LoginSession, holder: HolderPrincipal) -> None:
    """Pending or scanned (by this holder): an answered session is final for the app."""
    if current.state in ("approved", "denied"):
        raise AppError("login_session_answered")
    if current.ecard_id and current.ecard_id != holder.ecard_id:
        raise AppError("login_session_answered", "another holder is answering this login")


async def answer(
    op: Provider,
    session_id: str,
    holder: HolderPrincipal,
    approve: bool,
    password: str | None = None,
    data_scopes: list[str] | None = None,
) -> schemas.LoginAnswer:
    """Approve or deny, once: a compare-and-set in the store decides between racing answers.
    Approving steps up: the holder's 电子社保卡密码 is checked (after the session, the client
    and the card, before the answer is written; :func:`verify_holder_password`).  An approval
    answers the login's data request too (:func:`granted_data`); a denial refuses both."""
    raw, current = await session(op, session_id)
    check_open(current, holder)
    granted = granted_data(current.request.consent, data_scopes) if approve else None
    client_id = current.request.client_id
    subject = holder_name = None
    expires_at = current.expires_at
    if approve:
        client = await op.clients.client(client_id)
        if client.status != "live":
            await op.refused(holder.actor, "login", client_id, "client not live")
            raise AppError("client_not_live")
        facts = await holders.require_active(op, holder.ecard_id, client_id, holder.actor)
        if not password:
            raise AppError("password_required")
        await verify_holder_password(op.platform, facts.person_id, password, actor=holder.actor)
        subject = holders.subject(op, client, facts)
        if current.user_code is None:  # a page login: its browser must still confirm who approved
            holder_name = mask_name(facts.name)
            expires_at = max(expires_at, int(time.time()) + op.policy.confirm_ttl)
    answered = msgspec.structs.replace(
        current,
        state="approved" if approve else "denied",
        ecard_id=holder.ecard_id,
        auth_time=int(time.time()),
        subject=subject,
        holder_name=holder_name,
        expires_at=expires_at,
        granted_data=granted,
    )
    if not await op.store.compare_and_set(
        login_key(session_id), raw, encode(answered), session_ttl(answered)
    ):
        raise AppError("login_session_answered")
    detail: dict[str, Any] = {"device": current.user_code is not None}
    if granted is not None:
        detail["data_scopes"] = granted
    await audit(
        holder.actor,
        "oidc.login.approve" if approve else "oidc.login.deny",
        "oidc_client",
        client_id,
        **detail,
    )
    return schemas.LoginAnswer(session_id=session_id, state=answered.state)


def granted_data(ask: schemas.ConsentAsk | None, chosen: list[str] | None) -> list[str] | None:
    """The data scopes an approval grants, in the request's order: all asked ones when the holder
    chose nothing, else the chosen ones (each must have been asked for); None without a request."""
    if ask is None:
        if chosen:
            raise AppError("consent_scopes_not_requested", "this login asks for no data")
        return None
    if chosen is None:
        return list(ask.scopes)
    if not set(chosen) <= set(ask.scopes):
        raise AppError("consent_scopes_not_requested")
    return [s for s in ask.scopes if s in set(chosen)]
