"""``POST /ledger/v1/receipts/check`` is public: hostile numbers and sizes get a 400 problem with a
stable code, never a 500 (issue 16 §7)."""

from __future__ import annotations

import base64

import msgspec
import pytest

from ecard.consent.schemas import GrantReceipts
from tests.consent.conftest import ConsentWorld

U64 = 2**64
HOSTILE = [
    ("seq", 2**70),
    ("seq", -1),
    ("seq", 2**63),
    ("seq", U64 - 1),
    ("first_seq", 2**70),
    ("first_seq", -5),
    ("first_seq", 2**63),
    ("count", 2**40),
    ("count", 0),
    ("count", -1),
    ("count", 2**32),
    ("issued_ms", 2**70),
    ("issued_ms", -1),
    ("issued_ms", 2**64),
    ("log_key_id", "k" * 300),
    ("log_key_id", "é" * 200),
    ("log_key_id", ""),
    ("entry_hash", base64.b64encode(b"\x00" * 5000).decode()),
    ("entry_hash", base64.b64encode(b"\x00" * 31).decode()),
    ("signature", base64.b64encode(b"\x00" * 100_000).decode()),
    ("path", [base64.b64encode(b"\x00" * 32).decode()] * 500),
    ("path", [base64.b64encode(b"\x00" * 7).decode()]),
]


async def _a_receipt(cw: ConsentWorld) -> dict:
    grant_id = await cw.granted()
    await cw.settle()
    response = await cw.client.get(
        f"/holder/v1/consent/grants/{grant_id}/receipts", headers=cw.holder.headers
    )
    receipts = msgspec.json.decode(response.content, type=GrantReceipts)
    return msgspec.to_builtins(receipts.events[-1].receipt)


async def test_hostile_receipt_fields_are_400_problems(cw: ConsentWorld) -> None:
    genuine = await _a_receipt(cw)
    ok = await cw.client.post("/ledger/v1/receipts/check", json=genuine)
    assert ok.status_code == 200 and ok.json()["status"] == "sealed", ok.text
    for field, value in HOSTILE:
        response = await cw.client.post("/ledger/v1/receipts/check", json={**genuine, field: value})
        assert response.status_code == 400, (
            field,
            value,
            response.status_code,
            response.text[:300],
        )
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] in {"validation_failed", "ledger_receipt_invalid"}, (
            field,
            value,
            response.text,
        )


@pytest.mark.parametrize("seq", [2**70, -1, 2**63 - 1])
async def test_consistent_but_unknown_huge_seq_is_refused(cw: ConsentWorld, seq: int) -> None:
    """A seq inside its own batch (first_seq = seq, count 1) passes the shape checks; the signature
    then fails, so the answer is the ledger's refusal, not an overflow in the database query."""
    genuine = await _a_receipt(cw)
    response = await cw.client.post(
        "/ledger/v1/receipts/check",
        json={**genuine, "seq": seq, "first_seq": seq, "count": 1, "path": []},
    )
    assert response.status_code == 400, response.text[:300]
    assert response.json()["code"] in {"validation_failed", "ledger_receipt_invalid"}
