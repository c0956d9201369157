"""The authorization endpoint's checks (RFC 6749 §3.1 and §4.1.1, RFC 7636, RFC 9207, OIDC Core
§3.1.2), one function per rule, run in the order below.

Errors about the client or its redirect URI raise :class:`AppError` (shown on a page, never sent
to an unverified URI); every later refusal raises :class:`AuthorizationError`, which carries the
verified redirect URI with ``error``, ``state`` and ``iss``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import msgspec

from ecard.consent.service import check_ask, data_party, filed_purposes
from ecard.errors import AppError
from ecard.oidc import schemas
from ecard.oidc.provider import Provider
from ecard.oidc.records import AuthorizationError
from ecard.oidc.scopes import parse_scope
from ecard.oidc.service import RelyingParty

_PKCE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_MAX_PARAM = 512
_MAX_DETAILS = 4096
_DETAILS = msgspec.json.Decoder(list[schemas.ConsentDetailIn])

Params = Mapping[str, str]


async def validate_authorization(
    op: Provider, params: Params
) -> tuple[RelyingParty, schemas.AuthorizationRequest]:
    """The client, and the request it made, once every rule below holds."""
    client = await op.clients.live_client(params.get("client_id"))
    redirect_uri = await check_redirect_uri(op, client, params)
    state = params.get("state")
    try:
        request = check_request(client, params, redirect_uri, state)
        await consent_is_entitled(client, request.consent)
    except AppError as error:
        await op.refused(f"oidc_client:{client.id}", "authorize", client.id, error.code)
        raise AuthorizationError(redirect_uri, state, error, op.issuer) from None
    return client, request


async def check_redirect_uri(op: Provider, client: RelyingParty, params: Params) -> str:
    """RFC 6749 §3.1.2.3, RFC 9700 §4.1.3: exactly one of the filed URIs, compared as strings."""
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        await op.refused(
            f"oidc_client:{client.id}", "authorize", client.id, "redirect_uri mismatch"
        )
        raise AppError("invalid_redirect_uri")
    return redirect_uri


# --- the rules checked once the redirect URI is known ------------------------------------------


def no_request_object(client: RelyingParty, params: Params) -> None:
    """OIDC Core §6: request objects are not supported (discovery says so)."""
    if "request" in params or "request_uri" in params:
        raise AppError("request_not_supported")


def response_type_is_code(client: RelyingParty, params: Params) -> None:
    """RFC 9700 §2.1.2: only the authorization code flow."""
    if params.get("response_type") != "code":
        raise AppError(
            "unsupported_response_type", "only the authorization code flow (response_type=code)"
        )


def response_mode_is_query(client: RelyingParty, params: Params) -> None:
    if params.get("response_mode", "query") != "query":
        raise AppError("invalid_request", "only response_mode=query is supported")


def state_and_nonce_bounded(client: RelyingParty, params: Params) -> None:
    """They travel back in URLs and tokens: bounded so neither can be used to bloat them."""
    if any(len(params.get(name) or "") > _MAX_PARAM for name in ("state", "nonce")):
        raise AppError("invalid_request", f"state and nonce are limited to {_MAX_PARAM} characters")


def scope_is_filed(client: RelyingParty, params: Params) -> None:
    """OIDC Core §3.1.2.1: includes openid; every scope known and filed for this client."""
    parse_scope(params.get("scope"), client.scopes)


def pkce_for_public_clients(client: RelyingParty, params: Params) -> None:
    """RFC 9700 §2.1.1: a public client must use PKCE."""
    if params.get("code_challenge") is None and client.client_type == "public":
        raise AppError("invalid_request", "public clients must use PKCE (code_challenge, S256)")


def pkce_method_is_s256(client: RelyingParty, params: Params) -> None:
    """RFC 7636 §4.3; RFC 9700 §2.1.1: ``plain`` is not accepted."""
    if params.get("code_challenge") is not None and params.get("code_challenge_method") != "S256":
        raise AppError("invalid_request", "code_challenge_method must be S256")


def pkce_challenge_is_a_digest(client: RelyingParty, params: Params) -> None:
    """RFC 7636 §4.2: an S256 challenge is 43 base64url characters."""
    challenge = params.get("code_challenge")
    if challenge is not None and not _PKCE_CHALLENGE.match(challenge):
        raise AppError("invalid_request", "code_challenge must be a base64url SHA-256 digest")


def prompt_none_needs_interaction(client: RelyingParty, params: Params) -> None:
    """OIDC Core §3.1.2.1: every login is answered by the holder in the app, so ``prompt=none``
    can never succeed silently."""
    if "none" in (params.get("prompt") or "").split():
        raise AppError("login_required")


def authorization_details_are_ours(client: RelyingParty, params: Params) -> None:
    """RFC 9396 §2 and §5: a JSON array holding one detail of type ``ecard_consent`` (the data
    asked for with the login), with no unknown member; anything else is refused."""
    consent_ask(params)


def consent_ask(params: Params) -> schemas.ConsentAsk | None:
    """The consent part of the request (None without ``authorization_details``)."""
    raw = params.get("authorization_details")
    if raw is None:
        return None
    if len(raw) > _MAX_DETAILS:
        raise AppError("invalid_authorization_details", "authorization_details is too long")
    try:
        details = _DETAILS.decode(raw)
    except msgspec.ValidationError as exc:
        raise AppError("invalid_authorization_details", str(exc)[:200]) from None
    except msgspec.DecodeError:
        raise AppError("invalid_authorization_details", "not a JSON array") from None
    if len(details) != 1 or details[0].type != schemas.CONSENT_DETAIL_TYPE:
        raise AppError(
            "invalid_authorization_details",
            f"send exactly one detail, of type {schemas.CONSENT_DETAIL_TYPE}",
        )
    detail = details[0]
    return schemas.ConsentAsk(
        scopes=list(dict.fromkeys(detail.datatypes)),
        purpose_code=detail.purpose_code,
        purpose=detail.purpose.strip(),
        duration_seconds=detail.duration_seconds,
    )


async def consent_is_entitled(client: RelyingParty, ask: schemas.ConsentAsk | None) -> None:
    """The rules of a consent request (``docs/consent.md``): the filing is live and filed for
    data, entitled to every scope; catalogue purpose; a duration within bounds."""
    if ask is None:
        return
    party = await data_party(client.id)
    if party is None:
        raise AppError("invalid_authorization_details", "this client is not filed to ask for data")
    try:
        check_ask(
            party.entitlements,
            ask.scopes,
            ask.purpose_code,
            ask.purpose,
            ask.duration_seconds,
            filed_purposes(party),
        )
    except AppError as error:
        raise AppError("invalid_authorization_details", str(error)) from None


#: The rules, in the order they are checked (the first broken one is reported).
REQUEST_CHECKS: tuple[Callable[[RelyingParty, Params], None], ...] = (
    no_request_object,
    response_type_is_code,
    response_mode_is_query,
    state_and_nonce_bounded,
    scope_is_filed,
    pkce_for_public_clients,
    pkce_method_is_s256,
    pkce_challenge_is_a_digest,
    prompt_none_needs_interaction,
    authorization_details_are_ours,
)


def check_request(
    client: RelyingParty, params: Params, redirect_uri: str, state: str | None
) -> schemas.AuthorizationRequest:
    """Run :data:`REQUEST_CHECKS`; the request as later steps hold the client to it."""
    for check in REQUEST_CHECKS:
        check(client, params)
    return schemas.AuthorizationRequest(
        client_id=client.id,
        redirect_uri=redirect_uri,
        scope=parse_scope(params.get("scope"), client.scopes),
        state=state,
        nonce=params.get("nonce"),
        code_challenge=params.get("code_challenge"),
        consent=consent_ask(params),
    )
