"""A real ``ecard serve`` on a free loopback port, seeded over HTTP with an operator, a channel,
a holder with an e-card and a live relying party.  Used by the browser tests, the multi-worker
tests and the benchmarks."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

import httpx

from ecard.registry.evidence import sign_evidence
from tests.helpers import HOLDER_PASSWORD, channel_key_pair, identity_number

REDIRECT_URI = "https://rp.example.test/callback"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen
    workdir: tempfile.TemporaryDirectory

    @classmethod
    def start(
        cls, policy: str = "", workers: int = 1, env: dict[str, str] | None = None
    ) -> LiveServer:
        """``env`` overrides the defaults, e.g. ``ECARD_DATABASE_URL`` and ``ECARD_REDIS_URL``
        (several workers need Redis)."""
        workdir = tempfile.TemporaryDirectory(prefix="ecard-live-")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        environ = {
            **os.environ,
            "ECARD_DATABASE_URL": f"sqlite:///{workdir.name}/ecard.db",
            "ECARD_KEYS_DIR": f"{workdir.name}/keys",
            "ECARD_PUBLIC_URL": url,
            "ECARD_LOG_LEVEL": "WARNING",
            "ECARD_OIDC_POLICY": policy,
            **(env or {}),
        }
        ecard = [sys.executable, "-m", "ecard.cli"]
        subprocess.run(
            [*ecard, "keys", "init"], env=environ, cwd=workdir.name, check=True, capture_output=True
        )
        process = subprocess.Popen(
            [*ecard, "serve", "--port", str(port), "--workers", str(workers)],
            env=environ,
            cwd=workdir.name,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        server = cls(url, process, workdir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"ecard serve exited: {process.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    subprocess.run(
                        [
                            *ecard,
                            "operator",
                            "create",
                            "admin",
                            "--role",
                            "admin",
                            "--password-stdin",
                        ],
                        env=environ,
                        cwd=workdir.name,
                        input=b"correct horse battery\n",
                        check=True,
                        capture_output=True,
                    )
                    return server
            except httpx.TransportError:
                time.sleep(0.2)
        server.stop()
        raise RuntimeError("ecard serve did not become healthy in 30 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.workdir.cleanup()


@dataclass
class Seeded:
    client_id: str
    client_secret: str
    holder_token: str
    card_id: str
    admin: dict[str, str]
    redirect_uri: str

    def rp_auth(self) -> dict[str, str]:
        raw = f"{self.client_id}:{self.client_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def _ok(response: httpx.Response) -> dict:
    if response.status_code >= 300:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} "
            f"{response.text}"
        )
    return response.json()


async def new_holder(
    http: httpx.AsyncClient, admin: dict[str, str], channel: dict
) -> tuple[str, str]:
    """A person with an active card and an e-card on the channel: (holder access token, card id)."""
    number = identity_number()
    person = _ok(
        await http.post(
            "/operator/v1/persons",
            json={"name": "张小三", "gender": "1", "identity_number": number, "region": "330000"},
            headers=admin,
        )
    )
    card_number = "C" + uuid.uuid4().hex[:10].upper()
    card = _ok(
        await http.post(
            "/operator/v1/cards",
            headers=admin,
            json={
                "person_id": person["id"],
                "card_number": card_number,
                "region": "330000",
                "chip_serial": uuid.uuid4().hex[:16].upper(),
                "identification_code": uuid.uuid4().hex[:24].upper(),
                "issue_date": "2024-01-01",
                "expiry_date": "2034-01-01",
            },
        )
    )
    basic = base64.b64encode(f"{channel['id']}:{channel['client_secret']}".encode()).decode()
    evidence = sign_evidence(
        channel["private_key_pem"],
        channel_id=channel["id"],
        audience=str(http.base_url).rstrip("/"),
        identity_number=number,
        method="face_liveness",
        reference=f"ref-{uuid.uuid4().hex[:12]}",
    )
    issued = _ok(
        await http.post(
            "/channel/v1/ecards",
            headers={"Authorization": f"Basic {basic}"},
            json={
                "name": "张小三",
                "identity_number": number,
                "card_number": card_number,
                "evidence": evidence,
            },
        )
    )
    token = issued["session"]["access_token"]
    _ok(
        await http.post(
            "/holder/v1/password",
            json={"password": HOLDER_PASSWORD},
            headers={"Authorization": f"Bearer {token}"},
        )
    )
    return token, card["id"]


async def new_channel(
    http: httpx.AsyncClient, admin: dict[str, str], name: str | None = None
) -> dict:
    """A channel registered with a P-256 key for its 实人 evidence (``private_key_pem`` added)."""
    private_pem, jwk = channel_key_pair()
    channel = _ok(
        await http.post(
            "/operator/v1/clients",
            headers=admin,
            json={
                "kind": "channel",
                "name": name or f"app-{uuid.uuid4().hex[:6]}",
                "public_jwk": jwk,
            },
        )
    )
    return {**channel, "private_key_pem": private_pem}


async def seed(url: str, redirect_uri: str = REDIRECT_URI) -> Seeded:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        login = _ok(
            await http.post(
                "/operator/v1/login",
                json={"username": "admin", "password": "correct horse battery"},
            )
        )
        admin = {"Authorization": f"Bearer {login['access_token']}"}
        channel = await new_channel(http, admin)
        holder_token, card_id = await new_holder(http, admin, channel)
        rp = _ok(
            await http.post(
                "/operator/v1/oidc/clients",
                headers=admin,
                json={
                    "name": f"rp-{uuid.uuid4().hex[:6]}",
                    "redirect_uris": [redirect_uri],
                    "scopes": ["openid", "profile", "ecard"],
                    "client_type": "confidential",
                    "token_endpoint_auth_method": "client_secret_basic",
                },
            )
        )
        for status in ("approved", "live"):
            _ok(
                await http.post(
                    f"/operator/v1/oidc/clients/{rp['client_id']}/status",
                    headers=admin,
                    json={"status": status},
                )
            )
        return Seeded(
            rp["client_id"], rp["client_secret"], holder_token, card_id, admin, redirect_uri
        )
