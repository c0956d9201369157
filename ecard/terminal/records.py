"""Offline acceptance records: what a terminal signs when it accepts (or refuses) a card or a code
without the platform, and how the platform reconciles them when they are uploaded later.

A record names the card or code only by a pseudonymous reference, never by personal data.  The
terminal signs the record's canonical bytes with its ES256 key; the platform checks every
signature against the key registered for that terminal, then sorts each uploaded record into
exactly one bucket — new, idempotent duplicate, conflicting duplicate, counter rollback, wrong key —
reports the holes in each terminal's counter sequence, and flags new records that accepted a card
already revoked, or a code already expired, at acceptance time.  Pure: no I/O; keys are
``cryptography`` key objects passed in.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from itertools import accumulate

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.offline.es256 import b64url_encode, sign_raw, verify_raw
from ecard.offline.package import card_reference  # noqa: F401  (re-exported: records name cards by it)
from ecard.terminal.errors import TerminalError, TerminalReason

CANONICAL_PREFIX = b"ecard/acceptance-record/v1\n"
MAX_COUNTER = 2**63 - 1
MAX_TIME = 2**40
MAX_BATCH_RECORDS = 10_000
_TERMINAL_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_REFERENCE = re.compile(r"[A-Za-z0-9_-]{8,128}")
_LOOKS_PERSONAL = re.compile(r"[0-9]{17}[0-9Xx]|[0-9]+")  # an identity number or a bare number
_REASON = re.compile(r"[a-z0-9_]{0,64}")


class AcceptanceKind(StrEnum):
    CARD = "card"  # the chip card
    HCE = "hce"  # the e-card over NFC (host card emulation)
    QR = "qr"  # a signed QR code


class AcceptanceResult(StrEnum):
    ACCEPTED = "accepted"
    REFUSED = "refused"


class AcceptanceRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One acceptance at one terminal.  ``counter`` rises by one per record from 1; ``reference``
    is a pseudonym of the card or code; ``accepted_at`` is epoch seconds (UTC); ``reason`` is the
    stable refusal code when ``result`` is refused."""

    terminal_id: str
    counter: int
    reference: str
    accepted_at: int
    kind: AcceptanceKind
    result: AcceptanceResult
    reason: str = ""


class SignedRecord(msgspec.Struct, frozen=True):
    record: AcceptanceRecord
    signature: bytes  # ES256, r || s (64 bytes)


def _refuse(detail: str) -> TerminalError:
    return TerminalError(TerminalReason.BAD_ACCEPTANCE_RECORD, detail)


def check_record(record: AcceptanceRecord) -> None:
    """Refuse malformed records and references that look like personal data."""
    if not _TERMINAL_ID.fullmatch(record.terminal_id):
        raise _refuse("terminal_id is 1..64 of A-Z a-z 0-9 . _ -")
    if not 1 <= record.counter <= MAX_COUNTER:
        raise _refuse("counter out of range")
    if not _REFERENCE.fullmatch(record.reference) or _LOOKS_PERSONAL.fullmatch(record.reference):
        raise _refuse("reference must be a base64url pseudonym (8..128), not a number")
    if not 0 <= record.accepted_at < MAX_TIME:
        raise _refuse("accepted_at out of range")
    if not _REASON.fullmatch(record.reason):
        raise _refuse("reason is a stable lower-case code")
    if (record.result is AcceptanceResult.ACCEPTED) == bool(record.reason):
        raise _refuse("a refusal carries a reason and an acceptance none")


def canonical_bytes(record: AcceptanceRecord) -> bytes:
    """What is signed: a domain prefix and the fields as a JSON array in a fixed order."""
    check_record(record)
    fields = [
        record.terminal_id,
        record.counter,
        record.reference,
        record.accepted_at,
        record.kind.value,
        record.result.value,
        record.reason,
    ]
    return CANONICAL_PREFIX + msgspec.json.encode(fields)


def sign_record(record: AcceptanceRecord, private_key: ec.EllipticCurvePrivateKey) -> SignedRecord:
    return SignedRecord(record, sign_raw(private_key, canonical_bytes(record)))


def verify_record(signed: SignedRecord, public_key: ec.EllipticCurvePublicKey) -> bool:
    try:
        data = canonical_bytes(signed.record)
    except TerminalError:
        return False
    return verify_raw(public_key, signed.signature, data)


def decode_batch(raw: bytes, *, max_records: int = MAX_BATCH_RECORDS) -> list[SignedRecord]:
    """An uploaded batch (a JSON array of signed records); malformed input is a typed error."""
    if len(raw) > max_records * 1024:
        raise _refuse("batch too large")
    try:
        batch = msgspec.json.decode(raw, type=list[SignedRecord])
    except msgspec.DecodeError as error:
        raise _refuse(f"not a batch of signed records: {error}") from None
    if len(batch) > max_records:
        raise _refuse(f"more than {max_records} records")
    return batch


def encode_batch(batch: Iterable[SignedRecord]) -> bytes:
    return msgspec.json.encode(list(batch))


class CounterGap(msgspec.Struct, frozen=True):
    """Counters ``first``..``last`` (inclusive) of ``terminal_id`` have never been uploaded."""

    terminal_id: str
    first: int
    last: int


class Reconciliation(msgspec.Struct, frozen=True, kw_only=True):
    """Every uploaded record is in exactly one of the first five; the last two flag
    accepted ones."""

    accepted: tuple[SignedRecord, ...]  # new and consistent: store these
    duplicates: tuple[SignedRecord, ...]  # same terminal, counter and content as one already held
    conflicts: tuple[SignedRecord, ...]  # same terminal and counter, different content
    rollbacks: tuple[SignedRecord, ...]  # counter and clock disagree with a record already held
    wrong_key: tuple[SignedRecord, ...]  # not signed by the terminal's registered key
    gaps: tuple[CounterGap, ...]
    revoked_before_acceptance: tuple[SignedRecord, ...]  # subset of accepted
    expired_codes: tuple[SignedRecord, ...]  # subset of accepted


def _gaps(terminal_id: str, counters: Iterable[int]) -> list[CounterGap]:
    gaps: list[CounterGap] = []
    expected = 1
    for counter in sorted(set(counters)):
        if counter > expected:
            gaps.append(CounterGap(terminal_id, expected, counter - 1))
        expected = counter + 1
    return gaps


class _TerminalHistory:
    """What is held for one terminal, indexed so the rollback test is O(log n) per record.

    The batch is walked in ascending counter order, so while a record is judged every batch record
    already taken has a lower counter, and only stored records can have higher ones.
    """

    def __init__(self, records: Iterable[AcceptanceRecord]) -> None:
        self.by_counter = {record.counter: record for record in records}
        self._counters = sorted(self.by_counter)
        times = [self.by_counter[counter].accepted_at for counter in self._counters]
        self._prefix_latest = list(accumulate(times, max))
        self._suffix_earliest = list(accumulate(reversed(times), min))[::-1]
        self._batch_latest = -1

    def clock_disagrees(self, record: AcceptanceRecord) -> bool:
        """A lower counter stamped later, or a higher counter stamped earlier, is already held."""
        index = bisect_left(self._counters, record.counter)
        lower_is_later = index > 0 and self._prefix_latest[index - 1] > record.accepted_at
        higher_is_earlier = (
            index < len(self._counters) and self._suffix_earliest[index] < record.accepted_at
        )
        return lower_is_later or higher_is_earlier or self._batch_latest > record.accepted_at

    def take(self, record: AcceptanceRecord) -> None:
        self.by_counter[record.counter] = record
        self._batch_latest = max(self._batch_latest, record.accepted_at)


def reconcile(
    stored: Sequence[SignedRecord],
    batch: Sequence[SignedRecord],
    *,
    terminal_keys: Mapping[str, ec.EllipticCurvePublicKey],
    revoked_at: Mapping[str, int],
    code_expires_at: Mapping[str, int],
) -> Reconciliation:
    """Sort ``batch`` against what is ``stored`` (already verified records of the same terminals).

    Buckets list records by terminal and counter, not in upload order.  A terminal whose clock was
    set back shows up as rollbacks: its counter and its clock must rise together.

    ``revoked_at`` maps a card reference to when it was revoked; ``code_expires_at`` maps a code
    reference (hce/qr) to when it expired.  Only records that *accepted* something are flagged:
    refusing a revoked card is the terminal doing its job.
    """
    stored_by_terminal: dict[str, list[AcceptanceRecord]] = {}
    for signed in stored:
        stored_by_terminal.setdefault(signed.record.terminal_id, []).append(signed.record)
    history: dict[str, _TerminalHistory] = {}
    buckets: dict[str, list[SignedRecord]] = {
        name: [] for name in ("accepted", "duplicates", "conflicts", "rollbacks", "wrong_key")
    }
    for signed in sorted(batch, key=lambda item: (item.record.terminal_id, item.record.counter)):
        record = signed.record
        key = terminal_keys.get(record.terminal_id)
        if key is None or not verify_record(signed, key):
            buckets["wrong_key"].append(signed)
            continue
        terminal = history.get(record.terminal_id)
        if terminal is None:
            terminal = history[record.terminal_id] = _TerminalHistory(
                stored_by_terminal.get(record.terminal_id, ())
            )
        previous = terminal.by_counter.get(record.counter)
        if previous is not None:
            buckets["duplicates" if previous == record else "conflicts"].append(signed)
        elif terminal.clock_disagrees(record):
            buckets["rollbacks"].append(signed)
        else:
            terminal.take(record)
            buckets["accepted"].append(signed)
    accepted_something = [
        signed
        for signed in buckets["accepted"]
        if signed.record.result is AcceptanceResult.ACCEPTED
    ]
    return Reconciliation(
        **{name: tuple(items) for name, items in buckets.items()},
        gaps=tuple(
            gap
            for terminal_id in sorted(history)
            for gap in _gaps(terminal_id, history[terminal_id].by_counter)
        ),
        revoked_before_acceptance=tuple(
            signed
            for signed in accepted_something
            if signed.record.kind is AcceptanceKind.CARD
            and revoked_at.get(signed.record.reference, MAX_TIME) <= signed.record.accepted_at
        ),
        expired_codes=tuple(
            signed
            for signed in accepted_something
            if signed.record.kind is not AcceptanceKind.CARD
            and code_expires_at.get(signed.record.reference, MAX_TIME) <= signed.record.accepted_at
        ),
    )


def record_key(record: AcceptanceRecord) -> str:
    """The unique key a stored record is held under: one record per terminal and counter."""
    return f"{record.terminal_id}:{record.counter}"


def settle_lost_races(
    result: Reconciliation, inserted: Iterable[str], held: Mapping[str, AcceptanceRecord]
) -> Reconciliation:
    """Re-sort the ``accepted`` records that another upload stored first.

    :func:`reconcile` judges a batch against what was stored when it read; a concurrent upload
    (another request, another worker) may store the same terminal and counter before this one
    inserts.  The insert is atomic on :func:`record_key` (insert ... on conflict do nothing), so
    exactly one upload stores each key: ``inserted`` are the keys this upload stored, ``held`` the
    records now stored under the others.  An accepted record that was not inserted is a duplicate
    when the stored one has the same content (the signature may differ: ES256 is randomised) and a
    conflict when it does not; either way it leaves ``accepted`` and the flags derived from it.
    """
    inserted = set(inserted)
    lost = [signed for signed in result.accepted if record_key(signed.record) not in inserted]
    if not lost:
        return result
    missing = [
        record_key(signed.record) for signed in lost if record_key(signed.record) not in held
    ]
    if missing:
        raise ValueError(f"neither inserted nor held: {missing[:3]}")
    gone = {id(signed) for signed in lost}

    def kept(items: tuple[SignedRecord, ...]) -> tuple[SignedRecord, ...]:
        return tuple(signed for signed in items if id(signed) not in gone)

    def by_counter(items: Iterable[SignedRecord]) -> tuple[SignedRecord, ...]:
        return tuple(sorted(items, key=lambda item: (item.record.terminal_id, item.record.counter)))

    same = [signed for signed in lost if held[record_key(signed.record)] == signed.record]
    different = [signed for signed in lost if held[record_key(signed.record)] != signed.record]
    return msgspec.structs.replace(
        result,
        accepted=kept(result.accepted),
        duplicates=by_counter([*result.duplicates, *same]),
        conflicts=by_counter([*result.conflicts, *different]),
        revoked_before_acceptance=kept(result.revoked_before_acceptance),
        expired_codes=kept(result.expired_codes),
    )


# --- references: pseudonyms the terminal writes and the platform recomputes --------------------


def code_reference(code_id: str) -> str:
    """A QR code's reference: its code id (hex, see ``ParsedCode.code_id``) as base64url."""
    return b64url_encode(bytes.fromhex(code_id))


def counter_gaps(terminal_id: str, counters: Iterable[int]) -> list[CounterGap]:
    """The holes in a terminal's counters (from 1), as :func:`reconcile` reports them."""
    return _gaps(terminal_id, counters)
