"""ES256 signatures per second through PKCS#11 (SoftHSM2) next to raw ``cryptography``, in one run.

    scripts/install_softhsm.sh
    .venv/bin/python scripts/bench/bench_pkcs11.py [--rounds 7] [--seconds 1.0] [--threads 4]

Sides, alternated round by round so a noisy neighbour hits both:

- ``cryptography``: ``EllipticCurvePrivateKey.sign(data, ECDSA(SHA256))`` with a P-256 key in
  memory (the ``file`` provider);
- ``python-pkcs11 C_Sign``: the floor under the provider (a digest signed on a session of its own);
- ``pkcs11``: the same call on the ``pkcs11`` provider's token key (``TokenEcKey``): SHA-256 here,
  ``CKM_ECDSA`` in SoftHSM2 through python-pkcs11, DER encoding back;
- ``pkcs11 x N threads``: the same from N threads at once (one session per process, serialised:
  this shows the ceiling of one worker);
- ``card cryptogram``: one EXTERNAL AUTHENTICATE cryptogram in the token (derive the card key
  with ``CKM_AES_ECB_ENCRYPT_DATA``, CBC-MAC with ``CKM_AES_CBC``, destroy the session key) next
  to the software SM4 role.

Each figure is the median of the rounds with min–max.  The token is a fresh SoftHSM2 token in a
temporary directory.  The machine's idleness before the run is measured and printed
(``scripts/bench/measure.py``); figures from a busy machine are not comparable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from scripts.bench.measure import Spread, machine_state

PIN = "bench-1234"


def softhsm_token(directory: Path) -> str:
    """A fresh token in ``directory``; sets SOFTHSM2_CONF for this process.  The module's path."""
    module = next(
        (
            path
            for path in ["/usr/lib/softhsm/libsofthsm2.so"]
            + [str(p) for p in Path("/usr/lib").glob("*/softhsm/libsofthsm2.so")]
            if os.path.exists(path)
        ),
        None,
    )
    if module is None or not shutil.which("softhsm2-util"):
        sys.exit("SoftHSM2 is not installed: run scripts/install_softhsm.sh")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {directory / 'tokens'}\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "bench"]
        + ["--pin", PIN, "--so-pin", PIN],
        check=True,
        capture_output=True,
    )
    return module


def rate(operation: Callable[[int], object], seconds: float) -> float:
    """Operations per second over about ``seconds``."""
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            operation(done)
            done += 1
    return done / elapsed


def threaded_rate(operation: Callable[[int], object], seconds: float, threads: int) -> float:
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(n: int) -> None:
        while time.perf_counter() < stop:
            operation(counts[n])
            counts[n] += 1

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()

    state = machine_state()
    print(f"machine: {state.describe()}")
    with tempfile.TemporaryDirectory(prefix="bench-pkcs11-") as tmp:
        module = softhsm_token(Path(tmp))
        from ecard.crypto.keyring import Keyring
        from ecard.crypto.provider import open_key_provider

        bench_token = "bench"
        hsm = open_key_provider("pkcs11", module=module, token_label=bench_token, pin=PIN)
        files = open_key_provider("file")
        record = hsm.generate("issuer", "330000", int(time.time()))
        hsm.ensure_card_masters("330000")
        token_key = hsm.private_key(record)
        memory_key = ec.generate_private_key(ec.SECP256R1())
        ecdsa = ec.ECDSA(hashes.SHA256())
        ring = Keyring.create(["330000"])
        token_role, software_role = hsm.card_keys(lambda: ring), files.card_keys(lambda: ring)
        card_id, challenge = "330300D15600000599110145FFFFFFFF", bytes(8)
        payload = os.urandom(120)  # about a code's signing input

        # the floor under the provider: python-pkcs11's C_Sign on a session of its own
        import hashlib

        import pkcs11

        assert record.token_object is not None
        # the provider's session logged this process in already (login state is per process)
        raw_session = pkcs11.lib(module).get_token(token_label=bench_token).open()
        raw_key = raw_session.get_key(
            object_class=pkcs11.ObjectClass.PRIVATE_KEY, id=bytes.fromhex(record.token_object.id)
        )

        sides: dict[str, Callable[[], float]] = {
            "cryptography ES256 sign": lambda: rate(
                lambda i: memory_key.sign(payload + i.to_bytes(4, "big"), ecdsa), args.seconds
            ),
            "python-pkcs11 C_Sign (no provider)": lambda: rate(
                lambda i: raw_key.sign(
                    hashlib.sha256(payload + i.to_bytes(4, "big")).digest(),
                    mechanism=pkcs11.Mechanism.ECDSA,
                ),
                args.seconds,
            ),
            "pkcs11 ES256 sign": lambda: rate(
                lambda i: token_key.sign(payload + i.to_bytes(4, "big"), ecdsa), args.seconds
            ),
            f"pkcs11 ES256 sign x {args.threads} threads": lambda: threaded_rate(
                lambda i: token_key.sign(payload + i.to_bytes(4, "big"), ecdsa),
                args.seconds,
                args.threads,
            ),
            "software SM4 card cryptogram": lambda: rate(
                lambda i: software_role.external_authenticate_cryptogram(
                    "330000", card_id, challenge
                ),
                args.seconds,
            ),
            "pkcs11 AES card cryptogram": lambda: rate(
                lambda i: token_role.external_authenticate_cryptogram("330000", card_id, challenge),
                args.seconds,
            ),
        }
        for run in sides.values():  # warm up: first sessions, caches, key handles
            run()
        results: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, run in sides.items():
                results[name].append(run())
        raw_session.close()
        hsm.close()

    print(f"{args.rounds} rounds of {args.seconds:.1f} s per side, alternated; median (min–max)")
    baseline = Spread.of(results["cryptography ES256 sign"]).median
    for name, values in results.items():
        spread = Spread.of(values)
        print(
            f"  {name:<40} {spread.text(0, '/s'):>28}   "
            f"{1e6 / spread.median:8.1f} µs each   x{spread.median / baseline:.2f} of cryptography"
        )
    after = machine_state(1.0)
    print(f"machine after: {after.describe()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
