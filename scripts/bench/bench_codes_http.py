"""Dynamic codes through HTTP on one worker, as ratios of raw ES256 speed measured in the same run.

    .venv/bin/python scripts/bench/bench_codes_http.py [--seconds 10] [--connections 16]
        [--database-url postgresql://…] [--redis-url redis://…] [--format-seconds 1.0]

A real ``ecard serve`` (one granian worker; SQLite and the in-process store unless given), loaded
with wrk on loopback:
- issuance: POST /holder/v1/codes (holder session and card status checked, code signed);
- verification: POST /verifier/v1/verifications (verifier authenticated, signature checked, card
  status read, code consumed, the verification recorded), each request a fresh code, signed
  beforehand with the server's issuer key.
Targets: issuance >= 20 % of raw signing, verification >= 30 % of raw verification.  Then
bench_code_format.py runs in the same process: offline verify() ratio, QR images/s, code sizes.
Verification runs twice, at --connections and at --busy-connections: each answer waits for its
record's group commit, so with few clients the rate is bounded by that latency, not by the worker.
Needs `wrk` (Debian package `wrk`).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

import httpx
from bench_code_format import main as bench_code_format
from bench_code_format import rates
from bench_service import wrk
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from load_mixed import scratch_database

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


def raw_rates(seconds: float) -> tuple[float, float]:
    """Raw `cryptography` ES256 sign/s and verify/s on this core, right now."""
    key = ec.generate_private_key(ec.SECP256R1())
    message = b"ecard/code\x00" + bytes(115)
    der = key.sign(message, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()
    measured = rates(
        {
            "sign": lambda: key.sign(message, ec.ECDSA(hashes.SHA256())),
            "verify": lambda: public.verify(der, message, ec.ECDSA(hashes.SHA256())),
        },
        seconds,
    )
    return measured["sign"], measured["verify"]


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
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--busy-connections",
        type=int,
        default=64,
        help="connections of the second verification run",
    )
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--redis-url", help="Redis URL (default: the in-process store)")
    parser.add_argument("--format-seconds", default="1.0", help="--seconds of bench_code_format.py")
    parser.add_argument(
        "--holders", type=int, default=300, help="distinct holders of the round-robin issuance run"
    )
    args = parser.parse_args()

    # a database of its own on the server given (dropped at the end): a reused one keeps the
    # ledger writer of an earlier run, registered with that run's key
    with (
        scratch_database(args.database_url, "codes")
        if args.database_url
        else nullcontext() as database_url
    ):
        run(args, database_url)


def run(args: argparse.Namespace, database_url: str | None) -> None:
    env = {
        k: v
        for k, v in (("ECARD_DATABASE_URL", database_url), ("ECARD_REDIS_URL", args.redis_url))
        if v
    }
    server = LiveServer.start(env=env)
    work = Path(tempfile.mkdtemp(prefix="ecard-bench-codes-"))
    try:
        token, card_id, verifier_auth, crowd = asyncio.run(seed(server.url, args.holders))
        # enough fresh codes that no request of the run meets an already used one
        codes = sign_codes(f"{server.workdir.name}/keys", card_id, 5_000 * args.seconds)
        busy_codes = sign_codes(f"{server.workdir.name}/keys", card_id, 6_000 * args.seconds)
        (work / "codes.txt").write_text("\n".join(codes) + "\n")
        (work / "verify.lua").write_text(
            VERIFY_SCRIPT % {"codes": work / "codes.txt", "auth": verifier_auth}
        )
        (work / "codes_busy.txt").write_text("\n".join(busy_codes) + "\n")
        (work / "verify_busy.lua").write_text(
            VERIFY_SCRIPT % {"codes": work / "codes_busy.txt", "auth": verifier_auth}
        )
        (work / "issue.lua").write_text(ISSUE_SCRIPT)
        (work / "tokens.txt").write_text("\n".join(crowd) + "\n")
        (work / "many.lua").write_text(MANY_HOLDERS_SCRIPT % {"tokens": work / "tokens.txt"})
        raw_sign, raw_verify = raw_rates(2.0)
        issued = wrk(
            f"{server.url}/holder/v1/codes",
            args.seconds,
            args.connections,
            {"Authorization": f"Bearer {token}"},
            work / "issue.lua",
        )
        # first round over the crowd warms nothing but the worker: each holder's first code maps
        # its pseudonym (a write), as happens once per card in production
        wrk(f"{server.url}/holder/v1/codes", 2, args.connections, script=work / "many.lua")
        issued_many = wrk(
            f"{server.url}/holder/v1/codes",
            args.seconds,
            args.connections,
            script=work / "many.lua",
        )
        verified = wrk(
            f"{server.url}/verifier/v1/verifications",
            args.seconds,
            args.connections,
            script=work / "verify.lua",
        )
        # each verification waits for its record's commit (group commit: one fsync per batch), so
        # at 16 connections the rate is bounded by that latency; more clients fill larger batches
        verified_busy = wrk(
            f"{server.url}/verifier/v1/verifications",
            args.seconds,
            args.busy_connections,
            script=work / "verify_busy.lua",
        )
        raw_sign_after, raw_verify_after = raw_rates(2.0)
        history = _ok(
            httpx.get(
                f"{server.url}/holder/v1/verifications",
                params={"limit": 1},
                headers={"Authorization": f"Bearer {token}"},
            )
        )
    finally:
        server.stop()
    raw_sign, raw_verify = max(raw_sign, raw_sign_after), max(raw_verify, raw_verify_after)
    storage = ("PostgreSQL" if args.database_url else "SQLite") + (
        ", Redis" if args.redis_url else ", in-process store"
    )
    print(
        f"== HTTP, one worker ({storage}), wrk -t1 -c{args.connections} -d{args.seconds}s on "
        "loopback =="
    )
    print(f"raw ES256 sign            {raw_sign:9.0f}/s  (baseline, best of before/after the load)")
    print(f"raw ES256 verify          {raw_verify:9.0f}/s  (baseline)")
    print(
        f"HTTP issue  POST /holder/v1/codes            {issued:7.0f}/s  "
        f"{issued / raw_sign:6.1%} of raw sign   (target >= 20 %)"
    )
    print(
        f"  the same, {args.holders} holders round robin   {issued_many:7.0f}/s  "
        f"{issued_many / raw_sign:6.1%} of raw sign"
    )
    print(
        f"HTTP verify POST /verifier/v1/verifications  {verified:7.0f}/s  "
        f"{verified / raw_verify:6.1%} of raw verify (target >= 30 %)"
    )
    print(
        f"  the same, {args.busy_connections} connections              {verified_busy:7.0f}/s "
        f" {verified_busy / raw_verify:6.1%} of raw verify"
    )
    print(
        f"  ({history['total']} verifications recorded, {len(codes) + len(busy_codes)} fresh "
        "codes prepared)"
    )
    print()
    sys.argv = [sys.argv[0], "--seconds", args.format_seconds, "--revoked", "100000"]
    bench_code_format()


if __name__ == "__main__":
    main()
