"""Plug a virtual card into a real PC/SC stack through vsmartcard's virtual reader (vpcd).

pcscd loads the vpcd driver (Debian ``vsmartcard-vpcd``; ``/etc/reader.conf.d/vpcd`` names the
reader "Virtual PCD" with channel 0x8C7B), which listens on TCP 35963 (and 35964 for a second
slot).  The card side — this module, the role vsmartcard's ``vicc`` plays — connects and then
answers what vpcd sends.  Every message in both directions is a 2-byte big-endian length and that
many bytes.  A 1-byte message from vpcd is a control: 0 power off, 1 power on, 2 reset (none
answered), 4 "send the ATR" (answered with the ATR; the driver also sends it to poll whether the
card is still present, so it leaves the card's state alone); any longer message is a command APDU,
answered with the response APDU.  (The Debian package ships only the driver; the protocol is the one
documented in vsmartcard's "Creating a virtual smart card" page and checked against the driver in
``tests/terminal/test_pcsc.py``.)

``answer`` is the pure protocol step; :class:`VpcdCardLink` does the socket I/O.
Run a card from files: ``python -m ecard.terminal.vpcd --facts card.json --keys keys.json``.
"""

from __future__ import annotations

import argparse
import logging
import socket
import time
from enum import IntEnum
from pathlib import Path
from typing import Protocol

import msgspec

from ecard.terminal.card_model import CardFacts
from ecard.terminal.errors import TerminalError, TerminalReason
from ecard.terminal.psam import CardKeys

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 35963
LENGTH_BYTES = 2

log = logging.getLogger("ecard.terminal.vpcd")


class Control(IntEnum):
    POWER_OFF = 0
    POWER_ON = 1
    RESET = 2
    ATR = 4


class Card(Protocol):
    atr: bytes

    def reset(self) -> bytes: ...

    def transmit(self, command: bytes) -> bytes: ...


def frame(payload: bytes) -> bytes:
    if not 0 < len(payload) < 1 << (8 * LENGTH_BYTES):
        raise TerminalError(TerminalReason.VPCD_PROTOCOL, f"cannot frame {len(payload)} bytes")
    return len(payload).to_bytes(LENGTH_BYTES, "big") + payload


def answer(card: Card, message: bytes) -> bytes | None:
    """The card's reply to one vpcd message (None: no reply is due)."""
    if not message:
        raise TerminalError(TerminalReason.VPCD_PROTOCOL, "empty message")
    if len(message) > 1:
        return card.transmit(message)
    match message[0]:
        case Control.POWER_OFF | Control.POWER_ON | Control.RESET:
            card.reset()
            return None
        case Control.ATR:  # vpcd also asks this to poll for presence: it must not reset the card
            return card.atr
    raise TerminalError(TerminalReason.VPCD_PROTOCOL, f"unknown control byte {message[0]}")


class VpcdCardLink:
    """One card connected to vpcd over TCP: ``connect`` (retrying while pcscd starts), ``serve``."""

    def __init__(self, card: Card, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.card = card
        self.address = (host, port)
        self._socket: socket.socket | None = None

    def connect(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._socket = socket.create_connection(self.address, timeout=1.0)
                self._socket.settimeout(None)
                self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return
            except OSError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def _read_exactly(self, count: int) -> bytes | None:
        if self._socket is None:
            raise ConnectionError("not connected to vpcd")
        chunks = bytearray()
        while len(chunks) < count:
            chunk = self._socket.recv(count - len(chunks))
            if not chunk:
                return None
            chunks += chunk
            self._ack_at_once()
        return bytes(chunks)

    def _ack_at_once(self) -> None:
        """vpcd writes the length and the APDU separately; with Nagle on its side, a delayed ACK
        on ours would stall every exchange by ~40 ms.  Linux re-arms delayed ACKs, so after each
        read."""
        if hasattr(socket, "TCP_QUICKACK") and self._socket is not None:
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def serve(self) -> None:
        """Answer vpcd until it closes the connection."""
        if self._socket is None:
            self.connect()
        if self._socket is None:
            raise ConnectionError("not connected to vpcd")
        try:
            while (header := self._read_exactly(LENGTH_BYTES)) is not None:
                message = self._read_exactly(int.from_bytes(header, "big"))
                if message is None:
                    return
                reply = answer(self.card, message)
                if reply is not None:
                    self._socket.sendall(frame(reply))
        finally:
            self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def main(argv: list[str] | None = None) -> None:
    from ecard.terminal.virtual_card import VirtualCard

    parser = argparse.ArgumentParser(description="Serve a virtual social security card to vpcd")
    parser.add_argument("--facts", type=Path, required=True, help="CardFacts as JSON")
    parser.add_argument("--keys", type=Path, required=True, help="CardKeys as JSON (base64 keys)")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args(argv)
    card = VirtualCard(
        msgspec.json.decode(args.facts.read_bytes(), type=CardFacts),
        msgspec.json.decode(args.keys.read_bytes(), type=CardKeys),
    )
    link = VpcdCardLink(card, args.host, args.port)
    link.connect(timeout=30.0)
    log.info("virtual card connected to vpcd at %s:%d", args.host, args.port)
    link.serve()


if __name__ == "__main__":
    main()
