"""Chains for the anchoring tests: an in-process eth-tester chain and a real anvil JSON-RPC node
(from the npm registry, see scripts/install_chain_tools.sh) on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from web3 import AsyncWeb3

from ledger.evm.anchor import ChainAnchor, deploy_contract

ANVIL = Path(__file__).resolve().parents[2] / ".tools/chain/node_modules/.bin/anvil"


def anvil_binary() -> str | None:
    if ANVIL.exists():
        return str(ANVIL)
    return shutil.which("anvil")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AnvilNode:
    """An anvil process that can be stopped and started again on the same port and state file,
    as a chain node that goes down and comes back."""

    def __init__(self, binary: str, state: Path, *extra: str) -> None:
        """``extra``: more anvil flags, e.g. ``--accounts 0`` (a node that holds no keys, as
        production nodes) or ``--no-mining`` (transactions wait in the pool until mined)."""
        self.binary, self.state, self.port, self.extra = binary, state, free_port(), extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--state",
                str(self.state),
                "--silent",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    return
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError("anvil exited at start") from None
                time.sleep(0.05)
        raise RuntimeError("anvil did not open its port")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # anvil dumps its state on a graceful exit
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


async def deployed(w3: AsyncWeb3) -> tuple[ChainAnchor, list[str]]:
    """Deploy LedgerAnchor from account 0 (admin) and let account 1 anchor."""
    accounts = list(await w3.eth.accounts)
    address = await deploy_contract(w3, accounts[0])
    chain = ChainAnchor(w3, address, accounts[1])
    await chain.grant_anchorer(accounts[1], accounts[0])
    return chain, accounts
