"""Pulling other provinces' directory feeds (服务同源、全国互联): each configured peer's feed is
fetched (a delta from the version held, or a snapshot the first time), its signature checked
against the peer's pinned root key, its rules checked (``ecard.directory.feed.check_feed``) and
only then stored.  A refused feed changes nothing, is logged, and is tried again next round.

The background task pulls every ``ECARD_DIRECTORY_PULL_SECONDS``; ``ecard directory pull`` does
one round from the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import httpx

from ecard.directory.feed import FeedRefused, open_feed
from ecard.directory.schemas import PeerStatus
from ecard.directory.service import DirectoryService
from ecard.offline import OfflineError
from ecard.offline.es256 import public_key_from_jwk
from ecard.platform import Platform
from ecard.settings import DirectoryPeer

log = logging.getLogger(__name__)

PEER_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
MAX_FEED_BYTES = 32 * 1024 * 1024


async def pull_peer(
    service: DirectoryService, peer: DirectoryPeer, http: httpx.AsyncClient
) -> PeerStatus:
    """Fetch, verify and apply one peer's feed; never raises for what the peer sent."""
    state = await service.peer_state(peer.url)
    held = int(state["version"]) if state else 0
    asked = held
    try:
        response = await http.get(peer.url, params={"since": held} if held else None)
        if response.status_code == 400 and held:
            asked = 0
            # the peer no longer has our version (restored, reset): take a snapshot, whose
            # version check_feed still holds against rollback
            response = await http.get(peer.url)
        response.raise_for_status()
        if len(response.content) > MAX_FEED_BYTES:
            raise FeedRefused("too_large", f"{len(response.content)} bytes")
        feed = open_feed(response.text, public_key_from_jwk(peer.root_key))
        applied = await service.apply_feed(peer.url, peer.provinces, feed, asked_since=asked)
    except (httpx.HTTPError, OfflineError, FeedRefused, ValueError) as error:
        reason = getattr(error, "reason", None)
        text = f"{type(error).__name__}: {getattr(reason, 'value', reason) or ''}"
        detail = getattr(error, "detail", "") or ""
        log.warning(
            "peer directory feed refused",
            extra={"peer": peer.url, "error": text, "detail": str(detail)[:200]},
        )
        await service.note_peer_failure(peer.url, f"{text} {detail}".strip())
        return PeerStatus(url=peer.url, ok=False, version=held, error=f"{text} {detail}".strip())
    return PeerStatus(url=peer.url, ok=True, version=feed.version, applied=applied)


async def pull_peers(platform: Platform, http: httpx.AsyncClient | None = None) -> list[PeerStatus]:
    """One round over every configured peer."""
    peers = platform.settings.directory_peers
    if not peers:
        return []
    service = DirectoryService(platform)
    own = http is None
    client = http or httpx.AsyncClient(timeout=PEER_TIMEOUT)
    try:
        return [await pull_peer(service, peer, client) for peer in peers]
    finally:
        if own:
            await client.aclose()


@contextlib.asynccontextmanager
async def background(platform: Platform) -> AsyncIterator[None]:
    """Pull the peers' feeds every ``directory_pull_seconds`` (nothing without peers)."""
    if not platform.settings.directory_peers:
        yield
        return

    async def loop() -> None:
        while True:
            try:
                await pull_peers(platform)
            except Exception:  # a database hiccup must not end the task
                log.exception("directory pull round failed")
            await asyncio.sleep(platform.settings.directory_pull_seconds)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
