"""Simple authenticated routes of one ecard worker against the floor: a bare ASGI app on granian.

    .venv/bin/python scripts/bench/bench_service.py [--seconds 5] [--rounds 5] [--connections 32]
        [--database-url postgresql://…] [--redis-url redis://…] [--json out.json]

Both servers run side by side and are loaded with wrk on loopback in alternating rounds (floor,
each ecard route, floor, …) after a warm-up.  The headline is **server CPU per request** (utime +
stime of each server's process tree, from /proc; see measure.py), median of the rounds with its
spread, with requests/s beside it.  Routes: ``GET /healthz`` (no authentication),
``GET /holder/v1/ecard`` (a holder session: token check, one indexed read, JSON out) and
``GET /operator/v1/persons/{id}`` (an operator: role check, a read, an identity number decrypted
and masked, the read audited).  Target of issue 21: an authenticated simple request at most 8×
the floor's CPU per request.  Also the worker's RSS after the load.

Needs `wrk` (Debian package `wrk`).
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
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).parent))

from measure import (
    MachineState,
    Result,
    Sample,
    Series,
    Target,
    machine_state,
    warn_if_busy,
    write_result,
    wrk,
)

HELLO_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
"""
FLOOR = "granian, bare ASGI app"


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
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="per route and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--database-url", help="PostgreSQL server URL (a scratch database is made on it)"
    )
    parser.add_argument(
        "--redis-url", help="e.g. redis://127.0.0.1:6379/14 (default: in-process store)"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="the server's ECARD_LOG_LEVEL (default INFO, as in production: one access line per "
        "request, written to /dev/null)",
    )
    parser.add_argument("--json", type=Path, help="write the result here (performance_report.py)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk")
    state = machine_state()
    warn_if_busy(state)
    sys.path.insert(0, str(ROOT))
    from load_mixed import scratch_database

    with (
        scratch_database(args.database_url, "service")
        if args.database_url
        else nullcontext() as database_url
    ):
        result = run(args, database_url, state)
    write_result(result, args.json)


def run(args: argparse.Namespace, database_url: str | None, state: MachineState) -> Result:
    work = Path(tempfile.mkdtemp(prefix="ecard-bench-"))
    (work / "hello.py").write_text(HELLO_APP)
    env = {
        **os.environ,
        "ECARD_DATABASE_URL": database_url or f"sqlite:///{work}/ecard.db",
        **({"ECARD_REDIS_URL": args.redis_url} if args.redis_url else {}),
        "ECARD_KEYS_DIR": str(work / "keys"),
        "ECARD_LOG_LEVEL": args.log_level,
    }
    subprocess.run(
        [VENV_BIN / "ecard", "demo", "init", "--out", work / "demo.json"],
        env=env,
        check=True,
        cwd=work,
        stdout=subprocess.DEVNULL,
    )
    demo = json.loads((work / "demo.json").read_text())
    storage = ("PostgreSQL" if database_url else "SQLite") + (
        " + Redis" if args.redis_url else " + in-process store"
    )
    result = Result(
        "bench_service",
        state,
        f"one worker each (ecard: granian RSGI, {storage}; floor: granian ASGI hello app), "
        f"wrk -t1 -c{args.connections} {args.seconds} s per route and round, {args.rounds} "
        "alternating rounds after a warm-up, on loopback, "
        f"log level {args.log_level}",
    )
    hello_port, port = free_port(), free_port()
    hello = subprocess.Popen(
        [str(VENV_BIN / "granian"), "--interface", "asgi", "--port", str(hello_port)]
        + ["--no-ws", "hello:app"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = subprocess.Popen(
        [VENV_BIN / "ecard", "serve", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(hello_port)
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
        routes: list[tuple[str, str, str, int, dict[str, str]]] = [
            ("floor: GET / (hello)", FLOOR, f"http://127.0.0.1:{hello_port}/", hello.pid, {}),
            ("GET /healthz (no authentication)", "ecard", f"{base}/healthz", server.pid, {}),
            (
                "GET /holder/v1/ecard (holder session)",
                "ecard",
                f"{base}/holder/v1/ecard",
                server.pid,
                {"Authorization": f"Bearer {demo['holder']['access_token']}"},
            ),
            (
                "GET /operator/v1/persons/{id} (operator read)",
                "ecard",
                f"{base}/operator/v1/persons/{person_id}",
                server.pid,
                {"Authorization": f"Bearer {token}"},
            ),
        ]
        rss_start = rss_mib(server.pid)
        for _, _, url, pid, headers in routes:  # warm-up
            wrk(url, 2, args.connections, pid, headers)
        series = {name: Series(name, side) for name, side, *_ in routes}
        samples: dict[str, Sample] = {}
        for number in range(1, args.rounds + 1):
            for name, _, url, pid, headers in routes:
                samples[name] = wrk(url, args.seconds, args.connections, pid, headers)
                series[name].samples.append(samples[name])
            print(
                f"  round {number}: "
                + "; ".join(
                    f"{name.split(' (')[0]} {s.cpu_us:,.0f} µs CPU/req {s.per_second:,.0f}/s"
                    for name, s in samples.items()
                ),
                flush=True,
            )
        rss_end = rss_mib(server.pid)
    finally:
        for process in (server, hello):
            process.terminate()
            process.wait()
        shutil.rmtree(work, ignore_errors=True)
    result.series += list(series.values())
    floor = series["floor: GET / (hello)"].cpu_us.median
    for name in (
        "GET /holder/v1/ecard (holder session)",
        "GET /operator/v1/persons/{id} (operator read)",
    ):
        result.targets.append(
            Target(
                f"{name.split(' (')[0]}: server CPU per request ÷ bare granian app",
                series[name].cpu_us.median,
                floor,
                8.0,
                at_most=True,
                meaning="×",
            )
        )
    result.notes.append(
        f"ecard worker RSS: {rss_start:.0f} MiB after start, {rss_end:.0f} MiB after the load"
    )
    return result


if __name__ == "__main__":
    main()
