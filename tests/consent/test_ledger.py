"""Every consent event reaches the ledger without personal data; holders get receipts that verify
offline; a relying party can prove a grant was live at its access; the audit (HTTP and CLI) finds
a tampered entry, block or anchor job and names its position."""

from __future__ import annotations

import argparse
import base64
import json

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ecard.consent.cli import register
from ecard.consent.schemas import AccessProof, GrantReceipts
from ledger import Event, commit, decode_leaf, verify_receipt
from ledger.tables import LedgerAnchor, LedgerBlock, LedgerEntry
from ledger.verify import verify_history
from tests.consent.conftest import ConsentWorld
from tests.helpers import platform_of


async def log_key(cw: ConsentWorld) -> Ed25519PublicKey:
    keys = await cw.client.get("/ledger/v1/keys")
    assert keys.status_code == 200
    body = msgspec.json.decode(keys.content)
    assert [w["id"] for w in body["writers"]] == ["consent"]
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(body["log_public_key"]))


async def test_each_event_is_one_entry_carrying_no_personal_data(cw: ConsentWorld) -> None:
    grant_id = await cw.granted()
    await cw.read(grant_id)
    await cw.client.post(f"/holder/v1/consent/grants/{grant_id}/revoke", headers=cw.holder.headers)
    denied_id = (await cw.ask()).json()["id"]
    await cw.client.post(f"/holder/v1/consent/requests/{denied_id}/deny", headers=cw.holder.headers)
    await cw.settle()

    rows = await LedgerEntry.select().order_by(LedgerEntry.seq)
    entries = [decode_leaf(bytes(r["leaf"])) for r in rows]
    events = [e.body.event for e in entries]
    assert events == [
        Event.REQUESTED,
        Event.GRANTED,
        Event.ACCESSED,
        Event.REVOKED,
        Event.REQUESTED,
        Event.DENIED,
    ]
    assert {e.body.relying_party for e in entries} == {cw.rp["client_id"]}
    person = cw.holder.person
    secrets_of_person = [
        person["identity_number"],
        person["name"],
        person["card_number"],
        person["person_id"],
        person["card_id"],
    ]
    for row in rows:
        blob = bytes(row["leaf"])
        assert not any(value.encode() in blob for value in secrets_of_person)
    receipts = msgspec.json.decode(
        (
            await cw.client.get(
                f"/holder/v1/consent/grants/{grant_id}/receipts", headers=cw.holder.headers
            )
        ).content,
        type=GrantReceipts,
    )
    assert (
        commit(receipts.canonical, receipts.salt) == receipts.commitment
    )  # the holder can open it
    assert {e.body.commitment for e in entries[:4]} == {receipts.commitment}
    assert receipts.commitment not in {
        e.body.commitment for e in entries[4:]
    }  # one commitment per consent


async def test_holder_receipts_verify_and_are_kept(cw: ConsentWorld) -> None:
    grant_id = await cw.granted()
    await cw.settle()
    key = await log_key(cw)
    response = await cw.client.get(
        f"/holder/v1/consent/grants/{grant_id}/receipts", headers=cw.holder.headers
    )
    receipts = msgspec.json.decode(response.content, type=GrantReceipts)
    assert [e.event for e in receipts.events] == ["requested", "granted"]
    for event in receipts.events:
        assert event.receipt is not None and event.seq == event.receipt.seq
        verify_receipt(event.receipt, key)  # offline, with the log key only
    body = msgspec.json.encode(receipts.events[1].receipt)
    checked = await cw.client.post(
        "/ledger/v1/receipts/check", content=body, headers={"content-type": "application/json"}
    )
    assert checked.status_code == 200 and checked.json()["status"] == "sealed"

    forged = msgspec.structs.replace(
        receipts.events[1].receipt, seq=receipts.events[1].receipt.seq + 7
    )
    refused = await cw.client.post(
        "/ledger/v1/receipts/check",
        content=msgspec.json.encode(forged),
        headers={"content-type": "application/json"},
    )
    assert refused.status_code == 400 and refused.json()["code"] == "ledger_receipt_invalid"
    garbage = await cw.client.post("/ledger/v1/receipts/check", json={"seq": "x"})
    assert garbage.status_code == 400


async def test_relying_party_proves_the_grant_was_live_at_its_access(cw: ConsentWorld) -> None:
    grant_id = await cw.granted()
    first = (await cw.read(grant_id)).json()["access_id"]
    pending = await cw.client.get(f"/consent/v1/accesses/{first}/proof", headers=cw.rp_headers)
    if pending.status_code != 200:  # the workers may not have sealed yet
        assert pending.status_code == 409 and pending.json()["code"] == "ledger_entry_pending"
    await cw.client.post(f"/holder/v1/consent/grants/{grant_id}/revoke", headers=cw.holder.headers)
    await cw.settle()

    key = await log_key(cw)
    response = await cw.client.get(f"/consent/v1/accesses/{first}/proof", headers=cw.rp_headers)
    assert response.status_code == 200, response.text
    proof = msgspec.json.decode(response.content, type=AccessProof)
    standing = verify_history(proof.history, key)  # the relying party's own check
    assert standing.live and standing.last_event is Event.ACCESSED
    assert [decode_leaf(e.leaf).body.event for e in proof.history.entries] == [
        Event.REQUESTED,
        Event.GRANTED,
        Event.ACCESSED,
    ]

    other_rp = await cw.world.new_client("relying_party", entitlements=["card.status"])
    from tests.helpers import basic

    hidden = await cw.client.get(
        f"/consent/v1/accesses/{first}/proof",
        headers=basic(other_rp["client_id"], other_rp["client_secret"]),
    )
    assert hidden.status_code == 404


async def audit(cw: ConsentWorld) -> dict:
    response = await cw.client.get("/ledger/v1/audit", headers=cw.world.op("auditor"))
    assert response.status_code == 200, response.text
    return response.json()


async def test_audit_endpoint_needs_an_auditor_and_passes_on_an_honest_log(
    cw: ConsentWorld,
) -> None:
    await cw.granted()
    await cw.settle()
    assert (await cw.client.get("/ledger/v1/audit")).status_code == 401
    assert (
        await cw.client.get("/ledger/v1/audit", headers=cw.world.op("readonly"))
    ).status_code == 403
    report = await audit(cw)
    assert report["ok"] and report["audit"]["entries"] == 2 and report["audit"]["blocks"] >= 1


async def test_tampering_is_found_with_its_position(cw: ConsentWorld) -> None:
    for _ in range(3):
        await cw.granted()
        await cw.settle()  # three blocks
    row = await LedgerEntry.select().where(LedgerEntry.seq == 3).first()
    leaf = bytearray(bytes(row["leaf"]))
    leaf[20] ^= 1  # flip one bit of a stored entry
    await LedgerEntry.update({LedgerEntry.leaf: bytes(leaf)}).where(LedgerEntry.seq == 3)
    await LedgerBlock.update({LedgerBlock.root: bytes(32)}).where(LedgerBlock.number == 2)
    await LedgerAnchor.update({LedgerAnchor.root: bytes(32)}).where(LedgerAnchor.block_number == 0)
    report = await audit(cw)
    assert not report["ok"]
    found = {(p["code"], p.get("seq"), p.get("block")) for p in report["audit"]["problems"]}
    assert {
        ("entry.hash_mismatch", 3, None),
        ("block.bad_signature", None, 2),
        ("anchor.job_mismatch", None, 0),
    } <= found, found


async def test_cli_verifies_the_log_and_a_receipt(
    cw: ConsentWorld, tmp_path, capsys, monkeypatch
) -> None:
    grant_id = await cw.granted()
    await cw.settle()
    receipts = (
        await cw.client.get(
            f"/holder/v1/consent/grants/{grant_id}/receipts", headers=cw.holder.headers
        )
    ).json()
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipts["events"][1]["receipt"]))
    settings = platform_of(cw.client).settings
    monkeypatch.setenv("ECARD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ECARD_KEYS_DIR", settings.keys_dir)
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ledger", "verify", "--receipt", str(path)])
    import asyncio

    code = await asyncio.to_thread(args.func, args)
    out = capsys.readouterr()
    assert code == 0, out.err
    result = json.loads(out.out)
    assert result["ok"] and result["receipt"]["status"] == "sealed"
    assert "2 entries" in out.err
