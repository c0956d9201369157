"""The authorization matrix: every route of the app × every kind of caller.

:data:`MATRIX` says, for each route, which realm of credentials it takes and which callers of that
realm may call it.  Every other caller gets exactly:

* 401 (``unauthenticated``, ``invalid_credentials``, ``token_invalid``, …) when it brings no
  credentials, forged ones, or credentials of another realm (a holder token at an operator route);
* 403 ``forbidden`` when its credentials are of the route's realm but the wrong kind or role (a
  channel at a relying-party route, a readonly operator writing);
* 404 for another holder's (another relying party's) resources, where a route names one.

An allowed caller never gets an authentication or authorization refusal (it may get a domain
answer: 400 for the empty body the matrix sends, 404 for a made-up id, 409 for a state).
Public routes answer every caller alike.  A route of the app without a row fails the test.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from litestar.routes import HTTPRoute

from ecard.app import create_app
from ecard.consent.scopes import SCOPES
from ecard.consent.service import seed_demo_data
from ecard.offline.es256 import b64url_encode, public_jwk
from ecard.registry.service import AccessService
from ecard.settings import load_settings
from ecard.terminal.reference import AUTHORIZATION_SCHEME, REQUEST_TYPE
from tests.helpers import World, basic, bearer, platform_of

OPERATORS = ("admin", "registry_admin", "auditor", "readonly")
READ = frozenset(OPERATORS)  # registry:read
WRITE = frozenset({"admin", "registry_admin"})  # registry:write
AUDIT = frozenset({"admin", "auditor"})  # audit:read
MANAGE = frozenset({"admin"})  # clients:manage, operators:manage
HOLDERS = frozenset({"holder", "other_holder"})
PARTIES = frozenset({"relying_party", "other_relying_party"})


@dataclass(frozen=True)
class Access:
    #: whose credentials the route takes: public, operator, client (Basic / private_key_jwt of a
    #: registered client), holder, terminal (signed requests), oidc_client, oidc_token
    realm: str
    allowed: frozenset[str] = frozenset()
    #: the path names a resource of ``holder`` / ``relying_party``: ``other_*`` gets 404
    owned: bool = False
    #: an allowed call may end the caller's credentials: each allowed call gets a fresh holder
    #: (operator)
    spends: bool = False


PUBLIC = Access("public")


def operator(allowed: frozenset[str], *, spends: bool = False) -> Access:
    return Access("operator", allowed, spends=spends)


def client_of(*kinds: str) -> Access:
    return Access(
        "client", frozenset(kinds) | (PARTIES if "relying_party" in kinds else frozenset())
    )


def holder(*, owned: bool = False, spends: bool = False) -> Access:
    return Access("holder", HOLDERS, owned=owned, spends=spends)


MATRIX: dict[str, Access] = {
    # system, documents and pages: anyone
    "GET /healthz": PUBLIC,
    "GET /readyz": PUBLIC,
    "GET /problems": PUBLIC,
    "GET /metrics": PUBLIC,
    "GET /.well-known/jwks.json": PUBLIC,
    "GET /.well-known/openid-configuration": PUBLIC,
    "GET /schema": PUBLIC,
    "GET /schema/openapi.json": PUBLIC,
    "GET /schema/{path:str}": PUBLIC,
    "GET /schema/oauth2-redirect.html": PUBLIC,
    "GET /static/{file_path:path}": PUBLIC,
    "GET /verifier": PUBLIC,
    "GET /verifier/static/{file_path:path}": PUBLIC,
    "GET /offline/v1/root-key": PUBLIC,
    "GET /offline/v1/trust-list": PUBLIC,
    "GET /offline/v1/revocations": PUBLIC,
    "GET /offline/v1/revocations/{version:int}": PUBLIC,
    "GET /offline/v1/revocations/delta": PUBLIC,
    "GET /offline/v1/package": PUBLIC,
    # the service zone (docs/directory.md): public, cacheable
    "GET /directory/v1/applications": PUBLIC,
    "GET /directory/v1/institutions": PUBLIC,
    "GET /directory/v1/institutions/{institution_id:str}": PUBLIC,
    "GET /directory/v1/catalogue": PUBLIC,
    "GET /directory/v1/feed": PUBLIC,
    "GET /zone": PUBLIC,
    # the operator console (docs/console.md): its own cookie session, never the Authorization
    # header, so every caller here is signed out and gets the same redirect or refusal page;
    # sessions, roles and form tokens are checked by tests/console
    **{
        f"{method} /console{path}": PUBLIC
        for method, path in (
            ("GET", ""),
            ("GET", "/login"),
            ("POST", "/login"),
            ("POST", "/logout"),
            ("GET", "/static/{file_path:path}"),
            ("GET", "/persons"),
            ("GET", "/persons/{person_id:str}"),
            ("GET", "/cards/{card_id:str}"),
            ("GET", "/cards/{card_id:str}/confirm"),
            ("POST", "/cards/{card_id:str}/status"),
            ("POST", "/cards/{card_id:str}/replacement-request"),
            ("POST", "/cards/{card_id:str}/replace"),
            ("GET", "/filings"),
            ("GET", "/filings/{application_id:str}"),
            ("GET", "/filings/{application_id:str}/confirm"),
            ("POST", "/filings/{application_id:str}/steps"),
            ("POST", "/filings/{application_id:str}/credentials"),
            ("POST", "/filings/{application_id:str}/credentials/{credential_id:str}/end"),
            ("GET", "/terminals"),
            ("GET", "/terminals/new"),
            ("POST", "/terminals"),
            ("GET", "/terminals/{terminal_id:str}"),
            ("POST", "/terminals/{terminal_id:str}/status"),
            ("GET", "/institutions"),
            ("GET", "/institutions/new"),
            ("POST", "/institutions"),
            ("GET", "/packages"),
            ("GET", "/audit"),
            ("GET", "/ledger"),
            ("GET", "/statistics"),
        )
    },
    "GET /ledger/v1/keys": PUBLIC,
    "POST /ledger/v1/receipts/check": PUBLIC,
    # credentials in the body or a browser cookie, not in Authorization
    "POST /operator/v1/login": PUBLIC,
    "POST /holder/v1/session/refresh": PUBLIC,
    # the refresh token and the password in the body
    "POST /holder/v1/card/loss-report/undo": PUBLIC,
    "GET /oidc/authorize": PUBLIC,
    "GET /oidc/device": PUBLIC,
    "GET /oidc/login/{session_id:str}/qr.svg": PUBLIC,
    "GET /oidc/login/{session_id:str}/poll": PUBLIC,
    "GET /oidc/login/{session_id:str}/continue": PUBLIC,
    "POST /oidc/login/{session_id:str}/confirm": PUBLIC,
    "POST /oidc/login/{session_id:str}/cancel": PUBLIC,
    "POST /oidc/flows/{flow_id:str}/renew": PUBLIC,
    "GET /oidc/logout": PUBLIC,
    "POST /oidc/logout": PUBLIC,
    # operators, by permission
    "GET /operator/v1/persons": operator(READ),
    "POST /operator/v1/persons": operator(WRITE),
    "GET /operator/v1/persons/{person_id:str}": operator(READ),
    "PATCH /operator/v1/persons/{person_id:str}": operator(WRITE),
    "GET /operator/v1/cards": operator(READ),
    "POST /operator/v1/cards": operator(WRITE),
    "GET /operator/v1/cards/{card_id:str}": operator(READ),
    "POST /operator/v1/cards/{card_id:str}/status": operator(WRITE),
    "POST /operator/v1/cards/{card_id:str}/replacement-request": operator(WRITE),
    "POST /operator/v1/cards/{card_id:str}/replace": operator(WRITE),
    "POST /operator/v1/card-batches": operator(WRITE),
    "GET /operator/v1/card-batches/{batch_id:str}": operator(READ),
    "POST /operator/v1/card-batches/{batch_id:str}/deliver": operator(WRITE),
    "POST /operator/v1/cards/{card_id:str}/hand-over": operator(WRITE),
    "POST /operator/v1/cards/{card_id:str}/activate": operator(WRITE),
    "POST /operator/v1/death-records": operator(WRITE),
    "GET /operator/v1/cards/{card_id:str}/history": operator(READ),
    "GET /operator/v1/audit": operator(AUDIT),
    "POST /operator/v1/clients": operator(MANAGE),
    "GET /operator/v1/clients/{client_id:str}": operator(READ),
    "POST /operator/v1/clients/{client_id:str}/status": operator(MANAGE),
    "PUT /operator/v1/directory/applications/{client_id:str}": operator(MANAGE),
    "DELETE /operator/v1/directory/applications/{client_id:str}": operator(MANAGE),
    "POST /operator/v1/directory/institutions": operator(WRITE),
    "PUT /operator/v1/directory/institutions/{institution_id:str}": operator(WRITE),
    "DELETE /operator/v1/directory/institutions/{institution_id:str}": operator(WRITE),
    # usage statistics (docs/statistics.md)
    "GET /operator/v1/statistics/usage": operator(frozenset({"admin", "auditor", "readonly"})),
    "PUT /operator/v1/statistics/departments/{client_id:str}": operator(MANAGE),
    "GET /department/v1/statistics/usage": client_of("department"),
    "PUT /operator/v1/clients/{client_id:str}/webhook": operator(MANAGE),
    "GET /operator/v1/clients/{client_id:str}/webhook": operator(MANAGE),
    "POST /operator/v1/clients/{client_id:str}/webhook/rotate-secret": operator(MANAGE),
    "GET /operator/v1/webhook-deliveries": operator(MANAGE),
    "POST /operator/v1/webhook-deliveries/{delivery_id:str}/redeliver": operator(MANAGE),
    "POST /operator/v1/logout": operator(READ, spends=True),
    "POST /operator/v1/operators/{operator_id:str}/revoke-tokens": operator(MANAGE),
    "POST /operator/v1/oidc/clients": operator(MANAGE),
    # the application catalogue (docs/partners.md)
    "POST /operator/v1/applications": operator(MANAGE),
    "GET /operator/v1/applications": operator(READ),
    "GET /operator/v1/applications/{application_id:str}": operator(READ),
    "GET /operator/v1/applications/{application_id:str}/steps": operator(READ),
    "POST /operator/v1/applications/{application_id:str}/steps": operator(MANAGE),
    "POST /operator/v1/applications/{application_id:str}/credentials": operator(MANAGE),
    "GET /operator/v1/applications/{application_id:str}/credentials": operator(MANAGE),
    "DELETE /operator/v1/applications/{application_id:str}/credentials/{credential_id:str}": (
        operator(MANAGE)
    ),
    "GET /operator/v1/oidc/clients/{client_id:str}": operator(READ),
    "POST /operator/v1/oidc/clients/{client_id:str}/status": operator(MANAGE),
    "POST /operator/v1/terminals": operator(MANAGE),
    "GET /operator/v1/terminals": operator(READ),
    "GET /operator/v1/terminals/{terminal_id:str}": operator(READ),
    "POST /operator/v1/terminals/{terminal_id:str}/status": operator(MANAGE),
    "GET /operator/v1/terminals/{terminal_id:str}/reconciliation": operator(AUDIT),
    "GET /ledger/v1/audit": operator(AUDIT),
    # registered machine clients, by kind
    "POST /channel/v1/ecards": client_of("channel"),
    "POST /channel/v1/ecards/{ecard_id:str}/unbind": client_of("channel"),
    "POST /department/v1/identity-checks": client_of("department"),
    "POST /verifier/v1/session": client_of("verifier"),
    "DELETE /verifier/v1/session": Access("verifier_session"),
    "POST /verifier/v1/verifications": client_of("verifier"),
    # the catalogue of data scopes and purpose codes: public (the handler asks for no caller)
    "GET /consent/v1/scopes": PUBLIC,
    "POST /consent/v1/requests": client_of("relying_party"),
    "GET /consent/v1/requests/{consent_id:str}": Access("client", PARTIES, owned=True),
    "GET /consent/v1/grants/{grant_id:str}/data": Access("client", PARTIES, owned=True),
    "GET /consent/v1/accesses/{access_id:str}/proof": client_of("relying_party"),
    # terminals sign every request
    "POST /terminal/v1/card-authentications": Access("terminal", frozenset({"terminal"})),
    "POST /terminal/v1/external-authentications": Access("terminal", frozenset({"terminal"})),
    "POST /terminal/v1/codes/verifications": Access("terminal", frozenset({"terminal"})),
    "POST /terminal/v1/records": Access("terminal", frozenset({"terminal"})),
    # OpenID relying parties (filed clients) and their tokens
    "POST /oidc/token": Access("oidc_client", frozenset({"oidc_relying_party"})),
    "POST /oidc/device_authorization": Access("oidc_client", frozenset({"oidc_relying_party"})),
    "POST /oidc/introspect": Access("oidc_client", frozenset({"oidc_relying_party"})),
    "POST /oidc/revoke": Access("oidc_client", frozenset({"oidc_relying_party"})),
    "GET /oidc/userinfo": Access("oidc_token"),  # an OIDC access token, which no caller here holds
    "POST /oidc/userinfo": Access("oidc_token"),
    # holders, in their channel app
    "GET /holder/v1/ecard": holder(),
    "POST /holder/v1/ecard/unbind": holder(spends=True),
    "POST /holder/v1/card/loss-report": holder(spends=True),
    "GET /holder/v1/password": holder(),
    "POST /holder/v1/password": holder(),
    "POST /holder/v1/password/reset": holder(),
    "POST /holder/v1/session/logout": holder(spends=True),
    "GET /holder/v1/sessions": holder(),
    # a made-up id: 404 session_not_found
    "POST /holder/v1/sessions/{session_id:str}/revoke": holder(),
    "POST /holder/v1/codes": holder(),
    "GET /holder/v1/codes/qr": holder(),
    "GET /holder/v1/elicense": holder(),
    "GET /holder/v1/verifications": holder(),
    "GET /holder/v1/timeline": holder(),
    "POST /holder/v1/hce-certificates": holder(),
    "GET /holder/v1/logins": holder(),
    "GET /holder/v1/logins/{session_id:str}": holder(),
    "POST /holder/v1/logins/{session_id:str}/approve": holder(),
    "POST /holder/v1/logins/{session_id:str}/deny": holder(),
    "GET /holder/v1/authorizations": holder(),
    # ``grant`` and the consent addressed to the holder: another holder gets 404
    "POST /holder/v1/authorizations/{kind:str}/{authorization_id:str}/revoke": holder(owned=True),
    "GET /holder/v1/consent/requests": holder(),
    "POST /holder/v1/consent/requests/{consent_id:str}/approve": holder(owned=True),
    "POST /holder/v1/consent/requests/{consent_id:str}/deny": holder(owned=True),
    "GET /holder/v1/consent/grants": holder(),
    "GET /holder/v1/consent/grants/{consent_id:str}": holder(owned=True),
    "GET /holder/v1/consent/grants/{consent_id:str}/receipts": holder(owned=True),
    "POST /holder/v1/consent/grants/{consent_id:str}/revoke": holder(owned=True),
}

#: the realm each caller's credentials belong to
REALM_OF = {
    "anonymous": None,
    "impostor": None,  # a registered client id with a wrong secret
    "holder": "holder",
    "other_holder": "holder",
    "channel": "client",
    "department": "client",
    "verifier": "client",
    "relying_party": "client",
    "other_relying_party": "client",
    "terminal": "terminal",
    "oidc_relying_party": "oidc_client",
    **{role: "operator" for role in OPERATORS},
}
CALLERS = list(REALM_OF)
REFUSED_401 = {
    "unauthenticated",
    "invalid_credentials",
    "token_invalid",
    "invalid_client",
    "invalid_token",
    "terminal_signature_invalid",
}
REFUSED_403 = {"forbidden"}
#: realms besides its own where a caller's credentials are known (and so refused with 403): a
#: login filing's secret is a client credential too (one credential module, docs/partners.md)
ALSO_KNOWN_IN: dict[str, frozenset[str]] = {"oidc_relying_party": frozenset({"client"})}


def app_routes(app) -> list[str]:
    return sorted(
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for handler in route.route_handlers
        for method in handler.http_methods - {"OPTIONS", "HEAD"}
    )


class TerminalAuth(httpx.Auth):
    """Signs each request as a registered terminal does (method, target, body digest, nonce)."""

    def __init__(self, terminal_id: str, key: ec.EllipticCurvePrivateKey) -> None:
        self.terminal_id, self.key = terminal_id, key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        claims = {
            "iss": self.terminal_id,
            "htm": request.method,
            "htu": request.url.raw_path.decode(),
            "bdh": b64url_encode(hashlib.sha256(request.content).digest()),
            "iat": int(time.time()),
            "jti": b64url_encode(os.urandom(16)),
        }
        token = jwt.encode(claims, self.key, algorithm="ES256", headers={"typ": REQUEST_TYPE})
        request.headers["Authorization"] = f"{AUTHORIZATION_SCHEME} {token}"
        yield request


@dataclass
class Cast:
    credentials: dict[str, dict]  # caller → {"headers": …} or {"auth": …}
    params: dict[str, str]  # path parameter values
    new_holder: object
    new_operator: object  # role → credentials of a fresh token of an operator with that role


async def cast_of(world: World) -> Cast:
    http = world.client

    async def holder_session(name: str) -> tuple[dict, dict]:
        person = await world.person_with_card(name)
        await seed_demo_data(platform_of(http), person["person_id"])
        issued = await world.issue(person)
        return person, bearer(issued["session"]["access_token"])

    holder_person, holder_headers = await holder_session("张小三")
    _, other_holder_headers = await holder_session("李小四")
    target = await world.person_with_card("王五")
    target_ecard = (await world.issue(target))["ecard"]["id"]

    department = world.department
    verifier = await world.new_client("verifier", entitlements=["card_status"])
    party = await world.new_client("relying_party", entitlements=list(SCOPES))
    other_party = await world.new_client("relying_party", entitlements=list(SCOPES))

    filed = await http.post(
        "/operator/v1/oidc/clients",
        json={
            "name": f"rp-{uuid.uuid4().hex[:8]}",
            "redirect_uris": ["https://rp.example.test/callback"],
            "scopes": ["openid", "profile"],
            "client_type": "confidential",
            "token_endpoint_auth_method": "client_secret_basic",
        },
        headers=world.op(),
    )
    assert filed.status_code == 201, filed.text
    oidc = filed.json()
    for status in ("approved", "live"):
        answer = await http.post(
            f"/operator/v1/oidc/clients/{oidc['client_id']}/status",
            json={"status": status},
            headers=world.op(),
        )
        assert answer.status_code == 200, answer.text

    key = ec.generate_private_key(ec.SECP256R1())
    terminal = await http.post(
        "/operator/v1/terminals/",
        json={
            "name": f"terminal-{uuid.uuid4().hex[:8]}",
            "institution": "杭州市第一人民医院",
            "terminal_kind": "hospital",
            "address": "浙江省杭州市上城区浣纱路261号",
            "region": "330000",
            "public_jwk": public_jwk(key.public_key()),
        },
        headers=world.op(),
    )
    assert terminal.status_code == 201, terminal.text

    consent = await http.post(
        "/consent/v1/requests",
        json={
            "holder": {"identity_number": holder_person["identity_number"]},
            "scopes": ["card.status"],
            "purpose_code": "loan_application",
            "purpose": "个人消费贷款审核",
            "duration_seconds": 86400,
        },
        headers=basic(party["client_id"], party["client_secret"]),
    )
    assert consent.status_code == 201, consent.text

    credentials = {
        "anonymous": {"headers": {}},
        "impostor": {"headers": basic(world.channel["client_id"], "eccs_" + "x" * 40)},
        "holder": {"headers": holder_headers},
        "other_holder": {"headers": other_holder_headers},
        "channel": {"headers": basic(world.channel["client_id"], world.channel["client_secret"])},
        "department": {"headers": basic(department["client_id"], department["client_secret"])},
        "verifier": {"headers": basic(verifier["client_id"], verifier["client_secret"])},
        "relying_party": {"headers": basic(party["client_id"], party["client_secret"])},
        "other_relying_party": {
            "headers": basic(other_party["client_id"], other_party["client_secret"])
        },
        "terminal": {"auth": TerminalAuth(terminal.json()["id"], key)},
        "oidc_relying_party": {"headers": basic(oidc["client_id"], oidc["client_secret"])},
        **{role: {"headers": world.op(role)} for role in OPERATORS},
    }
    params = {
        "person_id": target["person_id"],
        "card_id": target["card_id"],
        "ecard_id": target_ecard,
        "registry_client_id": world.channel["client_id"],
        "oidc_client_id": oidc["client_id"],
        "terminal_id": terminal.json()["id"],
        "consent_id": consent.json()["id"],
        "grant_id": consent.json()["id"],
        "kind": "grant",  # /holder/v1/authorizations/{kind}/{authorization_id}
        "authorization_id": consent.json()["id"],
        "access_id": uuid.uuid4().hex,
        "session_id": uuid.uuid4().hex,
        "flow_id": uuid.uuid4().hex,
        "version": "1",
        "path": "swagger",
        "operator_id": uuid.uuid4().hex,
        "delivery_id": uuid.uuid4().hex,  # webhooks
        "batch_id": uuid.uuid4().hex,
        "institution_id": f"330000-{uuid.uuid4().hex[:8]}",  # directory
        "credential_id": uuid.uuid4().hex,  # the application catalogue
    }

    async def fresh_holder() -> dict:
        return {"headers": (await holder_session("赵六"))[1]}

    async def fresh_operator(role: str) -> dict:
        username = f"{role}-{uuid.uuid4().hex[:6]}"
        await AccessService(platform_of(http)).create_operator(
            username, "correct horse battery", role
        )
        login = await http.post(
            "/operator/v1/login", json={"username": username, "password": "correct horse battery"}
        )
        return {"headers": bearer(login.json()["access_token"])}

    return Cast(credentials, params, fresh_holder, fresh_operator)


def concrete(route: str, params: dict[str, str]) -> tuple[str, str]:
    method, path = route.split(" ", 1)
    values = {
        **params,
        "client_id": params["oidc_client_id"] if "/oidc/" in path else params["registry_client_id"],
        "application_id": params["registry_client_id"],
    }
    if "{file_path:path}" in path:
        path = path.replace(
            "{file_path:path}", "verifier.js" if path.startswith("/verifier") else "login.js"
        )
    for name, value in values.items():
        for kind in ("str", "int"):
            path = path.replace("{" + f"{name}:{kind}" + "}", value)
    assert "{" not in path, path
    return method, path


def code_of(response: httpx.Response) -> str | None:
    if response.headers.get("content-type", "").startswith(
        ("application/problem+json", "application/json")
    ):
        try:
            body = response.json()
        except ValueError:
            return None
        return body.get("code") if isinstance(body, dict) else None
    return None


def expectation(access: Access, caller: str) -> str:
    """What ``caller`` must get from a route with ``access``: allowed, 401, 403 or 404."""
    if caller in access.allowed:
        if access.owned and caller.startswith("other_"):
            return "404"
        return "allowed"
    known = REALM_OF[caller] == access.realm or access.realm in ALSO_KNOWN_IN.get(caller, ())
    return "403" if known else "401"


def test_every_route_has_a_row() -> None:
    routes = app_routes(
        create_app(load_settings({"ECARD_KEYS_DIR": "/nonexistent", "ECARD_LOG_LEVEL": "WARNING"}))
    )
    assert sorted(set(routes) - set(MATRIX)) == [], "routes without a row in MATRIX"
    assert sorted(set(MATRIX) - set(routes)) == [], "rows of MATRIX for routes that do not exist"


@pytest.mark.parametrize("settings", ["embedded"], indirect=True)
async def test_authorization_matrix(client: httpx.AsyncClient, world: World) -> None:
    cast = await cast_of(world)
    wrong: list[str] = []
    calls = 0
    # the other holder and other relying party go first: the owner's calls may change the state
    order = sorted(CALLERS, key=lambda c: not c.startswith("other_"))
    for route in app_routes(client.app):
        access = MATRIX[route]
        method, path = concrete(route, cast.params)
        body = (
            {"json": {}}
            if method in {"POST", "PATCH"}
            and not route.startswith(("POST /oidc/", "POST /terminal/v1/records"))
            else {}
        )
        seen: dict[str, int] = {}
        for caller in order:
            credentials = cast.credentials[caller]
            if access.spends and caller in access.allowed:
                credentials = await (
                    cast.new_holder() if access.realm == "holder" else cast.new_operator(caller)
                )
            response = await client.request(method, path, **body, **credentials)
            calls += 1
            status, code = response.status_code, code_of(response)
            seen[caller] = status
            if status >= 500:
                wrong.append(f"{route} as {caller}: {status} {response.text[:200]}")
                continue
            if access.realm == "public":
                continue
            expected = expectation(access, caller)
            if expected == "allowed":
                refused = status in (401, 403) and code in REFUSED_401 | REFUSED_403
                if refused:
                    wrong.append(f"{route} as {caller}: allowed, got {status} {code}")
            elif expected == "404":
                if status != 404:
                    wrong.append(
                        f"{route} as {caller}: expected 404 (another's resource), got "
                        f"{status} {code}"
                    )
            elif status == 429 and code in ("rate_limited", "temporarily_unavailable"):
                # refused all the same: failed client authentications are rate limited per IP
                continue
            elif str(status) != expected or code not in (
                REFUSED_401 if expected == "401" else REFUSED_403
            ):
                wrong.append(f"{route} as {caller}: expected {expected}, got {status} {code}")
        if access.realm == "public" and len(set(seen.values())) != 1:
            wrong.append(f"{route} is public but answers callers differently: {seen}")
    print(f"authorization matrix: {len(MATRIX)} routes × {len(CALLERS)} callers, {calls} calls")
    assert not wrong, f"{len(wrong)} of {calls} calls got the wrong answer:\n" + "\n".join(wrong)
