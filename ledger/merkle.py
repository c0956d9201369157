"""RFC 9162 Merkle tree hashing, inclusion and consistency proofs (pure: no I/O).

Proof generation follows the RFC's recursive definitions (§2.1.3.1 PATH, §2.1.4.1 SUBPROOF) over a
tree that keeps every complete subtree, so a root or a proof for any tree size costs O(log² n)
hashes instead of rehashing the log.  Verification follows §2.1.3.2 and §2.1.4.2 step by step.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

from ledger.errors import InvalidProof

HASH_SIZE = 32
#: MTH({}) = SHA-256() — the root of the empty tree.
EMPTY_ROOT = hashlib.sha256(b"").digest()


#: right-edge hashes kept for reuse; they are recomputed on demand, so the bound only costs time
EDGE_CACHE_LIMIT = 8192


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only RFC 9162 tree over leaf hashes.

    Level h holds the hashes of the complete subtrees of 2**h leaves, the i-th starting at leaf
    i * 2**h; every range the RFC's recursion visits starts on such a boundary, so only the right
    edge of a tree of any size has to be hashed on demand.  A level is one contiguous bytearray
    (32 bytes per hash): a list of ``bytes`` objects took 73 bytes per hash.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._edges: dict[tuple[int, int], bytes] = {}  # hashes of incomplete right-edge subtrees
        for leaf in leaf_hashes:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    def append(self, leaf: bytes) -> None:
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes")
        level = 0
        self._levels[0] += leaf
        while (len(self._levels[level]) // HASH_SIZE) % 2 == 0:
            if level + 1 == len(self._levels):
                self._levels.append(bytearray())
            pair = self._levels[level]
            self._levels[level + 1] += node_hash(bytes(pair[-2 * HASH_SIZE : -HASH_SIZE]), bytes(pair[-HASH_SIZE:]))
            level += 1

    def truncate(self, size: int) -> None:
        """Forget every leaf from ``size`` on (undo appends whose transaction failed)."""
        self._check_size(size)
        for height, hashes in enumerate(self._levels):
            del hashes[(size >> height) * HASH_SIZE :]
        self._edges = {edge: h for edge, h in self._edges.items() if edge[1] <= size}

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise IndexError(f"no leaf {index} in a tree of {self.size}")
        return self._hash_at(0, index)

    def _hash_at(self, height: int, index: int) -> bytes:
        return bytes(self._levels[height][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (all of them by default)."""
        size = self.size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) — RFC 9162 §2.1.3.1."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise InvalidProof(
                "proof.index_out_of_range", f"leaf {index} is not in a tree of {size}"
            )
        path: list[bytes] = []
        low, high = 0, size
        while high - low > 1:
            k = _split(high - low)
            if index < low + k:
                path.append(self._range_hash(low + k, high))
                high = low + k
            else:
                path.append(self._range_hash(low, low + k))
                low += k
        path.reverse()
        return path

    def inclusion_proofs(self) -> list[list[bytes]]:
        """PATH(i, D[0:size]) for every leaf i at once, in O(n log n) instead of n separate walks."""
        if self.size == 0:
            return []

        def paths(low: int, high: int) -> list[list[bytes]]:
            if high - low == 1:
                return [[]]
            k = _split(high - low)
            left, right = paths(low, low + k), paths(low + k, high)
            right_hash, left_hash = self._range_hash(low + k, high), self._range_hash(low, low + k)
            for path in left:
                path.append(right_hash)
            for path in right:
                path.append(left_hash)
            return left + right

        return paths(0, self.size)

    def consistency_proof(self, first: int, second: int | None = None) -> list[bytes]:
        """PROOF(first, D[0:second]) — RFC 9162 §2.1.4.1; empty when first is 0 or second."""
        second = self.size if second is None else second
        self._check_size(second)
        if not 0 <= first <= second:
            raise InvalidProof("proof.size_out_of_range", f"cannot prove {first} -> {second}")
        if first in (0, second):
            return []
        path: list[bytes] = []
        low, high, m, complete = 0, second, first, True
        while m != high - low:
            k = _split(high - low)
            if m <= k:
                path.append(self._range_hash(low + k, high))
                high = low + k
            else:
                path.append(self._range_hash(low, low + k))
                low += k
                m -= k
                complete = False
        if not complete:
            path.append(self._range_hash(low, high))
        path.reverse()
        return path

    def _range_hash(self, low: int, high: int) -> bytes:
        n = high - low
        if n & (n - 1) == 0:
            height = n.bit_length() - 1
            return self._hash_at(height, low >> height)
        edge = self._edges.get((low, high))
        if edge is None:
            if len(self._edges) >= EDGE_CACHE_LIMIT:  # each new tree size adds ~log2(size) edges
                self._edges.clear()
            k = _split(n)
            edge = self._edges[low, high] = node_hash(
                self._range_hash(low, low + k), self._range_hash(low + k, high)
            )
        return edge

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise InvalidProof("proof.size_out_of_range", f"tree size {size} exceeds {self.size}")


def _check_hashes(hashes: Sequence[bytes]) -> None:
    if any(not isinstance(h, bytes) or len(h) != HASH_SIZE for h in hashes):
        raise InvalidProof("proof.malformed", "every proof hash must be 32 bytes")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof — RFC 9162 §2.1.3.2 steps 1–5 (without the compare)."""
    _check_hashes([leaf, *proof])
    if not 0 <= index < size:
        raise InvalidProof("proof.index_out_of_range", f"leaf {index} is not in a tree of {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise InvalidProof("proof.malformed", "inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("proof.malformed", "inclusion proof is too short")
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise ``InvalidProof`` unless ``leaf`` is leaf ``index`` of the tree of ``size`` with ``root``."""
    if not hmac.compare_digest(root_from_inclusion_proof(index, size, leaf, proof), root):
        raise InvalidProof("proof.root_mismatch", f"leaf {index} is not in the tree with this root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise ``InvalidProof`` unless the tree of ``second`` extends the tree of ``first``
    (RFC 9162 §2.1.4.2)."""
    _check_hashes([first_root, second_root, *proof])
    if not 0 <= first <= second:
        raise InvalidProof("proof.size_out_of_range", f"cannot prove {first} -> {second}")
    if first == 0 or first == second:
        if proof:
            raise InvalidProof("proof.malformed", "this consistency proof must be empty")
        if first == second and not hmac.compare_digest(first_root, second_root):
            raise InvalidProof("proof.root_mismatch", "equal tree sizes with different roots")
        return
    if not proof:
        raise InvalidProof("proof.malformed", "consistency proof is empty")
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof("proof.malformed", "consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("proof.malformed", "consistency proof is too short")
    if not (hmac.compare_digest(fr, first_root) and hmac.compare_digest(sr, second_root)):
        raise InvalidProof("proof.root_mismatch", f"tree {second} does not extend tree {first}")
