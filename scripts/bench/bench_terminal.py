"""Terminal service numbers, as ratios to baselines measured in the same run.

    .venv/bin/python scripts/bench/bench_terminal.py [--seconds 2.0] [--records 2000]

Baselines: one raw SM4 block (what card authentication cannot avoid) and one ES256
verification (what every signed terminal request costs).  Measured: online card
authentications/s through HTTP (in-process ASGI, SQLite, signed request, relay, PSAM check,
registry read, single-use challenge); offline records uploaded/s (batches of 500, each record's
signature verified and stored); offline verifications/s on the terminal kit (QR code and HCE
e-card against the package).  APDU exchanges/s: scripts/bench/bench_apdu.py.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ecard.offline import verify
from ecard.offline.es256 import sign_raw, verify_raw
from ecard.terminal import hce
from ecard.terminal import records as rec
from ecard.terminal.cli import in_process_platform, set_up
from ecard.terminal.reference import CODE_USAGES, READ_EF05_RECORD_1, SELECT_SSSE


def rate(operation: Callable[[], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(20):
            operation()
        count += 20
    return count / elapsed


async def async_rate(operation: Callable[[], Awaitable[object]], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        await operation()
        count += 1
    return count / elapsed


async def main(seconds: float, record_count: int) -> None:
    key, block = bytes(16), bytes(16)
    # the one-block SM4 the card computes, as the baseline (not a message mode)
    sm4 = rate(lambda: Cipher(algorithms.SM4(key), modes.ECB()).encryptor().update(block), seconds)  # noqa: S305
    signer = ec.generate_private_key(ec.SECP256R1())
    signature = sign_raw(signer, b"x" * 100)
    es256_verify = rate(lambda: verify_raw(signer.public_key(), signature, b"x" * 100), seconds)

    with tempfile.TemporaryDirectory(prefix="bench-terminal-") as workdir:
        async with in_process_platform(Path(workdir), "330000") as (platform, http):
            world = await set_up(platform, http, "330000")
            terminal = world.terminal

            async def authenticate() -> None:
                response = await terminal.authenticate_card_online(world.chip)
                assert response.status_code == 200, response.text

            online = await async_rate(authenticate, seconds)

            records = [
                rec.sign_record(
                    rec.AcceptanceRecord(
                        terminal_id=terminal.terminal_id,
                        counter=n,
                        reference=f"pseudonym_{n:08d}",
                        accepted_at=1_700_000_000 + n,
                        kind=rec.AcceptanceKind.CARD,
                        result=rec.AcceptanceResult.ACCEPTED,
                    ),
                    terminal._key,
                )
                for n in range(1, record_count + 1)
            ]
            start = time.perf_counter()
            for first in range(0, record_count, 500):
                body = msgspec.json.encode({"records": records[first : first + 500]})
                response = await terminal.call("POST", "/terminal/v1/records", body)
                assert response.status_code == 200 and response.json()["stored"] == len(
                    records[first : first + 500]
                )
            uploaded = record_count / (time.perf_counter() - start)

            package = await terminal.sync()
            now = int(time.time())
            qr = rate(
                lambda: verify(
                    world.code, package.trust, package.revocations, now, usages=CODE_USAGES
                ),
                seconds,
            )
            world.phone.transmit(SELECT_SSSE)
            certificate = world.phone.transmit(READ_EF05_RECORD_1)[2:-2]
            challenge = bytes(16)
            answer = world.phone.transmit(bytes.fromhex("0088000010") + challenge + b"\x00")[:-2]
            dda = rate(
                lambda: hce.authenticate_offline(
                    certificate, challenge, answer, package.trust, package.revocations, now
                ),
                seconds,
            )

    print(f"baseline  SM4 block (new cipher)          {sm4:12,.0f} /s")
    print(f"baseline  ES256 verify                    {es256_verify:12,.0f} /s")
    print(
        f"online card authentications (HTTP)        {online:12,.0f} /s  = {online / sm4:.4f} "
        f"x SM4, {online / es256_verify:.3f} x ES256 verify"
    )
    print(
        f"offline records uploaded                  {uploaded:12,.0f} /s  = "
        f"{uploaded / es256_verify:.3f} x ES256 verify"
    )
    print(
        f"offline QR verifications (terminal kit)   {qr:12,.0f} /s  = {qr / es256_verify:.3f} "
        "x ES256 verify"
    )
    print(
        f"offline HCE authentications (kit, DDA)    {dda:12,.0f} /s  = "
        f"{dda / es256_verify:.3f} x ES256 verify (2 verifications each)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--records", type=int, default=2000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.records))
