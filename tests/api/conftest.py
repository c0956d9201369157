"""The service under test, on both storage backends: embedded (SQLite file + in-process store)
and production-like (PostgreSQL + Redis)."""

from __future__ import annotations

import asyncio
import datetime as dt
import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
from litestar import Litestar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.app import create_app
from ecard.crypto.jwk import public_jwk
from ecard.registry.evidence import sign_evidence
from ecard.crypto.identity import check_digit
from ecard.crypto.keyring import Keyring
from ecard.platform import Platform, open_platform
from ecard.registry.service import AccessService
from ecard.settings import Settings, load_settings
from ecard.store.keyfiles import save_keyring


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("keys")
    save_keyring(directory, Keyring.create(["330000", "110000"]))
    return str(directory)


@pytest.fixture(params=["embedded", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path, keys_dir: str) -> Settings:
    environ = {"ECARD_KEYS_DIR": keys_dir, "ECARD_LOG_JSON": "true", "ECARD_LOG_LEVEL": "WARNING"}
    if request.param == "embedded":
        environ["ECARD_DATABASE_URL"] = f"sqlite:///{tmp_path}/ecard.db"
    else:
        environ["ECARD_DATABASE_URL"] = request.getfixturevalue("migrated_postgres_url")
        environ["ECARD_REDIS_URL"] = request.getfixturevalue("redis_url")
        environ["ECARD_REDIS_PREFIX"] = f"t{uuid.uuid4().hex[:10]}:"
    return load_settings(environ)


@asynccontextmanager
async def lifespan_of(app: Litestar) -> AsyncIterator[None]:
    """Hold the app's lifespan open in one task of the current loop (anyio cancel scopes inside it
    must be left by the task that entered them; fixture teardown may run in another task)."""
    started, stop = asyncio.Event(), asyncio.Event()

    async def hold() -> None:
        async with app.lifespan():
            started.set()
            await stop.wait()

    task = asyncio.create_task(hold())
    waiter = asyncio.create_task(started.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # start-up failed: raise its error
    try:
        yield
    finally:
        stop.set()
        await task


@pytest.fixture()
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app, its lifespan and its requests all in the test's event loop (Litestar's test client
    would run the lifespan in another thread's loop, which asyncpg pools do not allow), so tests
    may also call services directly on ``platform_of(client)``."""
    platform = await open_platform(settings, migrate=True)
    try:
        app = create_app(settings, platform=platform)
        async with lifespan_of(app):
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver.local"
            ) as test_client:
                test_client.app = app  # type: ignore[attr-defined]
                yield test_client
    finally:
        await platform.close()


def platform_of(client: httpx.AsyncClient) -> Platform:
    return client.app.state.platform


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def identity_number(
    region: str = "330000", birth: str | None = None, serial: int | None = None
) -> str:
    """A valid, random identity number: birth day and serial both vary, so the dozens of people a
    test creates do not collide (a serial alone would, about once in ten tests)."""
    entropy = uuid.uuid4().int
    serial = entropy % 1000 if serial is None else serial
    if birth is None:
        birth = (dt.date(1950, 1, 1) + dt.timedelta(days=(entropy >> 10) % 20_000)).strftime(
            "%Y%m%d"
        )
    first17 = f"{region[:2]}0102{birth}{serial:03d}"
    return first17 + check_digit(first17)


#: The 电子社保卡密码 World.issue sets for each holder (not trivial for any birth date).
HOLDER_PASSWORD = "482915"


def channel_key_pair() -> tuple[str, dict[str, str]]:
    """A channel's P-256 key: the private key (PEM) and the public JWK the platform registers."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode(), public_jwk(key.public_key())


@dataclass
class World:
    """Actors for a test: operators of each role, a channel, a department; helpers to add holders."""

    client: httpx.AsyncClient
    tokens: dict[str, str]
    channel: dict[str, str]
    department: dict[str, str]

    def op(self, role: str = "admin") -> dict[str, str]:
        return bearer(self.tokens[role])

    async def person_with_card(
        self, name: str = "张小三", region: str = "330000"
    ) -> dict[str, str]:
        number = identity_number(region)
        person = await self.client.post(
            "/operator/v1/persons",
            json={"name": name, "gender": "1", "identity_number": number, "region": region},
            headers=self.op(),
        )
        assert person.status_code == 201, person.text
        card_number = "C" + uuid.uuid4().hex[:10].upper()
        card = await self.client.post(
            "/operator/v1/cards",
            json={
                "person_id": person.json()["id"],
                "card_number": card_number,
                "region": region,
                "chip_serial": uuid.uuid4().hex[:16].upper(),
                "identification_code": uuid.uuid4().hex[:24].upper(),
                "issue_date": "2024-01-01",
                "expiry_date": "2034-01-01",
            },
            headers=self.op(),
        )
        assert card.status_code == 201, card.text
        return {
            "name": name,
            "identity_number": number,
            "card_number": card_number,
            "person_id": person.json()["id"],
            "card_id": card.json()["id"],
        }

    def evidence_for(
        self,
        holder: dict[str, str],
        channel: dict[str, str] | None = None,
        method: str = "face_liveness",
        **overrides,
    ) -> str:
        """The channel's 实人 evidence for ``holder``, signed with the channel's key, as a channel
        makes it after its check (``overrides``: sign_evidence's keywords, e.g. ``checked_at``)."""
        channel = channel or self.channel
        arguments = {
            "channel_id": channel["client_id"],
            "audience": platform_of(self.client).settings.public_url,
            "identity_number": holder["identity_number"],
            "method": method,
            "reference": f"ref-{uuid.uuid4().hex[:12]}",
            **overrides,
        }
        return sign_evidence(channel["private_key_pem"], **arguments)

    async def issue(
        self,
        holder: dict[str, str],
        channel: dict[str, str] | None = None,
        password: str | None = HOLDER_PASSWORD,
    ) -> dict:
        """Issue an e-card to ``holder`` through ``channel`` (with 实人 evidence) and, unless
        ``password`` is None, make sure the person's 电子社保卡密码 is ``password``."""
        channel = channel or self.channel
        response = await self.client.post(
            "/channel/v1/ecards",
            json={
                **{k: holder[k] for k in ("name", "identity_number", "card_number")},
                "evidence": self.evidence_for(holder, channel),
            },
            headers=basic(channel["client_id"], channel["client_secret"]),
        )
        assert response.status_code == 201, response.text
        issued = response.json()
        if password is not None:
            await self.set_password(issued["session"]["access_token"], password)
        return issued

    async def set_password(self, access_token: str, password: str = HOLDER_PASSWORD) -> None:
        """Set the person's 电子社保卡密码 through a holder session (already set: left as it is)."""
        response = await self.client.post(
            "/holder/v1/password", json={"password": password}, headers=bearer(access_token)
        )
        assert response.status_code in (201, 409), response.text

    async def new_client(self, kind: str, name: str | None = None, **extra) -> dict[str, str]:
        """Register a client; a channel gets a P-256 key for its 实人 evidence unless ``public_jwk``
        is given (its private key, PEM, is ``private_key_pem`` of the answer)."""
        private_pem = None
        if kind == "channel" and "public_jwk" not in extra:
            private_pem, extra["public_jwk"] = channel_key_pair()
        response = await self.client.post(
            "/operator/v1/clients",
            json={"kind": kind, "name": name or f"{kind}-{uuid.uuid4().hex[:8]}", **extra},
            headers=self.op(),
        )
        assert response.status_code == 201, response.text
        body = response.json()
        made = {"client_id": body["id"], "client_secret": body["client_secret"]}
        if private_pem is not None:
            made["private_key_pem"] = private_pem
        return made


@pytest.fixture()
async def world(client: httpx.AsyncClient) -> World:
    access = AccessService(platform_of(client))
    tokens = {}
    for role in ("admin", "registry_admin", "auditor", "readonly"):
        username = f"{role}-{uuid.uuid4().hex[:6]}"
        await access.create_operator(username, "correct horse battery", role)
        response = await client.post(
            "/operator/v1/login", json={"username": username, "password": "correct horse battery"}
        )
        assert response.status_code == 200, response.text
        tokens[role] = response.json()["access_token"]
    w = World(client=client, tokens=tokens, channel={}, department={})
    w.channel = await w.new_client("channel")
    w.department = await w.new_client("department")
    return w
