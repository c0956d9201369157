"""Canonical encodings: leaves round-trip, garbage is refused with InvalidEntry only, signatures
bind every field, and commitments depend on the salt."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import Entry, EntryBody, Event, InvalidEntry, commit, decode_leaf, key_id, sign_batch
from ledger.merkle import MerkleTree
from ledger.records import entry_signature_holds, leaf_bytes

WRITER = Ed25519PrivateKey.generate()

bodies = st.builds(
    EntryBody,
    event=st.sampled_from(list(Event)),
    time_ms=st.integers(0, 2**63 - 1),
    relying_party=st.text(min_size=1, max_size=60).filter(lambda s: 0 < len(s.encode()) <= 255),
    commitment=st.binary(min_size=32, max_size=32),
)


def entries_of(batch_bodies: list[EntryBody], prev: int | None) -> list[Entry]:
    batch = sign_batch("writer-1", batch_bodies, WRITER)
    from ledger.merkle import leaf_hash
    from ledger.records import body_bytes

    tree = MerkleTree(leaf_hash(body_bytes(b)) for b in batch.bodies)
    return [
        Entry(b, batch.writer_id, prev, len(batch.bodies), i, tuple(path), batch.signature)
        for i, (b, path) in enumerate(zip(batch.bodies, tree.inclusion_proofs(), strict=True))
    ]


@settings(max_examples=100, deadline=None)
@given(batch=st.lists(bodies, min_size=1, max_size=9), prev=st.none() | st.integers(0, 2**64 - 2))
def test_leaves_round_trip_and_each_entry_carries_a_checkable_signature(
    batch: list[EntryBody], prev: int | None
) -> None:
    for entry in entries_of(batch, prev):
        assert decode_leaf(leaf_bytes(entry)) == entry
        assert entry_signature_holds(entry, WRITER.public_key())
        assert not entry_signature_holds(entry, Ed25519PrivateKey.generate().public_key())


@settings(max_examples=50, deadline=None)
@given(body=bodies, other=bodies)
def test_a_signature_does_not_carry_over_to_another_body(body: EntryBody, other: EntryBody) -> None:
    entry = entries_of([body], None)[0]
    swapped = Entry(other, entry.writer_id, None, 1, 0, (), entry.signature)
    assert entry_signature_holds(swapped, WRITER.public_key()) == (other == body)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400))
def test_garbage_is_refused_as_invalid_entry_only(data: bytes) -> None:
    with pytest.raises(InvalidEntry):
        decode_leaf(data)


@settings(max_examples=300, deadline=None)
@given(
    body=bodies,
    position=st.integers(0, 10_000),
    value=st.integers(0, 255),
    cut=st.integers(0, 10_000),
)
def test_corrupted_or_truncated_leaves_never_raise_anything_else(
    body: EntryBody, position: int, value: int, cut: int
) -> None:
    leaf = bytearray(leaf_bytes(entries_of([body, body], 7)[1]))
    leaf[position % len(leaf)] = value
    for candidate in (bytes(leaf), bytes(leaf[: cut % len(leaf)])):
        try:
            decoded = decode_leaf(candidate)
        except InvalidEntry:
            continue
        assert leaf_bytes(decoded) == candidate  # only canonical bytes decode


def test_commitments_need_the_salt() -> None:
    canonical = b'{"grant":"g1"}'
    assert commit(canonical, b"a" * 16) != commit(canonical, b"b" * 16)
    assert len(commit(canonical, b"a" * 16)) == 32
    with pytest.raises(InvalidEntry) as error:
        commit(canonical, b"short")
    assert error.value.code == "entry.salt_too_short"


def test_key_ids_are_rfc_7638_thumbprints() -> None:
    # RFC 8037 appendix A.3: thumbprint of the example Ed25519 key.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public = Ed25519PublicKey.from_public_bytes(
        bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    )
    assert key_id(public) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
