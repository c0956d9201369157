"""Scan-to-login: ecard's OpenID provider against node ``oidc-provider`` configured alike.

Measures, with one worker each, both in their steady state, in alternating rounds of one run:
- complete logins: authorize → the app describes the request → the holder approves → back to the
  site with a code → token (a refresh token issued, rotated on use) → userinfo
  (ecard: page, describe, approve, confirm, token, userinfo; the peer: /auth, describe,
  approve, resume, token, userinfo).  The approval steps up with the holder's password on both
  sides: argon2id with ecard's parameters, about 30 ms of CPU and most of a login; the argon2id
  check alone is timed too and a derived ratio without it printed, to compare the rest;
- token-endpoint redemptions: codes prepared beforehand, then only redeemed.

The headline is **server CPU per operation** (utime + stime of the server's process tree from
/proc, see measure.py), with throughput beside it.  Before the rounds each side is warmed up in
batches until its CPU per login is stable within a tolerance (V8 needs thousands of logins to
compile oidc-provider's hot paths; the warm-up curve is printed).  Target of issue 21: ecard at
least 1.0× the peer in CPU per login (goal 1.5×).

Run:  .venv/bin/python scripts/bench/bench_oidc.py [--logins 400] [--rounds 5] [--json out.json]
Needs node and npm; ``npm install`` in scripts/bench/oidc_peer/ (git-ignored node_modules) is done
on the first run.  Rate limits are raised for the run (one client address makes every request),
as the peer has none.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import secrets
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
sys.path.insert(0, str(Path(__file__).parent))

import httpx
from load_mixed import scratch_database
from measure import (
    CpuMeter,
    MachineState,
    Result,
    Sample,
    Series,
    Spread,
    Target,
    WarmUp,
    machine_state,
    warn_if_busy,
    write_result,
)

from tests.live import (
    HOLDER_PASSWORD,
    REDIRECT_URI,
    LiveServer,
    free_port,
    new_channel,
    new_holder,
    seed,
)

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
    get_code: Callable[[int], Awaitable[tuple[str, str]]]  # slot -> (code, verifier)
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

    async def login(self, slot: int) -> None:
        """One complete login; ``slot``: which of the concurrent clients (its own holder)."""
        code, verifier = await self.get_code(slot)
        tokens = await self.redeem(code, verifier)
        if not tokens.get("refresh_token") or not tokens.get("id_token"):
            raise RuntimeError(f"{self.name} issued no refresh token or ID token: {sorted(tokens)}")
        info = await self.http.get(
            self.userinfo_path, headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        if info.status_code != 200 or "sub" not in info.json():
            raise RuntimeError(f"{self.name} userinfo: {info.status_code} {info.text[:300]}")


def ecard_provider(
    http: httpx.AsyncClient, client_id: str, client_secret: str, holder_tokens: list[str]
) -> Provider:
    """Each concurrent client logs in as its own holder: one person approving sixteen logins at
    once is not a real load (and the step-up password's attempt counter serialises them)."""
    holders = [{"Authorization": f"Bearer {token}"} for token in holder_tokens]

    async def get_code(slot: int) -> tuple[str, str]:
        holder = holders[slot % len(holders)]
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
        described = await http.get(f"/holder/v1/logins/{session_id}", headers=holder)
        if described.status_code != 200:
            raise RuntimeError(f"ecard describe: {described.status_code} {described.text[:300]}")
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
    async def get_code(slot: int) -> tuple[str, str]:
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
        described = await http.get(interaction, headers=cookie_header(jar))
        if described.status_code != 200:
            raise RuntimeError(f"oidc-provider describe: {described.status_code}")
        approved = await http.post(
            f"{interaction}/approve",
            headers=cookie_header(jar),
            json={"password": HOLDER_PASSWORD},  # the same step-up as ecard's approval
        )
        if approved.status_code != 303 and "location" not in approved.headers:
            raise RuntimeError(f"oidc-provider approve: {approved.status_code} {approved.text}")
        cookies_of(approved, jar)
        resumed = await http.get(approved.headers["location"], headers=cookie_header(jar))
        return code_of(resumed.headers["location"]), verifier

    return Provider(
        "oidc-provider", http, get_code, "/token", "/me", basic("bench-rp", PEER_SECRET)
    )


async def timed(
    operation: Callable[[int], Awaitable[object]], count: int, concurrency: int, pid: int
) -> Sample:
    """``count`` operations with ``concurrency`` in flight (``operation(slot)``, slot the client's
    number): wall time and the server's CPU."""
    remaining = iter(range(count))

    async def worker(slot: int) -> None:
        for _ in remaining:
            await operation(slot)

    with CpuMeter(pid) as meter:
        await asyncio.gather(*(worker(slot) for slot in range(concurrency)))
    return meter.sample(count)


async def logins(provider: Provider, count: int, concurrency: int, pid: int) -> Sample:
    return await timed(provider.login, count, concurrency, pid)


async def redemptions(provider: Provider, count: int, concurrency: int, pid: int) -> Sample:
    pending = iter([await provider.get_code(0) for _ in range(count)])
    return await timed(lambda _slot: provider.redeem(*next(pending)), count, concurrency, pid)


def start_peer() -> tuple[subprocess.Popen, str]:
    if not all((PEER_DIR / "node_modules" / dep).exists() for dep in ("oidc-provider", "argon2")):
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
            "HOLDER_PASSWORD": HOLDER_PASSWORD,
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


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--logins", type=int, default=400, help="operations per measured round")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm-batch", type=int, default=500, help="logins per warm-up batch")
    parser.add_argument(
        "--warm-tolerance", type=float, default=0.10, help="stable: last 3 batches within ±this"
    )
    parser.add_argument("--warm-max", type=int, default=20, help="at most this many batches")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--redis-url", help="Redis URL (default: the in-process store)")
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="the server's ECARD_LOG_LEVEL (default INFO, as in production: one access line per "
        "request, written to /dev/null)",
    )
    parser.add_argument("--json", type=Path, help="write the result here (performance_report.py)")
    return parser.parse_args()


def step_up_cost(repeats: int = 10) -> Spread:
    """CPU µs of one holder-password check alone (argon2id with ecard's parameters): both sides
    pay it once per login; without it the rest of the protocol is compared."""
    from ecard.crypto.passwords import hash_password, verify_password

    digest = hash_password(HOLDER_PASSWORD)
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        if not verify_password(HOLDER_PASSWORD, digest):
            raise RuntimeError("the password does not verify")
        times.append((time.thread_time() - start) * 1e6)
    return Spread.of(times)


def main() -> None:
    args = arguments()
    state = machine_state()
    warn_if_busy(state)
    kdf = step_up_cost()
    if args.database_url:  # a database of its own, dropped at the end
        with scratch_database(args.database_url, "oidc") as database_url:
            asyncio.run(run(args, state, kdf, database_url))
    else:
        asyncio.run(run(args, state, kdf, None))


async def run(
    args: argparse.Namespace, state: MachineState, kdf: Spread, database_url: str | None
) -> None:
    env = {
        k: v
        for k, v in (("ECARD_DATABASE_URL", database_url), ("ECARD_REDIS_URL", args.redis_url))
        if v
    }
    env["ECARD_LOG_LEVEL"] = args.log_level
    server = LiveServer.start(policy=BENCH_POLICY, env=env)
    peer, peer_url = start_peer()
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    storage = ("PostgreSQL" if args.database_url else "SQLite") + (
        " + Redis" if args.redis_url else " + in-process store"
    )
    result = Result(
        "bench_oidc",
        state,
        f"one worker each (ecard: granian, {storage}; oidc-provider 9: node http, in-memory "
        f"adapter), {args.logins} operations per round, {args.concurrency} in flight, "
        f"{args.rounds} alternating rounds after warm-up; httpx clients in this process; ecard's "
        f"log level {args.log_level}",
    )
    try:
        seeded = await seed(server.url)
        holder_tokens = [seeded.holder_token]
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            channel = await new_channel(http, seeded.admin)
            while len(holder_tokens) < args.concurrency:
                holder_tokens.append((await new_holder(http, seeded.admin, channel))[0])
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
                        ours_http, seeded.client_id, seeded.client_secret, holder_tokens
                    ),
                    server.process.pid,
                ),
                (peer_provider(peer_http), peer.pid),
            ]
            for provider, pid in sides:  # steady state first, as in production
                warm = WarmUp(
                    provider.name,
                    args.warm_batch,
                    tolerance=args.warm_tolerance,
                    max_batches=args.warm_max,
                )
                while not warm.add(await logins(provider, args.warm_batch, args.concurrency, pid)):
                    pass
                result.warm_ups.append(warm)
            for measure, operation in (
                (logins, "complete scan-to-login"),
                (redemptions, "token redemption (code + PKCE)"),
            ):
                series = {p.name: Series(operation, p.name) for p, _ in sides}
                for number in range(1, args.rounds + 1):
                    parts = []
                    for provider, pid in sides:  # alternating: ecard, peer, ecard, peer …
                        sample = await measure(provider, args.logins, args.concurrency, pid)
                        series[provider.name].samples.append(sample)
                        parts.append(
                            f"{provider.name} {sample.cpu_us:,.0f} µs CPU/op "
                            f"{sample.per_second:,.0f}/s"
                        )
                    print(f"  {operation} round {number}: " + "; ".join(parts), flush=True)
                result.series += list(series.values())
    finally:
        peer.terminate()
        server.stop()

    def cpu(operation: str, side: str) -> float:
        return next(
            s.cpu_us.median for s in result.series if s.operation == operation and s.side == side
        )

    ours, theirs = (
        cpu("complete scan-to-login", "ecard"),
        cpu("complete scan-to-login", "oidc-provider"),
    )
    result.baselines["argon2id verify (the step-up, both sides)"] = kdf
    result.targets.append(
        Target(
            "scan-to-login without the step-up's argon2id on either side (derived: each side's "
            "CPU per login minus one argon2id verification measured alone), oidc-provider ÷ ecard",
            theirs - kdf.median,
            ours - kdf.median,
            1.0,
            at_most=False,
            meaning="×",
        )
    )
    for limit in (1.0, 1.5):
        result.targets.append(
            Target(
                f"scan-to-login, server CPU per login, oidc-provider ÷ ecard"
                f"{' (goal beyond the target)' if limit > 1 else ''}",
                theirs,
                ours,
                limit,
                at_most=False,
                meaning="× (above 1: ecard spends less CPU than the peer)",
            )
        )
    write_result(result, args.json)


if __name__ == "__main__":
    main()
