"""OpenID Provider metadata (OIDC Discovery 1.0 §3, RFC 8414), derived from what is implemented."""

from __future__ import annotations

from typing import Any

from ecard.oidc.grants import GRANT_TYPES
from ecard.oidc.policy import ACR_SCAN_LOGIN
from ecard.oidc.schemas import CONSENT_DETAIL_TYPE
from ecard.oidc.scopes import SCOPES

_CLIENT_AUTH = ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"]


def discovery(issuer: str) -> dict[str, Any]:
    """The metadata document of the provider at ``issuer``."""
    base = issuer
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/oidc/authorize",
        "token_endpoint": f"{base}/oidc/token",
        "userinfo_endpoint": f"{base}/oidc/userinfo",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "revocation_endpoint": f"{base}/oidc/revoke",
        "introspection_endpoint": f"{base}/oidc/introspect",
        "end_session_endpoint": f"{base}/oidc/logout",
        "device_authorization_endpoint": f"{base}/oidc/device_authorization",
        "scopes_supported": [s for s, spec in SCOPES.items() if not spec.needs_consent],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": list(_CLIENT_AUTH),
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "revocation_endpoint_auth_methods_supported": list(_CLIENT_AUTH),
        "introspection_endpoint_auth_methods_supported": _CLIENT_AUTH[1:],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "sid",
            "azp",
            "name",
            "card_status",
            "issuer_region",
            "ecard_pseudonym",
            "gender",
            "birthdate",
            "identity_number",
        ],
        "authorization_details_types_supported": [CONSENT_DETAIL_TYPE],
        "acr_values_supported": [ACR_SCAN_LOGIN],
        "ui_locales_supported": ["zh-CN", "en"],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": True,
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": False,
    }
