"""With a chain node configured the service deploys the anchoring contract on first use and anchors
every sealed block; killing the node mid-run costs consent nothing, loses no entry, and the
anchors catch up when it returns.  Uses a real anvil node (scripts/install_chain_tools.sh)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ecard.consent.tables import ChainDeployment, ConsentEvent
from ecard.settings import Settings, load_settings
from ledger.tables import LedgerAnchor, LedgerEntry
from tests.conftest import require
from tests.consent.conftest import ConsentWorld
from tests.ledger.chain import AnvilNode, anvil_binary

pytestmark = pytest.mark.chain


@pytest.fixture()
def anvil(tmp_path: Path) -> Iterator[AnvilNode]:
    binary = anvil_binary()
    require(
        binary is not None, "anvil (an EVM JSON-RPC node)", "run scripts/install_chain_tools.sh"
    )
    assert binary is not None
    node = AnvilNode(binary, tmp_path / "anvil-state.json")
    node.start()
    yield node
    node.stop()


@pytest.fixture(params=["embedded", "postgres"])
def settings(
    request: pytest.FixtureRequest, tmp_path: Path, keys_dir: str, anvil: AnvilNode
) -> Settings:
    environ = {
        "ECARD_KEYS_DIR": keys_dir,
        "ECARD_LOG_LEVEL": "ERROR",
        "ECARD_LEDGER_RPC_URL": anvil.url,
        "ECARD_LEDGER_SEAL_INTERVAL": "0.2",
    }
    if request.param == "embedded":
        environ["ECARD_DATABASE_URL"] = f"sqlite:///{tmp_path}/ecard.db"
    else:
        environ["ECARD_DATABASE_URL"] = request.getfixturevalue("migrated_postgres_url")
        environ["ECARD_REDIS_URL"] = request.getfixturevalue("redis_url")
        environ["ECARD_REDIS_PREFIX"] = f"t{uuid.uuid4().hex[:10]}:"
    return load_settings(environ)


async def anchor_states() -> list[str]:
    return [
        job["status"] for job in await LedgerAnchor.select().order_by(LedgerAnchor.block_number)
    ]


async def eventually(check, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def all_anchored() -> bool:
    states = await anchor_states()
    relayed = not await ConsentEvent.exists().where(ConsentEvent.seq.is_null())
    return relayed and bool(states) and set(states) == {"confirmed"} and await everything_sealed()


async def everything_sealed() -> bool:
    jobs = await LedgerAnchor.select().order_by(LedgerAnchor.block_number)
    return bool(jobs) and jobs[-1]["tree_size"] == await LedgerEntry.count()


async def test_killing_the_chain_node_loses_nothing_and_anchors_catch_up(
    cw: ConsentWorld, anvil: AnvilNode
) -> None:
    events = 0
    for _ in range(2):
        grant_id = await cw.granted()
        assert (await cw.read(grant_id)).status_code == 200
        events += 3
    await eventually(all_anchored)
    assert await ChainDeployment.count() == 1  # deployed on first use

    anvil.stop()
    for _ in range(3):  # consent does not wait for the chain
        grant_id = await cw.granted()
        assert (await cw.read(grant_id)).status_code == 200
        events += 3
    await eventually(everything_sealed)
    assert "confirmed" in await anchor_states() and set(await anchor_states()) != {"confirmed"}
    waiting = await LedgerAnchor.select().where(LedgerAnchor.status != "confirmed")
    assert any(job["last_error"] for job in waiting) or all(
        job["status"] == "pending" for job in waiting
    )

    anvil.start()
    await eventually(all_anchored, timeout=60)
    assert await LedgerEntry.count() == events == await ConsentEvent.count()

    response = await cw.client.get("/ledger/v1/audit", headers=cw.world.op("auditor"))
    report = response.json()
    assert report["ok"] and report["chain_checked"], report
    assert (
        report["audit"]["anchors_confirmed"]
        == report["audit"]["blocks"]
        == len(await anchor_states())
    )

    first = await LedgerAnchor.select().order_by(LedgerAnchor.block_number).first()
    await LedgerAnchor.update({LedgerAnchor.tx_hash: "0x" + "ab" * 32}).where(
        LedgerAnchor.block_number == first["block_number"]
    )
    problems = (await cw.client.get("/ledger/v1/audit", headers=cw.world.op("auditor"))).json()[
        "audit"
    ]["problems"]
    assert {"code": "anchor.tx_mismatch", "block": first["block_number"]}.items() <= problems[
        0
    ].items()
