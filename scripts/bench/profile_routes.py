"""Where a request's time goes, route by route: one worker's application driven in-process.

    .venv/bin/python scripts/bench/profile_routes.py [--requests 200]        # cProfile
    .venv/bin/python scripts/bench/profile_routes.py --callgrind [--requests 40]

The whole application (``create_app``, SQLite, the in-process store, the production log level)
runs in this process and is called through its RSGI entry point (``EcardApp.__rsgi__``, as
granian calls it in ``ecard serve``) with an in-memory request and response, so no socket, server
or client is in the profile.  Each route is served in a bounded loop of ``--requests`` requests
after a warm-up loop; their inputs (fresh codes, login sessions, signed terminal requests) are
prepared before the loop starts.  Routes: code issuance, online verification,
``GET /holder/v1/ecard``, the six scan-to-login steps, an operator read, a terminal's online card
authentication.

Two views, both written to ``scripts/bench/profiles/`` as small text files:
- **cProfile** (default): the CPU per request without a profiler (``time.process_time`` over
  the loop), and how the profiled self time divides among framework, dependency injection, the
  edge, authentication, database, serialisation, logging, metrics, crypto and the rest (by the
  module of each function), with the top functions.  A deterministic profiler inflates many
  small Python calls against C calls: read the shares as an upper bound for Python-heavy layers.
- **callgrind** (``--callgrind``): the script runs itself under ``valgrind --tool=callgrind`` and
  counts instructions per request (repeatable on a busy machine, unlike time), split by shared
  object: the CPython interpreter (all Python code), OpenSSL/``cryptography``, SQLite, msgspec,
  libc, ….  ``os.getpgrp()`` marks the loop boundaries (``--dump-before=getpgrp``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import datetime as dt
import hashlib
import json
import os
import pstats
import re
import secrets
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

PROFILES = Path(__file__).parent / "profiles"
REGION = "330000"
REDIRECT_URI = "https://rp.example.test/callback"
LOGIN_CHUNK = 25


# --- an in-memory RSGI request and response (what granian hands EcardApp.__rsgi__) ------------
class Headers:
    """granian's RSGI headers: lower-case names, ``get``, ``get_all``, ``items``."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = [(name.lower(), value) for name, value in pairs]

    def get(self, name: str, default: str | None = None) -> str | None:
        return next((v for k, v in self._pairs if k == name), default)

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self._pairs if k == name]

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def keys(self) -> list[str]:
        return [k for k, _ in self._pairs]

    def __contains__(self, name: object) -> bool:
        return any(k == name for k, _ in self._pairs)


@dataclass
class Scope:
    method: str
    path: str
    query_string: str
    headers: Headers
    proto: str = "http"
    http_version: str = "1.1"
    server: str = "127.0.0.1:8000"
    client: str = "127.0.0.1:50000"
    scheme: str = "http"
    authority: str | None = None
    root_path: str = ""


class _Stream:
    def __init__(self, reply: Protocol) -> None:
        self._reply = reply

    async def send_bytes(self, data: bytes) -> None:
        self._reply.body += data

    async def send_str(self, data: str) -> None:
        self._reply.body += data.encode()


class Protocol:
    """granian's RSGI protocol for one request: the body in, the response out, kept here."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = b""

    async def __call__(self) -> bytes:
        return self._body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self._body:
            yield self._body

    async def client_disconnect(self) -> None:
        return None

    def response_empty(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status, self.headers = status, headers

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def response_str(self, status: int, headers: list[tuple[str, str]], body: str) -> None:
        self.response_bytes(status, headers, body.encode())

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> _Stream:
        self.status, self.headers = status, headers
        return _Stream(self)

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]


@dataclass
class Call:
    method: str
    path: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    query: str = ""


async def serve(app: Any, call: Call) -> Protocol:
    """One request through ``EcardApp.__rsgi__``; a 4xx/5xx answer is an error of the harness."""
    headers = [*call.headers, ("host", "platform.local")]
    if call.body:
        headers.append(("content-length", str(len(call.body))))
    protocol = Protocol(call.body)
    await app.__rsgi__(Scope(call.method, call.path, call.query, Headers(headers)), protocol)
    if protocol.status >= 400:
        raise RuntimeError(f"{call.method} {call.path}: {protocol.status} {protocol.body[:300]!r}")
    return protocol


def json_of(reply: Protocol) -> Any:
    return json.loads(reply.body)


# --- markers: what happens at the start and end of each measured loop -------------------------
class Marker:
    """No profiler: the CPU time of the loop, of the whole process and of this (the event loop's)
    thread; the difference is what other threads did: aiosqlite runs every SQLite call in its
    own thread, ``asyncio.to_thread`` the password hashing.  A label measured in several loops
    (the login steps, in chunks) adds up."""

    def __init__(self) -> None:
        self._cpu: dict[str, float] = defaultdict(float)
        self._thread: dict[str, float] = defaultdict(float)
        self._count: dict[str, int] = defaultdict(int)
        self._start = (0.0, 0.0)

    def begin(self, label: str) -> None:
        self._start = (time.process_time(), time.thread_time())

    def end(self, label: str, count: int) -> None:
        process, thread = time.process_time(), time.thread_time()
        self._cpu[label] += process - self._start[0]
        self._thread[label] += thread - self._start[1]
        self._count[label] += count

    @property
    def cpu_us(self) -> dict[str, float]:
        return {k: v / self._count[k] * 1e6 for k, v in self._cpu.items()}

    @property
    def loop_thread_us(self) -> dict[str, float]:
        return {k: v / self._count[k] * 1e6 for k, v in self._thread.items()}


class ProfileMarker(Marker):
    """cProfile on the event loop's thread, timed by that thread's CPU clock (waiting for the
    SQLite thread or the network costs nothing; the other threads' CPU is counted apart)."""

    def __init__(self) -> None:
        super().__init__()
        self.stats: dict[str, pstats.Stats] = {}
        self._profile: cProfile.Profile | None = None

    def begin(self, label: str) -> None:
        self._profile = cProfile.Profile(time.thread_time)
        self._profile.enable()

    def end(self, label: str, count: int) -> None:
        assert self._profile is not None
        self._profile.disable()
        if label in self.stats:
            self.stats[label].add(self._profile)
        else:
            self.stats[label] = pstats.Stats(self._profile)


class CallgrindMarker(Marker):
    """``os.getpgrp()`` makes callgrind dump (``--dump-before=getpgrp``): a dump before the loop
    (the preparation) and one at its end (the loop).  The dumps' order is written out."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[tuple[str, int]] = []

    def begin(self, label: str) -> None:
        os.getpgrp()
        self.order.append(("(preparation)", 0))

    def end(self, label: str, count: int) -> None:
        os.getpgrp()
        self.order.append((label, count))


# --- the routes -------------------------------------------------------------------------------
def bearer(token: str) -> tuple[str, str]:
    return ("authorization", f"Bearer {token}")


def basic(user: str, secret: str) -> tuple[str, str]:
    return ("authorization", "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode())


JSON = ("content-type", "application/json")


@dataclass
class World:
    app: Any
    keys_dir: str
    holder: str
    card_id: str
    verifier: tuple[str, str]
    rp: tuple[str, str]
    operator: str
    person_id: str
    scenario: Any


async def loop(app: Any, marker: Marker, label: str, calls: list[Call]) -> list[Protocol]:
    marker.begin(label)
    replies = [await serve(app, call) for call in calls]
    marker.end(label, len(calls))
    return replies


async def logins(world: World, marker: Marker, n: int) -> None:
    """``n`` scan-to-logins, each step measured over all of them before the next."""
    app, holder = world.app, [bearer(world.holder)]
    verifiers = [secrets.token_urlsafe(48) for _ in range(n)]
    authorize = [
        Call(
            "GET",
            "/oidc/authorize",
            query=urlencode(
                {
                    "response_type": "code",
                    "client_id": world.rp[0],
                    "redirect_uri": REDIRECT_URI,
                    "scope": "openid profile ecard",
                    "state": "s",
                    "nonce": "n",
                    "code_challenge": base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest())
                    .rstrip(b"=")
                    .decode(),
                    "code_challenge_method": "S256",
                }
            ),
        )
        for v in verifiers
    ]
    pages = await loop(app, marker, "login 1 authorize page", authorize)
    sessions = [p.body.decode().split('data-session="', 1)[1].split('"', 1)[0] for p in pages]
    cookies = ["; ".join(c.split(";", 1)[0] for c in p.header("set-cookie")) for p in pages]
    await loop(
        app,
        marker,
        "login 2 app describes",
        [Call("GET", f"/holder/v1/logins/{s}", holder) for s in sessions],
    )
    await loop(
        app,
        marker,
        "login 3 holder approves (password step-up)",
        [
            Call(
                "POST",
                f"/holder/v1/logins/{s}/approve",
                [*holder, JSON],
                json.dumps({"password": HOLDER_PASSWORD}).encode(),
            )
            for s in sessions
        ],
    )
    backs = await loop(
        app,
        marker,
        "login 4 page continues",
        [
            Call("POST", f"/oidc/login/{s}/confirm", [("cookie", c)])
            for s, c in zip(sessions, cookies, strict=True)
        ],
    )
    grants = [parse_qs(urlsplit(json_of(b)["location"]).query)["code"][0] for b in backs]
    tokens = await loop(
        app,
        marker,
        "login 5 token",
        [
            Call(
                "POST",
                "/oidc/token",
                [basic(*world.rp), ("content-type", "application/x-www-form-urlencoded")],
                urlencode(
                    {
                        "grant_type": "authorization_code",
                        "code": code,
                        "redirect_uri": REDIRECT_URI,
                        "code_verifier": v,
                    }
                ).encode(),
            )
            for code, v in zip(grants, verifiers, strict=True)
        ],
    )
    await loop(
        app,
        marker,
        "login 6 userinfo",
        [Call("GET", "/oidc/userinfo", [bearer(json_of(t)["access_token"])]) for t in tokens],
    )


async def run_routes(world: World, marker: Marker, n: int) -> None:
    """Every route, ``n`` requests each, inputs prepared outside the measured loops."""
    from bench_codes_http import sign_codes

    from ecard.terminal.reference import (
        CHALLENGE_BYTES,
        READ_EF05_RECORD_1,
        SELECT_SSSE,
        signed_authorization,
    )

    app = world.app
    holder = [bearer(world.holder)]
    await loop(app, marker, "code issuance", [Call("POST", "/holder/v1/codes", holder)] * n)
    codes = sign_codes(world.keys_dir, world.card_id, n)
    await loop(
        app,
        marker,
        "online verification",
        [
            Call(
                "POST",
                "/verifier/v1/verifications",
                [basic(*world.verifier), JSON],
                json.dumps({"code": code}).encode(),
            )
            for code in codes
        ],
    )
    await loop(app, marker, "GET /holder/v1/ecard", [Call("GET", "/holder/v1/ecard", holder)] * n)

    # scan-to-login, step by step, in chunks: a login session lives two minutes, and on a busy
    # machine under a profiler a long chunk would outlive it
    for first in range(0, n, LOGIN_CHUNK):
        await logins(world, marker, min(LOGIN_CHUNK, n - first))
    await loop(
        app,
        marker,
        "operator read GET /operator/v1/persons/{id}",
        [Call("GET", f"/operator/v1/persons/{world.person_id}", [bearer(world.operator)])] * n,
    )

    terminal, chip = world.scenario.terminal, world.scenario.chip
    path = "/terminal/v1/card-authentications"
    calls = []
    for _ in range(n):
        chip.transmit(SELECT_SSSE)
        record = chip.transmit(READ_EF05_RECORD_1)
        challenge = secrets.token_bytes(CHALLENGE_BYTES)
        answer = chip.transmit(
            bytes.fromhex("00880000") + bytes((len(challenge),)) + challenge + b"\x00"
        )
        body = json.dumps(
            {"card_record": record.hex(), "challenge": challenge.hex(), "answer": answer.hex()}
        ).encode()
        auth = signed_authorization(
            terminal._key, terminal.terminal_id, "POST", path, body, int(time.time())
        )
        calls.append(Call("POST", path, [("authorization", auth), JSON], body))
    await loop(app, marker, "terminal online card authentication", calls)


from tests.helpers import HOLDER_PASSWORD


@contextlib.asynccontextmanager
async def world_of(workdir: Path) -> AsyncIterator[World]:
    """The application with the production log level, seeded over its own HTTP API."""
    import httpx

    from ecard.app import create_app
    from ecard.crypto.keyring import Keyring
    from ecard.platform import open_platform
    from ecard.settings import load_settings
    from ecard.store.keyfiles import save_keyring
    from ecard.terminal.cli import set_up
    from tests.live import new_channel, new_holder

    keys = workdir / "keys"
    keys.mkdir(parents=True)
    save_keyring(keys, Keyring.create([REGION]))
    settings = load_settings(
        {
            "ECARD_KEYS_DIR": str(keys),
            "ECARD_DATABASE_URL": f"sqlite:///{workdir}/ecard.db",
        }
    )
    # one client address makes every request: the per-address limits are raised, as in the
    # benchmarks (the policy is read from the environment)
    os.environ["ECARD_OIDC_POLICY"] = json.dumps(
        {"login_sessions_per_ip_minute": 10**7, "token_requests_per_ip_minute": 10**7}
    )
    platform = await open_platform(settings, migrate=True)
    app = create_app(settings, platform=platform)
    try:
        async with (
            app.lifespan(),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                base_url=settings.public_url,
            ) as http,
        ):
            scenario = await set_up(platform, http, REGION)
            admin = scenario.operator_headers
            channel = await new_channel(http, admin)
            holder, card_id = await new_holder(http, admin, channel)
            verifier = (
                await http.post(
                    "/operator/v1/clients",
                    headers=admin,
                    json={
                        "kind": "verifier",
                        "name": "profile-pharmacy",
                        "entitlements": ["masked_name", "card_status"],
                    },
                )
            ).json()
            rp = (
                await http.post(
                    "/operator/v1/oidc/clients",
                    headers=admin,
                    json={
                        "name": "profile-rp",
                        "redirect_uris": [REDIRECT_URI],
                        "scopes": ["openid", "profile", "ecard"],
                        "client_type": "confidential",
                        "token_endpoint_auth_method": "client_secret_basic",
                    },
                )
            ).json()
            for status in ("approved", "live"):
                await http.post(
                    f"/operator/v1/oidc/clients/{rp['client_id']}/status",
                    headers=admin,
                    json={"status": status},
                )
            persons = (await http.get("/operator/v1/persons", headers=admin)).json()
            yield World(
                app=app,
                keys_dir=str(keys),
                holder=holder,
                card_id=card_id,
                verifier=(verifier["id"], verifier["client_secret"]),
                rp=(rp["client_id"], rp["client_secret"]),
                operator=admin["Authorization"].split(" ", 1)[1],
                person_id=persons["items"][0]["id"],
                scenario=scenario,
            )
    finally:
        await platform.close()


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """The access log (JSON lines on stdout, production level INFO) goes to /dev/null: written,
    as in production, but not into this script's output."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)


# --- categories -------------------------------------------------------------------------------
#: (category, substrings of a function's file, substrings of a built-in's name); first match wins
CATEGORIES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    (
        "dependency injection",
        ("litestar/_kwargs/", "litestar/di.py", "litestar/_signature/", "ecard/dependencies.py"),
        (),
    ),
    ("framework (Litestar)", ("litestar/",), ()),
    (
        "edge (RSGI bridge, hot routes, request id, headers)",
        ("ecard/rsgi.py", "ecard/edge.py", "ecard/http/", "ecard/proxy.py", "ecard/errors.py"),
        (),
    ),
    ("metrics", ("prometheus_client/",), ()),
    ("HTML templates", ("ecard/web/", "jinja2/", "markupsafe/"), ("markupsafe",)),
    ("logging", ("/logging/", "ecard/logs.py", "structlog/"), ()),
    (
        "authentication",
        (
            "ecard/auth.py",
            "ecard/partners/credentials.py",
            "ecard/registry/sessions.py",
            "ecard/registry/holder_password.py",
            "ecard/crypto/passwords.py",
            "argon2/",
        ),
        ("argon2", "_ffi"),
    ),
    (
        "crypto",
        ("cryptography/", "/hmac.py", "/jwt/", "ecard/crypto/", "ecard/offline/es256.py"),
        ("_hashlib", "_rust", "cryptography", "openssl", "sign", "verify", "derive"),
    ),
    ("ephemeral store", ("ecard/store/ephemeral.py", "redis/"), ()),
    (
        "database",
        ("piccolo/", "sqlite3/", "aiosqlite/", "asyncpg/", "ecard/store/"),
        ("sqlite3", "asyncpg"),
    ),
    ("serialisation", ("msgspec/", "/json/"), ("msgspec", "json")),
    ("event loop", ("/asyncio/", "/selectors.py", "/threading.py", "/concurrent/"), ("_asyncio",)),
    ("ecard domain logic", ("ecard/", "ledger/"), ()),
]
OTHER = "other (stdlib, builtins not called from a layer above)"


def category(filename: str, name: str) -> str:
    builtin = filename == "~"
    for label, files, builtins in CATEGORIES:
        if builtin:
            if any(b in name for b in builtins):
                return label
        elif any(f in filename for f in files):
            return label
    return OTHER


def short(filename: str) -> str:
    for anchor in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if anchor in filename:
            return filename.split(anchor, 1)[1]
    return filename


def breakdown(stats: pstats.Stats) -> tuple[dict[str, float], list[tuple[float, str]]]:
    """Share of the profiled self time per category, and the functions by self time.  A function
    of no category of its own (a built-in such as ``isinstance``, a stdlib helper) counts for its
    callers' categories, in proportion to the time each caller spent in it (up to 4 levels)."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    memo: dict[Any, dict[str, float]] = {}

    def own(func: Any) -> str:
        filename, _, name = func
        return category(filename, name)

    def shares_of(func: Any, depth: int) -> dict[str, float]:
        if func in memo:
            return memo[func]
        label = own(func)
        callers = raw.get(func, (0, 0, 0.0, 0.0, {}))[4]
        if label != OTHER or depth == 0 or not callers:
            return {label: 1.0}
        memo[func] = {OTHER: 1.0}  # a recursion's cycle stays "other"
        weights: dict[str, float] = defaultdict(float)
        total = sum(entry[2] for entry in callers.values()) or 1.0
        for caller, entry in callers.items():
            for cat, share in shares_of(caller, depth - 1).items():
                weights[cat] += share * entry[2] / total
        memo[func] = dict(weights)
        return memo[func]

    per: dict[str, float] = defaultdict(float)
    functions = []
    total = 0.0
    for func, (_, _, tottime, _, _) in raw.items():
        filename, line, name = func
        if filename.endswith("profile_routes.py"):
            continue  # the harness
        for cat, share in shares_of(func, 4).items():
            per[cat] += tottime * share
        total += tottime
        functions.append((tottime, f"{short(filename)}:{line}({name})"))
    functions.sort(reverse=True)
    return {k: v / total for k, v in per.items()} if total else {}, functions


def cumulative(stats: pstats.Stats) -> list[tuple[float, str]]:
    """ecard's own functions by cumulative time: which of its steps cost what, all included."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    found = [
        (entry[3], f"{short(filename)}:{line}({name})")
        for (filename, line, name), entry in raw.items()
        if "/ecard/" in filename and "/web/templates/" not in filename
    ]
    return sorted(found, reverse=True)


# --- callgrind --------------------------------------------------------------------------------
OBJECTS = [
    ("CPython interpreter (all Python code)", ("python3", "libpython")),
    ("crypto (OpenSSL, cryptography)", ("_rust.abi3", "libcrypto", "libssl", "_hashlib", "_cffi")),
    ("password KDF (argon2)", ("argon2", "_ffi")),
    ("SQLite", ("sqlite",)),
    ("msgspec", ("msgspec", "_core.cpython")),
    ("libc, allocator", ("libc.so", "libc-", "libm.so", "ld-linux")),
    ("asyncio C", ("_asyncio",)),
]


def object_category(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    for label, keys in OBJECTS:
        if any(k in base for k in keys):
            return label
    return "other shared objects"


def callgrind_costs(path: Path) -> tuple[int, dict[str, int]]:
    """Total instructions of a callgrind dump and its self cost per shared object."""
    names: dict[str, str] = {}
    per: dict[str, int] = defaultdict(int)
    current = ""
    skip_next = False
    total = 0
    compressed = re.compile(r"^\((\d+)\)(?: (.*))?$")
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("ob=", "cob=")):  # both define compressed object names
            value = line.split("=", 1)[1]
            match = compressed.match(value)
            if match and match.group(2):
                names[match.group(1)] = match.group(2)
            if line.startswith("ob="):
                current = names.get(match.group(1), "?") if match else value
        elif line.startswith("calls="):
            skip_next = True  # the next cost line is the call's inclusive cost
        elif line.startswith(("totals:", "summary:")):
            total = int(line.split()[1])
        elif line[:1].isdigit() or line[:1] in "+-*":
            if skip_next:
                skip_next = False
                continue
            parts = line.split()
            if len(parts) >= 2:
                per[object_category(current)] += int(parts[1])
    return total, dict(per)


# --- output -----------------------------------------------------------------------------------
def slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:60]


THREADS = "other threads (SQLite via aiosqlite, to_thread)"


def write_cprofile(
    n: int, timing: Marker, stats: dict[str, pstats.Stats], when: str, machine: str
) -> None:
    PROFILES.mkdir(exist_ok=True)
    rows = []
    categories = [label for label, *_ in CATEGORIES] + [OTHER, THREADS]
    for label, st in stats.items():
        shares, functions = breakdown(st)
        cpu, loop_cpu = timing.cpu_us[label], timing.loop_thread_us[label]
        micros = {cat: share * loop_cpu for cat, share in shares.items()}
        micros[THREADS] = max(0.0, cpu - loop_cpu)
        text = [
            f"route: {label}",
            (
                "method: cProfile (thread CPU clock), "
                f"scripts/bench/profile_routes.py --requests {n}, {when}"
            ),
            (
                f"CPU per request without a profiler: {cpu:,.0f} µs (in-process, RSGI entry "
                f"point), of which the event loop's thread {loop_cpu:,.0f} µs"
            ),
            "",
            (
                "CPU by category (the loop thread's share of profiled self time × its "
                "unprofiled CPU; other threads measured directly):"
            ),
        ]
        for cat in sorted(micros, key=lambda c: -micros[c]):
            text.append(f"  {cat:<52} {micros[cat] / cpu:6.1%}  {micros[cat]:8,.0f} µs")
        text += ["", "top 25 functions by self time (profiled thread-CPU seconds over the loop):"]
        text += [f"  {t:8.4f}  {name}" for t, name in functions[:25]]
        text += [
            "",
            "top 20 ecard functions by cumulative time (same clock; nested calls included):",
        ]
        text += [f"  {t:8.4f}  {name}" for t, name in cumulative(st)[:20]]
        (PROFILES / f"cprofile_{slug(label)}.txt").write_text("\n".join(text) + "\n")
        rows.append((label, cpu, micros))
    lines = [
        (
            f"Measured {when} with `python scripts/bench/profile_routes.py --requests {n}` "
            "(cProfile on the event loop's thread CPU clock; one process, SQLite, in-process "
            "store, log level INFO)."
        ),
        "",
        (
            f"Machine: {machine}. CPU time, unlike wall time, is little stretched by neighbours, "
            "but caches and clock speed are shared: on a busy machine read the shares, not the µs."
        ),
        "",
        "CPU per request without a profiler, and where it goes: % of that CPU (µs):",
        "",
        "| route | CPU µs | " + " | ".join(categories) + " |",
        "| --- | ---: |" + " ---: |" * len(categories),
    ]
    for label, cpu, micros in rows:
        cells = [
            f"{micros[c] / cpu:.0%} ({micros[c]:,.0f})" if micros.get(c, 0) >= 0.5 else "–"
            for c in categories
        ]
        lines.append(f"| {label} | {cpu:,.0f} | " + " | ".join(cells) + " |")
    (PROFILES / "cprofile_summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_callgrind(n: int, order: list[tuple[str, int]], dumps: list[Path], when: str) -> None:
    PROFILES.mkdir(exist_ok=True)
    sums: dict[str, list[Any]] = {}  # label -> [requests, instructions, per object]
    for (label, count), dump in zip(order, dumps, strict=False):
        if count:
            instructions, objects_cost = callgrind_costs(dump)
            entry = sums.setdefault(label, [0, 0, defaultdict(int)])
            entry[0] += count
            entry[1] += instructions
            for name, cost in objects_cost.items():
                entry[2][name] += cost
    measured = [
        (label, total / count, {k: v / count for k, v in per.items()})
        for label, (count, total, per) in sums.items()
    ]
    objects = [label for label, _ in OBJECTS] + ["other shared objects"]
    lines = [
        (
            f"Measured {when} with `python scripts/bench/profile_routes.py --callgrind --requests "
            f"{n}` (valgrind callgrind: instructions, not time; repeatable on a busy machine)."
        ),
        "",
        "Instructions per request (thousands) and their split by shared object:",
        "",
        "| route | k instr. | " + " | ".join(objects) + " |",
        "| --- | ---: |" + " ---: |" * len(objects),
    ]
    for label, per_request, per in measured:
        total = sum(per.values()) or 1.0
        cells = [f"{per.get(o, 0) / total:.0%}" if per.get(o) else "–" for o in objects]
        lines.append(f"| {label} | {per_request / 1000:,.0f} | " + " | ".join(cells) + " |")
    (PROFILES / "callgrind_summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


# --- main -------------------------------------------------------------------------------------
async def profile(args: argparse.Namespace) -> None:
    from measure import machine_state, warn_if_busy

    state = machine_state()
    if not args.child_callgrind:
        warn_if_busy(state)
    machine = state.describe()
    with (
        tempfile.TemporaryDirectory(prefix="ecard-profile-") as scratch,
        quiet_stdout(),
    ):
        async with world_of(Path(scratch)) as world:
            marker: Marker
            if args.child_callgrind:
                marker = CallgrindMarker()
                await run_routes(world, Marker(), args.warm)  # warm-up, not instrumented
                ready = Path(args.child_callgrind).with_name("ready")
                ready.touch()
                while not ready.with_name("go").exists():  # the parent switches callgrind on
                    await asyncio.sleep(0.2)
                await run_routes(world, marker, args.requests)
                Path(args.child_callgrind).write_text(json.dumps(marker.order))
                return
            timing, profiled = Marker(), ProfileMarker()
            await run_routes(world, Marker(), args.warm)
            await run_routes(world, timing, args.requests)
            await run_routes(world, profiled, args.requests)
    when = dt.datetime.now(dt.UTC).isoformat(timespec="minutes")
    write_cprofile(args.requests, timing, profiled.stats, when, machine)


def run_callgrind(args: argparse.Namespace) -> None:
    """Start this script under callgrind with instrumentation off (the start-up and the seeding
    run several times faster so); once the child has warmed up it says so in a file, the
    instrumentation is switched on (``callgrind_control -i on``) and the child goes on."""
    with tempfile.TemporaryDirectory(prefix="ecard-callgrind-") as scratch:
        out = Path(scratch) / "callgrind.out"
        order = Path(scratch) / "order.json"
        ready, go = Path(scratch) / "ready", Path(scratch) / "go"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            "--dump-before=getpgrp",
            "--instr-atstart=no",
            sys.executable,
            __file__,
            "--requests",
            str(args.requests),
            "--warm",
            str(args.warm),
            "--child-callgrind",
            str(order),
        ]
        started = time.time()
        child = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        while not ready.exists():
            if child.poll() is not None:
                raise RuntimeError(f"the profiled child exited with {child.returncode}")
            time.sleep(0.5)
        subprocess.run(
            ["callgrind_control", "-i", "on", str(child.pid)], check=True, capture_output=True
        )
        go.touch()
        if child.wait() != 0:
            raise RuntimeError(f"the profiled child exited with {child.returncode}")
        print(f"callgrind run: {time.time() - started:.0f} s", file=sys.stderr)
        dumps = sorted(
            Path(scratch).glob("callgrind.out.*"), key=lambda p: int(p.name.rsplit(".", 1)[1])
        )
        # dump k (1-based) holds what ran between the (k-1)th and the kth getpgrp(): the marker's
        # k-th entry (a preparation, or a measured loop)
        when = dt.datetime.now(dt.UTC).isoformat(timespec="minutes")
        write_callgrind(args.requests, json.loads(order.read_text()), dumps, when)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200, help="per route, measured loop")
    parser.add_argument("--warm", type=int, default=50, help="per route, warm-up loop")
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead")
    parser.add_argument("--child-callgrind", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callgrind:
        run_callgrind(args)
    else:
        asyncio.run(profile(args))


if __name__ == "__main__":
    main()
