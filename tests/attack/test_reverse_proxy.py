"""Behind a real nginx: ``ecard serve`` with ``ECARD_TRUSTED_PROXIES=127.0.0.1`` sees each client's
own address (the login origin the holder is shown, the per-address rate limits), whatever the
client writes in the forwarding headers itself; straight to the service, those headers count for
nothing.

Distinct clients on one machine: the test's sockets are bound to different loopback source
addresses (127.0.0.2, 127.0.0.3, ...); nginx sees those as ``$remote_addr``.  Two nginx servers:
one configured as ``docs/deployment.md`` shows (X-Forwarded-* and Forwarded), one that sets only
``Forwarded`` (RFC 7239), so both parsers run end to end.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import require
from tests.live import LiveServer, Seeded, free_port, seed

#: the nginx ``location`` body docs/deployment.md shows (the upstream is filled in)
DOCS_LOCATION = """
            proxy_pass http://{upstream};
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header Forwarded "for=$ecard_forwarded_for;proto=$scheme;host=\\"$host\\"";
"""
#: a proxy that speaks only RFC 7239: whatever X-Forwarded-For the client sent is dropped
FORWARDED_ONLY_LOCATION = """
            proxy_pass http://{upstream};
            proxy_set_header X-Forwarded-For "";
            proxy_set_header Forwarded "for=$ecard_forwarded_for;proto=$scheme";
"""
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    map $remote_addr $ecard_forwarded_for {{
        ~:      '"[$remote_addr]"';
        default '"$remote_addr"';
    }}
    server {{
        listen 127.0.0.1:{docs_port};
        location / {{{docs_location}        }}
    }}
    server {{
        listen 127.0.0.1:{forwarded_port};
        location / {{{forwarded_location}        }}
    }}
}}
"""
LOGIN_POLICY = {"login_sessions_per_ip_minute": 3}


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


@dataclass
class Proxied:
    server: LiveServer
    seeded: Seeded
    docs_url: str  # nginx as docs/deployment.md configures it
    forwarded_url: str  # nginx setting only Forwarded


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("nginx did not start listening in 15 s")


@pytest.fixture(scope="module")
def proxied() -> Iterator[Proxied]:
    nginx = nginx_binary()
    require(nginx is not None, "nginx", "run scripts/install_nginx.sh (apt-get install nginx)")
    assert nginx is not None
    server = LiveServer.start(
        policy=json.dumps(LOGIN_POLICY), env={"ECARD_TRUSTED_PROXIES": "127.0.0.1"}
    )
    tmp = tempfile.TemporaryDirectory(prefix="ecard-nginx-")
    process: subprocess.Popen | None = None
    try:
        seeded = asyncio.run(seed(server.url))
        upstream = server.url.removeprefix("http://")
        docs_port, forwarded_port = free_port(), free_port()
        conf = Path(tmp.name, "nginx.conf")
        conf.write_text(
            NGINX_CONF.format(
                tmp=tmp.name,
                docs_port=docs_port,
                forwarded_port=forwarded_port,
                docs_location=DOCS_LOCATION.format(upstream=upstream),
                forwarded_location=FORWARDED_ONLY_LOCATION.format(upstream=upstream),
            )
        )
        log = Path(tmp.name, "error.log")
        # -e: the startup error log too goes to the temporary directory (not /var/log/nginx)
        process = subprocess.Popen(
            [nginx, "-p", tmp.name, "-e", str(log), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _wait_for_port(docs_port, process, log)
        _wait_for_port(forwarded_port, process, log)
        yield Proxied(
            server, seeded, f"http://127.0.0.1:{docs_port}", f"http://127.0.0.1:{forwarded_port}"
        )
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        server.stop()
        tmp.cleanup()


def client_at(source: str, base_url: str) -> httpx.Client:
    """An HTTP client whose connections come from the loopback address ``source``."""
    return httpx.Client(
        base_url=base_url, transport=httpx.HTTPTransport(local_address=source), timeout=15
    )


def start_login(
    http: httpx.Client, seeded: Seeded, headers: dict[str, str] | None = None
) -> httpx.Response:
    query = {
        "response_type": "code",
        "client_id": seeded.client_id,
        "redirect_uri": seeded.redirect_uri,
        "scope": "openid",
    }
    return http.get("/oidc/authorize", params=query, headers=headers or {})


def login_origin(
    proxied: Proxied, source: str, base_url: str, headers: dict[str, str] | None = None
) -> dict:
    """Open a login page from ``source`` (through ``base_url``); the origin the holder's
    app shows."""
    with client_at(source, base_url) as http:
        page = start_login(http, proxied.seeded, headers)
        assert page.status_code == 200, page.text[:300]
        session_id = page.text.split('data-session="')[1].split('"')[0]
    with httpx.Client(base_url=proxied.server.url, timeout=15) as app:
        view = app.get(
            f"/holder/v1/logins/{session_id}",
            headers={"Authorization": f"Bearer {proxied.seeded.holder_token}"},
        )
        assert view.status_code == 200, view.text
        return view.json()["origin"]


def test_the_holder_sees_each_clients_own_address_not_the_proxy(proxied: Proxied) -> None:
    spoof = {
        "X-Forwarded-For": "6.6.6.6",
        "Forwarded": "for=6.6.6.6;proto=https",
        "X-Forwarded-Host": "evil.example",
    }
    assert login_origin(proxied, "127.0.0.2", proxied.docs_url, spoof)["ip"] == "127.0.0.2"
    assert login_origin(proxied, "127.0.0.3", proxied.docs_url)["ip"] == "127.0.0.3"
    # the RFC 7239-only proxy, with an IPv4 client and a spoofed X-Forwarded-For it drops
    assert login_origin(proxied, "127.0.0.4", proxied.forwarded_url, spoof)["ip"] == "127.0.0.4"


def test_forwarding_headers_straight_to_the_service_count_for_nothing(proxied: Proxied) -> None:
    spoof = {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6"}
    assert login_origin(proxied, "127.0.0.5", proxied.server.url, spoof)["ip"] == "127.0.0.5"


def test_login_rate_limits_count_per_client_behind_the_proxy(proxied: Proxied) -> None:
    limit = LOGIN_POLICY["login_sessions_per_ip_minute"]
    with client_at("127.0.0.6", proxied.docs_url) as first:
        # a new X-Forwarded-For each time does not buy the client a new allowance
        statuses = [
            start_login(first, proxied.seeded, {"X-Forwarded-For": f"198.51.100.{i}"}).status_code
            for i in range(limit + 1)
        ]
    assert statuses == [200] * limit + [429]
    with client_at("127.0.0.7", proxied.docs_url) as second:
        assert (
            start_login(second, proxied.seeded).status_code == 200
        )  # another client is not limited
    with client_at("127.0.0.8", proxied.forwarded_url) as third:
        assert start_login(third, proxied.seeded).status_code == 200


def test_the_hot_routes_answer_through_the_proxy(proxied: Proxied) -> None:
    """Served before Litestar's routing (and in RSGI): unchanged behind the proxy."""
    with client_at("127.0.0.9", proxied.docs_url) as http:
        issued = http.post(
            "/holder/v1/codes", headers={"Authorization": f"Bearer {proxied.seeded.holder_token}"}
        )
        assert issued.status_code == 201, issued.text
        refused = http.post("/verifier/v1/verifications", content=b"not json")
        assert refused.status_code == 401 and refused.json()["code"] == "unauthenticated"
