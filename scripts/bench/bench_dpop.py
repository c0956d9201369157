"""DPoP proof checks per second on one core, as ratios to a raw ES256 verification measured in the
same run.

    .venv/bin/python scripts/bench/bench_dpop.py [--seconds 1.0] [--rounds 5]

Baseline: ``cryptography``'s ES256 verification of a DER signature over a proof-sized message (the
one cost a bound request cannot avoid).  Measured, each for ``--rounds`` rounds of ``--seconds``:

- ``check_proof``: every rule of ``ecard.crypto.dpop`` (parse, typ/alg/jwk, signature, claims, htm,
  htu, iat, ath, key binding), the device's key already loaded (the usual case: a phone sends the
  same key all day);
- ``check_proof, key cold``: the same with the key cache emptied before each proof (a new device);
- ``authenticate_holder, Bearer``: an unbound holder token checked (MAC, revocation in an in-process
  store), the floor of every holder request;
- ``authenticate_holder, DPoP``: a bound token with its proof: the above, the proof's rules and its
  ``jti`` recorded in the store.

Prints the median and the spread (min–max) of each, in checks per second, and the median's ratio
to the baseline.  Proofs are made before each round (signing is not measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from ecard.auth import DpopContext, HolderAccess, authenticate_holder, holder_access_token
from ecard.crypto import dpop
from ecard.settings import load_settings
from ecard.store.ephemeral import MemoryStore

PATH = "/holder/v1/codes"


def make_proofs(
    key: ec.EllipticCurvePrivateKey, jwk: dict, url: str, token: str | None, count: int
) -> list[str]:
    now = int(time.time())
    claims = {"htm": "POST", "htu": url, "iat": now}
    if token is not None:
        claims["ath"] = dpop.access_token_hash(token)
    header = {"typ": "dpop+jwt", "jwk": jwk}
    return [
        jwt.encode({**claims, "jti": f"j{i}-{now}"}, key, algorithm="ES256", headers=header)
        for i in range(count)
    ]


def rate(work: Callable[[int], None], seconds: float) -> float:
    """Calls per second of ``work(i)`` for i = 0, 1, … over about ``seconds``."""
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(50):
            work(done)
            done += 1
    return done / elapsed


async def async_rate(work: Callable[[int], Awaitable[object]], seconds: float) -> float:
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(50):
            await work(done)
            done += 1
    return done / elapsed


def report(name: str, rates: list[float], baseline: float | None) -> None:
    median = statistics.median(rates)
    ratio = f"{median / baseline:6.2f}× raw verify" if baseline else "   (baseline)"
    print(f"  {name:<34} {median:>9,.0f}/s  [{min(rates):,.0f} – {max(rates):,.0f}]  {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one measurement")
    parser.add_argument("--rounds", type=int, default=5, help="measurements of each kind")
    args = parser.parse_args()

    settings = load_settings({"ECARD_KEYS_DIR": "/nonexistent", "ECARD_LOG_LEVEL": "WARNING"})
    url = settings.public_url.rstrip("/") + PATH
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jkt = dpop.jwk_thumbprint(jwk)
    platform = SimpleNamespace(settings=settings, store=MemoryStore(), holder_token_key=b"k" * 32)
    # tokens minted after the store began (older ones would be checked against a database)
    asyncio.run(platform.store.store_started_at())
    time.sleep(0.01)
    now = time.time()
    expires = int(now) + 3600
    bound = holder_access_token(
        platform, HolderAccess("s" * 32, "e" * 32, "c" * 32, "ch", now, expires, jkt)
    )  # type: ignore[arg-type]
    unbound = holder_access_token(
        platform, HolderAccess("s" * 32, "e" * 32, "c" * 32, "ch", now, expires)
    )  # type: ignore[arg-type]

    message = b"x" * 400  # about a proof's signing input
    der = key.sign(message, ec.ECDSA(hashes.SHA256()))
    public = key.public_key()

    def raw_verify(_: int) -> None:
        public.verify(der, message, ec.ECDSA(hashes.SHA256()))

    results: dict[str, list[float]] = {
        name: []
        for name in (
            "raw ES256 verify",
            "check_proof",
            "check_proof, key cold",
            "authenticate_holder, Bearer",
            "authenticate_holder, DPoP",
        )
    }
    pool = max(2000, int(args.seconds * 20_000))

    async def rounds() -> None:
        for _ in range(args.rounds):
            results["raw ES256 verify"].append(rate(raw_verify, args.seconds))
            proofs = make_proofs(key, jwk, url, bound, pool)

            def warm(i: int, proofs: list[str] = proofs) -> None:
                dpop.check_proof(
                    proofs[i % pool],
                    method="POST",
                    url=url,
                    now=time.time(),
                    access_token=bound,
                    expected_jkt=jkt,
                )

            def cold(i: int) -> None:
                dpop._verifier.cache_clear()
                dpop._thumbprint.cache_clear()
                warm(i)

            results["check_proof"].append(rate(warm, args.seconds))
            results["check_proof, key cold"].append(rate(cold, args.seconds))
            results["authenticate_holder, Bearer"].append(
                await async_rate(
                    lambda i: authenticate_holder(platform, f"Bearer {unbound}"), args.seconds
                )  # type: ignore[arg-type]
            )
            fresh = make_proofs(
                key, jwk, url, bound, pool
            )  # each jti once: the store remembers them
            results["authenticate_holder, DPoP"].append(
                await async_rate(
                    lambda i, fresh=fresh: authenticate_holder(
                        platform,
                        f"DPoP {bound}",
                        DpopContext("POST", PATH, (fresh[i % pool],)),  # type: ignore[arg-type]
                    ),
                    min(args.seconds, pool / 10_000),
                )
            )

    print(
        f"DPoP proof checks, one core, {args.rounds} rounds of {args.seconds} s: median/s "
        "[min – max]"
    )
    asyncio.run(rounds())
    baseline = statistics.median(results["raw ES256 verify"])
    for name, rates in results.items():
        report(name, rates, None if name == "raw ES256 verify" else baseline)


if __name__ == "__main__":
    main()
