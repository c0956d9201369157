"""RFC 9162 Merkle proofs: generated proofs verify, wrong ones are refused, and roots/proofs agree
with an independent, literal transcription of the RFC's recursive definitions."""

from __future__ import annotations

import functools
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import InvalidProof
from ledger.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

# --- the RFC 9162 §2.1 definitions, transcribed literally over lists of leaf data --------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def naive_mth(data: list[bytes]) -> bytes:
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = _k(len(data))
    return hashlib.sha256(b"\x01" + naive_mth(data[:k]) + naive_mth(data[k:])).digest()


def naive_path(m: int, data: list[bytes]) -> list[bytes]:
    if len(data) == 1:
        return []
    k = _k(len(data))
    if m < k:
        return naive_path(m, data[:k]) + [naive_mth(data[k:])]
    return naive_path(m - k, data[k:]) + [naive_mth(data[:k])]


def naive_subproof(m: int, data: list[bytes], complete: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if complete else [naive_mth(data)]
    k = _k(n)
    if m <= k:
        return naive_subproof(m, data[:k], complete) + [naive_mth(data[k:])]
    return naive_subproof(m - k, data[k:], False) + [naive_mth(data[:k])]


def leaves(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") for i in range(n)]


def tree_of(data: list[bytes]) -> MerkleTree:
    return MerkleTree(leaf_hash(d) for d in data)


# --- known answers ------------------------------------------------------------------------------


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleTree().root() == EMPTY_ROOT


def test_hashes_are_domain_separated_as_rfc_9162_says() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


def test_three_leaf_tree_by_hand() -> None:
    a, b, c = (leaf_hash(x) for x in (b"a", b"b", b"c"))
    tree = MerkleTree([a, b, c])
    assert tree.root() == node_hash(node_hash(a, b), c)
    assert tree.inclusion_proof(2) == [node_hash(a, b)]
    assert tree.inclusion_proof(0) == [b, c]
    assert tree.consistency_proof(2, 3) == [c]


# --- agreement with the RFC definitions over random trees -----------------------------------------


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_roots_and_proofs_match_the_rfc_definitions(size: int, data: st.DataObject) -> None:
    items = leaves(size)
    tree = tree_of(items)
    old = data.draw(st.integers(0, size), label="old size")
    index = data.draw(st.integers(0, size - 1), label="leaf")
    assert tree.root() == naive_mth(items)
    assert tree.root(old) == naive_mth(items[:old])
    assert tree.inclusion_proof(index) == naive_path(index, items)
    if 0 < old < size:
        assert tree.consistency_proof(old) == naive_subproof(old, items, True)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 2000), data=st.data())
def test_every_generated_proof_verifies(size: int, data: st.DataObject) -> None:
    tree = tree_of(leaves(size))
    second = data.draw(st.integers(1, size), label="second")
    first = data.draw(st.integers(0, second), label="first")
    index = data.draw(st.integers(0, second - 1), label="leaf")
    verify_inclusion(
        index, second, tree.leaf(index), tree.inclusion_proof(index, second), tree.root(second)
    )
    verify_consistency(
        first, second, tree.root(first), tree.root(second), tree.consistency_proof(first, second)
    )


@settings(max_examples=200, deadline=None)
@given(size=st.integers(2, 200), data=st.data())
def test_a_changed_leaf_index_or_proof_hash_is_refused(size: int, data: st.DataObject) -> None:
    tree = tree_of(leaves(size))
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion_proof(index)
    root = tree.root()
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    with pytest.raises(InvalidProof):
        verify_inclusion(other, size, tree.leaf(index), proof, root)
    with pytest.raises(InvalidProof):
        verify_inclusion(index, size, leaf_hash(b"forged"), proof, root)
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1))
        forged = [*proof]
        forged[position] = bytes(32)
        with pytest.raises(InvalidProof):
            verify_inclusion(index, size, tree.leaf(index), forged, root)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(3, 200), data=st.data())
def test_a_rewritten_history_fails_consistency(size: int, data: st.DataObject) -> None:
    items = leaves(size)
    first = data.draw(st.integers(1, size - 1))
    rewritten = list(items)
    rewritten[data.draw(st.integers(0, first - 1))] = b"rewritten"
    honest, forged = tree_of(items), tree_of(rewritten)
    proof = forged.consistency_proof(first)
    with pytest.raises(InvalidProof):
        verify_consistency(first, size, honest.root(first), forged.root(), proof)


@given(
    size=st.integers(1, 64),
    index=st.integers(-5, 80),
    proof=st.lists(st.binary(min_size=0, max_size=40), max_size=10),
)
def test_garbage_proofs_raise_invalid_proof_only(size: int, index: int, proof: list[bytes]) -> None:
    with pytest.raises(InvalidProof):
        verify_inclusion(index, size, leaf_hash(b"x"), proof, EMPTY_ROOT)
    with pytest.raises(InvalidProof):
        verify_consistency(
            min(index, size) if index > 0 else 1, size, EMPTY_ROOT, leaf_hash(b"y"), proof
        )


def test_proof_length_is_checked_exactly() -> None:
    tree = tree_of(leaves(5))
    proof = tree.inclusion_proof(1)
    with pytest.raises(InvalidProof) as error:
        root_from_inclusion_proof(1, 5, tree.leaf(1), proof[:-1])
    assert error.value.code == "proof.malformed"
    with pytest.raises(InvalidProof) as error:
        root_from_inclusion_proof(1, 5, tree.leaf(1), [*proof, bytes(32)])
    assert error.value.code == "proof.malformed"


def test_sizes_beyond_the_tree_are_refused() -> None:
    tree = tree_of(leaves(4))
    with pytest.raises(InvalidProof):
        tree.root(5)
    with pytest.raises(InvalidProof):
        tree.inclusion_proof(4)
    with pytest.raises(InvalidProof):
        tree.consistency_proof(3, 5)


@settings(max_examples=100, deadline=None)
@given(size=st.integers(0, 300))
def test_all_proofs_at_once_equal_one_by_one(size: int) -> None:
    tree = tree_of(leaves(size))
    assert tree.inclusion_proofs() == [tree.inclusion_proof(i) for i in range(size)]


def test_the_edge_cache_stays_bounded_while_proofs_stay_right(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every new tree size adds right-edge hashes; the cache is bounded and proofs still check."""
    monkeypatch.setattr(merkle, "EDGE_CACHE_LIMIT", 16)
    tree = MerkleTree()
    for n in range(1, 300):
        tree.append(leaf_hash(n.to_bytes(4, "big")))
        root = tree.root()
        assert (
            len(tree._edges) <= 16 + n.bit_length()
        )  # the bound, plus one right edge being filled
        index = n // 2
        verify_inclusion(index, n, tree.leaf(index), tree.inclusion_proof(index, n), root)
    leaves = [n.to_bytes(4, "big") for n in range(1, 300)]
    assert tree.root(150) == naive_mth(leaves[:150])


# --- stored trees: only the right edge in memory, full tiles handed to storage ------------------

STORED_SIZE = 70_000  # three tile levels: 273 full tiles of leaves, one of their roots


@functools.cache
def stored_log() -> tuple[list[bytes], MerkleTree, dict[merkle.TileKey, merkle.StoredTile]]:
    """A log's leaf hashes, the same tree kept whole in memory, and the tiles a stored tree
    handed to storage while the leaves were appended one by one."""
    hashes = [leaf_hash(i.to_bytes(4, "big")) for i in range(STORED_SIZE)]
    stored, storage = MerkleTree(stored=True), {}
    for h in hashes:
        stored.append(h)
        for tile in stored.take_completed():
            storage[tile.level, tile.index] = tile
        assert len(stored._tiles) <= merkle.RESIDENT_TILES
    assert stored.root() == MerkleTree(hashes).root()
    return hashes, MerkleTree(hashes), storage


def resume(size: int) -> MerkleTree:
    """A stored tree of ``size`` leaves rebuilt as a restarted log would: from its edge spans."""
    hashes, _, storage = stored_log()
    edge = [b"".join(hashes[start:end]) for start, end in merkle.edge_spans(size)[:1]]
    edge += [
        b"".join(storage[level - 1, i].root for i in range(start, end))
        for level, (start, end) in enumerate(merkle.edge_spans(size)[1:], start=1)
    ]
    return MerkleTree.resumed(size, edge)


def load(tree: MerkleTree, ranges: list[tuple[int, int]]) -> None:
    storage = stored_log()[2]
    tree.load_tiles(
        (level, index, storage[level, index].hashes) for level, index in tree.missing_tiles(ranges)
    )


def test_stored_tiles_are_the_subtrees_they_claim() -> None:
    hashes, _, storage = stored_log()
    assert sorted(storage) == [(0, i) for i in range(STORED_SIZE // 256)] + [(1, 0)]
    tile = storage[0, 5]
    assert tile.hashes == b"".join(hashes[5 * 256 : 6 * 256])
    assert tile.root == naive_mth([i.to_bytes(4, "big") for i in range(5 * 256, 6 * 256)])
    assert storage[1, 0].hashes == b"".join(storage[0, i].root for i in range(256))


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, STORED_SIZE), data=st.data())
def test_a_resumed_stored_tree_proves_what_the_whole_tree_proves(
    size: int, data: st.DataObject
) -> None:
    _, whole, _ = stored_log()
    tree = resume(size)
    index = data.draw(st.integers(0, size - 1))
    first = data.draw(st.integers(1, size))
    ranges = [(0, size), (index, index + 1), (0, first)]
    ranges += merkle.inclusion_ranges(index, size) + merkle.consistency_ranges(first, size)
    if tree.missing_tiles(ranges):
        with pytest.raises(merkle.MissingTile):
            [
                tree.inclusion_proof(index),
                tree.consistency_proof(first),
                tree.root(first),
                tree.leaf(index),
            ]
    load(tree, ranges)
    assert not tree.missing_tiles(ranges)
    assert tree.root() == whole.root(size)
    assert tree.leaf(index) == whole.leaf(index)
    assert tree.inclusion_proof(index) == whole.inclusion_proof(index, size)
    assert tree.consistency_proof(first) == whole.consistency_proof(first, size)
    assert tree.root(first) == whole.root(first)


@settings(max_examples=20, deadline=None)
@given(size=st.integers(0, STORED_SIZE - 600))
def test_a_resumed_tree_appends_on_and_completes_the_same_tiles(size: int) -> None:
    hashes, whole, storage = stored_log()
    tree = resume(size)
    for h in hashes[size : size + 600]:
        tree.append(h)
    assert tree.root() == whole.root(size + 600)
    for tile in tree.take_completed():
        assert storage[tile.level, tile.index] == tile


def test_a_stored_tree_keeps_a_bounded_set_of_tiles_however_many_proofs_it_serves() -> None:
    tree = resume(STORED_SIZE)
    for index in range(0, STORED_SIZE, 97):
        ranges = merkle.inclusion_ranges(index, STORED_SIZE)
        load(tree, ranges)
        tree.inclusion_proof(index)
    assert len(tree._tiles) <= merkle.RESIDENT_TILES + 8  # the bound, plus one proof's tiles


def test_a_wrong_edge_or_tile_is_refused() -> None:
    with pytest.raises(ValueError):
        MerkleTree.resumed(300, [bytes(32 * 44)])  # level 1 is missing
    with pytest.raises(ValueError):
        MerkleTree.resumed(300, [bytes(32 * 43), bytes(32 * 2)])
    tree = resume(1000)
    with pytest.raises(ValueError):
        tree.load_tiles([(0, 1, bytes(32 * 255))])
    with pytest.raises(ValueError):
        tree.load_tiles([(0, 3, bytes(32 * 256))])  # the incomplete tile is the edge's
