"""Hostile request bodies cannot take the service down (issue 16 §1).

A real ``ecard serve`` (one worker on the embedded defaults; two workers on PostgreSQL + Redis)
gets deeply nested JSON and a corpus of other hostile bodies on every operation of its OpenAPI
document, as an anonymous caller, an operator and a relying party; it must answer each with a
4xx problem (never a 5xx) and still answer ``/healthz`` afterwards, every worker alive.

Before the fix, 50 KB of ``[`` posted to ``/operator/v1/login`` overflowed the C stack (web3's
py_ecc had raised the recursion limit to 100,000) and the server exited.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecard.bodies import MAX_JSON_DEPTH, nesting_within
from tests.live import LiveServer, seed

pytestmark = pytest.mark.timeout(300)

DEEP = b"[" * 50_000
#: bodies an attacker would try; none may cost the server more than a 4xx
CORPUS: dict[str, bytes] = {
    "deep array": DEEP,
    "deep object": b'{"a":' * 20_000,
    "deep inside a valid field": b'{"username":"x","password":"y","extra":'
    + b"[" * 30_000
    + b"]" * 30_000
    + b"}",
    "deep behind strings": b"[" + b'"]",[' * 5_000 + b"]" * 5_001,
    "nesting just over the limit": b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1),
    "1 MB string": b'{"username":"' + b"a" * 1_000_000 + b'","password":"x"}',
    "NaN and Infinity": b'{"username":NaN,"password":Infinity,"limit":-Infinity}',
    "huge integer": b'{"limit":1' + b"0" * 5_000 + b',"seq":' + str(2**70).encode() + b"}",
    "huge float": b'{"limit":1e999}',
    "invalid UTF-8": b'{"username":"\xff\xfe\xc0\xaf","password":"\xed\xa0\x80"}',
    "lone surrogate escape": b'{"username":"\\ud800","password":"x"}',
    "NUL characters": (
        b'{"username":"a\\u0000","password":"\\u0000","reason":"x\\u0000","status":"live",'
        b'"name":"\\u0000","kind":"channel"}'
    ),
    "duplicate keys": b'{"username":"a","username":"b","password":"x","password":"y"}',
    "NUL bytes": b"\x00" * 1024,
    "unterminated string": b'{"username":"' + b'\\"' * 50_000,
    "wrong top-level type": b'"just a string"',
    "null": b"null",
    "empty": b"",
}
#: bodies large enough that a server answering without reading them may reset the connection
MAY_RESET = {"1 MB string"}
SMALL_CORPUS = {name: body for name, body in CORPUS.items() if len(body) < 200_000}


# --- the nesting check (pure) ------------------------------------------------------------------


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.sampled_from('[]{}"\\ab,:')),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(json_values, st.integers(min_value=2, max_value=12))
def test_nesting_check_agrees_with_the_real_depth(value: object, limit: int) -> None:
    """Never says "within" for a body deeper than the limit; always does for one at half of it."""
    body = msgspec.json.encode(value)
    depth = _depth(value)
    within = nesting_within(body, limit)
    if depth > limit:
        assert not within
    if depth <= limit // 2:
        assert within


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.text(alphabet=st.sampled_from('[]{}"\\a,')).map(str.encode))
def test_nesting_check_bounds_what_a_decoder_would_enter(body: bytes) -> None:
    """On any bytes: if the check passes, the deepest nesting a decoder reaches before it stops
    (the valid prefix) is within the limit."""
    limit = 6
    if nesting_within(body, limit):
        assert _prefix_depth(body) <= limit


def _prefix_depth(body: bytes) -> int:
    """The deepest nesting a JSON tokenizer reaches reading ``body`` (strings and
    escapes skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        char = chr(byte)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            if depth == 0:
                break  # a decoder stops here
            depth -= 1
    return deepest


def test_the_deep_attack_costs_little() -> None:
    """Not a timing assertion: the check refuses the attack of the report without decoding it."""
    assert not nesting_within(DEEP)
    assert not nesting_within(b"[" * 500_000 + b"]" * 500_000)
    assert nesting_within(b'{"a":[{"b":[1,2,{"c":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}]}]}')


# --- no import changes process-wide limits -----------------------------------------------------


def test_the_service_and_the_chain_client_keep_the_recursion_limit() -> None:
    script = textwrap.dedent(
        """
        import sys
        before = sys.getrecursionlimit()
        from ecard.app import create_app
        from ecard.settings import load_settings
        create_app(load_settings({"ECARD_KEYS_DIR": "/nonexistent"}))
        assert "web3" not in sys.modules, "web3 is imported without a chain configured"
        import ledger.evm.anchor  # imports web3, whose py_ecc raises the limit to 100,000
        assert sys.getrecursionlimit() == before, sys.getrecursionlimit()
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_deep_json_is_refused_even_with_a_raised_recursion_limit(tmp_path) -> None:
    """The nesting check does not rely on the recursion limit: in a process where something has
    raised it to 100,000 (as py_ecc does), the deep body is still a 400, not a dead process."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.setrecursionlimit(100_000)
        import httpx
        from ecard.app import create_app
        from ecard.crypto.keyring import Keyring
        from ecard.settings import load_settings
        from ecard.store.keyfiles import save_keyring
        save_keyring({str(tmp_path)!r}, Keyring.create(["330000"]))
        settings = load_settings({{"ECARD_KEYS_DIR": {str(tmp_path)!r},
                                   "ECARD_DATABASE_URL": "sqlite:///{tmp_path}/ecard.db",
                                   "ECARD_LOG_LEVEL": "ERROR"}})
        from ecard.platform import open_platform

        async def main():
            platform = await open_platform(settings, migrate=True)
            app = create_app(settings, platform=platform)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                json_type = {{"content-type": "application/json"}}
                for path in ("/operator/v1/login", "/holder/v1/session/refresh",
                             "/ledger/v1/receipts/check"):
                    r = await http.post(path, content=b"[" * 200_000, headers=json_type)
                    print(path, r.status_code, r.json()["code"])
            await platform.close()

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"the process died ({done.returncode}): {done.stderr[-2000:]}"
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.endswith("400 body_too_deep") for line in lines), (
        done.stdout
    )


# --- a real server under the corpus ------------------------------------------------------------


@pytest.fixture(params=["embedded-1-worker", "postgres-redis-2-workers"])
def server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    if request.param.startswith("embedded"):
        live = LiveServer.start()
    else:
        live = LiveServer.start(
            workers=2,
            env={
                "ECARD_DATABASE_URL": request.getfixturevalue("migrated_postgres_url"),
                "ECARD_REDIS_URL": request.getfixturevalue("redis_url"),
                "ECARD_REDIS_PREFIX": f"hb{os.getpid()}{int(time.time())}:",
            },
        )
    yield live
    live.stop()


def _operations(document: dict) -> list[tuple[str, str]]:
    out = []
    for path, item in document["paths"].items():
        concrete = path
        for parameter in [
            p for op in item.values() if isinstance(op, dict) for p in op.get("parameters", [])
        ]:
            if parameter.get("in") == "path":
                concrete = concrete.replace("{" + parameter["name"] + "}", "x1")
        for method in item:
            if method in {"post", "put", "patch", "delete", "get"}:
                out.append((method.upper(), concrete))
    return out


def _worker_pids(server: LiveServer) -> set[int]:
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(server.process.pid)],
        capture_output=True,
        text=True,
        check=False,
    )
    return {int(pid) for pid in children.stdout.split()}


async def test_hostile_bodies_on_every_route_leave_the_server_up(server: LiveServer) -> None:
    seeded = await seed(server.url)
    callers = {"anonymous": {}, "operator": seeded.admin, "relying party": seeded.rp_auth()}
    workers_before = _worker_pids(server)
    failures: list[str] = []
    resets = 0
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
        document = (await http.get("/schema/openapi.json")).json()
        operations = _operations(document)
        assert len(operations) > 50, "the OpenAPI document lists every route"
        for method, path in operations:
            for who, headers in callers.items():
                corpus = CORPUS if who == "anonymous" else SMALL_CORPUS
                for name, body in corpus.items():
                    request = http.build_request(
                        method,
                        path,
                        content=body,
                        headers={**headers, "content-type": "application/json"},
                    )
                    try:
                        response = await http.send(request)
                    except httpx.TransportError:
                        # the server may close a kept-alive connection whose last request body it
                        # did not read (it answered before reading); the same request on a new
                        # connection must get an answer
                        try:
                            async with httpx.AsyncClient(base_url=server.url, timeout=60) as fresh:
                                response = await fresh.send(request)
                        except httpx.TransportError as exc:
                            if (
                                name in MAY_RESET
                                and (await http.get("/healthz")).status_code == 200
                            ):
                                # a server that answers before reading a large body and closes
                                # the connection may reset it under the client still sending:
                                # no crash, the service is up (checked just now)
                                resets += 1
                                continue
                            failures.append(
                                f"{method} {path} as {who} with {name}: no answer ({exc!r})"
                            )
                            break
                    if response.status_code >= 500:
                        failures.append(
                            f"{method} {path} as {who} with {name}: {response.status_code} "
                            f"{response.text[:200]}"
                        )
        health = await http.get("/healthz")
    assert server.process.poll() is None, "the server exited"
    assert health.status_code == 200
    assert _worker_pids(server) == workers_before, "a worker died and was replaced"
    assert not failures, "\n".join(failures[:30])
    assert resets <= len(operations) // 10, f"{resets} connections reset under a large body"


async def test_deep_json_gets_a_problem_with_a_stable_code(server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for path in (
            "/operator/v1/login",
            "/holder/v1/session/refresh",
            "/ledger/v1/receipts/check",
        ):
            response = await http.post(
                path, content=DEEP, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, (path, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.json()["code"] == "body_too_deep"
        problems = (await http.get("/problems")).json()
        assert problems["body_too_deep"]["status"] == 400


def test_a_worker_that_dies_is_respawned(server: LiveServer) -> None:
    """Defence in depth: whatever kills a worker, ``ecard serve`` starts another and logs why."""
    before = _worker_pids(server)
    victim = min(before)
    os.kill(victim, signal.SIGSEGV)
    deadline = time.monotonic() + 30
    after: set[int] = set()
    while time.monotonic() < deadline:
        after = _worker_pids(server)
        if victim not in after and len(after) == len(before):
            try:
                if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
        time.sleep(0.3)
    assert server.process.poll() is None, "the server exited instead of respawning"
    assert victim not in after and len(after) == len(before), (before, after)
    # ten more requests, all served (by the new worker too)
    assert all(httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200 for _ in range(10))
    server.process.terminate()
    try:
        log = server.process.communicate(timeout=90)[1].decode(errors="replace")
    except (
        subprocess.TimeoutExpired
    ):  # the log is what this test reads; a slow stop is not its subject
        server.process.kill()
        log = server.process.communicate()[1].decode(errors="replace")
    assert "Unexpected exit from worker" in log
    assert "Fatal Python error: Segmentation fault" in log, log[-2000:]


def test_corpus_is_what_it_says() -> None:
    """The corpus bodies really are hostile in the way their names say."""
    assert not nesting_within(CORPUS["deep behind strings"])
    assert not nesting_within(CORPUS["deep inside a valid field"])
    assert len(CORPUS["1 MB string"]) > 1_000_000
    with pytest.raises(UnicodeDecodeError):
        CORPUS["invalid UTF-8"].decode()


async def test_nul_characters_are_refused_in_bodies_forms_and_parameters(
    server: LiveServer,
) -> None:
    """PostgreSQL cannot store U+0000: a NUL in any input is a 400, never a 500 (found by the
    PostgreSQL fuzz run in an audit reason)."""
    seeded = await seed(server.url)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        body = await http.post(
            f"/operator/v1/oidc/clients/{seeded.client_id}/status",
            content=b'{"status":"suspended","reason":"x\\u0000y"}',
            headers={**seeded.admin, "content-type": "application/json"},
        )
        assert body.status_code == 400 and body.json()["code"] == "validation_failed", body.text
        escaped = await http.post(  # an escaped backslash before u0000 is ordinary text
            f"/operator/v1/oidc/clients/{seeded.client_id}/status",
            content=b'{"status":"suspended","reason":"x\\\\u0000y"}',
            headers={**seeded.admin, "content-type": "application/json"},
        )
        assert escaped.status_code == 200, escaped.text
        form = await http.post(
            "/oidc/token",
            data={
                "grant_type": "authorization_code",
                "code": "c\x00",
                "client_id": "rp\x00x",
                "client_secret": "s",
            },
        )
        assert form.status_code < 500, form.text
        query = await http.get(
            "/operator/v1/persons", params={"region": "33\x0000"}, headers=seeded.admin
        )
        assert query.status_code < 500, query.text
        path = await http.get("/operator/v1/persons/p%00x", headers=seeded.admin)
        assert path.status_code < 500, path.text
