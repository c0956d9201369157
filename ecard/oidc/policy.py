"""Lifetimes, rate limits and fixed values of the OpenID provider."""

from __future__ import annotations

import os
from functools import cache

import msgspec

#: scan-to-login approved in the app with the 电子社保卡密码 (docs/front-door.md)
ACR_SCAN_LOGIN = "urn:ecard:acr:scan-login:pwd"
#: RFC 8176: the holder's password (every approval steps up), the app's software-held key, the
#: holder's presence
AMR_SCAN_LOGIN = ["pwd", "swk", "user"]
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ACCESS_TOKEN_PREFIX = "ecat_"  # noqa: S105 - a prefix, not a secret
REFRESH_TOKEN_PREFIX = "ecrt_"  # noqa: S105 - a prefix, not a secret
QR_SCHEME = "ecard://login/"
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1: no vowels, no look-alikes


class OidcPolicy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Lifetimes and rate limits.  Defaults suit production; ``ECARD_OIDC_POLICY`` (JSON) overrides
    them, e.g. for load tests from one address."""

    login_session_ttl: int = 120
    #: How long the page may wait for "是本人 / continue" once the holder approved in the app.
    confirm_ttl: int = 120
    flow_ttl: int = 900
    device_session_ttl: int = 600
    device_interval: int = 5
    code_ttl: int = 60
    spent_code_memory: int = 3600
    #: Also bounds one token request: an issuance slower than half of it is refused
    #: (see :func:`ecard.oidc.tokens.issue`).
    access_token_ttl: int = 600
    id_token_ttl: int = 600
    refresh_token_ttl: int = 30 * 86_400
    long_poll_seconds: float = 15.0
    login_sessions_per_ip_minute: int = 30
    token_requests_per_ip_minute: int = 600
    failed_client_auth_per_client_5min: int = 20
    user_code_lookups_per_holder_minute: int = 10
    #: No effect; still accepted so that existing ``ECARD_OIDC_POLICY`` values parse.  A filing is
    #: cached by ``ecard.partners.credentials`` for ``FILING_CACHE_SECONDS`` (1 s), one rule for
    #: every machine caller.
    client_cache_seconds: float = 5.0


@cache
def _policy(raw: str) -> OidcPolicy:
    return msgspec.json.decode(raw, type=OidcPolicy) if raw else OidcPolicy()


def current_policy() -> OidcPolicy:
    """The policy of this process (``ECARD_OIDC_POLICY`` read once per distinct value)."""
    return _policy(os.environ.get("ECARD_OIDC_POLICY", ""))
