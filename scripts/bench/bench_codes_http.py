"""Dynamic codes through HTTP on one worker: server CPU per code against raw ES256 on an idle core.

    .venv/bin/python scripts/bench/bench_codes_http.py [--seconds 5] [--rounds 5] [--connections 32]
        [--database-url postgresql://…] [--redis-url redis://…] [--baselines raw.json] [--json out]

A real ``ecard serve`` (one granian worker; SQLite and the in-process store unless given), loaded
with wrk on loopback:
- issuance: POST /holder/v1/codes (holder session and card status checked, code signed);
- verification: POST /verifier/v1/verifications (verifier authenticated, signature checked, card
  status read, code consumed, the verification recorded), each request a fresh code, signed
  beforehand with the server's issuer key.
The headline is the server's CPU per code (utime + stime of its process tree, /proc), median of
``--rounds`` alternating rounds (issue, verify, issue, verify …) after a warm-up, with throughput
beside it.  The baselines, raw ``cryptography`` ES256 sign and verify, are timed 7 × 1 s on the
idle machine *before* the server starts (or read from ``--baselines``, which performance_report.py
writes before any load) and reported with their spread.  Targets of issue 21: CPU per code at
most 4× raw sign, per verification at most 2.2× raw verify.  Then bench_code_format.py runs in
the same process: offline verify() ratio, QR images/s, code sizes.
Needs `wrk` (Debian package `wrk`).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

import httpx
from load_mixed import scratch_database
from measure import (
    MachineState,
    Result,
    Sample,
    Series,
    Spread,
    Target,
    load_baselines,
    machine_state,
    warn_if_busy,
    write_result,
    wrk,
)

from ecard.codes import CodeSigner
from ecard.codes.trust import card_pseudonym, private_key_of
from ecard.offline.code_format import MAX_LIFETIME
from ecard.store.keyfiles import load_keyring
from tests.live import LiveServer, _ok, new_channel, new_holder

VERIFY_SCRIPT = """
local codes = {}
for line in io.lines("%(codes)s") do codes[#codes + 1] = line end
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "%(auth)s"
request = function()
  i = i + 1
  if i > #codes then i = 1 end
  return wrk.format(nil, nil, nil, '{"code":"' .. codes[i] .. '"}')
end
"""
ISSUE_SCRIPT = 'wrk.method = "POST"\n'
#: each request as another holder, round robin: no per-holder state is warm between two requests
MANY_HOLDERS_SCRIPT = """
local tokens = {}
for line in io.lines("%(tokens)s") do tokens[#tokens + 1] = line end
local i = 0
wrk.method = "POST"
request = function()
  i = i + 1
  if i > #tokens then i = 1 end
  return wrk.format(nil, nil, {["Authorization"] = "Bearer " .. tokens[i]}, nil)
end
"""


async def seed(url: str, holders: int = 1) -> tuple[str, str, str, list[str]]:
    """A holder (access token, card id), a pharmacy verifier's Basic credentials, and the access
    tokens of ``holders`` more holders."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        login = _ok(
            await http.post(
                "/operator/v1/login",
                json={"username": "admin", "password": "correct horse battery"},
            )
        )
        admin = {"Authorization": f"Bearer {login['access_token']}"}
        channel = await new_channel(http, admin, "bench-app")  # with a key for its 实人 evidence
        token, card_id = await new_holder(http, admin, channel)
        crowd = [(await new_holder(http, admin, channel))[0] for _ in range(holders)]
        verifier = _ok(
            await http.post(
                "/operator/v1/clients",
                headers=admin,
                json={
                    "kind": "verifier",
                    "name": "bench-pharmacy",
                    "entitlements": ["masked_name", "card_status"],
                },
            )
        )
        _ok(
            await http.post("/holder/v1/codes", headers={"Authorization": f"Bearer {token}"})
        )  # maps the pseudonym
    basic = httpx.BasicAuth(verifier["id"], verifier["client_secret"])._auth_header
    return token, card_id, basic, crowd


def sign_codes(keys_dir: str, card_id: str, count: int) -> list[str]:
    """Fresh codes for the card, as the server would issue them, valid for the whole run."""
    ring = load_keyring(keys_dir)
    signer = CodeSigner("330000", private_key_of(ring.signing_key("330000").private_pem))
    pseudonym = card_pseudonym(ring.secrets.key("pseudonym_key"), card_id)
    now = int(time.time()) + 1
    return [
        signer.sign(
            signer.claims(
                pseudonym=pseudonym,
                serial=secrets.randbits(32),
                issued_at=now,
                masked_name="张*三",
                card_last4="0000",
                lifetime=MAX_LIFETIME,
            )
        )
        for _ in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--busy-connections",
        type=int,
        default=64,
        help="connections of one more verification run (larger group commits)",
    )
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--redis-url", help="Redis URL (default: the in-process store)")
    parser.add_argument(
        "--baselines", type=Path, help="raw ES256 baselines measured before any load (JSON)"
    )
    parser.add_argument("--format-seconds", default="1.0", help="--seconds of bench_code_format.py")
    parser.add_argument("--no-format", action="store_true", help="skip bench_code_format.py")
    parser.add_argument(
        "--holders", type=int, default=300, help="distinct holders of the round-robin issuance run"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        help="the server's ECARD_LOG_LEVEL (default INFO, as in production: one access line per "
        "request, written to /dev/null)",
    )
    parser.add_argument("--json", type=Path, help="write the result here (performance_report.py)")
    args = parser.parse_args()

    state = machine_state()
    warn_if_busy(state)
    baselines = load_baselines(args.baselines)  # before any server runs
    # a database of its own on the server given (dropped at the end): a reused one keeps the
    # ledger writer of an earlier run, registered with that run's key
    with (
        scratch_database(args.database_url, "codes")
        if args.database_url
        else nullcontext() as database_url
    ):
        result = run(args, database_url, state, baselines)
    write_result(result, args.json)
    if not args.no_format:  # needs the bench extra (cbor2, base45, qrcode, segno)
        from bench_code_format import main as bench_code_format

        print()
        sys.argv = [sys.argv[0], "--seconds", args.format_seconds, "--revoked", "100000"]
        bench_code_format()


def run(
    args: argparse.Namespace,
    database_url: str | None,
    state: MachineState,
    baselines: dict[str, Spread],
) -> Result:
    env = {
        k: v
        for k, v in (("ECARD_DATABASE_URL", database_url), ("ECARD_REDIS_URL", args.redis_url))
        if v
    }
    env["ECARD_LOG_LEVEL"] = args.log_level
    storage = ("PostgreSQL" if args.database_url else "SQLite") + (
        " + Redis" if args.redis_url else " + in-process store"
    )
    result = Result(
        "bench_codes_http",
        state,
        f"one worker (granian, {storage}), wrk -t1 -c{args.connections} {args.seconds} s per "
        f"round, {args.rounds} alternating rounds after a warm-up, on loopback, log level "
        f"{args.log_level}",
        baselines=baselines,
    )
    server = LiveServer.start(env=env)
    pid = server.process.pid
    work = Path(tempfile.mkdtemp(prefix="ecard-bench-codes-"))
    try:
        token, card_id, verifier_auth, crowd = asyncio.run(seed(server.url, args.holders))
        keys = f"{server.workdir.name}/keys"
        # enough fresh codes per run that no request meets an already used one
        per_run = 6_000 * args.seconds

        def verify_script(name: str) -> Path:
            (work / f"{name}.txt").write_text("\n".join(sign_codes(keys, card_id, per_run)) + "\n")
            script = work / f"{name}.lua"
            script.write_text(
                VERIFY_SCRIPT % {"codes": work / f"{name}.txt", "auth": verifier_auth}
            )
            return script

        (work / "issue.lua").write_text(ISSUE_SCRIPT)
        (work / "tokens.txt").write_text("\n".join(crowd) + "\n")
        (work / "many.lua").write_text(MANY_HOLDERS_SCRIPT % {"tokens": work / "tokens.txt"})
        holder = {"Authorization": f"Bearer {token}"}
        issue_url = f"{server.url}/holder/v1/codes"
        verify_url = f"{server.url}/verifier/v1/verifications"

        def issue() -> Sample:
            return wrk(issue_url, args.seconds, args.connections, pid, holder, work / "issue.lua")

        def verify(number: int) -> Sample:
            return wrk(
                verify_url, args.seconds, args.connections, pid, script=verify_script(f"v{number}")
            )

        # warm-up: the worker's caches and CPython's specialised bytecode, both routes
        wrk(issue_url, 2, args.connections, pid, holder, work / "issue.lua")
        wrk(verify_url, 2, args.connections, pid, script=verify_script("warm"))
        issuing = Series("code issuance, POST /holder/v1/codes", "ecard")
        verifying = Series("online verification, POST /verifier/v1/verifications", "ecard")
        for number in range(1, args.rounds + 1):
            issuing.samples.append(issue())
            verifying.samples.append(verify(number))
            print(
                f"  round {number}: issue {issuing.samples[-1].cpu_us:,.0f} µs CPU/code "
                f"{issuing.samples[-1].per_second:,.0f}/s; verify "
                f"{verifying.samples[-1].cpu_us:,.0f} µs CPU/verification "
                f"{verifying.samples[-1].per_second:,.0f}/s",
                flush=True,
            )
        # each holder's first code maps its pseudonym (a write, once per card in production)
        wrk(issue_url, 2, args.connections, pid, script=work / "many.lua")
        many = Series(f"the same issuance, {args.holders} holders round robin", "ecard")
        many.samples.append(
            wrk(issue_url, args.seconds, args.connections, pid, script=work / "many.lua")
        )
        busy = Series(f"the same verification, {args.busy_connections} connections", "ecard")
        busy.samples.append(
            wrk(verify_url, args.seconds, args.busy_connections, pid, script=verify_script("busy"))
        )
        history = _ok(
            httpx.get(f"{server.url}/holder/v1/verifications", params={"limit": 1}, headers=holder)
        )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    result.series += [issuing, verifying, many, busy]
    sign_us, verify_us = baselines["sign"].median, baselines["verify"].median
    result.targets += [
        Target(
            "code issuance: server CPU per code ÷ raw ES256 sign",
            issuing.cpu_us.median,
            sign_us,
            4.0,
            at_most=True,
            meaning="×",
        ),
        Target(
            "online verification: server CPU per verification ÷ raw ES256 verify",
            verifying.cpu_us.median,
            verify_us,
            2.2,
            at_most=True,
            meaning="×",
        ),
    ]
    result.notes.append(
        f"{history['total']} verifications recorded; each verification waits for its record's "
        "group commit, so with few connections throughput is bounded by that latency, not CPU"
    )
    return result


if __name__ == "__main__":
    main()
