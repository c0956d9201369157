"""APDU exchanges per second with the virtual social security card, as ratios to baselines measured
in the same run.

    .venv/bin/python scripts/bench/bench_apdu.py [--seconds 1.0] [--no-pcsc]

Baselines: a bare decode + encode of a command APDU (the codec's floor) and one raw SM4 block
encryption with ``cryptography`` (the cost INTERNAL AUTHENTICATE cannot avoid).  Measured: READ
RECORD by SFI and INTERNAL AUTHENTICATE against the card in process; a whole "read the card
number and authenticate the card" session (SELECT, READ RECORD, GET CHALLENGE, EXTERNAL
AUTHENTICATE, READ RECORD of EF06, INTERNAL AUTHENTICATE); records signed and reconciled per second
against ES256 signing; and, when pcscd and vsmartcard's vpcd are installed, READ RECORD through
PC/SC (pyscard -> pcscd -> vpcd -> TCP -> this card).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ecard.offline.es256 import sign_raw
from ecard.terminal import psam
from ecard.terminal import records as rec
from ecard.terminal.apdu import decode_command, encode_command
from ecard.terminal.card_model import CardFacts
from ecard.terminal.virtual_card import VirtualCard

FACTS = CardFacts(
    card_number="A12345678",
    card_identification_code="330300D15600000599110145FFFFFFFF",
    card_type="3",
    spec_version="3.00",
    issuing_org_code="330300000000",
    issue_date=dt.date(2020, 1, 2),
    expiry_date=dt.date(2030, 1, 2),
    social_security_number="33010619900307123X",
    name="张三",
    gender="1",
    ethnicity="01",
    birth_date=dt.date(1990, 3, 7),
    birth_place="330106",
)
MASTERS = psam.MasterKeys(internal_auth=bytes(range(16)), external_auth=bytes(range(16, 32)))
SELECT_SSSE = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
READ_CARD_NUMBER = bytes.fromhex("00B2072C00")
INTERNAL_AUTHENTICATE = bytes.fromhex("0088000008") + bytes(range(8)) + b"\x00"


def rate(operation: Callable[[], object], seconds: float) -> float:
    """Operations per second of ``operation``, over about ``seconds``."""
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(50):
            operation()
        count += 50
    return count / elapsed


def new_card() -> VirtualCard:
    card = VirtualCard(FACTS, psam.derive_card_keys(MASTERS, FACTS.card_identification_code))
    card.transmit(SELECT_SSSE)
    return card


def session(card: VirtualCard) -> None:
    """What a terminal does per card: read the number, open EF06, authenticate the card."""
    card.reset()
    card.transmit(SELECT_SSSE)
    card.transmit(READ_CARD_NUMBER)
    challenge = card.transmit(bytes.fromhex("0084000008"))[:-2]
    cryptogram = psam.external_authenticate_cryptogram(
        MASTERS, FACTS.card_identification_code, challenge
    )
    assert card.transmit(bytes.fromhex("0082000010") + cryptogram)[-2:] == b"\x90\x00"
    assert card.transmit(bytes.fromhex("00B2083000"))[-2:] == b"\x90\x00"
    answer = card.transmit(INTERNAL_AUTHENTICATE)[:-2]
    assert psam.verify_internal_authenticate(
        MASTERS, FACTS.card_identification_code, bytes(range(8)), answer
    )


def pcsc_rate(seconds: float) -> float | str:
    """READ RECORD exchanges/s through pcscd and vpcd, or why it was not measured."""
    if shutil.which("pcscd") is None or not Path("/etc/reader.conf.d/vpcd").exists():
        return "skipped: pcscd / vsmartcard-vpcd not installed (scripts/install_pcsc.sh)"
    try:
        from smartcard.System import readers
    except ImportError:
        return "skipped: pyscard not installed"
    started: list[subprocess.Popen[bytes]] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-apdu-"))
    try:
        if subprocess.run(["pgrep", "-x", "pcscd"], capture_output=True, check=False).returncode:
            started.append(subprocess.Popen(["pcscd", "--foreground"], stderr=subprocess.DEVNULL))
        (workdir / "facts.json").write_bytes(msgspec.json.encode(FACTS))
        (workdir / "keys.json").write_bytes(
            msgspec.json.encode(psam.derive_card_keys(MASTERS, FACTS.card_identification_code))
        )
        started.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ecard.terminal.vpcd",
                    "--facts",
                    str(workdir / "facts.json"),
                    "--keys",
                    str(workdir / "keys.json"),
                ],
                cwd=ROOT,
            )
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                reader = next(r for r in readers() if str(r).startswith("Virtual PCD 00 00"))
                connection = reader.createConnection()
                connection.connect()
                break
            except Exception:  # noqa: BLE001 - still starting
                if time.monotonic() > deadline:
                    return "skipped: the virtual card did not appear in the vpcd reader"
                time.sleep(0.1)
        connection.transmit(list(SELECT_SSSE))
        command = list(READ_CARD_NUMBER)
        result = rate(lambda: connection.transmit(command), seconds)
        connection.disconnect()
        connection.release()
        return result
    finally:
        for process in reversed(started):
            process.terminate()
            process.wait(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--no-pcsc", action="store_true")
    args = parser.parse_args()
    seconds = args.seconds

    command = decode_command(READ_CARD_NUMBER)
    codec = rate(lambda: encode_command(decode_command(READ_CARD_NUMBER)), seconds)
    key, block = bytes(16), bytes(16)
    # the one-block SM4 the card computes, as the baseline (not a message mode)
    sm4 = rate(lambda: Cipher(algorithms.SM4(key), modes.ECB()).encryptor().update(block), seconds)  # noqa: S305
    terminal_key = ec.generate_private_key(ec.SECP256R1())
    es256 = rate(lambda: sign_raw(terminal_key, b"x" * 100), seconds)

    card = new_card()
    read_record = rate(lambda: card.transmit(READ_CARD_NUMBER), seconds)
    read_record_decoded = rate(lambda: card.process(command), seconds)
    internal_auth = rate(lambda: card.transmit(INTERNAL_AUTHENTICATE), seconds)
    sessions = rate(lambda: session(card), seconds)

    records = [
        rec.AcceptanceRecord(
            terminal_id="T-1",
            counter=n,
            reference=f"pseudonym_{n:06d}",
            accepted_at=1_700_000_000 + n,
            kind=rec.AcceptanceKind.CARD,
            result=rec.AcceptanceResult.ACCEPTED,
        )
        for n in range(1, 2001)
    ]
    start = time.perf_counter()
    signed = [rec.sign_record(record, terminal_key) for record in records]
    signing = len(records) / (time.perf_counter() - start)
    start = time.perf_counter()
    rec.reconcile(
        signed[:1000],
        signed,
        terminal_keys={"T-1": terminal_key.public_key()},
        revoked_at={},
        code_expires_at={},
    )
    reconciling = len(signed) / (time.perf_counter() - start)

    print(f"baseline  APDU decode+encode        {codec:12,.0f} /s")
    print(f"baseline  SM4 block (new cipher)    {sm4:12,.0f} /s")
    print(f"baseline  ES256 sign                {es256:12,.0f} /s")
    print(
        f"in process READ RECORD (bytes)      {read_record:12,.0f} /s  = "
        f"{read_record / codec:.2f} x codec"
    )
    print(
        f"in process READ RECORD (decoded)    {read_record_decoded:12,.0f} /s  = "
        f"{read_record_decoded / codec:.2f} x codec"
    )
    print(
        f"in process INTERNAL AUTHENTICATE    {internal_auth:12,.0f} /s  = "
        f"{internal_auth / sm4:.2f} x SM4 block"
    )
    print(
        f"in process full terminal session    {sessions:12,.0f} /s  = {sessions / sm4:.3f} x "
        "SM4 block (reset + 6 APDUs, 6 SM4 operations)"
    )
    print(
        f"records signed                      {signing:12,.0f} /s  = {signing / es256:.2f} x "
        "ES256 sign"
    )
    print(f"records reconciled (verify incl.)   {reconciling:12,.0f} /s")
    if not args.no_pcsc:
        through_pcsc = pcsc_rate(seconds)
        if isinstance(through_pcsc, str):
            print(f"PC/SC READ RECORD                   {through_pcsc}")
        else:
            print(
                f"PC/SC READ RECORD                   {through_pcsc:12,.0f} /s  = "
                f"{through_pcsc / read_record:.4f} x in process, {through_pcsc / codec:.5f} x codec"
            )


if __name__ == "__main__":
    main()
