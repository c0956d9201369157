"""Fixtures of the webhook tests: the service on both backends (from tests/api) with http
endpoints allowed and the background worker slowed down (tests drive passes themselves with
``now=``), a loopback HTTP receiver that answers as scripted, and a channel with an endpoint."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from ecard.settings import Settings, load_settings
from tests.helpers import World


@pytest.fixture(params=["embedded", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path, keys_dir: str) -> Settings:
    environ = {
        "ECARD_KEYS_DIR": keys_dir,
        "ECARD_LOG_JSON": "true",
        "ECARD_LOG_LEVEL": "WARNING",
        "ECARD_WEBHOOK_ALLOW_HTTP": "true",
        "ECARD_WEBHOOK_POLL_SECONDS": "3600",
    }
    if request.param == "embedded":
        environ["ECARD_DATABASE_URL"] = f"sqlite:///{tmp_path}/ecard.db"
    else:
        environ["ECARD_DATABASE_URL"] = request.getfixturevalue("migrated_postgres_url")
        environ["ECARD_REDIS_URL"] = request.getfixturevalue("redis_url")
        environ["ECARD_REDIS_PREFIX"] = f"t{uuid.uuid4().hex[:10]}:"
    return load_settings(environ)


def free_port() -> int:
    """A loopback port nothing listens on (yet): connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """A partner's webhook endpoint on loopback: answers each request with the next of
    ``statuses`` (the last one repeats), after ``delay`` seconds; records every request."""

    port: int = field(default_factory=free_port)
    statuses: list[int] = field(default_factory=lambda: [200])
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight_per_id: int = 0
    _server: asyncio.AbstractServer | None = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/ecard"

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()  # request line
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Received(headers, body)
            self.received.append(request)
            self.arrived.set()
            key = headers.get("webhook-id", "")
            self.in_flight[key] = self.in_flight.get(key, 0) + 1
            self.most_in_flight_per_id = max(self.most_in_flight_per_id, self.in_flight[key])
            if self.delay:
                await asyncio.sleep(self.delay)
            self.in_flight[key] -= 1
            status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
            writer.write(
                (
                    f"HTTP/1.1 {status} Scripted\r\ncontent-length: 2\r\nconnection: "
                    "close\r\n\r\nok"
                ).encode()
            )
            await writer.drain()
        finally:
            writer.close()

    def ids(self) -> list[str]:
        return [r.id for r in self.received]


@pytest.fixture()
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver that is not listening yet (``await receiver.start()``): until then, refused."""
    r = Receiver()
    yield r
    await r.stop()


async def put_endpoint(
    http: httpx.AsyncClient, operators: World, client_id: str, url: str, **body: object
) -> httpx.Response:
    """``PUT`` the client's endpoint as the world's admin."""
    return await http.put(
        f"/operator/v1/clients/{client_id}/webhook",
        json={"url": url, **body},
        headers=operators.op(),
    )


@dataclass
class Partner:
    client_id: str
    secret: str


@pytest.fixture()
async def partner(client: httpx.AsyncClient, world: World, receiver: Receiver) -> Partner:
    """The world's channel, with an endpoint at ``receiver`` for every event type."""
    response = await put_endpoint(client, world, world.channel["client_id"], receiver.url)
    assert response.status_code == 201, response.text
    return Partner(world.channel["client_id"], response.json()["secret"])
