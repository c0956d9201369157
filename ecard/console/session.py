"""The console's browser session: an operator token in a cookie, and the CSRF token bound to it.

The session *is* an operator token (``ecop_…``) from the same login service as
``POST /operator/v1/login`` (:meth:`ecard.registry.service.AccessService.login`): the cookie holds
it, every request authenticates it with :func:`ecard.auth.authenticate_operator` (one database
read, no cache), so a logout, a revocation of the operator's tokens or a disabled account ends the
console session at the next request on every worker, exactly as for the API.

CSRF: a synchronizer token derived from the session, ``HMAC-SHA256(key, token digest)``, sent in
every form and compared in constant time.  It needs no storage, works on every worker, ends with
the session, and a token of one session is worthless in another.  Before sign-in, the login form
is bound the same way to a random pre-session cookie (login CSRF).  Litestar's CSRF middleware
was considered: it is a double-submit cookie signed with one secret but not bound to any session,
it is configured for the whole application, and its cookie must be readable by pages' scripts;
this token is bound to the session and needs no script.

Cookies are ``HttpOnly``, ``SameSite=Strict``, ``Path=/console`` and ``Secure`` whenever the public
URL is https.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from litestar import Request
from litestar.datastructures import Cookie

from ecard.auth import OperatorPrincipal, authenticate_operator
from ecard.errors import AppError, preferred_language
from ecard.platform import Platform

PATH = "/console"
SESSION_COOKIE = "ecard_console"
PRE_SESSION_COOKIE = "ecard_console_pre"
LANG_COOKIE = "ecard_console_lang"
CSRF_FIELD = "_csrf"
LANGUAGES = ("zh-CN", "en")
#: how long the login form's pre-session cookie lives (seconds)
PRE_SESSION_TTL = 3600


class SignInRequired(Exception):
    """No live console session: pages answer with a redirect to the sign-in page."""


@dataclass(frozen=True)
class ConsoleSession:
    operator: OperatorPrincipal
    csrf: str  # the form token of this session

    def can(self, permission: str) -> bool:
        return self.operator.can(permission)


def _csrf_key(platform: Platform) -> bytes:
    """The CSRF MAC key, derived (HKDF, its own label) from the pseudonym key, which never rotates,
    so no new secret has to be generated and distributed."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"ecard-console-csrf:v1"
    ).derive(platform.pseudonym_key)


def csrf_token(platform: Platform, bound_to: str, purpose: str = "session") -> str:
    """The form token of one session (``bound_to`` = the session token's digest) or of one
    pre-session (``purpose`` = ``login``)."""
    message = f"{purpose}\x00{bound_to}".encode()
    return hmac.new(_csrf_key(platform), message, hashlib.sha256).hexdigest()


def check_csrf(expected: str, sent: str | None) -> None:
    """Rule: a POST carries the form token of its session (constant-time comparison)."""
    if not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise AppError("console_csrf_failed")


def check_origin(request: Request[Any, Any, Any], platform: Platform) -> None:
    """Rule: a POST that names its origin names this console's (defence in depth beside the token
    and ``SameSite=Strict``)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        # the pages' ``Referrer-Policy: no-referrer`` makes browsers send ``Origin: null`` on
        # their own form posts: no information either way, the form token decides
        return
    public = urlsplit(platform.settings.public_url)
    own = f"{public.scheme}://{public.netloc}"
    served = f"{request.url.scheme}://{request.url.netloc}"
    if origin.rstrip("/") not in (own, served):
        raise AppError("console_csrf_failed", "this form did not come from the console")


async def session_of(request: Request[Any, Any, Any], platform: Platform) -> ConsoleSession:
    """The signed-in operator of this request; :class:`SignInRequired` without a live session."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    try:
        operator = await authenticate_operator(platform, f"Bearer {token}")
    except AppError as error:
        if error.code in ("unauthenticated", "token_invalid"):
            raise SignInRequired from None
        raise
    return ConsoleSession(operator, csrf_token(platform, operator.token_digest))


def secure(platform: Platform) -> bool:
    return platform.settings.public_url.startswith("https://")


def session_cookie(platform: Platform, token: str) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=token,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=secure(platform),
        max_age=platform.settings.operator_token_ttl,
    )


def ended_cookie(platform: Platform, key: str) -> Cookie:
    return Cookie(
        key=key,
        value="",
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=secure(platform),
        max_age=0,
    )


def new_pre_session() -> str:
    return secrets.token_urlsafe(24)


def pre_session_cookie(platform: Platform, value: str) -> Cookie:
    return Cookie(
        key=PRE_SESSION_COOKIE,
        value=value,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=secure(platform),
        max_age=PRE_SESSION_TTL,
    )


def language(request: Request[Any, Any, Any]) -> str:
    """``?lang=`` (remembered in a cookie), else the remembered choice, else Accept-Language;
    zh-CN by default."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return str(asked)
    remembered = request.cookies.get(LANG_COOKIE)
    if remembered in LANGUAGES:
        return str(remembered)
    return preferred_language(request.headers.get("accept-language"))


def language_cookie(platform: Platform, lang: str) -> Cookie:
    return Cookie(
        key=LANG_COOKIE,
        value=lang,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=secure(platform),
        max_age=365 * 86_400,
    )
