"""Mixed load against a real multi-worker ``ecard serve`` on PostgreSQL + Redis (+ an anvil chain
node when one is installed), on loopback only, bounded in time and in request count.

    .venv/bin/python scripts/bench/load_mixed.py            # ~3 min: 30 s warm-up + 150 s measured
    .venv/bin/python scripts/bench/load_mixed.py --quick    # ~20 s: 5 s warm-up + 15 s measured
    .venv/bin/python scripts/bench/load_mixed.py --workers 3 --clients 2 --concurrency 24 \
        --out /tmp/load.json --markdown /tmp/load.md

What it does:

1. creates a scratch PostgreSQL database (dropped at the end) on ``--database-url``'s server, a
   Redis key prefix of its own, a key directory, and (unless ``--no-chain``) an anvil node from
   ``.tools/chain`` (scripts/install_chain_tools.sh) with a state file;
2. creates the actors in process, through the services (as ``ecard demo init`` does): an operator,
   a channel, a verifier, a relying party (consent API client and OIDC client), one terminal per
   client process, and one holder (person, card, e-card, holder session, seeded insurance data)
   per virtual user;
3. starts ``ecard serve --workers N`` and drives the workload from ``--clients`` separate processes
   of ``--concurrency`` virtual users each (httpx, async).  Each virtual user loops over flows,
   picked by weight:

   - ``show``: fetch a code, then present it to the verifier from two requests at once (counts
     double acceptances); now and then a code accepted earlier is presented again (must be refused)
     and a few codes are held back and presented 15-45 s later;
   - ``login``: OIDC scan-to-login (authorize page, holder scan, approve, confirm, token, userinfo);
   - ``consent``: RP request, holder approval, RP data read;
   - ``terminal``: a signed offline-record upload (20 records) from the process's terminal;
   - ``operator``: an operator reads a person and a card.

4. reports per operation: throughput, p50/p99 latency, errors by status and code, the server's
   RSS (sum over the granian worker processes) at start, after warm-up and at the end, and writes a
   JSON result file and a markdown table.

Only the rate limit of OIDC login sessions per client address is raised (``ECARD_OIDC_POLICY``):
every virtual user comes from 127.0.0.1, where the production limit (30 a minute) would refuse
nearly every login.  Everything else runs with production settings.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse, urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.ledger.chain import AnvilNode, anvil_binary, free_port

PY = sys.executable
SESSION_ID = re.compile(r'data-session="([^"]+)"')
LOAD_OIDC_POLICY = json.dumps(
    {"login_sessions_per_ip_minute": 1_000_000, "token_requests_per_ip_minute": 1_000_000}
)
#: every load holder's 电子社保卡密码 (approving a login or a consent steps up with it)
LOAD_HOLDER_PASSWORD = "482915"

WEIGHTS = {"show": 50, "login": 10, "consent": 12, "terminal": 6, "operator": 22}
TERMINAL_BATCH = 20


# --- infrastructure ----------------------------------------------------------------------------


def _admin_dsn(database_url: str) -> dict[str, Any]:
    parsed = urlparse(database_url)
    return {
        "host": parsed.hostname or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username or "postgres",
        "password": parsed.password or None,
        "database": parsed.path.lstrip("/") or "postgres",
    }


def _with_database(database_url: str, name: str) -> str:
    parsed = urlparse(database_url)
    return parsed._replace(path=f"/{name}").geturl()


async def _pg(database_url: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(**_admin_dsn(database_url))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def scratch_database(database_url: str, tag: str) -> Iterator[str]:
    name = f"ecard_{tag}_{os.getpid()}_{secrets.token_hex(3)}"
    asyncio.run(_pg(database_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(database_url, name)
    finally:
        for _ in range(30):
            try:
                asyncio.run(_pg(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                break
            except Exception:  # noqa: BLE001 - the server may be restarting (faults): try again
                time.sleep(1)


def process_tree_rss(pid: int) -> dict[str, float]:
    """RSS in MiB of the server's main process and the sum over its children (granian workers)."""

    def rss(p: int) -> float:
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except OSError:
            return 0.0
        match = re.search(r"VmRSS:\s+(\d+) kB", text)
        return int(match.group(1)) / 1024 if match else 0.0

    children = [
        int(p)
        for p in subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
        ).stdout.split()
    ]
    per_worker = [rss(c) for c in children]
    return {
        "main": round(rss(pid), 1),
        "workers": round(sum(per_worker), 1),
        "worker_count": len(children),
        "per_worker": [round(x, 1) for x in per_worker],
    }


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by the children of ``pid`` (the granian workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for child in subprocess.run(
        ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
    ).stdout.split():
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def pids_cpu(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def backing_cpu(env: Any) -> dict[str, float]:
    """CPU seconds so far of PostgreSQL (all its processes: other work on the server counts too),
    Redis and the chain node."""

    def pgrep(*args: str) -> list[int]:
        return [
            int(p)
            for p in subprocess.run(
                ["pgrep", *args], capture_output=True, text=True, check=False
            ).stdout.split()
        ]

    return {
        "postgresql": pids_cpu(pgrep("-u", "postgres")),
        "redis": pids_cpu(pgrep("-x", "redis-server")),
        "chain": pids_cpu([env.chain.process.pid]) if env.chain and env.chain.process else 0.0,
    }


# --- actors (in process, through the services) --------------------------------------------------


def _identity_number(region: str, index: int) -> str:
    from ecard.crypto.identity import check_digit

    birth = (dt.date(1960, 1, 1) + dt.timedelta(days=index // 900)).strftime("%Y%m%d")
    first17 = region[:2] + "0102" + birth + f"{100 + index % 900:03d}"
    return first17 + check_digit(first17)


async def _make_actors(settings: Any, holders: int, terminals: int) -> dict[str, Any]:
    import jwt

    from ecard.auth import ClientPrincipal, OperatorPrincipal
    from ecard.cli import ensure_keys
    from ecard.consent.service import seed_demo_data
    from ecard.demo import _terminal, create_demo
    from ecard.platform import open_platform
    from ecard.registry import schemas
    from ecard.registry.evidence import sign_evidence
    from ecard.registry.holder_password import provision_password
    from ecard.registry.service import RegistryService
    from ecard.registry.tables import Operator

    ensure_keys(settings)
    platform = await open_platform(settings, migrate=True)
    try:
        actors = await create_demo(platform, settings)
        region = settings.region_code
        operator_row = (
            await Operator.select(Operator.id).where(Operator.username == "demo-admin").first()
        )
        operator = OperatorPrincipal(operator_row["id"], "demo-admin", "admin")
        channel = actors["channel"]
        channel_principal = ClientPrincipal(
            channel["client_id"], "channel", channel["name"], ("*",), ()
        )
        channel_key = jwt.PyJWK(channel["private_jwk"]).key
        registry = RegistryService(platform)
        today = dt.date.today()
        made = []
        for index in range(holders):
            number = _identity_number(region, index)
            name = (
                "测试"
                + "甲乙丙丁戊己庚辛壬癸"[index % 10]
                + "子丑寅卯辰巳午未申酉戌亥"[(index // 10) % 12]
            )
            person = await registry.create_person(
                schemas.PersonCreate(name=name, gender="1", identity_number=number, region=region),
                operator,
            )
            card_number = f"L{region[:2]}{index:07d}"
            card = await registry.create_card(
                schemas.CardCreate(
                    person_id=person.id,
                    card_number=card_number,
                    region=region,
                    chip_serial=f"{index:016X}",
                    identification_code=f"{region}L{index:011d}".replace("L", "C"),
                    issue_date=today,
                    expiry_date=today.replace(year=today.year + 10),
                ),
                operator,
            )
            await seed_demo_data(platform, person.id)
            evidence = sign_evidence(  # the channel's 实人 check, signed with its registered key
                channel_key,
                channel_id=channel["client_id"],
                audience=settings.public_url,
                identity_number=number,
                method="face_liveness",
                reference=f"load-{index}",
            )
            issued = await registry.issue_ecard(
                schemas.ECardIssue(
                    name=name, identity_number=number, card_number=card_number, evidence=evidence
                ),
                channel_principal,
            )
            await provision_password(platform, person.id, LOAD_HOLDER_PASSWORD, operator.actor)
            made.append(
                {
                    "person_id": person.id,
                    "card_id": card.id,
                    "identity_number": number,
                    "access_token": issued.session.access_token,
                    "password": LOAD_HOLDER_PASSWORD,
                }
            )
        actors["holders"] = made
        actors["terminals"] = [
            await _terminal(platform, f"负载终端 {i} (load terminal {i})", region, operator.actor)
            for i in range(terminals)
        ]
        return actors
    finally:
        await platform.close()


# --- the environment ------------------------------------------------------------------------------


@dataclass
class Environment:
    """Scratch database, Redis prefix, keys, chain node and the server, for one run."""

    workdir: Path
    env: dict[str, str]
    chain: AnvilNode | None
    actors: dict[str, Any] = field(default_factory=dict)
    server: subprocess.Popen | None = None
    base_url: str = ""
    log_path: Path | None = None

    def start_server(self, workers: int) -> None:
        port = int(self.env["ECARD_PORT"])
        self.log_path = self.workdir / "server.log"
        sink = self.log_path.open("ab")
        self.server = subprocess.Popen(
            [
                PY,
                "-m",
                "ecard.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env={**os.environ, **self.env},
            cwd=self.workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        sink.close()
        self.base_url = f"http://127.0.0.1:{port}"
        import httpx

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(
                    f"ecard serve exited: {self.log_path.read_text(errors='replace')[-3000:]}"
                )
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200:
                    # wait until every worker answers (granian starts them one by one)
                    time.sleep(1.0)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError("the server did not become ready in 90 s")

    def stop_server(self) -> None:
        if self.server is not None:
            workers = [
                int(p)
                for p in subprocess.run(
                    ["pgrep", "-P", str(self.server.pid)],
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout.split()
            ]
            self.server.terminate()
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
            self.server = None
            deadline = time.time() + 20
            for pid in workers:  # a worker stuck in shutdown must not outlive the run
                while time.time() < deadline and Path(f"/proc/{pid}").exists():
                    time.sleep(0.2)
                if Path(f"/proc/{pid}").exists():
                    print(f"server worker {pid} did not stop in time; killed", file=sys.stderr)
                    try:
                        os.kill(pid, 9)
                    except OSError:
                        pass
        if self.log_path and self.log_path.exists():  # kept after the work directory goes
            kept = Path(tempfile.gettempdir()) / f"{self.workdir.name}-server.log"
            shutil.copy(self.log_path, kept)
            print(f"server log: {kept}", file=sys.stderr)

    def rss(self) -> dict[str, float]:
        assert self.server is not None
        return process_tree_rss(self.server.pid)

    def server_errors(self) -> list[str]:
        """Lines of the server log at ERROR level (unhandled errors), at most 20."""
        if not self.log_path or not self.log_path.exists():
            return []
        lines = [
            line
            for line in self.log_path.read_text(errors="replace").splitlines()
            if '"ERROR"' in line or "Traceback" in line
        ]
        return lines[:20]


@contextmanager
def environment(
    args: argparse.Namespace, *, holders: int, terminals: int, tag: str = "load"
) -> Iterator[Environment]:
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix=f"ecard-{tag}-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        database_url = stack.enter_context(scratch_database(args.database_url, tag))
        chain = None
        if not args.no_chain:
            binary = anvil_binary()
            if binary:
                chain = AnvilNode(binary, workdir / "anvil-state.json")
                chain.start()
                stack.callback(chain.stop)
            else:
                print(
                    "no anvil found (scripts/install_chain_tools.sh): running without a chain node",
                    file=sys.stderr,
                )
        port = free_port()
        prefix = f"ecard-{tag}-{secrets.token_hex(4)}:"
        env = {
            "ECARD_DATABASE_URL": database_url,
            "ECARD_REDIS_URL": args.redis_url,
            "ECARD_REDIS_PREFIX": prefix,
            "ECARD_KEYS_DIR": str(workdir / "keys"),
            "ECARD_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "ECARD_PORT": str(port),
            "ECARD_LOG_LEVEL": "WARNING",
            "ECARD_HOLDER_ACCESS_TTL": "86400",
            "ECARD_OIDC_POLICY": LOAD_OIDC_POLICY,
            **({"ECARD_LEDGER_RPC_URL": chain.url} if chain else {}),
        }
        stack.callback(_clear_redis_prefix, args.redis_url, prefix)
        from ecard.settings import load_settings

        settings = load_settings({**os.environ, **env})
        os.environ["ECARD_OIDC_POLICY"] = LOAD_OIDC_POLICY
        actors = asyncio.run(_make_actors(settings, holders, terminals))
        # the demo's OIDC redirect target and the consent/API client
        environment = Environment(workdir=workdir, env=env, chain=chain, actors=actors)
        stack.callback(environment.stop_server)
        yield environment


def _clear_redis_prefix(redis_url: str, prefix: str) -> None:
    try:
        import redis

        client = redis.Redis.from_url(redis_url, socket_timeout=2)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()
    except Exception:  # noqa: BLE001, S110 - best-effort cleanup of a finished run's keys
        pass


# --- the virtual users (in client processes) ------------------------------------------------------


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


class Recorder:
    """Every request: (end time, operation, latency ms, status, outcome code)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, str, float, int, str]] = []
        self.wrong: list[str] = []
        self.facts: dict[str, Any] = {
            "grants": [],
            "reads": [],
            "terminal_records": [],
            "double_acceptances": 0,
            "code_pairs": 0,
            "represented": [],
            "held": [],
            "no_retry_after": 0,
        }

    def add(self, op: str, started: float, status: int, outcome: str) -> None:
        now = time.time()
        self.samples.append((now, op, (now - started) * 1000, status, outcome))


def _outcome(response: Any) -> str:
    """The error code of a problem response, or ``ok``; ``503 without Retry-After`` is marked."""
    if response.status_code < 400:
        return "ok"
    code = "?"
    with contextlib.suppress(ValueError, AttributeError):  # not a JSON object: no code
        code = response.json().get("code") or response.json().get("error") or "?"
    if response.status_code == 503 and "retry-after" not in response.headers:
        code += "!no-retry-after"
    return code


class VirtualUser:
    def __init__(self, http: Any, actors: dict, holder: dict, rec: Recorder, shared: dict) -> None:
        self.http, self.actors, self.holder, self.rec, self.shared = (
            http,
            actors,
            holder,
            rec,
            shared,
        )
        self.holder_auth = {"Authorization": f"Bearer {holder['access_token']}"}
        self.verifier_auth = {
            "Authorization": _basic(
                actors["verifier"]["client_id"], actors["verifier"]["client_secret"]
            )
        }
        rp = actors["relying_party"]
        self.rp_auth = {"Authorization": _basic(rp["client_id"], rp["client_secret"])}
        self.oidc = rp  # one filing logs holders in and reads granted data
        self.oidc_auth = self.rp_auth

    async def call(self, op: str, method: str, url: str, **kwargs: Any) -> Any:
        started = time.time()
        try:
            response = await self.http.request(method, url, **kwargs)
        # transport failure or client timeout: no answer at all, counted as such
        except Exception as exc:  # noqa: BLE001
            self.rec.add(op, started, 0, type(exc).__name__)
            await asyncio.sleep(self.shared.get("backoff", 0.5))
            return None
        outcome = _outcome(response)
        if response.status_code >= 500 and response.status_code != 503:
            self.rec.wrong.append(f"{op}: HTTP {response.status_code} {response.text[:200]}")
        if outcome.endswith("!no-retry-after"):
            self.rec.facts["no_retry_after"] += 1
        self.rec.add(op, started, response.status_code, outcome)
        if response.status_code == 503:
            await asyncio.sleep(self.shared.get("backoff", 0.5))
        return response

    # --- flows ----------------------------------------------------------------------------------

    async def verify(self, code: str, op: str = "code.verify") -> tuple[int, str]:
        """(status, valid|reason|error code) of one presentation."""
        response = await self.call(
            op,
            "POST",
            "/verifier/v1/verifications",
            json={"code": code},
            headers=self.verifier_auth,
        )
        if response is None:
            return 0, "no_answer"
        if response.status_code != 200:
            return response.status_code, _outcome(response)
        body = response.json()
        outcome = "valid" if body.get("valid") else str(body.get("reason"))
        last = self.rec.samples[-1]  # this request's (nothing ran in between: no await since)
        self.rec.samples[-1] = (*last[:4], outcome)
        return 200, outcome

    async def show(self) -> None:
        response = await self.call(
            "code.fetch", "POST", "/holder/v1/codes", headers=self.holder_auth
        )
        if response is None or response.status_code != 201:
            return
        code = response.json()["code"]
        fetched = time.time()
        shared = self.shared
        if random.random() < 0.05:
            shared["held"].append((fetched, code))
            return
        first, second = await asyncio.gather(self.verify(code), self.verify(code))
        self._pair(code, fetched, first, second)
        # a held code whose time has come, and now and then a code accepted earlier, again
        now = time.time()
        if shared["held"] and now - shared["held"][0][0] > shared["hold_for"]:
            held_at, held_code = shared["held"].popleft()
            outcome = await self.verify(held_code, "code.verify.held")
            self.rec.facts["held"].append((held_at, time.time(), outcome[1]))
            if outcome[1] == "valid":
                shared["accepted"].append((time.time(), held_code))
        if shared["accepted"] and random.random() < 0.1:
            accepted_at, old = random.choice(shared["accepted"])
            if now - accepted_at < 55:
                outcome = await self.verify(old, "code.verify.again")
                self.rec.facts["represented"].append((accepted_at, time.time(), outcome[1]))
                if outcome[1] == "valid":
                    self.rec.facts["double_acceptances"] += 1
                    self.rec.wrong.append(
                        f"code accepted again {time.time() - accepted_at:.0f} s after its "
                        "first acceptance"
                    )

    def _pair(
        self, code: str, fetched: float, first: tuple[int, str], second: tuple[int, str]
    ) -> None:
        self.rec.facts["code_pairs"] += 1
        valid = [o for o in (first, second) if o[1] == "valid"]
        if len(valid) > 1:
            self.rec.facts["double_acceptances"] += 1
            self.rec.wrong.append("one code accepted by both of two simultaneous verifiers")
        if valid:
            self.shared["accepted"].append((time.time(), code))
        for status, outcome in (first, second):
            # a fresh code presented twice: one 'valid', the other 'already_used'; a store that
            # restarted refuses it as already_used (fail closed); anything else is a wrong answer
            if status == 200 and outcome not in ("valid", "already_used"):
                self.rec.wrong.append(f"fresh code refused with {outcome}")
        if [o[1] for o in (first, second)].count(
            "already_used"
        ) == 2 and time.time() - self.shared.get("started", 0) > 0:
            self.rec.facts.setdefault("both_refused", []).append(time.time())

    async def login(self) -> None:
        verifier = secrets.token_urlsafe(48)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        state = secrets.token_urlsafe(12)
        page = await self.call(
            "login.authorize",
            "GET",
            "/oidc/authorize",
            params={
                "response_type": "code",
                "client_id": self.oidc["client_id"],
                "redirect_uri": self.oidc["redirect_uri"],
                "scope": "openid profile ecard",
                "state": state,
                "nonce": secrets.token_urlsafe(12),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        if page is None or page.status_code != 200:
            return
        # Each login is its own browser: its flow cookie goes with this flow's requests only.  (One
        # shared cookie jar would send every earlier flow's cookie on each request: a 100 kB Cookie
        # header after a few thousand logins, which no browser sends and which inflates the server.)
        browser = {name: value for name, value in page.cookies.items()}
        for name in browser:
            self.http.cookies.delete(name)
        browser_headers = (
            {"Cookie": "; ".join(f"{k}={v}" for k, v in browser.items())} if browser else {}
        )
        found = SESSION_ID.search(page.text)
        if not found:
            self.rec.wrong.append("login page without a session")
            return
        session = found.group(1)
        scan = await self.call(
            "login.scan", "GET", f"/holder/v1/logins/{session}", headers=self.holder_auth
        )
        if scan is None or scan.status_code != 200:
            return
        approve = await self.call(
            "login.approve",
            "POST",
            f"/holder/v1/logins/{session}/approve",
            headers=self.holder_auth,
            json={"password": self.holder["password"]},
        )
        if approve is None or approve.status_code != 200:
            return
        back = await self.call(
            "login.confirm", "POST", f"/oidc/login/{session}/confirm", headers=browser_headers
        )
        if back is not None:
            for name in back.cookies:
                self.http.cookies.delete(name)
        if back is None or back.status_code != 200:
            return
        query = {k: v[0] for k, v in parse_qs(urlsplit(back.json()["location"]).query).items()}
        if query.get("state") != state or "code" not in query:
            self.rec.wrong.append(f"login callback carries {sorted(query)}")
            return
        tokens = await self.call(
            "login.token",
            "POST",
            "/oidc/token",
            headers=self.oidc_auth,
            data={
                "grant_type": "authorization_code",
                "code": query["code"],
                "redirect_uri": self.oidc["redirect_uri"],
                "code_verifier": verifier,
            },
        )
        if tokens is None or tokens.status_code != 200:
            return
        info = await self.call(
            "login.userinfo",
            "GET",
            "/oidc/userinfo",
            headers={"Authorization": f"Bearer {tokens.json()['access_token']}"},
        )
        if info is not None and info.status_code == 200 and "sub" not in info.json():
            self.rec.wrong.append("userinfo without sub")

    async def consent(self) -> None:
        asked = await self.call(
            "consent.request",
            "POST",
            "/consent/v1/requests",
            headers=self.rp_auth,
            json={
                "holder": {"identity_number": self.holder["identity_number"]},
                "scopes": ["card.status", "insurance.enrollment"],
                "purpose_code": "loan_application",
                "purpose": "个人消费贷款审核 (loan review)",
                "duration_seconds": 86_400,
            },
        )
        if asked is None or asked.status_code != 201:
            return
        grant_id = asked.json()["id"]
        approved = await self.call(
            "consent.approve",
            "POST",
            f"/holder/v1/consent/requests/{grant_id}/approve",
            headers=self.holder_auth,
            json={"scopes": ["card.status"], "password": self.holder["password"]},
        )
        if approved is None or approved.status_code != 200:
            return
        self.rec.facts["grants"].append(grant_id)
        data = await self.call(
            "consent.read", "GET", f"/consent/v1/grants/{grant_id}/data", headers=self.rp_auth
        )
        if data is not None and data.status_code == 200:
            self.rec.facts["reads"].append(grant_id)
            if set(data.json().get("data", {})) != {"card.status"}:
                self.rec.wrong.append(
                    f"consent read returned {sorted(data.json().get('data', {}))}"
                )

    async def terminal(self) -> None:
        term = self.shared["terminal"]
        from ecard.terminal import records as rec
        from ecard.terminal.reference import signed_authorization

        if not term["pending"]:
            for _ in range(TERMINAL_BATCH):
                term["counter"] += 1
                record = rec.AcceptanceRecord(
                    terminal_id=term["id"],
                    counter=term["counter"],
                    reference=base64.urlsafe_b64encode(os.urandom(12)).decode().rstrip("="),
                    accepted_at=int(time.time()),
                    kind=rec.AcceptanceKind.CARD,
                    result=rec.AcceptanceResult.ACCEPTED,
                )
                term["pending"].append(rec.sign_record(record, term["key"]))
        if term["busy"]:  # the terminal's upload is in flight; a terminal sends one at a time
            await asyncio.sleep(0.05)
            return
        term["busy"] = True
        try:
            import msgspec

            batch = list(term["pending"])
            body = msgspec.json.encode({"records": batch, "codes": {}})
            auth = signed_authorization(
                term["key"], term["id"], "POST", "/terminal/v1/records", body, int(time.time())
            )
            response = await self.call(
                "terminal.upload",
                "POST",
                "/terminal/v1/records",
                content=body,
                headers={"Authorization": auth, "Content-Type": "application/json"},
            )
            if response is not None and response.status_code == 200:
                report = response.json()
                bad = {
                    k: report[k]
                    for k in ("conflicts", "rollbacks", "wrong_key", "gaps")
                    if report.get(k)
                }
                if bad:
                    self.rec.wrong.append(f"terminal upload anomalies {bad}")
                self.rec.facts["terminal_records"].extend(
                    f"{term['id']}:{s.record.counter}" for s in batch
                )
                term["pending"] = [s for s in term["pending"] if s not in batch]
        finally:
            term["busy"] = False

    async def operator(self) -> None:
        headers = {"Authorization": f"Bearer {self.shared['operator_token']}"}
        await self.call(
            "operator.person",
            "GET",
            f"/operator/v1/persons/{self.holder['person_id']}",
            headers=headers,
        )
        await self.call(
            "operator.card", "GET", f"/operator/v1/cards/{self.holder['card_id']}", headers=headers
        )


async def _client_main(
    base_url: str,
    actors: dict,
    index: int,
    users: int,
    until: float,
    max_requests: int,
    weights: dict[str, int],
    operator_token: str,
) -> dict:
    import httpx
    from cryptography.hazmat.primitives.asymmetric import ec

    from ecard.offline.es256 import b64url_decode

    holders = actors["holders"][index * users : (index + 1) * users]
    terminal = actors["terminals"][index]
    key = ec.derive_private_key(
        int.from_bytes(b64url_decode(terminal["private_jwk"]["d"]), "big"), ec.SECP256R1()
    )
    shared = {
        "held": deque(),
        "hold_for": random.uniform(15, 45),
        "accepted": deque(maxlen=2000),
        "terminal": {
            "id": terminal["terminal_id"],
            "key": key,
            "counter": 0,
            "pending": [],
            "busy": False,
        },
        "operator_token": operator_token,
    }
    rec = Recorder()
    flows = list(weights)
    cum = [weights[f] for f in flows]
    limits = httpx.Limits(max_connections=users * 2 + 4, max_keepalive_connections=users * 2 + 4)
    async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as http:

        async def user(holder: dict) -> None:
            vu = VirtualUser(http, actors, holder, rec, shared)
            while time.time() < until and len(rec.samples) < max_requests:
                flow = random.choices(flows, cum)[0]
                try:
                    await getattr(vu, flow)()
                # a bug in the client must not end the run silently: it is reported
                except Exception as exc:  # noqa: BLE001
                    rec.wrong.append(f"client error in {flow}: {type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.1)

        await asyncio.gather(*(user(h) for h in holders))
    rec.facts["held_unpresented"] = len(shared["held"])
    rec.facts["cpu_seconds"] = time.process_time()
    return {"samples": rec.samples, "wrong": rec.wrong, "facts": rec.facts}


def _client_process(queue: Any, *args: Any) -> None:
    try:
        queue.put(asyncio.run(_client_main(*args)))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
        queue.put(
            {
                "samples": [],
                "wrong": [f"client process failed: {type(exc).__name__}: {exc}"],
                "facts": {},
            }
        )


def operator_token(base_url: str, actors: dict) -> str:
    import httpx

    response = httpx.post(
        f"{base_url}/operator/v1/login",
        timeout=30,
        json={
            "username": actors["operator"]["username"],
            "password": actors["operator"]["password"],
        },
    )
    response.raise_for_status()
    return response.json()["access_token"]


class LoadRun:
    """The client processes; ``start`` returns at once, ``join`` collects their results."""

    def __init__(
        self,
        env: Environment,
        clients: int,
        users: int,
        seconds: float,
        max_requests: int,
        weights: dict[str, int] | None = None,
    ) -> None:
        self.env, self.clients, self.users, self.seconds = env, clients, users, seconds
        self.max_requests, self.weights = max_requests, weights or WEIGHTS
        self.ctx = mp.get_context("spawn")
        self.queue = self.ctx.Queue()
        self.processes: list[Any] = []
        self.started = 0.0

    def start(self) -> None:
        token = operator_token(self.env.base_url, self.env.actors)
        self.started = time.time()
        until = self.started + self.seconds
        for index in range(self.clients):
            process = self.ctx.Process(
                target=_client_process,
                args=(
                    self.queue,
                    self.env.base_url,
                    self.env.actors,
                    index,
                    self.users,
                    until,
                    self.max_requests // self.clients,
                    self.weights,
                    token,
                ),
                daemon=True,
            )
            process.start()
            self.processes.append(process)

    def join(self) -> list[dict]:
        results = [self.queue.get(timeout=self.seconds + 600) for _ in self.processes]
        for process in self.processes:
            process.join(30)
        return results


# --- statistics -----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def summarise(samples: list[tuple], start: float, end: float) -> dict[str, dict]:
    """Per operation over samples ending in [start, end): rate, p50, p99, errors by status+code."""
    span = max(end - start, 1e-9)
    by_op: dict[str, list[tuple]] = defaultdict(list)
    for sample in samples:
        if start <= sample[0] < end:
            by_op[sample[1]].append(sample)
    table = {}
    for op in sorted(by_op):
        rows = by_op[op]
        ok = [r[2] for r in rows if 0 < r[3] < 400]
        errors = Counter(f"{r[3]} {r[4]}" for r in rows if not 0 < r[3] < 400)
        outcomes = Counter(r[4] for r in rows if 0 < r[3] < 400 and r[4] != "ok")
        table[op] = {
            "requests": len(rows),
            "per_second": round(len(rows) / span, 1),
            "ok": len(ok),
            "p50_ms": round(percentile([r[2] for r in rows], 50), 1),
            "p99_ms": round(percentile([r[2] for r in rows], 99), 1),
            "errors": dict(errors.most_common()),
            **({"outcomes": dict(outcomes)} if outcomes else {}),
        }
    return table


def verify_outcomes(samples: list[tuple], start: float, end: float) -> Counter:
    return Counter(
        s[4] for s in samples if start <= s[0] < end and s[1] == "code.verify" and s[3] == 200
    )


def markdown_table(table: dict[str, dict]) -> str:
    lines = [
        "| operation | requests | req/s | p50 ms | p99 ms | errors (status code: count) |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    total = 0
    for op, row in table.items():
        total += row["requests"]
        errors = ", ".join(f"{k}: {v}" for k, v in row["errors"].items()) or "none"
        lines.append(
            f"| {op} | {row['requests']} | {row['per_second']} | {row['p50_ms']} | "
            f"{row['p99_ms']} | {errors} |"
        )
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="about 20 s: 5 s warm-up + 15 s measured"
    )
    parser.add_argument(
        "--seconds", type=float, default=150, help="measured seconds after the warm-up"
    )
    parser.add_argument("--warmup", type=float, default=30)
    parser.add_argument("--workers", type=int, default=3, help="server workers (granian processes)")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="virtual users per client process (more only adds client CPU on 2 cores)",
    )
    parser.add_argument(
        "--max-requests", type=int, default=2_000_000, help="stop early after this many requests"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "ECARD_LOAD_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
        help="a PostgreSQL server where a scratch database may be created (dropped at the end)",
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("ECARD_LOAD_REDIS_URL", "redis://127.0.0.1:6379/12")
    )
    parser.add_argument(
        "--no-chain", action="store_true", help="do not start an anvil node even if installed"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON result file (default: print only)"
    )
    parser.add_argument("--markdown", type=Path, default=None, help="markdown table file")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.warmup = 15.0, 5.0
    for url in (args.database_url, args.redis_url):
        host = urlparse(url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            parser.error(f"loopback only: {url}")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    users = args.clients * args.concurrency
    with environment(args, holders=users, terminals=args.clients) as env:
        env.start_server(args.workers)
        rss_start = env.rss()
        cpu_start = process_tree_cpu(env.server.pid)
        backing_start = backing_cpu(env)
        load = LoadRun(
            env, args.clients, args.concurrency, args.warmup + args.seconds, args.max_requests
        )
        load.start()
        time.sleep(args.warmup)
        rss_warm = env.rss()
        rss_samples = [(round(time.time() - load.started, 1), rss_warm["workers"])]
        while time.time() < load.started + args.warmup + args.seconds:
            time.sleep(min(10, max(0.1, load.started + args.warmup + args.seconds - time.time())))
            rss_samples.append((round(time.time() - load.started, 1), env.rss()["workers"]))
        results = load.join()
        rss_end = env.rss()
        server_cpu = process_tree_cpu(env.server.pid) - cpu_start
        backing = {k: round(v - backing_start[k], 1) for k, v in backing_cpu(env).items()}
        loadavg = os.getloadavg()
        wall = time.time() - load.started
        measured_from, measured_to = (
            load.started + args.warmup,
            load.started + args.warmup + args.seconds,
        )
        samples = [s for r in results for s in r["samples"]]
        wrong = [w for r in results for w in r["wrong"]]
        facts = defaultdict(int)
        for r in results:
            for key in (
                "double_acceptances",
                "code_pairs",
                "no_retry_after",
                "held_unpresented",
                "cpu_seconds",
            ):
                facts[key] += r["facts"].get(key, 0)
        last = max((s[0] for s in samples), default=measured_to)
        table = summarise(samples, measured_from, min(measured_to, last + 1e-6))
        total = sum(row["requests"] for row in table.values())
        errors = sum(sum(row["errors"].values()) for row in table.values())
        server_errors = env.server_errors()
        chain = env.chain is not None
    result = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": (
            f"{os.cpu_count()} cores (shared with other work; noisy), loopback; server, clients, "
            "PostgreSQL and Redis on the same cores"
        ),
        "config": {
            "workers": args.workers,
            "client_processes": args.clients,
            "virtual_users": users,
            "warmup_s": args.warmup,
            "measured_s": args.seconds,
            "database": "PostgreSQL",
            "store": "Redis",
            "chain": "anvil" if chain else "none",
            "weights": WEIGHTS,
        },
        "operations": table,
        "total": {
            "requests": total,
            "per_second": round(total / args.seconds, 1),
            "errors": errors,
            "requests_whole_run": len(samples),
        },
        "code_verify_outcomes": dict(verify_outcomes(samples, measured_from, measured_to)),
        "double_acceptances": facts["double_acceptances"],
        "code_pairs_presented": facts["code_pairs"],
        "wrong_answers": wrong[:50],
        "wrong_answer_count": len(wrong),
        "server_error_log": server_errors,
        "cpu": {
            "wall_seconds": round(wall, 1),
            "server_workers": round(server_cpu, 1),
            "client_processes": round(facts["cpu_seconds"], 1),
            "cores": os.cpu_count(),
            **backing,
            "load_average_1m_at_end": round(loadavg[0], 2),
        },
        "rss_mib": {
            "start": rss_start,
            "after_warmup": rss_warm,
            "end": rss_end,
            "timeline_workers": rss_samples,
        },
    }
    return result


def render_markdown(result: dict[str, Any]) -> str:
    cfg, rss = result["config"], result["rss_mib"]
    server_ms_per_request = (
        1000
        * result["cpu"]["server_workers"]
        / max(1, result["total"].get("requests_whole_run", 1))
    )
    growth = rss["end"]["workers"] - rss["after_warmup"]["workers"]
    return "\n".join(
        [
            (
                f"Mixed load, {result['when']}: {cfg['workers']} server workers on PostgreSQL + "
                "Redis"
                f" (chain: {cfg['chain']}), {cfg['virtual_users']} virtual users in "
                f"{cfg['client_processes']} client processes,"
                f" {cfg['warmup_s']:.0f} s warm-up then {cfg['measured_s']:.0f} s measured. "
                f"{result['machine']}."
            ),
            "",
            markdown_table(result["operations"]),
            "",
            (
                f"Total: {result['total']['requests']} requests, {result['total']['per_second']} "
                "req/s, "
                f"{result['total']['errors']} error responses; wrong answers: "
                f"{result['wrong_answer_count']}; "
                f"codes presented to two verifiers at once: {result['code_pairs_presented']}, "
                "double "
                "acceptances: "
                f"{result['double_acceptances']}."
            ),
            "",
            (
                f"Server RSS (sum over {rss['end']['worker_count']} workers): "
                f"{rss['start']['workers']:.0f} MiB at start, "
                f"{rss['after_warmup']['workers']:.0f} MiB after warm-up, "
                f"{rss['end']['workers']:.0f} "
                "MiB at the end "
                f"({growth:+.0f} MiB after warm-up); granian main process {rss['end']['main']:.0f} "
                "MiB."
            ),
            "",
            (
                f"CPU over the {result['cpu']['wall_seconds']:.0f} s run: server workers "
                f"{result['cpu']['server_workers']:.0f} s, "
                f"load clients {result['cpu']['client_processes']:.0f} s, PostgreSQL "
                f"{result['cpu'].get('postgresql', 0):.0f} s (all its "
                f"processes, other users' too), Redis {result['cpu'].get('redis', 0):.0f} s, chain "
                f"node {result['cpu'].get('chain', 0):.0f} s, "
                f"of {result['cpu']['wall_seconds'] * result['cpu']['cores']:.0f} core-seconds; "
                "load "
                "average at the end "
                f"{result['cpu'].get('load_average_1m_at_end', 0)}. Server CPU per request (this "
                "mix): "
                f"{server_ms_per_request:.1f} ms "
                "(whole run, warm-up included)."
            ),
        ]
    )


def main() -> None:
    args = parse_args()
    result = run(args)
    text = render_markdown(result)
    print(text)
    if result["wrong_answers"]:
        print("\nwrong answers (first 10):\n  " + "\n  ".join(result["wrong_answers"][:10]))
    if result["server_error_log"]:
        print(
            "\nserver errors (first 5):\n  "
            + "\n  ".join(l[:300] for l in result["server_error_log"][:5])
        )
    if args.out:
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2))
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
