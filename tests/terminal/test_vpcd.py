"""The vpcd card-side protocol, against a stand-in vpcd on a local socket (no pcscd needed)."""

from __future__ import annotations

import socket
import threading

import pytest

from ecard.terminal.errors import TerminalError, TerminalReason
from ecard.terminal.virtual_card import ATR, VirtualCard
from ecard.terminal.vpcd import Control, VpcdCardLink, answer, frame
from tests.terminal.helpers import SELECT_SSSE


def test_controls_and_apdus(card: VirtualCard) -> None:
    assert answer(card, bytes([Control.POWER_ON])) is None
    assert answer(card, bytes([Control.ATR])) == ATR
    assert answer(card, bytes([Control.RESET])) is None
    assert answer(card, SELECT_SSSE) == b"\x61\x13"
    assert answer(card, bytes([Control.ATR])) == ATR  # a presence poll keeps the selected DF
    assert answer(card, bytes.fromhex("00B2072C00"))[-2:] == b"\x90\x00"
    assert answer(card, bytes([Control.POWER_OFF])) is None
    assert answer(card, bytes.fromhex("00B2072C00"))[-2:] == b"\x6a\x82"  # power off forgot the DF


@pytest.mark.parametrize("message", [b"", b"\x03", b"\x09"])
def test_frames_vpcd_never_sends_are_refused(card: VirtualCard, message: bytes) -> None:
    with pytest.raises(TerminalError) as caught:
        answer(card, message)
    assert caught.value.reason is TerminalReason.VPCD_PROTOCOL


def test_framing_is_a_two_byte_big_endian_length() -> None:
    assert frame(b"\x90\x00") == b"\x00\x02\x90\x00"
    with pytest.raises(TerminalError):
        frame(b"\x00" * 65_536)


def _read_frame(connection: socket.socket) -> bytes:
    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = connection.recv(count - len(data))
            assert chunk, "card closed the connection"
            data += chunk
        return data

    return exactly(int.from_bytes(exactly(2), "big"))


def test_a_session_over_tcp_as_vpcd_runs_it(card: VirtualCard) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        link = VpcdCardLink(card, "127.0.0.1", server.getsockname()[1])
        link.connect(timeout=5)
        serving = threading.Thread(target=link.serve, daemon=True)
        serving.start()
        vpcd, _ = server.accept()
        with vpcd:
            vpcd.sendall(frame(bytes([Control.POWER_ON])))
            vpcd.sendall(frame(bytes([Control.ATR])))
            assert _read_frame(vpcd) == ATR
            vpcd.sendall(frame(SELECT_SSSE))
            assert _read_frame(vpcd) == b"\x61\x13"
            command = bytes.fromhex("00B2072C00")
            vpcd.sendall(frame(command)[:3])  # a frame split across TCP segments
            vpcd.sendall(frame(command)[3:])
            assert _read_frame(vpcd) == b"\x07\x09A12345678\x90\x00"
        serving.join(timeout=5)
        assert not serving.is_alive()  # vpcd hung up: the card stops serving


def test_connect_gives_up_when_nobody_listens(card: VirtualCard) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(OSError):
            VpcdCardLink(card, "127.0.0.1", port).connect(timeout=0.3)
