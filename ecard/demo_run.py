"""``ecard demo run``: the whole product in one walk, against a real server it starts.

Each step says in plain words what happens and checks that it did; the first step that does not
behave as described stops the walk and the command exits non-zero.  The demo actors come from
``ecard.demo`` (as ``ecard demo init`` makes them); the chip of the demo card is personalised in
this process, as a card bureau would, from the same keyring the server uses.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from standardwebhooks import Webhook

from ecard.cli import ensure_keys
from ecard.codes.service import CodeService
from ecard.crypto.dpop import jwk_thumbprint, make_proof
from ecard.demo import create_demo
from ecard.offline import load_revocation_list, load_trust_list, verify
from ecard.offline.es256 import b64url_decode, public_jwk, public_key_from_jwk
from ecard.platform import open_platform
from ecard.registry.evidence import sign_evidence
from ecard.settings import Settings, load_settings
from ecard.terminal.hce import HceCard
from ecard.terminal.psam import CardKeyRole
from ecard.terminal.reference import ReferenceTerminal
from ecard.terminal.service import TerminalService
from ecard.terminal.virtual_card import VirtualCard

SESSION_ID = re.compile(r'data-session="([^"]+)"')


class StepFailed(Exception):
    """A step did not behave as the walkthrough says it should."""


def check(condition: object, failure: str) -> None:
    if not condition:
        raise StepFailed(failure)


def expect(response: httpx.Response, status: int, what: str) -> Any:
    """The response's JSON when it has ``status``; otherwise the step fails with the error code."""
    if response.status_code != status:
        raise StepFailed(f"{what}: HTTP {response.status_code} {response.text[:300]}")
    return (
        response.json()
        if response.content and "json" in response.headers.get("content-type", "")
        else None
    )


def refused(response: httpx.Response, what: str) -> str:
    """The error code of a refusal; a success fails the step."""
    if response.status_code < 400:
        raise StepFailed(f"{what} was accepted (HTTP {response.status_code})")
    check(response.status_code < 500, f"{what}: server error {response.status_code}")
    return response.json().get("code", "?")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class WebhookInbox:
    """The demo channel's webhook receiver: a loopback HTTP endpoint that keeps what it is sent."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hooks"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()  # the request line
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(min(int(headers.get("content-length", "0")), 1_000_000))
            self.received.append((headers, body))
            self.arrived.set()
            writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            await writer.drain()
        finally:
            writer.close()

    async def wait_for(
        self, event_type: str, timeout: float = 20.0
    ) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + timeout
        while True:
            for headers, body in self.received:
                if json.loads(body).get("type") == event_type:
                    return headers, body
            self.arrived.clear()
            left = deadline - time.monotonic()
            if left <= 0:
                raise StepFailed(f"no {event_type} webhook arrived within {timeout:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


@dataclass
class Walk:
    """The running story: the HTTP client, the demo actors and what earlier steps left behind."""

    http: httpx.AsyncClient
    actors: dict[str, Any]
    settings: Settings
    chip: VirtualCard
    terminal_key: ec.EllipticCurvePrivateKey
    psam_keys: CardKeyRole
    out: Any = sys.stdout
    memo: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    inbox: WebhookInbox = field(default_factory=WebhookInbox)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    # --- credentials ------------------------------------------------------------------------

    def proof(
        self, method: str, path: str, access_token: str | None = None, key: Any = None
    ) -> str:
        """The app's DPoP proof for a request, made with the device key (or ``key``)."""
        device = key or self.memo["device"]
        return make_proof(
            device,
            public_jwk(device.public_key()),
            method,
            self.settings.public_url.rstrip("/") + path,
            access_token=access_token,
            now=time.time(),
            jti=secrets.token_urlsafe(16),
        )

    async def as_holder(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request of the app: its device-bound access token with a fresh DPoP proof."""
        token = self.memo["holder_token"]
        headers = {"Authorization": f"DPoP {token}", "DPoP": self.proof(method, path, token)}
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def refresh(self) -> None:
        """Rotate the app's session (the refresh token is bound to the device key too)."""
        path = "/holder/v1/session/refresh"
        pair = expect(
            await self.http.post(
                path,
                json={"refresh_token": self.memo["refresh_token"]},
                headers={"DPoP": self.proof("POST", path)},
            ),
            200,
            "session refresh",
        )
        self.memo["holder_token"], self.memo["refresh_token"] = (
            pair["access_token"],
            pair["refresh_token"],
        )

    def evidence(self) -> str:
        """The channel app's face-liveness check of the holder, signed with its registered key
        (实人)."""
        return sign_evidence(
            jwt.PyJWK(self.actors["channel"]["private_jwk"]).key,
            channel_id=self.actors["channel"]["client_id"],
            audience=self.settings.public_url,
            identity_number=self.actors["holder"]["identity_number"],
            method="face_liveness",
            reference=f"demo-{secrets.token_hex(6)}",
        )

    def client_auth(self, actor: str) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.actors[actor]["client_id"], self.actors[actor]["client_secret"])

    def operator(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.memo['operator_token']}"}

    def rp(self) -> httpx.BasicAuth:
        """The demo site's one filing: the same credentials log in and read granted data."""
        return self.client_auth("relying_party")

    # --- the steps ---------------------------------------------------------------------------

    async def issue_ecard(self) -> str:
        person = self.actors["holder"]
        self.memo["device"] = ec.generate_private_key(
            ec.SECP256R1()
        )  # made in the phone's keystore
        issued = expect(
            await self.http.post(
                "/channel/v1/ecards",
                auth=self.client_auth("channel"),
                json={
                    "name": person["name"],
                    "identity_number": person["identity_number"],
                    "card_number": person["card_number"],
                    "evidence": self.evidence(),
                    "dpop_jkt": jwk_thumbprint(public_jwk(self.memo["device"].public_key())),
                },
            ),
            201,
            "e-card issuance",
        )
        self.memo["ecard_id"] = issued["ecard"]["id"]
        self.memo["holder_token"] = issued["session"]["access_token"]
        self.memo["refresh_token"] = issued["session"]["refresh_token"]
        check(
            issued["session"]["token_type"] == "DPoP",  # noqa: S105 - a token type, not a secret
            "the holder session is not bound to the device key",
        )
        login = expect(
            await self.http.post(
                "/operator/v1/login",
                json={
                    "username": self.actors["operator"]["username"],
                    "password": self.actors["operator"]["password"],
                },
            ),
            200,
            "operator login",
        )
        self.memo["operator_token"] = login["access_token"]
        url = await self.inbox.start()
        hook = expect(
            await self.http.put(
                f"/operator/v1/clients/{self.actors['channel']['client_id']}/webhook",
                headers=self.operator(),
                json={"url": url},
            ),
            201,
            "webhook endpoint",
        )
        self.memo["webhook_secret"] = hook["secret"]
        return (
            "the channel app's face-liveness check (实人) signed by its key, name, identity "
            "number and card "
            f"matched (实名实人实卡): e-card {issued['ecard']['id']} with a session bound to the "
            "phone's key (DPoP); "
            f"the channel's webhook endpoint is filed"
        )

    async def front_door_refusals(self) -> str:
        person = self.actors["holder"]
        bare = await self.http.post(
            "/channel/v1/ecards",
            auth=self.client_auth("channel"),
            json={key: person[key] for key in ("name", "identity_number", "card_number")},
        )
        check(
            bare.status_code == 400,
            f"an issuance without 实人 evidence got HTTP {bare.status_code}",
        )
        token = self.memo["holder_token"]
        copied = await self.http.post(
            "/holder/v1/codes", headers={"Authorization": f"Bearer {token}"}
        )
        thief = ec.generate_private_key(ec.SECP256R1())
        other_key = await self.http.post(
            "/holder/v1/codes",
            headers={
                "Authorization": f"DPoP {token}",
                "DPoP": self.proof("POST", "/holder/v1/codes", token, key=thief),
            },
        )
        check(
            copied.status_code == 401 and other_key.status_code == 401,
            f"a copied token fetched a code: HTTP {copied.status_code} / {other_key.status_code}",
        )
        return (
            f"an issuance without 实人 evidence: {refused(bare, 'bare issuance')}; the holder's "
            "token copied to another "
            f"device: {refused(copied, 'copied token')} as a bare token, "
            f"{refused(other_key, 'other key')} with that "
            f"device's own DPoP proof"
        )

    async def fetch_code(self) -> str:
        code = expect(await self.as_holder("POST", "/holder/v1/codes"), 201, "code fetch")
        check(code["code"].startswith("EC1:"), "the code text does not carry the EC1: prefix")
        self.memo["code"] = code["code"]
        return (
            f"the app fetched a signed QR code of {len(code['code'])} characters, valid for "
            f"{code['expires_at'] - code['issued_at']} s; it refreshes it at {code['refresh_at']}"
        )

    async def verify_online(self) -> str:
        result = expect(
            await self.http.post(
                "/verifier/v1/verifications",
                json={"code": self.memo["code"]},
                auth=self.client_auth("verifier"),
            ),
            200,
            "online verification",
        )
        check(result["valid"], f"the verifier was told the code is invalid: {result.get('reason')}")
        check(
            set(result["fields"]) == {"masked_name", "card_status"},
            f"the hospital saw {sorted(result['fields'])}",
        )
        return (
            "the hospital's scanner checked it online: genuine, card "
            f"{result['fields']['card_status']}, holder {result['fields']['masked_name']}"
        )

    async def verify_offline(self) -> str:
        now = int(time.time())
        root = public_key_from_jwk(
            expect(await self.http.get("/offline/v1/root-key"), 200, "root key")
        )
        trust = load_trust_list((await self.http.get("/offline/v1/trust-list")).text, root, now)
        revocations = load_revocation_list(
            (await self.http.get("/offline/v1/revocations")).text, root, now
        )
        self.memo["offline_kit"] = (root, trust)
        result = verify(self.memo["code"], trust, revocations, now)
        check(result.ok, f"the offline kit refused the code: {result.reason}")
        return (
            "a scanner with no network checked the same code with the signed trust list and "
            "revocation list (黑名单)"
        )

    async def second_scan_refused(self) -> str:
        result = expect(
            await self.http.post(
                "/verifier/v1/verifications",
                json={"code": self.memo["code"]},
                auth=self.client_auth("verifier"),
            ),
            200,
            "second online verification",
        )
        check(
            not result["valid"] and result["reason"] == "already_used",
            f"a second scan got {result}",
        )
        return "scanned a second time online, the code is refused: already_used (single use)"

    async def scan_to_login(self) -> str:
        oidc = self.actors["relying_party"]
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        nonce, state = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
        page = await self.http.get(
            "/oidc/authorize",
            params={
                "response_type": "code",
                "client_id": oidc["client_id"],
                "redirect_uri": oidc["redirect_uri"],
                "scope": "openid profile ecard",
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                # login and data in one approval (RFC 9396): the site asks for the holder's
                # identity and enrollment, for a benefit application, for 30 days
                "authorization_details": json.dumps(
                    [
                        {
                            "type": "ecard_consent",
                            "datatypes": ["identity.basic", "insurance.enrollment"],
                            "purpose_code": "benefit_application",
                            "purpose": "社保待遇申领 (benefit application)",
                            "duration_seconds": 30 * 86_400,
                        }
                    ]
                ),
            },
        )
        check(page.status_code == 200, f"the login page failed: HTTP {page.status_code}")
        found = SESSION_ID.search(page.text)
        check(found, "the login page shows no QR session")
        session_id = found.group(1)
        described = expect(
            await self.as_holder("GET", f"/holder/v1/logins/{session_id}"), 200, "scan"
        )
        asked = described.get("data") or {}
        check(
            {item["scope"] for item in asked.get("scopes", [])}
            == {"identity.basic", "insurance.enrollment"},
            f"the app does not list the data asked apart from the login: {asked}",
        )
        expect(  # one approval: the login, and of the data only the identity (enrollment refused)
            await self.as_holder(
                "POST",
                f"/holder/v1/logins/{session_id}/approve",
                json={
                    "password": self.actors["holder"]["password"],
                    "data_scopes": ["identity.basic"],
                },
            ),
            200,
            "approval",
        )
        page_sees = expect(
            await self.http.get(f"/oidc/login/{session_id}/poll"), 200, "the page's poll"
        )
        check(
            page_sees.get("state") == "approved_pending_confirmation"
            and "*" in page_sees.get("holder_name", ""),
            f"the page does not ask the browser to confirm a masked holder: {page_sees}",
        )
        back = expect(
            await self.http.post(f"/oidc/login/{session_id}/confirm"),
            200,
            "the browser's confirmation",
        )
        callback = {k: v[0] for k, v in parse_qs(urlsplit(back["location"]).query).items()}
        check(
            callback.get("state") == state and "code" in callback,
            f"the callback carries {sorted(callback)}",
        )
        tokens = expect(
            await self.http.post(
                "/oidc/token",
                auth=self.rp(),
                data={
                    "grant_type": "authorization_code",
                    "code": callback["code"],
                    "redirect_uri": oidc["redirect_uri"],
                    "code_verifier": verifier,
                },
            ),
            200,
            "code redemption",
        )
        jwks = jwt.PyJWKSet.from_dict(
            expect(await self.http.get("/.well-known/jwks.json"), 200, "JWKS")
        )
        header = jwt.get_unverified_header(tokens["id_token"])
        key = next(k for k in jwks.keys if k.key_id == header["kid"])
        claims = jwt.decode(
            tokens["id_token"],
            key,
            algorithms=["ES256"],
            audience=oidc["client_id"],
            issuer=self.settings.public_url,
        )
        check(claims["nonce"] == nonce, "the ID token's nonce is not the site's")
        granted = tokens.get("authorization_details") or [{}]
        check(
            granted[0].get("datatypes") == ["identity.basic"] and granted[0].get("grant_id"),
            f"the token response does not carry the grant: {granted}",
        )
        check(
            claims.get("name") == self.actors["holder"]["name"],
            "the ID token carries no real name under the identity grant",
        )
        self.memo["login_sub"] = claims["sub"]
        userinfo = expect(
            await self.http.get(
                "/oidc/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
            ),
            200,
            "userinfo",
        )
        check(userinfo["sub"] == claims["sub"], "userinfo is about someone else")
        origin = described["origin"]
        return (
            f"the site showed a login QR; the app showed who asks ('{described['client_name']}'), "
            "for what "
            f"({', '.join(scope['scope'] for scope in described['scopes'])}), the data asked apart "
            f"({', '.join(item['scope'] for item in asked['scopes'])}) and from where "
            f"({origin.get('ip')}); one approval granted the login and identity.basic, refused "
            "insurance.enrollment; the site got an ID token (pairwise sub, real name under the "
            "grant, ES256, checked against the JWKS), the grant's id and userinfo"
        )

    async def consent_grant(self) -> str:
        asked = expect(
            await self.http.post(
                "/consent/v1/requests",
                auth=self.client_auth("relying_party"),
                json={  # the same filing names the holder by the pairwise sub it got at login
                    "holder": {"sub": self.memo["login_sub"]},
                    "scopes": ["card.status", "insurance.enrollment", "benefit.payments"],
                    "purpose_code": "loan_application",
                    "purpose": "个人消费贷款审核 (loan review)",
                    "duration_seconds": 30 * 86_400,
                },
            ),
            201,
            "consent request",
        )
        grant_id = asked["id"]
        pending = expect(
            await self.as_holder("GET", "/holder/v1/consent/requests"), 200, "pending requests"
        )
        check(
            any(item["id"] == grant_id for item in pending), "the holder does not see the request"
        )
        expect(
            await self.as_holder(
                "POST",
                f"/holder/v1/consent/requests/{grant_id}/approve",
                json={
                    "scopes": ["card.status", "insurance.enrollment"],
                    "password": self.actors["holder"]["password"],
                },
            ),
            200,
            "approval",
        )
        self.memo["grant_id"] = grant_id
        return (
            "the site, by the pairwise sub of its login, asked for card status, enrollment and "
            "benefit payments; the holder granted only the first two (精准授权)"
        )

    async def consent_read(self) -> str:
        grant_id = self.memo["grant_id"]
        data = expect(
            await self.http.get(
                f"/consent/v1/grants/{grant_id}/data", auth=self.client_auth("relying_party")
            ),
            200,
            "data read",
        )
        check(
            set(data["data"]) == {"card.status", "insurance.enrollment"},
            f"the site read {sorted(data['data'])}",
        )
        beyond = await self.http.get(
            f"/consent/v1/grants/{grant_id}/data",
            params={"scope": "benefit.payments"},
            auth=self.client_auth("relying_party"),
        )
        code = refused(beyond, "a read beyond the grant")
        return (
            "the site read exactly card.status and insurance.enrollment; asking for benefit "
            f"payments got {code}"
        )

    async def consent_revoke(self) -> str:
        grant_id = self.memo["grant_id"]
        expect(
            await self.as_holder("POST", f"/holder/v1/consent/grants/{grant_id}/revoke"),
            200,
            "revocation",
        )
        code = refused(
            await self.http.get(
                f"/consent/v1/grants/{grant_id}/data", auth=self.client_auth("relying_party")
            ),
            "a read after revocation",
        )
        check(code == "consent_revoked", f"the read after revocation got {code}")
        return f"the holder revoked the grant; the site's next read is refused: {code}"

    async def ledger_proof(self) -> str:
        grant_id = self.memo["grant_id"]
        receipt = None
        for _ in range(100):  # the sealer runs about every second
            receipts = expect(
                await self.as_holder("GET", f"/holder/v1/consent/grants/{grant_id}/receipts"),
                200,
                "receipts",
            )
            events = [event for event in receipts["events"] if event.get("receipt")]
            if events and len(events) == len(receipts["events"]):
                checked = await self.http.post(
                    "/ledger/v1/receipts/check", json=events[-1]["receipt"]
                )
                if checked.status_code == 200 and checked.json().get("status") == "sealed":
                    receipt = checked.json()
                    break
            await asyncio.sleep(0.2)
        check(receipt is not None, "the revocation's ledger receipt was not sealed within 20 s")
        audit = expect(
            await self.http.get("/ledger/v1/audit", headers=self.operator()), 200, "ledger audit"
        )
        check(audit.get("ok"), f"the ledger audit failed: {audit}")
        return (
            "each consent event has a ledger receipt; the revocation's is sealed with an "
            "inclusion proof, and "
            f"the whole log verifies ({audit['audit']['entries']} entries in "
            f"{audit['audit']['blocks']} blocks)"
        )

    async def terminal_day(self) -> str:
        terminal = ReferenceTerminal(
            self.actors["terminal"]["terminal_id"],
            self.terminal_key,
            self.http,
            self.memo["offline_kit"][0],
            psam_keys=self.psam_keys,
        )
        online = await terminal.authenticate_card_online(self.chip)
        check(
            online.status_code == 200,
            f"online card authentication: HTTP {online.status_code} {online.text[:200]}",
        )
        device = ec.generate_private_key(ec.SECP256R1())
        certificate = expect(
            await self.as_holder(
                "POST",
                "/holder/v1/hce-certificates",
                json={"device_key": public_jwk(device.public_key())},
            ),
            201,
            "HCE certificate",
        )
        code = expect(await self.as_holder("POST", "/holder/v1/codes"), 201, "code fetch")["code"]
        await terminal.sync()
        accepted = [
            terminal.accept_card_offline(self.chip),
            terminal.accept_hce_offline(HceCard(b64url_decode(certificate["certificate"]), device)),
            terminal.accept_code_offline(code),
        ]
        check(
            all(item is not None and item.accepted for item in accepted),
            (
                "offline acceptances: "
                f"{[None if a is None else (a.kind, a.accepted, a.reason) for a in accepted]}"
            ),
        )
        uploaded = await terminal.upload()
        check(
            uploaded.status_code == 200,
            f"upload: HTTP {uploaded.status_code} {uploaded.text[:200]}",
        )
        reconciliation = expect(
            await self.http.get(
                f"/operator/v1/terminals/{terminal.terminal_id}/reconciliation",
                headers=self.operator(),
            ),
            200,
            "reconciliation",
        )
        check(
            reconciliation["records"] >= len(accepted),
            f"reconciliation counts {reconciliation['records']} records",
        )
        self.memo["terminal"] = terminal
        return (
            "a hospital terminal authenticated the chip card online (卡鉴权), then offline "
            "accepted the physical card, "
            f"the e-card over NFC and a QR code; back online it uploaded {len(accepted)} signed "
            "records, all reconciled"
        )

    async def report_lost(self) -> str:
        before = expect(await self.as_holder("POST", "/holder/v1/codes"), 201, "code fetch")["code"]
        self.memo["old_code"] = before
        card_id = self.actors["holder"]["card_id"]
        expect(
            await self.http.post(
                f"/operator/v1/cards/{card_id}/status",
                headers=self.operator(),
                json={"status": "lost", "reason": "持卡人电话挂失 (reported lost by phone)"},
            ),
            200,
            "report lost",
        )
        refusals = {
            "the app fetching a code": refused(
                await self.as_holder("POST", "/holder/v1/codes"), "code fetch"
            ),
            "the channel issuing a new e-card": refused(
                await self.http.post(
                    "/channel/v1/ecards",
                    auth=self.client_auth("channel"),
                    json={
                        **{
                            key: self.actors["holder"][key]
                            for key in ("name", "identity_number", "card_number")
                        },
                        "evidence": self.evidence(),
                    },
                ),
                "re-issuance",
            ),
        }
        online = expect(
            await self.http.post(
                "/verifier/v1/verifications",
                json={"code": before},
                auth=self.client_auth("verifier"),
            ),
            200,
            "online verification",
        )
        check(not online["valid"], "a code of the lost card was accepted online")
        refusals["a verifier scanning a code fetched a second before"] = online["reason"]
        root, trust = self.memo["offline_kit"]
        for _ in range(50):  # each worker re-reads the registry for the list at most once a second
            now = int(time.time())
            revocations = load_revocation_list(
                (await self.http.get("/offline/v1/revocations")).text, root, now
            )
            offline = verify(before, trust, revocations, now)
            if not offline.ok:
                break
            await asyncio.sleep(0.2)
        check(
            not offline.ok, "a code of the lost card is still accepted offline 10 s after the loss"
        )
        refusals["an offline scanner with the new revocation list"] = str(offline.reason)
        terminal: ReferenceTerminal = self.memo["terminal"]
        authenticated = expect(
            await terminal.authenticate_card_online(self.chip), 200, "online card authentication"
        )
        check(
            authenticated["authentic"] and not authenticated["usable"],
            f"the terminal was told {authenticated}",
        )
        refusals["a terminal authenticating the card online"] = (
            f"genuine but not usable ({authenticated['card_status']})"
        )
        await terminal.sync()
        offline_card = terminal.accept_card_offline(self.chip)
        check(
            offline_card is None or not offline_card.accepted,
            "the terminal accepted the lost card offline after syncing",
        )
        refusals["a terminal offline after syncing"] = (
            offline_card.reason if offline_card else "refused"
        )
        return "the card was reported lost (挂失); every path refuses it:\n" + "\n".join(
            f"      - {path}: {why}" for path, why in refusals.items()
        )

    async def temporary_loss(self) -> str:
        reported = expect(
            await self.as_holder("POST", "/holder/v1/card/loss-report"), 200, "临时挂失"
        )
        check(reported["card_status"] == "lost_temporary", f"the card is {reported['card_status']}")
        stopped = refused(await self.as_holder("POST", "/holder/v1/codes"), "code fetch while lost")
        # … the holder finds the card a moment later (codes carry whole seconds: those of the second
        # of
        # the loss, and of the one after it, stay refused even once the loss is undone)
        await asyncio.sleep(2.0)
        path = "/holder/v1/card/loss-report/undo"
        # a password that is certainly not the holder's (the demo checks it is refused)
        not_theirs = "000000" if self.actors["holder"]["password"] != "000000" else "999999"  # noqa: S105
        wrong = await self.http.post(
            path,
            headers={"DPoP": self.proof("POST", path)},
            json={
                "refresh_token": self.memo["refresh_token"],
                "password": not_theirs,
            },
        )
        check(
            wrong.status_code in (400, 403),
            f"a wrong password undid the loss: HTTP {wrong.status_code}",
        )
        undone = expect(
            await self.http.post(
                path,
                headers={"DPoP": self.proof("POST", path)},
                json={
                    "refresh_token": self.memo["refresh_token"],
                    "password": self.actors["holder"]["password"],
                },
            ),
            200,
            "undo",
        )
        check(
            undone["card_status"] == "active", f"after the undo the card is {undone['card_status']}"
        )
        await self.refresh()
        code = expect(await self.as_holder("POST", "/holder/v1/codes"), 201, "code fetch")["code"]
        online = expect(
            await self.http.post(
                "/verifier/v1/verifications", json={"code": code}, auth=self.client_auth("verifier")
            ),
            200,
            "online verification",
        )
        check(online["valid"], f"a code after the undo was refused: {online.get('reason')}")
        lapses = time.strftime("%Y-%m-%d", time.localtime(reported["lapses_at"]))
        return (
            "the holder reported the card lost in the app (临时挂失, lapses by itself on "
            f"{lapses}); codes stopped "
            f"({stopped}); a wrong password did not undo it, the 电子社保卡密码 did, and the same "
            "session's next code verifies"
        )

    async def replacement(self) -> str:
        old_card = self.actors["holder"]["card_id"]
        expect(
            await self.http.post(
                f"/operator/v1/cards/{old_card}/replacement-request",
                headers=self.operator(),
                json={"reason": "lost"},
            ),
            200,
            "replacement request",
        )
        new_facts = {
            "card_number": "D" + secrets.token_hex(5).upper(),
            "chip_serial": secrets.token_hex(8).upper(),
            "identification_code": secrets.token_hex(12).upper(),
            "issue_date": time.strftime("%Y-%m-%d"),
            "expiry_date": f"{int(time.strftime('%Y')) + 10}-12-31",
        }
        done = expect(
            await self.http.post(
                f"/operator/v1/cards/{old_card}/replace",
                headers=self.operator(),
                json={"new_card": new_facts},
            ),
            201,
            "replacement",
        )
        check(done["ecards_moved"] == 1, f"{done['ecards_moved']} e-cards moved")
        await self.refresh()  # the app's session continues, now on the new card
        mine = expect(await self.as_holder("GET", "/holder/v1/ecard"), 200, "own e-card")
        check(
            mine["id"] == self.memo["ecard_id"] and mine["status"] == "active",
            f"after the replacement the e-card is {mine['id']} ({mine['status']})",
        )
        old = expect(
            await self.http.post(
                "/verifier/v1/verifications",
                json={"code": self.memo["old_code"]},
                auth=self.client_auth("verifier"),
            ),
            200,
            "old code",
        )
        check(not old["valid"], "a code of the replaced card was accepted online")
        root, trust = self.memo["offline_kit"]
        now = int(time.time())
        revocations = load_revocation_list(
            (await self.http.get("/offline/v1/revocations")).text, root, now
        )
        check(
            not verify(self.memo["old_code"], trust, revocations, now).ok,
            "the old card's code verifies offline",
        )
        terminal: ReferenceTerminal = self.memo["terminal"]
        await terminal.sync()
        chip_result = terminal.accept_card_offline(self.chip)
        check(
            chip_result is None or not chip_result.accepted,
            "a terminal accepted the replaced card's chip",
        )
        code = expect(await self.as_holder("POST", "/holder/v1/codes"), 201, "code fetch")["code"]
        online = expect(
            await self.http.post(
                "/verifier/v1/verifications", json={"code": code}, auth=self.client_auth("verifier")
            ),
            200,
            "new code",
        )
        check(online["valid"], f"a code of the new card was refused: {online.get('reason')}")
        headers, body = await self.inbox.wait_for("card.replaced")
        Webhook(self.memo["webhook_secret"]).verify(
            body, headers
        )  # raises if the signature is not the platform's
        told = json.loads(body)["data"]
        check(told["ecard_id"] == self.memo["ecard_id"], f"the webhook names {told}")
        timeline = expect(
            await self.as_holder("GET", "/holder/v1/timeline?limit=100"), 200, "timeline"
        )
        cards = {item.get("card") for item in timeline["items"] if item["kind"] == "verification"}
        check(len(cards - {None}) >= 2, f"the timeline's verifications name {cards}")
        return (
            f"补领 after the formal loss: e-card {mine['id']} kept its id on the new card; the "
            "old code is refused "
            f"online ({old['reason']}) and offline, the old chip by the terminal, a code of the "
            "new card verifies; "
            "the channel got a signed card.replaced (webhook-id "
            f"{headers.get('webhook-id', '?')[:16]}…); the "
            f"timeline shows verifications of both cards ({len(timeline['items'])} entries)"
        )

    async def directory_search(self) -> str:
        """The service zone (服务专区): where can the card be used for medical care in 杭州."""
        query = {"region": "330100", "scenario": "medical"}
        response = await self.http.get("/directory/v1/institutions", params=query)
        items = expect(response, 200, "directory search")["items"]
        check(items, "the service zone found no medical institution in 杭州 (330100)")
        again = await self.http.get(
            "/directory/v1/institutions",
            params=query,
            headers={"If-None-Match": response.headers.get("etag", "")},
        )
        check(again.status_code == 304, f"the same search with its ETag: {again.status_code}")
        first = items[0]["entry"]
        return (
            f"{len(items)} medical institution(s) in 330100 accept the card, e.g. "
            f"{first['name_zh']} ({', '.join(first['media'])}); the same search with its ETag "
            "is 304 Not Modified"
        )

    async def department_statistics(self) -> str:
        """A department's statistics query: noisy figures under its privacy budget, no cell below
        k, no per-person data (docs/statistics.md)."""
        today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
        report = expect(
            await self.http.get(
                "/department/v1/statistics/usage",
                params={
                    "since": (today - dt.timedelta(days=29)).isoformat(),
                    "until": today.isoformat(),
                    "group_by": "scenario",
                },
                auth=self.client_auth("department"),
            ),
            200,
            "department statistics",
        )
        cells = report["cells"]
        check(cells, "the department's statistics query released no cell")
        check(
            all(cell["events"] >= report["k"] for cell in cells),
            "a released cell is below k",
        )
        spent = sum(month["spent_epsilon"] for month in report["budget"])
        shown = ", ".join(f"{cell['scenario']} {cell['events']}" for cell in cells[:4])
        return (
            f"use by scenario over 30 days: {shown} (discrete Laplace noise at "
            f"ε {report['noise']['epsilon']}, charged ε {report['noise']['charged_epsilon']:g}; "
            f"budget spent {spent:g}; "
            f"{report['suppressed']} cell(s) below k={report['k']} withheld)"
        )

    STORY = (
        ("A holder's e-card is issued (签发)", issue_ecard),
        ("No 实人 evidence, no e-card; a copied token alone fetches nothing", front_door_refusals),
        ("The app fetches a dynamic code", fetch_code),
        ("A verifier scans it online (扫码亮证)", verify_online),
        ("… and offline, with the offline kit", verify_offline),
        ("A second scan is refused", second_scan_refused),
        ("A site logs the holder in by QR (扫码登录)", scan_to_login),
        ("The site asks for data; the holder grants part of it", consent_grant),
        ("The site reads exactly that", consent_read),
        ("The holder revokes; the read fails", consent_revoke),
        ("The ledger receipt's proof checks out; the log verifies", ledger_proof),
        ("A terminal accepts the card and the e-card offline, then uploads", terminal_day),
        ("The service zone finds where the card is accepted (服务专区)", directory_search),
        ("A department queries use statistics, k-suppressed and noisy", department_statistics),
        ("The holder reports the card lost in the app (临时挂失), then undoes it", temporary_loss),
        ("The card is reported lost; every path refuses it", report_lost),
        ("The card is replaced (补领); the e-card keeps its id", replacement),
    )

    async def run(self) -> bool:
        for number, (title, step) in enumerate(self.STORY, start=1):
            self.say(f"[{number:2d}] {title}")
            try:
                told = await step(self)
            except (StepFailed, httpx.HTTPError, KeyError, ValueError, jwt.PyJWTError) as failure:
                self.say(f"     ✗ FAILED: {type(failure).__name__}: {failure}")
                return False
            self.say(f"     ✓ {told}")
        self.say("all steps behaved as described")
        await self.inbox.close()
        return True


@contextmanager
def server(env: Mapping[str, str], port: int, workers: int, log: Path) -> Iterator[str]:
    """``ecard serve`` in a child process logging to ``log``; yields its base URL once ready."""
    command = [
        sys.executable,
        "-m",
        "ecard.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    with log.open("ab") as sink:
        # this interpreter running ecard with fixed arguments; no outside input
        child = subprocess.Popen(  # noqa: S603
            command, env={**os.environ, **env}, stdout=sink, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if child.poll() is not None:
                raise StepFailed(
                    f"the server exited; its log: {log.read_text(errors='replace')[-2000:]}"
                )
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise StepFailed("the server did not become ready within 60 s")
            time.sleep(0.2)
        yield base
    finally:
        child.terminate()
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()


@asynccontextmanager
async def prepared(
    settings: Settings,
) -> AsyncIterator[tuple[dict[str, Any], VirtualCard, CardKeyRole]]:
    """The demo actors, the demo card's chip and the issuer's PSAM keys, made before the server
    runs."""
    ensure_keys(settings)
    platform = await open_platform(settings, migrate=True)
    try:
        actors = await create_demo(platform, settings)
        chip = await TerminalService(platform, CodeService(platform)).virtual_card(
            actors["holder"]["card_id"]
        )
        # the reference terminal's offline PSAM: the platform's own card key role (software
        # master keys, or the HSM's with ECARD_KEY_PROVIDER=pkcs11)
        yield actors, chip, platform.keys.card_keys
    finally:
        await platform.close()


def run_demo(workdir: Path | None, workers: int = 1, out: Any = sys.stdout) -> bool:
    """The walk against a fresh server: embedded defaults in ``workdir`` unless ECARD_DATABASE_URL
    is set; the demo credentials go to ``workdir/demo.json`` (0600) so a newcomer can go on."""
    with tempfile.TemporaryDirectory(prefix="ecard-demo-") as scratch:
        root = workdir or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        env = {
            "ECARD_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "ECARD_LOG_LEVEL": os.environ.get("ECARD_LOG_LEVEL", "INFO"),
            # the demo channel's webhook receiver listens on loopback http
            "ECARD_WEBHOOK_ALLOW_HTTP": "true",
            "ECARD_WEBHOOK_POLL_SECONDS": "0.5",
        }
        if "ECARD_DATABASE_URL" not in os.environ:
            env |= {
                "ECARD_DATABASE_URL": f"sqlite:///{root}/ecard.db",
                "ECARD_KEYS_DIR": str(root / "keys"),
            }
        settings = load_settings({**os.environ, **env})

        async def prepare() -> tuple[dict[str, Any], VirtualCard, CardKeyRole]:
            async with prepared(settings) as made:
                return made

        actors, chip, psam_keys = asyncio.run(prepare())
        credentials = root / "demo.json"
        credentials.write_text(json.dumps(actors, ensure_ascii=False, indent=2), encoding="utf-8")
        credentials.chmod(0o600)
        log = root / "server.log"
        where = (
            f"embedded defaults in {root}"
            if "ECARD_KEYS_DIR" in env
            else "configured database and store"
        )
        print(
            f"demo server on http://127.0.0.1:{port} ({where}); its log: {log}",
            file=out,
            flush=True,
        )
        with server(env, port, workers, log) as base:

            async def walk() -> bool:
                async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                    key = ec.derive_private_key(
                        int.from_bytes(
                            b64url_decode(actors["terminal"]["private_jwk"]["d"]), "big"
                        ),
                        ec.SECP256R1(),
                    )
                    return await Walk(http, actors, settings, chip, key, psam_keys, out=out).run()

            return asyncio.run(walk())
