"""Offline acceptance records: signed by the terminal, sorted by the platform when uploaded."""

from __future__ import annotations

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from ecard.terminal import records as rec
from ecard.terminal.errors import TerminalError, TerminalReason

TERMINAL_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())
KEYS = {"T-1": TERMINAL_KEY.public_key(), "T-2": OTHER_KEY.public_key()}
CARD_REF = "card_pseudonym_0001"
CODE_REF = "code_pseudonym_0001"


def make(
    counter: int,
    *,
    at: int | None = None,
    terminal: str = "T-1",
    reference: str = CARD_REF,
    kind: rec.AcceptanceKind = rec.AcceptanceKind.CARD,
    refused: bool = False,
) -> rec.AcceptanceRecord:
    return rec.AcceptanceRecord(
        terminal_id=terminal,
        counter=counter,
        reference=reference,
        accepted_at=1_700_000_000 + 10 * counter if at is None else at,
        kind=kind,
        result=rec.AcceptanceResult.REFUSED if refused else rec.AcceptanceResult.ACCEPTED,
        reason="revoked" if refused else "",
    )


def sign(
    record: rec.AcceptanceRecord, key: ec.EllipticCurvePrivateKey = TERMINAL_KEY
) -> rec.SignedRecord:
    return rec.sign_record(record, key)


def reconcile(
    stored: list[rec.SignedRecord], batch: list[rec.SignedRecord], **facts: dict[str, int]
) -> rec.Reconciliation:
    return rec.reconcile(
        stored,
        batch,
        terminal_keys=KEYS,
        revoked_at=facts.get("revoked_at", {}),
        code_expires_at=facts.get("code_expires_at", {}),
    )


def test_signatures_cover_every_field() -> None:
    signed = sign(make(1))
    assert rec.verify_record(signed, TERMINAL_KEY.public_key())
    assert not rec.verify_record(signed, OTHER_KEY.public_key())
    for change in (
        {"counter": 2},
        {"accepted_at": 1},
        {"reference": "another_pseudonym"},
        {"kind": rec.AcceptanceKind.QR},
    ):
        tampered = rec.SignedRecord(
            msgspec.structs.replace(signed.record, **change), signed.signature
        )
        assert not rec.verify_record(tampered, TERMINAL_KEY.public_key())


def test_canonical_bytes_are_stable_and_domain_separated() -> None:
    assert rec.canonical_bytes(make(1, at=5)) == (
        b'ecard/acceptance-record/v1\n["T-1",1,"card_pseudonym_0001",5,"card","accepted",""]'
    )


@pytest.mark.parametrize(
    "change",
    [
        {"reference": "33010619900307123X"},  # an identity number is personal data
        {"reference": "123456789012"},
        {"reference": "short"},
        {"terminal_id": ""},
        {"counter": 0},
        {"accepted_at": -1},
        {"reason": "revoked"},  # an acceptance has no refusal reason
        {"result": rec.AcceptanceResult.REFUSED},  # a refusal needs one
    ],
)
def test_malformed_records_cannot_be_signed(change: dict[str, object]) -> None:
    with pytest.raises(TerminalError) as caught:
        sign(msgspec.structs.replace(make(1), **change))
    assert caught.value.reason is TerminalReason.BAD_ACCEPTANCE_RECORD


def test_batches_round_trip_and_garbage_is_a_typed_error() -> None:
    batch = [sign(make(1)), sign(make(2))]
    assert rec.decode_batch(rec.encode_batch(batch)) == batch
    for garbage in (b"", b"{}", b'[{"record": 1}]', b"\xff" * 10):
        with pytest.raises(TerminalError):
            rec.decode_batch(garbage)


def test_a_first_upload_is_accepted_and_a_retry_is_idempotent() -> None:
    batch = [sign(make(n)) for n in (1, 2, 3)]
    first = reconcile([], batch)
    assert first.accepted == tuple(batch) and not first.gaps
    again = reconcile(list(first.accepted), [sign(make(n)) for n in (1, 2, 3)])  # fresh signatures
    assert not again.accepted and len(again.duplicates) == 3 and not again.conflicts


def test_same_counter_with_other_content_is_a_conflict() -> None:
    stored = [sign(make(1))]
    result = reconcile(stored, [sign(make(1, reference="another_pseudonym"))])
    assert len(result.conflicts) == 1 and not result.accepted


def test_gaps_in_counters_are_reported_as_ranges() -> None:
    result = reconcile([sign(make(1))], [sign(make(n)) for n in (2, 5, 9)])
    assert [(g.first, g.last) for g in result.gaps] == [(3, 4), (6, 8)]
    later = reconcile(list(result.accepted) + [sign(make(1))], [sign(make(n)) for n in (3, 4)])
    assert [(g.first, g.last) for g in later.gaps] == [(6, 8)]  # late records fill the hole


def test_a_counter_that_goes_back_in_time_is_a_rollback() -> None:
    stored = [sign(make(n)) for n in (1, 2, 3)]
    reset_terminal = sign(make(2, at=1_800_000_000, reference="another_pseudonym"))
    restarted = sign(make(1, at=1_800_000_001, reference="another_pseudonym"))
    result = reconcile(stored, [reset_terminal, restarted])
    assert len(result.conflicts) == 2  # reused counters with new content
    new_low = sign(make(5, at=1_900_000_000))
    result = reconcile(stored + [sign(make(6, at=1_800_000_000))], [new_low])
    assert result.rollbacks == (new_low,) and not result.accepted


def test_records_signed_by_another_key_or_unknown_terminal() -> None:
    forged = sign(make(1), OTHER_KEY)
    stranger = sign(make(1, terminal="T-9"))
    result = reconcile([], [forged, stranger])
    assert set(result.wrong_key) == {forged, stranger} and not result.accepted and not result.gaps


def test_revoked_cards_and_expired_codes_are_flagged_only_when_accepted() -> None:
    revoked_card = sign(make(1, at=1000))
    refused_card = sign(make(2, at=1010, refused=True))
    expired_code = sign(make(3, at=1020, reference=CODE_REF, kind=rec.AcceptanceKind.QR))
    fine_code = sign(make(4, at=1030, reference="code_pseudonym_0002", kind=rec.AcceptanceKind.HCE))
    result = reconcile(
        [],
        [revoked_card, refused_card, expired_code, fine_code],
        revoked_at={CARD_REF: 999},
        code_expires_at={CODE_REF: 1020, "code_pseudonym_0002": 2000},
    )
    assert len(result.accepted) == 4
    assert result.revoked_before_acceptance == (revoked_card,)
    assert result.expired_codes == (expired_code,)
    later = reconcile([], [revoked_card], revoked_at={CARD_REF: 1001})
    assert not later.revoked_before_acceptance  # revoked after it was accepted: fine


SIGNED_POOL = {
    (terminal, counter, variant): sign(
        make(counter, terminal=terminal, reference=f"pseudonym_{variant:04d}"),
        TERMINAL_KEY if terminal == "T-1" else OTHER_KEY,
    )
    for terminal in ("T-1", "T-2")
    for counter in range(1, 9)
    for variant in range(2)
}
pool_keys = st.sampled_from(sorted(SIGNED_POOL))


@settings(max_examples=150, deadline=None)
@given(st.lists(pool_keys, max_size=12), st.lists(pool_keys, max_size=12))
def test_every_uploaded_record_lands_in_exactly_one_bucket(
    stored_keys: list[tuple[str, int, int]], batch_keys: list[tuple[str, int, int]]
) -> None:
    stored = list({(t, c): SIGNED_POOL[(t, c, v)] for t, c, v in stored_keys}.values())
    batch = [SIGNED_POOL[key] for key in batch_keys]
    result = reconcile(stored, batch)
    buckets = [
        result.accepted,
        result.duplicates,
        result.conflicts,
        result.rollbacks,
        result.wrong_key,
    ]
    assert sorted(map(id, batch)) == sorted(id(item) for bucket in buckets for item in bucket)
    again = reconcile(stored + list(result.accepted), list(result.accepted))
    assert not again.accepted and len(again.duplicates) == len(result.accepted)
    held = {(s.record.terminal_id, s.record.counter) for s in stored + list(result.accepted)}
    for gap in result.gaps:
        assert all((gap.terminal_id, n) not in held for n in range(gap.first, gap.last + 1))
        assert (gap.terminal_id, gap.last + 1) in held
