"""Other provinces' deployments (peers): their issuer keys in our trust list, and online
verification of their codes routed to them by region code.

Each peer is pinned by configuration: the regions it issues for, its base URL, its root public key
and our verifier credentials at it.  Its signed trust list is fetched over HTTP, checked against
the pinned root key and kept only for the regions the peer is configured for, so a peer can
never speak for a region that is not its own.  Verifiers of this deployment then meet one
national trust list (ours, re-signed by our root, carrying every peer's keys), and a code of a
peer's card is answered by its issuer, which alone knows the card's status and consumes the code.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import httpx
import msgspec

from ecard.errors import AppError
from ecard.offline import OfflineError, TrustedKey, load_trust_list
from ecard.offline.es256 import public_key_from_jwk
from ecard.settings import Peer

log = logging.getLogger(__name__)

REFRESH_SECONDS = 60.0  # a peer's trust list is fetched again after this long
RETRY_SECONDS = 5.0  # after a failed fetch, try again no sooner than this
PEER_TIMEOUT = httpx.Timeout(5.0, connect=2.0)


class PeerVerification(msgspec.Struct):
    """The part of a peer's verification result we pass on (fields are filtered again here)."""

    valid: bool
    reason: str | None = None
    verified_at: int = 0
    issuer_region: str | None = None
    issuer_name: str | None = None
    expires_at: int | None = None
    fields: dict[str, str | None] = {}


@dataclass
class _PeerState:
    peer: Peer
    keys: list[TrustedKey] = field(default_factory=list)
    version: int = 0  # the peer's list version, held against rollback
    changed_at: int = 0  # when the keys we take from it last changed (wall clock)
    checked_at: float = 0.0  # monotonic time of the last attempt


@dataclass
class Federation:
    """One per worker; cheap when nothing is configured."""

    peers: list[Peer]
    _states: list[_PeerState] = field(init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _http: httpx.AsyncClient | None = None

    def __post_init__(self) -> None:
        self._states = [_PeerState(peer) for peer in self.peers]

    def peer_for(self, region: str) -> Peer | None:
        if not self.peers:  # a deployment without peers asks this on every verification
            return None
        return next((peer for peer in self.peers if region in peer.regions), None)

    @property
    def keys(self) -> list[TrustedKey]:
        """Every peer's issuer keys as last fetched and checked."""
        return [key for state in self._states for key in state.keys]

    @property
    def version(self) -> int:
        """When any peer's keys last changed here: our national list's version moves past it."""
        return max((state.changed_at for state in self._states), default=0)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=PEER_TIMEOUT)
        return self._http

    async def refresh(self, force: bool = False) -> None:
        """Fetch the trust lists that are due; a peer that cannot be reached keeps its last list."""
        now = time.monotonic()
        due = [
            s
            for s in self._states
            if force or now - s.checked_at >= (REFRESH_SECONDS if s.version else RETRY_SECONDS)
        ]
        if not due:
            return
        async with self._lock:
            for state in due:
                if not force and time.monotonic() - state.checked_at < RETRY_SECONDS:
                    continue  # another request refreshed it while we waited
                state.checked_at = time.monotonic()
                await self._fetch(state)

    async def _fetch(self, state: _PeerState) -> None:
        peer = state.peer
        try:
            response = await self._client().get(f"{peer.url.rstrip('/')}/offline/v1/trust-list")
            response.raise_for_status()
            store = load_trust_list(
                response.text,
                public_key_from_jwk(peer.root_key),
                int(time.time()),
                held_version=state.version,
            )
        except (httpx.HTTPError, OfflineError, ValueError) as error:
            log.warning(
                "peer trust list not refreshed",
                extra={"peer": peer.url, "error": type(error).__name__},
            )
            return
        keys = [key for key in store.content.keys if key.region in peer.regions]
        if keys != state.keys:
            state.keys, state.changed_at = keys, int(time.time())
        state.version = store.content.version

    async def verify_at_issuer(self, peer: Peer, code: str) -> PeerVerification:
        """Ask the issuing deployment; it checks the card's status and consumes the code."""
        try:
            response = await self._client().post(
                f"{peer.url.rstrip('/')}/verifier/v1/verifications",
                json={"code": code},
                auth=(peer.client_id, peer.client_secret),
            )
        except httpx.HTTPError:
            raise AppError("peer_unavailable", headers={"Retry-After": "5"}) from None
        if response.status_code != 200:
            log.warning(
                "peer refused a routed verification",
                extra={"peer": peer.url, "status": response.status_code},
            )
            raise AppError("peer_unavailable", headers={"Retry-After": "5"})
        try:
            return msgspec.json.decode(response.content, type=PeerVerification)
        except msgspec.DecodeError:
            raise AppError("peer_unavailable") from None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
