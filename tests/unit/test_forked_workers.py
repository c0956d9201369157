"""Workers are forked from one process: what must differ between them is drawn again after fork."""

from __future__ import annotations

import os

from ecard.codes import service
from ecard.edge import valid_request_id


def _in_child(draw) -> str:  # type: ignore[no-untyped-def]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its draw and leave at once
        os.write(write, draw().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        return pipe.read()


def test_forked_workers_give_codes_different_serials() -> None:
    """The same serial for one card in one second would make its second code 'already used'."""
    child = _in_child(lambda: str(service._SERIALS.getrandbits(64)))
    assert child != str(service._SERIALS.getrandbits(64))


def test_forked_workers_mint_different_request_ids() -> None:
    child = _in_child(lambda: valid_request_id(None))
    parent = valid_request_id(None)
    assert len(child) == len(parent) == 32 and child[:16] != parent[:16]
