"""Store keys, record codecs and small pure helpers shared by the provider's steps."""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import time
from collections.abc import Callable, Mapping
from urllib.parse import urlencode, urlsplit

import msgspec

from ecard.crypto.jwk import b64url
from ecard.errors import AppError
from ecard.oidc import schemas
from ecard.oidc.policy import USER_CODE_ALPHABET

_OPAQUE_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")  # login session and flow ids (token_urlsafe)

encode = msgspec.msgpack.Encoder().encode
LOGIN = msgspec.msgpack.Decoder(schemas.LoginSession)
CODE = msgspec.msgpack.Decoder(schemas.CodeGrant)
ACCESS = msgspec.msgpack.Decoder(schemas.AccessRecord)
DEVICE = msgspec.msgpack.Decoder(schemas.DeviceGrant)
FLOW = msgspec.msgpack.Decoder(schemas.LoginFlow)

#: The cookie secret a browser holds for a login flow (looked up by flow id).
BrowserSecrets = Callable[[str | None], str | None]


def coarse_location(ip: str) -> str | None:
    """What can be said about where an address is without a geolocation database."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if address.is_loopback:
        return "本机 / this machine"
    if address.is_private:
        return "内部网络 / private network"
    return None


def login_key(session_id: str) -> str:
    """The store key of a login session; an id not shaped like ours is simply unknown."""
    if not _OPAQUE_ID.match(session_id):
        raise AppError("login_session_not_found")
    return f"oidc:login:{session_id}"


def flow_key(flow_id: str) -> str:
    """The store key of a login page's flow; an id not shaped like ours is an expired page."""
    if not _OPAQUE_ID.match(flow_id):
        raise AppError("login_session_not_found", "this login page expired; reload it")
    return f"oidc:flow:{flow_id}"


def family_revoked_key(family_id: str) -> str:
    return f"oidc:family-revoked:{family_id}"


def with_query(uri: str, params: Mapping[str, str | None]) -> str:
    """``uri`` with ``params`` (None values left out) appended to its query."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{uri}{'&' if urlsplit(uri).query else '?'}{query}"


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier)))."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def new_user_code() -> str:
    """An RFC 8628 user code: eight characters of :data:`USER_CODE_ALPHABET`, as ``BCDF-GHJK``."""
    chars = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


def normalize_user_code(raw: str) -> str:
    """The canonical form of what a person typed, or "" when it cannot be a user code."""
    chars = "".join(c for c in raw.upper() if c in USER_CODE_ALPHABET)
    return f"{chars[:4]}-{chars[4:]}" if len(chars) == 8 else ""


def session_ttl(session: schemas.LoginSession) -> int:
    """Seconds a login session has left in the store (at least one)."""
    return max(1, session.expires_at - int(time.time()))


class AuthorizationError(Exception):
    """A refusal that goes back to the client's redirect URI (both were verified first)."""

    def __init__(self, redirect_uri: str, state: str | None, error: AppError, issuer: str) -> None:
        super().__init__(error.code)
        self.location = with_query(
            redirect_uri,
            {"error": error.code, "error_description": str(error), "state": state, "iss": issuer},
        )
        self.error = error
