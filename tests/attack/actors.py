"""Callers of every kind, built over HTTP against an app reached in-process through a synchronous
``requests`` session (schemathesis' ASGI client): operators of each role, machine clients of each
kind (Basic), a filed and live OIDC relying party, a terminal that signs its requests, and holders.

Each :class:`Caller` turns into keyword arguments for ``requests`` (headers, or an ``auth`` hook
that signs the very request being sent)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.auth import OPERATOR_TOKEN_PREFIX, new_token
from ecard.consent.scopes import SCOPES
from ecard.crypto.fields import secret_digest
from ecard.offline.es256 import public_jwk
from ecard.platform import open_platform
from ecard.registry.evidence import sign_evidence
from ecard.registry.service import AccessService
from ecard.registry.tables import Operator, OperatorToken
from ecard.settings import Settings
from ecard.terminal.reference import signed_authorization
from tests.helpers import basic, bearer, identity_number

OPERATOR_ROLES = ("admin", "registry_admin", "auditor", "readonly")
PASSWORD = "correct horse battery"
VERIFIER_FIELDS = ["card_status", "masked_name"]


def run_in_thread(make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine to completion in a fresh loop on another thread (never the test's loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def seed_operators(settings: Settings) -> dict[str, str]:
    """Migrate the database and create one operator per role (there is no HTTP way to make the
    first operator); returns role → username."""

    async def seed() -> dict[str, str]:
        platform = await open_platform(settings, migrate=True)
        try:
            access = AccessService(platform)
            names = {}
            for role in OPERATOR_ROLES:
                names[role] = f"{role}-{uuid.uuid4().hex[:6]}"
                await access.create_operator(names[role], PASSWORD, role)
            return names
        finally:
            await platform.close()

    return run_in_thread(seed)


def spare_operator_tokens(
    settings: Settings, operators: dict[str, str], count: int
) -> dict[str, list[str]]:
    """``count`` extra live tokens per role, for calls that spend one (an operator logging out):
    minted in the database as a login would, since that many logins would trip the per-address
    login limit."""

    async def mint() -> dict[str, list[str]]:
        platform = await open_platform(settings)
        try:
            spare: dict[str, list[str]] = {}
            for role, username in operators.items():
                row = (
                    await Operator.select(Operator.id).where(Operator.username == username).first()
                )
                tokens = [new_token(OPERATOR_TOKEN_PREFIX) for _ in range(count)]
                await OperatorToken.insert(
                    *(
                        OperatorToken(
                            digest=secret_digest(t),
                            operator=row["id"],
                            expires_at=int(time.time()) + 3600,
                        )
                        for t in tokens
                    )
                ).run()
                spare[role] = tokens
            return spare
        finally:
            await platform.close()

    return run_in_thread(mint)


class TerminalSigner(requests.auth.AuthBase):
    """Signs the prepared request (method, path and query, body digest) as the terminal does."""

    def __init__(self, terminal_id: str, key: ec.EllipticCurvePrivateKey) -> None:
        self.terminal_id, self.key = terminal_id, key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        parts = urlsplit(request.url or "")
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        request.headers["Authorization"] = signed_authorization(
            self.key, self.terminal_id, request.method or "GET", target, body, int(time.time())
        )
        return request


@dataclass
class Caller:
    """One kind of caller: a name and how its requests are authenticated."""

    name: str
    headers: dict[str, str] = field(default_factory=dict)
    auth: requests.auth.AuthBase | None = None
    #: for callers whose credentials a request may spend (a holder logging out): a fresh one per
    #: call
    fresh: Callable[[], Caller] | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"headers": dict(self.headers), **({"auth": self.auth} if self.auth else {})}


@dataclass
class Cast:
    """Every kind of caller of one deployment, and the resources they own."""

    session: requests.Session
    callers: dict[str, Caller]
    ids: dict[str, str]


def _spare(role: str, tokens: list[str] | None) -> Callable[[], Caller] | None:
    if tokens is None:
        return None
    pool = iter(tokens)
    return lambda: Caller(role, bearer(next(pool)))


def _ok(response: requests.Response, status: int = 201) -> dict:
    assert response.status_code == status, (
        response.request.method,
        response.request.url,
        response.status_code,
        response.text,
    )
    return response.json() if response.content else {}


def build_cast(
    session: requests.Session,
    operators: dict[str, str],
    spare_tokens: dict[str, list[str]] | None = None,
    audience: str | None = None,
) -> Cast:
    """Create, over HTTP, one caller of every kind (and a second holder); operators whose calls
    spend their token take the next of ``spare_tokens``.  ``audience``: the app's public URL (the
    channel's 实人 evidence names it; the default setting's when not given)."""
    audience = audience or Settings().public_url
    channel_key = ec.generate_private_key(ec.SECP256R1())
    tokens = {
        role: _ok(
            session.post("/operator/v1/login", json={"username": name, "password": PASSWORD}), 200
        )["access_token"]
        for role, name in operators.items()
    }
    admin = bearer(tokens["admin"])
    ids: dict[str, str] = {}

    def new_client(kind: str, **extra: Any) -> dict[str, str]:
        body = _ok(
            session.post(
                "/operator/v1/clients",
                json={"kind": kind, "name": f"{kind}-{uuid.uuid4().hex[:8]}", **extra},
                headers=admin,
            )
        )
        return {"client_id": body["id"], "client_secret": body.get("client_secret", "")}

    channel = new_client("channel", public_jwk=public_jwk(channel_key.public_key()))
    department = new_client("department")
    verifier = new_client("verifier", entitlements=VERIFIER_FIELDS)
    party = new_client("relying_party", entitlements=list(SCOPES))

    def file_client() -> dict:
        filed = _ok(
            session.post(
                "/operator/v1/oidc/clients",
                json={
                    "name": f"rp-{uuid.uuid4().hex[:8]}",
                    "redirect_uris": ["https://rp.example.test/callback"],
                    "scopes": ["openid", "profile", "ecard"],
                    "client_type": "confidential",
                    "token_endpoint_auth_method": "client_secret_basic",
                },
                headers=admin,
            )
        )
        for status in ("approved", "live"):
            _ok(
                session.post(
                    f"/operator/v1/oidc/clients/{filed['client_id']}/status",
                    json={"status": status},
                    headers=admin,
                ),
                200,
            )
        return filed

    filed = file_client()

    def new_terminal(key: ec.EllipticCurvePrivateKey) -> dict:
        return _ok(
            session.post(
                "/operator/v1/terminals/",
                json={
                    "name": f"terminal-{uuid.uuid4().hex[:8]}",
                    "institution": "杭州市第一人民医院",
                    "terminal_kind": "hospital",
                    "address": "浙江省杭州市上城区浣纱路261号",
                    "region": "330000",
                    "public_jwk": public_jwk(key.public_key()),
                    "entitlements": ["card_status", "masked_name"],
                },
                headers=admin,
            )
        )

    key = ec.generate_private_key(ec.SECP256R1())
    terminal = new_terminal(key)

    def new_holder(name: str = "张小三") -> dict[str, Any]:
        number = identity_number()
        person = _ok(
            session.post(
                "/operator/v1/persons",
                json={
                    "name": name,
                    "gender": "1",
                    "identity_number": number,
                    "region": "330000",
                },
                headers=admin,
            )
        )
        card_number = "C" + uuid.uuid4().hex[:10].upper()
        card = _ok(
            session.post(
                "/operator/v1/cards",
                json={
                    "person_id": person["id"],
                    "card_number": card_number,
                    "region": "330000",
                    "chip_serial": uuid.uuid4().hex[:16].upper(),
                    "identification_code": uuid.uuid4().hex[:24].upper(),
                    "issue_date": "2024-01-01",
                    "expiry_date": "2034-01-01",
                },
                headers=admin,
            )
        )
        evidence = sign_evidence(
            channel_key,
            channel_id=channel["client_id"],
            audience=audience,
            identity_number=number,
            method="face_liveness",
            reference=f"ref-{uuid.uuid4().hex[:12]}",
        )
        issued = _ok(
            session.post(
                "/channel/v1/ecards",
                json={
                    "name": name,
                    "identity_number": number,
                    "card_number": card_number,
                    "evidence": evidence,
                },
                headers=basic(channel["client_id"], channel["client_secret"]),
            )
        )
        return {
            "person_id": person["id"],
            "card_id": card["id"],
            "ecard_id": issued["ecard"]["id"],
            "access_token": issued["session"]["access_token"],
            "refresh_token": issued["session"]["refresh_token"],
        }

    holder = new_holder()
    target = new_holder(
        "李四"
    )  # the resources path parameters name (a fuzzed call may cancel them)
    # clients the path parameters name, apart from the callers' own (a fuzzed call may disable them)
    ids.update(
        person_id=target["person_id"],
        card_id=target["card_id"],
        ecard_id=target["ecard_id"],
        channel_id=new_client("channel")["client_id"],
        oidc_client_id=file_client()["client_id"],
        terminal_id=new_terminal(ec.generate_private_key(ec.SECP256R1()))["id"],
    )

    def fresh_holder() -> Caller:
        return Caller("holder", bearer(new_holder()["access_token"]))

    callers = [
        Caller("anonymous"),
        Caller("holder", bearer(holder["access_token"]), fresh=fresh_holder),
        Caller("channel", basic(channel["client_id"], channel["client_secret"])),
        Caller("department", basic(department["client_id"], department["client_secret"])),
        Caller("verifier", basic(verifier["client_id"], verifier["client_secret"])),
        Caller("relying_party", basic(party["client_id"], party["client_secret"])),
        Caller("oidc_relying_party", basic(filed["client_id"], filed["client_secret"])),
        Caller("terminal", auth=TerminalSigner(terminal["id"], key)),
        *(
            Caller(role, bearer(tokens[role]), fresh=_spare(role, (spare_tokens or {}).get(role)))
            for role in OPERATOR_ROLES
        ),
    ]
    return Cast(session, {c.name: c for c in callers}, ids)
