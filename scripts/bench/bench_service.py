"""Request rates of one ecard worker, against a bare ASGI hello app on the same server (granian),
measured in the same run with wrk on loopback.  Also the worker's RSS after the load.

    .venv/bin/python scripts/bench/bench_service.py [--seconds 10] [--connections 32]

Needs `wrk` (Debian package `wrk`).  Prints absolute rates and ratios to the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

HELLO_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listening on {port}")


def wrk(
    url: str,
    seconds: int,
    connections: int,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
) -> float:
    """Requests/s; ``script``: a wrk Lua script (POST bodies, rotating inputs)."""
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        *(["-s", str(script)] if script else []),
        url,
    ]
    for name, value in (headers or {}).items():
        cmd[1:1] = ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} error responses\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def rss_mib(pid: int) -> float:
    """RSS of the process tree's largest member (the granian worker)."""
    pids = [pid] + [
        int(p)
        for p in subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False
        ).stdout.split()
    ]
    sizes = []
    for p in pids:
        status = Path(f"/proc/{p}/status")
        if status.exists():
            match = re.search(r"VmRSS:\s+(\d+) kB", status.read_text())
            if match:
                sizes.append(int(match.group(1)) / 1024)
    return max(sizes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--database-url", help="e.g. postgresql://postgres@127.0.0.1/bench (default: a SQLite file)"
    )
    parser.add_argument(
        "--redis-url", help="e.g. redis://127.0.0.1:6379/14 (default: in-process store)"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")

    work = Path(tempfile.mkdtemp(prefix="ecard-bench-"))
    (work / "hello.py").write_text(HELLO_APP)
    env = {
        **os.environ,
        "ECARD_DATABASE_URL": args.database_url or f"sqlite:///{work}/ecard.db",
        **({"ECARD_REDIS_URL": args.redis_url} if args.redis_url else {}),
        "ECARD_KEYS_DIR": str(work / "keys"),
        "ECARD_LOG_LEVEL": "WARNING",
    }
    subprocess.run(
        [VENV_BIN / "ecard", "demo", "init", "--out", work / "demo.json"],
        env=env,
        check=True,
        cwd=work,
    )
    demo = json.loads((work / "demo.json").read_text())

    results: dict[str, float] = {}
    hello_port = free_port()
    hello = subprocess.Popen(
        [
            VENV_BIN / "granian",
            "--interface",
            "asgi",
            "--port",
            str(hello_port),
            "--no-ws",
            "hello:app",
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(hello_port)
        results["baseline hello (granian, bare ASGI)"] = wrk(
            f"http://127.0.0.1:{hello_port}/", args.seconds, args.connections
        )
    finally:
        hello.terminate()
        hello.wait()

    port = free_port()
    server = subprocess.Popen(
        [VENV_BIN / "ecard", "serve", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port)
        import httpx

        base = f"http://127.0.0.1:{port}"
        token = httpx.post(
            f"{base}/operator/v1/login",
            json={"username": "demo-admin", "password": demo["operator"]["password"]},
        ).json()["access_token"]
        person_id = httpx.get(
            f"{base}/operator/v1/persons", headers={"Authorization": f"Bearer {token}"}
        ).json()["items"][0]["id"]
        rss_start = rss_mib(server.pid)
        results["GET /healthz"] = wrk(f"{base}/healthz", args.seconds, args.connections)
        results["GET /holder/v1/ecard (holder session)"] = wrk(
            f"{base}/holder/v1/ecard",
            args.seconds,
            args.connections,
            {"Authorization": f"Bearer {demo['holder']['access_token']}"},
        )
        results["GET /operator/v1/persons/{id} (operator)"] = wrk(
            f"{base}/operator/v1/persons/{person_id}",
            args.seconds,
            args.connections,
            {"Authorization": f"Bearer {token}"},
        )
        rss_end = rss_mib(server.pid)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)

    baseline = results["baseline hello (granian, bare ASGI)"]
    storage = "PostgreSQL" if args.database_url else "SQLite"
    store = "Redis" if args.redis_url else "in-process store"
    print(
        f"one worker, wrk -t1 -c{args.connections} -d{args.seconds}s on loopback ({storage}, "
        f"{store})"
    )
    for name, rate in results.items():
        print(f"  {name:<45} {rate:>9.0f} req/s   {rate / baseline:6.1%} of baseline")
    print(f"  worker RSS: {rss_start:.0f} MiB after start, {rss_end:.0f} MiB after the load")


if __name__ == "__main__":
    main()
