"""The virtual card in a real PC/SC stack: pcscd, vsmartcard's vpcd driver, pyscard and opensc-tool.

The fixture uses a running pcscd or starts one in the foreground (and stops only what it started),
starts the card as its own process connected to vpcd, and waits for the reader and the card.
Missing pieces skip locally and fail under CI; ``scripts/install_pcsc.sh`` installs them.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from ecard.terminal import psam
from ecard.terminal.apdu import SW
from ecard.terminal.card_model import parse_record
from ecard.terminal.virtual_card import ATR
from tests.helpers import require
from tests.terminal.helpers import FACTS, MASTERS, SELECT_SSSE

pytestmark = pytest.mark.pcsc

PCSCD = shutil.which("pcscd") or next(iter(Path("/usr/sbin").glob("pcscd")), None)
VPCD_CONF = Path("/etc/reader.conf.d/vpcd")
PCSCD_SOCKET = Path("/run/pcscd/pcscd.comm")
PCSCD_PID_FILE = Path("/run/pcscd/pcscd.pid")
VPCD_PORT = 35963
READER_PREFIX = "Virtual PCD 00 00"
HOW = (
    "run scripts/install_pcsc.sh (Debian pcscd, vsmartcard-vpcd, libpcsclite-dev, swig; pip "
    "pyscard)"
)


def _wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if result := condition():
                return result
        except Exception as error:  # noqa: BLE001 - pcscd and the card are still starting
            last_error = error
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what} (last error: {last_error!r})")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _pcscd_processes() -> bool:
    return any(
        (status := path / "comm").exists() and status.read_text().strip() == "pcscd"
        for path in Path("/proc").iterdir()
        if path.name.isdigit()
    )


def _pcscd_running() -> bool:
    return PCSCD_SOCKET.exists() and _pcscd_processes()


def _clear_stale_pcscd_files() -> None:
    """Remove the socket and pid file a pcscd that is gone left behind (a killed run, a copied
    machine): pcscd refuses to start while they exist and the pid in the file is alive."""
    if _pcscd_processes():
        return
    for leftover in (PCSCD_SOCKET, PCSCD_PID_FILE):
        leftover.unlink(missing_ok=True)


def _start_pcscd(workdir: Path) -> subprocess.Popen[bytes]:
    _clear_stale_pcscd_files()
    log_path = workdir / "pcscd.log"
    process = subprocess.Popen(
        [str(PCSCD), "--foreground"], stdout=log_path.open("wb"), stderr=subprocess.STDOUT
    )

    def listening() -> bool:
        if process.poll() is not None:
            pytest.fail(
                f"pcscd exited with {process.returncode}: {log_path.read_text(errors='replace')}"
            )
        return PCSCD_SOCKET.exists()

    _wait_for(listening, 20, "pcscd to open its socket")
    return process


@pytest.fixture(scope="module")
def connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    require(PCSCD is not None, "pcscd", HOW)
    require(VPCD_CONF.exists(), "the vsmartcard vpcd reader driver", HOW)
    require(importlib.util.find_spec("smartcard") is not None, "pyscard", HOW)
    from smartcard.System import readers

    workdir = tmp_path_factory.mktemp("pcsc")
    started: list[subprocess.Popen[bytes]] = []
    try:
        if not _pcscd_running():
            started.append(_start_pcscd(workdir))
        reader = _wait_for(
            lambda: next((r for r in readers() if str(r).startswith(READER_PREFIX)), None),
            20,
            "pcscd to list the vpcd reader",
        )
        facts_file, keys_file = workdir / "facts.json", workdir / "keys.json"
        facts_file.write_bytes(msgspec.json.encode(FACTS))
        keys_file.write_bytes(
            msgspec.json.encode(psam.derive_card_keys(MASTERS, FACTS.card_identification_code))
        )
        card_log = (workdir / "card.log").open("wb")
        started.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ecard.terminal.vpcd",
                    "--facts",
                    str(facts_file),
                    "--keys",
                    str(keys_file),
                    "--port",
                    str(VPCD_PORT),
                ],
                stdout=card_log,
                stderr=card_log,
            )
        )

        def connected() -> object:
            link = reader.createConnection()  # type: ignore[attr-defined]
            try:
                link.connect()
            except Exception:
                link.release()  # before pcscd may go away, or its finaliser complains later
                raise
            return link

        link = _wait_for(connected, 20, "the virtual card in the vpcd reader")
        yield link
        link.disconnect()  # type: ignore[attr-defined]
        link.release()  # type: ignore[attr-defined]
    finally:
        for process in reversed(started):
            _stop(process)


def transmit(connection: object, command: bytes) -> tuple[bytes, int]:
    data, sw1, sw2 = connection.transmit(list(command))  # type: ignore[attr-defined]
    return bytes(data), sw1 << 8 | sw2


def test_the_reader_shows_the_cards_atr(connection: object) -> None:
    assert bytes(connection.getATR()) == ATR  # type: ignore[attr-defined]


def test_a_terminal_reads_ef05_through_pcsc(connection: object) -> None:
    assert transmit(connection, SELECT_SSSE)[1] == 0x6113
    assert transmit(connection, bytes.fromhex("00C0000013"))[1] == SW.OK
    assert transmit(connection, bytes.fromhex("00A4020002EF05")) == (b"", SW.OK)
    for number in range(1, 8):
        record, sw = transmit(connection, bytes([0x00, 0xB2, number, 0x04, 0x00]))
        assert sw == SW.OK, hex(sw)
        item, fact = parse_record(record)
        assert sw == SW.OK and fact == getattr(FACTS, item.field)
    assert transmit(connection, bytes.fromhex("00B2072C0B")) == (
        b"\x07\x09" + FACTS.card_number.encode(),
        SW.OK,
    )


def test_card_authentication_and_holder_data_through_pcsc(connection: object) -> None:
    transmit(connection, SELECT_SSSE)
    challenge = bytes(range(8))
    answer, sw = transmit(connection, bytes.fromhex("0088000008") + challenge + b"\x00")
    assert sw == SW.OK
    assert psam.verify_internal_authenticate(
        MASTERS, FACTS.card_identification_code, challenge, answer
    )
    card_challenge, _ = transmit(connection, bytes.fromhex("0084000008"))
    cryptogram = psam.external_authenticate_cryptogram(
        MASTERS, FACTS.card_identification_code, card_challenge
    )
    assert transmit(connection, bytes.fromhex("0082000010") + cryptogram)[1] == SW.OK
    record, sw = transmit(connection, bytes.fromhex("00B2083000"))
    assert sw == SW.OK and parse_record(record)[1] == FACTS.social_security_number


def test_opensc_tool_talks_to_the_card(connection: object) -> None:
    tool = shutil.which("opensc-tool")
    require(tool is not None, "opensc-tool", HOW)
    listing = subprocess.run(
        [tool, "-l"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    index = next(line.split()[0] for line in listing.splitlines() if READER_PREFIX in line)
    result = subprocess.run(
        [tool, "-r", index, "-s", SELECT_SSSE.hex(), "-s", "00B2072C00"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert " ".join(f"{byte:02X}" for byte in FACTS.card_number.encode()) in result.stdout
