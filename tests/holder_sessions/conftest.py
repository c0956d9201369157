"""Fixtures of the holder-session tests: the service on both backends (from tests/api), phones
with a device key that make DPoP proofs (RFC 9449), and holders with sessions bound to them."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from ecard.crypto.dpop import access_token_hash, jwk_thumbprint
from tests.helpers import World, basic, platform_of


@dataclass
class Device:
    """A phone's key pair, made on the device (the private key never leaves it), and its proofs."""

    alg: str = "ES256"
    key: Any = field(init=False)
    jwk: dict[str, str] = field(init=False)
    jkt: str = field(init=False)

    def __post_init__(self) -> None:
        if self.alg == "ES256":
            self.key = ec.generate_private_key(ec.SECP256R1())
            self.jwk = json.loads(ECAlgorithm.to_jwk(self.key.public_key()))
        else:
            self.key = ed25519.Ed25519PrivateKey.generate()
            self.jwk = json.loads(OKPAlgorithm.to_jwk(self.key.public_key()))
        self.jkt = jwk_thumbprint(self.jwk)

    def proof(
        self,
        method: str,
        url: str,
        access_token: str | None = None,
        *,
        header: dict | None = None,
        **claims: Any,
    ) -> str:
        """A DPoP proof for ``method`` ``url`` (with ``ath`` for ``access_token``); ``claims`` and
        ``header`` replace or add members (``None`` drops one)."""
        body: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": url,
            "iat": int(time.time()),
        }
        if access_token is not None:
            body["ath"] = access_token_hash(access_token)
        body.update(claims)
        headers = {"typ": "dpop+jwt", "jwk": self.jwk, **(header or {})}
        return jwt.encode(
            {k: v for k, v in body.items() if v is not None},
            self.key,
            algorithm=self.alg,
            headers={k: v for k, v in headers.items() if v is not None},
        )


def url_of(http: httpx.AsyncClient, path: str) -> str:
    """The URL a proof names: the platform's configured public URL, not the test client's host."""
    return platform_of(http).settings.public_url.rstrip("/") + path


def dpop_headers(
    http: httpx.AsyncClient, device: Device, method: str, path: str, token: str, **claims: Any
) -> dict:
    return {
        "Authorization": f"DPoP {token}",
        "DPoP": device.proof(method, url_of(http, path), token, **claims),
    }


def issuance_body(w: World, holder: dict[str, str], channel: dict | None = None) -> dict:
    """What a channel backend sends to 签发: the holder's three facts and its 实人 evidence."""
    body: dict = {k: holder[k] for k in ("name", "identity_number", "card_number")}
    if hasattr(w, "evidence_for"):
        body["evidence"] = w.evidence_for(holder, channel or w.channel)
    return body


async def issue(
    w: World, holder: dict[str, str], device: Device | None = None, channel: dict | None = None
) -> dict:
    """签发 through a channel backend, relaying the device key's thumbprint when there
    is a device."""
    channel = channel or w.channel
    body = issuance_body(w, holder, channel)
    if device is not None:
        body["dpop_jkt"] = device.jkt
    response = await w.client.post(
        "/channel/v1/ecards",
        json=body,
        headers=basic(channel["client_id"], channel["client_secret"]),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def refresh(
    http: httpx.AsyncClient, refresh_token: str, device: Device | None = None, **claims: Any
) -> httpx.Response:
    headers = (
        {"DPoP": device.proof("POST", url_of(http, "/holder/v1/session/refresh"), **claims)}
        if device
        else {}
    )
    return await http.post(
        "/holder/v1/session/refresh", json={"refresh_token": refresh_token}, headers=headers
    )


async def set_card_status(w: World, card_id: str, status: str) -> None:
    changed = await w.client.post(
        f"/operator/v1/cards/{card_id}/status",
        json={"status": status, "reason": f"test: {status}"},
        headers=w.op(),
    )
    assert changed.status_code == 200, changed.text
