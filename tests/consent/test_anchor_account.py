"""The service anchoring from its own account on a node that holds no keys (anvil ``--accounts 0``,
as production Besu/GoQuorum): ``ecard ledger deploy`` prints a working contract, production never
deploys on first use, ``/readyz`` reports the node and the outbox honestly, and the log key and the
consent writer key are two separately configured trust domains."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ecard.consent.ledger_bridge import ledger_readiness, runtime
from ecard.consent.tables import ChainDeployment
from ecard.crypto.keyring import KeyringError, Secrets, ledger_keys
from ecard.settings import Settings, load_settings
from ledger.evm.anchor import connect
from ledger.tables import LedgerAnchor
from tests.conftest import require
from tests.consent.conftest import ConsentWorld
from tests.helpers import platform_of
from tests.ledger.chain import AnvilNode, anvil_binary

pytestmark = pytest.mark.chain
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def anvil(tmp_path: Path) -> Iterator[AnvilNode]:
    """A node without keys making a block every second (a QBFT network's rhythm)."""
    binary = anvil_binary()
    require(
        binary is not None, "anvil (an EVM JSON-RPC node)", "run scripts/install_chain_tools.sh"
    )
    assert binary is not None
    node = AnvilNode(binary, tmp_path / "anvil.json", "--accounts", "0", "--block-time", "1")
    node.start()
    yield node
    node.stop()


@pytest.fixture()
def account(anvil: AnvilNode) -> LocalAccount:
    account = Account.create()
    funded = httpx.post(
        anvil.url,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "anvil_setBalance",
            "params": [account.address, hex(10**21)],
        },
        timeout=5,
    )
    assert "error" not in funded.json(), funded.text
    return account


@pytest.fixture()
def key_file(tmp_path: Path, account: LocalAccount) -> str:
    path = tmp_path / "anchor.key"
    path.write_text(account.key.hex() + "\n")
    path.chmod(0o600)
    return str(path)


def base_environ(request: pytest.FixtureRequest, tmp_path: Path, keys_dir: str) -> dict[str, str]:
    environ = {
        "ECARD_KEYS_DIR": keys_dir,
        "ECARD_LOG_LEVEL": "ERROR",
        "ECARD_LEDGER_SEAL_INTERVAL": "0.2",
    }
    if getattr(request, "param", "embedded") == "embedded":
        environ["ECARD_DATABASE_URL"] = f"sqlite:///{tmp_path}/ecard.db"
    else:
        environ["ECARD_DATABASE_URL"] = request.getfixturevalue("migrated_postgres_url")
        environ["ECARD_REDIS_URL"] = request.getfixturevalue("redis_url")
        environ["ECARD_REDIS_PREFIX"] = f"t{uuid.uuid4().hex[:10]}:"
    return environ


def deploy_with_cli(anvil: AnvilNode, key_file: str, tmp_path: Path) -> dict[str, str]:
    """``ecard ledger deploy`` in a subprocess; returns the settings it printed."""
    env = {
        **os.environ,
        "ECARD_LEDGER_RPC_URL": anvil.url,
        "ECARD_LEDGER_ANCHOR_KEY": key_file,
        "ECARD_DATABASE_URL": f"sqlite:///{tmp_path}/deploy.db",
        "ECARD_KEYS_DIR": str(tmp_path / "deploy-keys"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "ecard.cli", "ledger", "deploy"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = dict(line.split("=", 1) for line in done.stdout.split())
    assert set(printed) == {
        "ECARD_LEDGER_CHAIN_ID",
        "ECARD_LEDGER_CONTRACT",
        "ECARD_LEDGER_CONTRACT_BLOCK",
    }
    assert key_file not in done.stdout + done.stderr
    return printed


def ed25519_hex() -> str:
    from cryptography.hazmat.primitives import serialization

    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return raw.hex()


@pytest.fixture(params=["embedded", "postgres"])
def settings(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    keys_dir: str,
    anvil: AnvilNode,
    key_file: str,
) -> Settings:
    """Production settings: the contract deployed beforehand by ``ecard ledger deploy``, the
    anchoring key and two separate ledger keys configured."""
    printed = deploy_with_cli(anvil, key_file, tmp_path)
    log_key = tmp_path / "log.key"
    log_key.write_text(ed25519_hex())
    return load_settings(
        {
            **base_environ(request, tmp_path, keys_dir),
            **printed,
            "ECARD_ENV": "prod",
            "ECARD_PUBLIC_URL": "https://ecard.example.cn",
            "ECARD_LEDGER_RPC_URL": anvil.url,
            "ECARD_LEDGER_ANCHOR_KEY": key_file,
            "ECARD_LEDGER_LOG_KEY": str(log_key),
            "ECARD_LEDGER_WRITER_KEY": ed25519_hex(),
            "ECARD_LEDGER_MAX_BLOCK_AGE": "10",
        }
    )


async def eventually(check: Any, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def all_confirmed() -> bool:
    jobs = await LedgerAnchor.select()
    return bool(jobs) and {job["status"] for job in jobs} == {"confirmed"}


async def test_production_anchors_from_its_account_into_the_deployed_contract(
    cw: ConsentWorld, anvil: AnvilNode, account: LocalAccount, settings: Settings
) -> None:
    platform = platform_of(cw.client)
    state = runtime(platform)
    assert state.ledger.public_key != platform.keys.ring.secrets.ledger_key("log").public_key()
    for _ in range(2):
        await cw.granted()
    await eventually(all_confirmed)
    assert await ChainDeployment.count() == 0  # production never deploys on first use
    w3 = connect(anvil.url)
    try:
        assert await w3.eth.accounts == []
        for job in await LedgerAnchor.select():
            tx = await w3.eth.get_transaction(job["tx_hash"])
            assert tx["from"] == account.address
            assert tx["to"] == w3.to_checksum_address(settings.ledger_contract or "")
    finally:
        await w3.provider.disconnect()

    ready = await cw.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["ledger"].startswith("ok (chain 31337")

    anvil.stop()
    started = time.monotonic()
    down = await cw.client.get("/readyz")
    assert time.monotonic() - started < 5  # bounded: a dead node cannot hang the probe
    assert down.status_code == 503 and down.headers["retry-after"]
    assert down.json()["checks"]["ledger"].startswith("unavailable")
    await cw.granted()  # consent does not wait for the chain

    anvil.start()
    await eventually(all_confirmed, timeout=60)
    assert (await cw.client.get("/readyz")).status_code == 200
    audit = await cw.client.get("/ledger/v1/audit", headers=cw.world.op("auditor"))
    assert audit.json()["ok"] and audit.json()["chain_checked"], audit.text


class Probe:
    """Just enough of a platform for the readiness probe."""

    def __init__(self, settings: Settings, platform: Any) -> None:
        self.settings, self.engine, self.keys = settings, platform.engine, platform.keys
        self.__dict__["consent_ledger"] = runtime(platform)


@pytest.mark.parametrize("settings", ["embedded"], indirect=True)
async def test_readyz_refuses_a_wrong_chain_a_stale_chain_and_a_missing_contract(
    cw: ConsentWorld, anvil: AnvilNode, settings: Settings
) -> None:
    platform = platform_of(cw.client)
    assert (await ledger_readiness(platform)).startswith("ok")

    wrong = Probe(msgspec_replace(settings, ledger_chain_id=1), platform)
    assert await ledger_readiness(wrong) == (  # type: ignore[arg-type]
        "unavailable: the node serves chain 31337, not 1"
    )
    stale = Probe(msgspec_replace(settings, ledger_max_block_age=0.001), platform)
    await asyncio.sleep(0.01)
    assert "latest block" in await ledger_readiness(stale)  # type: ignore[arg-type]

    no_contract = Probe(msgspec_replace(settings, ledger_contract=None), platform)
    reason = await ledger_readiness(no_contract)  # type: ignore[arg-type]
    assert reason.startswith("unavailable") and "ECARD_LEDGER_CONTRACT" in reason
    assert "ecard ledger deploy" in reason


def msgspec_replace(settings: Settings, **changes: Any) -> Settings:
    import msgspec

    return msgspec.structs.replace(settings, **changes)


async def test_production_without_a_contract_refuses_to_anchor_and_says_why(
    tmp_path: Path, keys_dir: str, anvil: AnvilNode, key_file: str, account: LocalAccount
) -> None:
    from ecard.consent.ledger_bridge import open_chain, run_anchoring
    from ecard.platform import open_platform
    from ledger import LedgerError

    settings = load_settings(
        {
            "ECARD_KEYS_DIR": keys_dir,
            "ECARD_DATABASE_URL": f"sqlite:///{tmp_path}/ecard.db",
            "ECARD_ENV": "prod",
            "ECARD_PUBLIC_URL": "https://ecard.example.cn",
            "ECARD_LEDGER_RPC_URL": anvil.url,
            "ECARD_LEDGER_ANCHOR_KEY": key_file,
            "ECARD_LEDGER_LOG_KEY": ed25519_hex(),
            "ECARD_LEDGER_WRITER_KEY": ed25519_hex(),
        }
    )
    platform = await open_platform(settings, migrate=True)
    try:
        with pytest.raises(LedgerError, match="ECARD_LEDGER_CONTRACT, ECARD_LEDGER_CHAIN_ID"):
            await open_chain(platform)
        stop = asyncio.Event()
        await asyncio.wait_for(run_anchoring(platform, stop, 0.1), 5)  # returns: refused
        assert await ChainDeployment.count() == 0
        w3 = connect(anvil.url)
        assert await w3.eth.get_transaction_count(account.address) == 0  # nothing was sent
        await w3.provider.disconnect()
    finally:
        await platform.close()


def test_ecard_ledger_deploy_refuses_without_a_key_and_a_second_contract(
    tmp_path: Path, anvil: AnvilNode, key_file: str
) -> None:
    env = {
        **os.environ,
        "ECARD_LEDGER_RPC_URL": anvil.url,
        "ECARD_DATABASE_URL": f"sqlite:///{tmp_path}/d.db",
        "ECARD_KEYS_DIR": str(tmp_path / "k"),
    }
    env.pop("ECARD_LEDGER_ANCHOR_KEY", None)
    command = [sys.executable, "-m", "ecard.cli", "ledger", "deploy"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    assert done.returncode == 1 and "ECARD_LEDGER_ANCHOR_KEY" in done.stderr
    printed = deploy_with_cli(anvil, key_file, tmp_path)
    again = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**env, **printed, "ECARD_LEDGER_ANCHOR_KEY": key_file},
        cwd=ROOT,
        check=False,
    )
    assert again.returncode == 1 and "anchor.contract_exists" in again.stderr


def test_two_trust_domains_log_key_and_writer_key() -> None:
    secrets = Secrets.generate()
    log, writer = ledger_keys(
        secrets, "writer:consent", log_key=None, writer_key=None, required=False
    )  # development: derived as before
    raw = secrets.ledger_key("log").public_key().public_bytes_raw()
    assert log.public_key().public_bytes_raw() == raw
    with pytest.raises(KeyringError, match="ECARD_LEDGER_LOG_KEY and ECARD_LEDGER_WRITER_KEY"):
        ledger_keys(secrets, "writer:consent", log_key=None, writer_key=None, required=True)
    with pytest.raises(KeyringError, match="ECARD_LEDGER_WRITER_KEY must"):
        ledger_keys(
            secrets, "writer:consent", log_key=ed25519_hex(), writer_key=None, required=True
        )
    same = ed25519_hex()
    with pytest.raises(KeyringError, match="same key"):
        ledger_keys(secrets, "writer:consent", log_key=same, writer_key=same, required=True)
    with pytest.raises(KeyringError, match="neither") as refused:
        ledger_keys(
            secrets, "writer:consent", log_key="/no/such/key", writer_key=None, required=False
        )
    assert "/no/such" not in str(refused.value)
    log_hex, writer_hex = ed25519_hex(), ed25519_hex()
    log, writer = ledger_keys(
        secrets, "writer:consent", log_key=log_hex, writer_key=writer_hex, required=True
    )
    assert (
        log.private_bytes_raw().hex() == log_hex and writer.private_bytes_raw().hex() == writer_hex
    )
