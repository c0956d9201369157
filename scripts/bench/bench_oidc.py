"""Benchmark of the OpenID provider against node ``oidc-provider`` with an equivalent configuration.

Measures, with one worker each, in the same run:
- complete logins/s: authorize → the holder approves → back to the site with a code → token →
  userinfo
  (five requests in both: ecard's page, approve, confirm; the peer's /auth, approve, resume);
- token-endpoint redemptions/s: codes prepared beforehand, then only redeemed.

Run:  .venv/bin/python scripts/bench/bench_oidc.py [--logins 400] [--concurrency 16] [--rounds 3]
Needs node and npm; ``npm install`` in scripts/bench/oidc_peer/ (git-ignored node_modules) is done
on the first run.  The two servers are measured in alternating rounds on the same (shared) cores and
the median of each is reported, so a noisy neighbour does not decide the ratio.
Rate limits are raised for the run (one client address makes every request), as the peer has none.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx

from tests.live import HOLDER_PASSWORD, REDIRECT_URI, LiveServer, free_port, seed

PEER_DIR = Path(__file__).parent / "oidc_peer"
PEER_SECRET = "bench-secret-bench-secret-bench-secret"
BENCH_POLICY = json.dumps(
    {"login_sessions_per_ip_minute": 10**7, "token_requests_per_ip_minute": 10**7}
)
SCOPE = "openid profile ecard"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
        b"="
    ).decode()


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def no_cookie_jar() -> CookieJar:
    """The clients keep no cookies: each login is a new browser (no single sign-on shortcut)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def cookies_of(response: httpx.Response, jar: dict[str, str]) -> dict[str, str]:
    """Each login keeps its own cookies (one shared jar would send every login's cookies)."""
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0]
    return jar


def cookie_header(jar: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}


def code_of(location: str) -> str:
    params = parse_qs(urlsplit(location).query)
    if "code" not in params:
        raise RuntimeError(f"no code in {location}")
    return params["code"][0]


@dataclass
class Provider:
    """One side of the comparison: how to get a code, and where tokens and userinfo are."""

    name: str
    http: httpx.AsyncClient
    get_code: Callable[[], Awaitable[tuple[str, str]]]  # (code, verifier)
    token_path: str
    userinfo_path: str
    rp_auth: dict[str, str]

    async def redeem(self, code: str, verifier: str) -> dict:
        response = await self.http.post(
            self.token_path,
            headers=self.rp_auth,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            },
        )
        if response.status_code != 200:
            raise RuntimeError(f"{self.name} token: {response.status_code} {response.text[:300]}")
        return response.json()

    async def login(self) -> None:
        code, verifier = await self.get_code()
        tokens = await self.redeem(code, verifier)
        info = await self.http.get(
            self.userinfo_path, headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        if info.status_code != 200 or "sub" not in info.json():
            raise RuntimeError(f"{self.name} userinfo: {info.status_code} {info.text[:300]}")


def ecard_provider(
    http: httpx.AsyncClient, client_id: str, client_secret: str, holder_token: str
) -> Provider:
    holder = {"Authorization": f"Bearer {holder_token}"}

    async def get_code() -> tuple[str, str]:
        verifier, challenge = pkce()
        jar: dict[str, str] = {}
        page = await http.get(
            "/oidc/authorize",
            params={
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": REDIRECT_URI,
                "scope": SCOPE,
                "state": "s",
                "nonce": "n",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        cookies_of(page, jar)
        session_id = page.text.split('data-session="', 1)[1].split('"', 1)[0]
        approved = await http.post(
            f"/holder/v1/logins/{session_id}/approve",
            headers=holder,
            json={"password": HOLDER_PASSWORD},
        )  # step-up: the seeded holder's password
        if approved.status_code != 200:
            raise RuntimeError(f"ecard approve: {approved.status_code} {approved.text[:300]}")
        back = await http.post(f"/oidc/login/{session_id}/confirm", headers=cookie_header(jar))
        if back.status_code != 200:
            raise RuntimeError(f"ecard confirm: {back.status_code} {back.text[:300]}")
        return code_of(back.json()["location"]), verifier

    return Provider(
        "ecard", http, get_code, "/oidc/token", "/oidc/userinfo", basic(client_id, client_secret)
    )


def peer_provider(http: httpx.AsyncClient) -> Provider:
    async def get_code() -> tuple[str, str]:
        verifier, challenge = pkce()
        jar: dict[str, str] = {}
        auth = await http.get(
            "/auth",
            params={
                "response_type": "code",
                "client_id": "bench-rp",
                "redirect_uri": REDIRECT_URI,
                "scope": SCOPE,
                "state": "s",
                "nonce": "n",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        cookies_of(auth, jar)
        interaction = auth.headers.get("location", "")
        if not interaction.startswith("/interaction/"):
            raise RuntimeError(
                f"oidc-provider /auth: {auth.status_code} {interaction or auth.text[:300]}"
            )
        approved = await http.post(f"{interaction}/approve", headers=cookie_header(jar))
        cookies_of(approved, jar)
        resumed = await http.get(approved.headers["location"], headers=cookie_header(jar))
        return code_of(resumed.headers["location"]), verifier

    return Provider(
        "oidc-provider", http, get_code, "/token", "/me", basic("bench-rp", PEER_SECRET)
    )


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and all its descendants, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


@dataclass
class Sample:
    """One timed run of one operation against one server."""

    per_second: float
    cpu_ms: float  # server CPU per operation: what the rate would be on a quiet core


async def timed(
    operation: Callable[[], Awaitable[object]], count: int, concurrency: int, pid: int
) -> Sample:
    """Operations per second with ``concurrency`` in flight, and the server's CPU per operation."""
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            await operation()

    cpu, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return Sample(count / elapsed, (cpu_seconds(pid) - cpu) / count * 1000)


async def logins(provider: Provider, count: int, concurrency: int, pid: int) -> Sample:
    return await timed(provider.login, count, concurrency, pid)


async def redemptions(provider: Provider, count: int, concurrency: int, pid: int) -> Sample:
    pending = iter([await provider.get_code() for _ in range(count)])
    return await timed(lambda: provider.redeem(*next(pending)), count, concurrency, pid)


def start_peer() -> tuple[subprocess.Popen, str]:
    if not (PEER_DIR / "node_modules" / "oidc-provider").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=PEER_DIR, check=True)
    port = free_port()
    process = subprocess.Popen(
        ["node", "server.js"],
        cwd=PEER_DIR,
        env={
            **os.environ,
            "PORT": str(port),
            "CLIENT_SECRET": PEER_SECRET,
            "REDIRECT_URI": REDIRECT_URI,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"{url}/.well-known/openid-configuration", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the oidc-provider peer did not start")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    server = LiveServer.start(policy=BENCH_POLICY)
    peer, peer_url = start_peer()
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    samples: dict[tuple[str, str], list[Sample]] = {}
    try:
        seeded = await seed(server.url)
        async with (
            httpx.AsyncClient(
                base_url=server.url, limits=limits, timeout=60, cookies=no_cookie_jar()
            ) as ours_http,
            httpx.AsyncClient(
                base_url=peer_url, limits=limits, timeout=60, cookies=no_cookie_jar()
            ) as peer_http,
        ):
            sides = [
                (
                    ecard_provider(
                        ours_http, seeded.client_id, seeded.client_secret, seeded.holder_token
                    ),
                    server.process.pid,
                ),
                (peer_provider(peer_http), peer.pid),
            ]
            for provider, pid in sides:  # warm up
                await logins(provider, max(20, args.logins // 10), args.concurrency, pid)
            for number in range(1, args.rounds + 1):
                line = []
                for measure in (logins, redemptions):  # the two sides back to back, per operation
                    for provider, pid in sides:
                        sample = await measure(provider, args.logins, args.concurrency, pid)
                        samples.setdefault((measure.__name__, provider.name), []).append(sample)
                        line.append(f"{provider.name} {measure.__name__} {sample.per_second:.0f}/s")
                print(f"round {number}: " + ", ".join(line), flush=True)
    finally:
        peer.terminate()
        server.stop()

    def median(operation: str, side: str, field: str) -> float:
        return statistics.median(getattr(sample, field) for sample in samples[(operation, side)])

    print(
        f"\none worker each, {args.logins} operations per run, {args.concurrency} in flight, "
        f"median of {args.rounds} rounds; the load generator shares the machine"
    )
    print(
        f"{'':24}{'ecard':>10}{'oidc-provider':>15}{'ratio':>7}   server CPU ms/op: ecard, "
        "peer, ratio"
    )
    for operation, label in (
        ("logins", "complete logins/s"),
        ("redemptions", "token redemptions/s"),
    ):
        ours, theirs = (
            median(operation, "ecard", "per_second"),
            median(operation, "oidc-provider", "per_second"),
        )
        ours_cpu, theirs_cpu = (
            median(operation, "ecard", "cpu_ms"),
            median(operation, "oidc-provider", "cpu_ms"),
        )
        print(
            f"{label:24}{ours:>10.0f}{theirs:>15.0f}{ours / theirs:>7.2f}"
            f"   {ours_cpu:6.2f} {theirs_cpu:6.2f} {theirs_cpu / ours_cpu:6.2f}"
        )
    print("ratio > 1 means ecard is faster (for CPU: the peer spends more per operation)")
    print(
        "(ecard: granian + SQLite + in-process store; oidc-provider: node http + in-memory adapter)"
    )


if __name__ == "__main__":
    asyncio.run(main())
