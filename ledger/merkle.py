"""RFC 9162 Merkle tree hashing, inclusion and consistency proofs (pure: no I/O).

Proof generation follows the RFC's recursive definitions (§2.1.3.1 PATH, §2.1.4.1 SUBPROOF) over a
tree that keeps every complete subtree in tiles (as Go's tlog and C2SP tlog-tiles do), so a root or
a proof for any tree size costs O(log² n) hashes instead of rehashing the log, and a log's tree
needs in memory only its right edge.  Verification follows §2.1.3.2 and §2.1.4.2 step by step.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from ledger.errors import InvalidProof

HASH_SIZE = 32
#: MTH({}) = SHA-256() — the root of the empty tree.
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: a tile holds 2**TILE_HEIGHT hashes of one height (8 KiB) and the subtrees they complete
TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
TILE_BYTES = TILE_WIDTH * HASH_SIZE
#: full tiles a stored tree keeps in memory (about 16 KiB each with their inner rows)
RESIDENT_TILES = 128
#: right-edge hashes kept for reuse; they are recomputed on demand, so the bound only costs time
EDGE_CACHE_LIMIT = 8192

TileKey = tuple[int, int]  # (tile level, index within the level)


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes | bytearray, right: bytes | bytearray) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make PATH(index, D[0:size]) — RFC 9162 §2.1.3.1 — in order."""
    ranges: list[tuple[int, int]] = []
    low, high = 0, size
    while high - low > 1:
        k = _split(high - low)
        if index < low + k:
            ranges.append((low + k, high))
            high = low + k
        else:
            ranges.append((low, low + k))
            low += k
    ranges.reverse()
    return ranges


def consistency_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make PROOF(first, D[0:second]) — RFC 9162 §2.1.4.1 — in
    order (0 < first < second)."""
    ranges: list[tuple[int, int]] = []
    low, high, m, complete = 0, second, first, True
    while m != high - low:
        k = _split(high - low)
        if m <= k:
            ranges.append((low + k, high))
            high = low + k
        else:
            ranges.append((low, low + k))
            low += k
            m -= k
            complete = False
    if not complete:
        ranges.append((low, high))
    ranges.reverse()
    return ranges


def edge_spans(size: int) -> list[tuple[int, int]]:
    """For each tile level L of a tree of ``size`` leaves, the indices [start, end) of the hashes
    at height 8·L that are not in a full tile: what a stored tree keeps to resume appending.  At
    level 0 they are leaf hashes; above, the roots of full tiles of the level below."""
    spans = [((size >> TILE_HEIGHT) << TILE_HEIGHT, size)]
    count = size >> TILE_HEIGHT
    while count:
        spans.append(((count >> TILE_HEIGHT) << TILE_HEIGHT, count))
        count >>= TILE_HEIGHT
    return spans


class StoredTile(NamedTuple):
    """A full tile as storage keeps it: its 256 hashes at height 8·level, and their subtree hash."""

    level: int
    index: int  # type: ignore[assignment]  # a field named like tuple.index (shadows the method)
    hashes: bytes
    root: bytes


class _Tile:
    """One tile's hashes: row r holds its complete subtrees of height 8·level + r."""

    __slots__ = ("rows",)

    def __init__(self, hashes: bytes = b"") -> None:
        """A tile from its bottom row: each row above hashes the pairs of the row below, a row at a
        time (appending hash by hash measured about three times as long)."""
        row = bytearray(hashes)
        self.rows = [row]
        for _ in range(TILE_HEIGHT - 1):
            pairs = len(row) // (2 * HASH_SIZE) * 2 * HASH_SIZE
            row = bytearray(
                b"".join(
                    node_hash(
                        row[start : start + HASH_SIZE],
                        row[start + HASH_SIZE : start + 2 * HASH_SIZE],
                    )
                    for start in range(0, pairs, 2 * HASH_SIZE)
                )
            )
            self.rows.append(row)

    @property
    def width(self) -> int:
        return len(self.rows[0]) // HASH_SIZE

    def append(self, leaf: bytes) -> None:
        rows = self.rows
        rows[0] += leaf
        row = 0
        while row + 1 < TILE_HEIGHT and not (len(rows[row]) // HASH_SIZE) & 1:
            pair = rows[row]
            rows[row + 1] += node_hash(
                bytes(pair[-2 * HASH_SIZE : -HASH_SIZE]), bytes(pair[-HASH_SIZE:])
            )
            row += 1

    def root(self) -> bytes:
        top = self.rows[-1]
        return node_hash(bytes(top[:HASH_SIZE]), bytes(top[HASH_SIZE:]))

    def hash_at(self, row: int, offset: int) -> bytes:
        return bytes(self.rows[row][offset * HASH_SIZE : (offset + 1) * HASH_SIZE])


class MissingTile(LookupError):
    """A proof needs a full tile that is neither in memory nor loaded (see ``missing_tiles``)."""


class MerkleTree:
    """An append-only RFC 9162 tree over leaf hashes, kept as tiles.

    Tile (L, i) holds the hashes of height 8·L numbered i·256 to i·256 + 255 and every subtree they
    complete, so any complete subtree's hash is read from one tile.  Every range the RFC's
    recursion visits splits into such subtrees, so a root or a proof for any tree size costs
    O(log² n) hashes instead of rehashing the log.

    In memory (the default) the tree keeps every tile.  A *stored* tree keeps only the right edge
    (the incomplete tile of each level) and a bounded set of recently used full tiles: the full
    tiles it completes wait in ``take_completed()`` for the caller to store, and the ones a proof
    needs are named by ``missing_tiles`` and handed back with ``load_tiles`` — so memory stays
    bounded whatever the log's size, and the tree still does no I/O.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = (), *, stored: bool = False) -> None:
        self._stored = stored
        self._size = 0
        self._edge: list[_Tile] = [_Tile()]  # the incomplete tile of each level
        self._full: list[int] = [0]  # full tiles of each level
        self._tiles: OrderedDict[TileKey, _Tile] = OrderedDict()  # resident full tiles, LRU order
        self._completed: dict[TileKey, StoredTile] = {}  # full tiles the caller has yet to store
        self._edges: dict[tuple[int, int], bytes] = {}  # hashes of incomplete right-edge subtrees
        for leaf in leaf_hashes:
            self.append(leaf)

    @classmethod
    def resumed(cls, size: int, edge_hashes: Sequence[bytes]) -> MerkleTree:
        """A stored tree of ``size`` leaves, from the hashes of its ``edge_spans`` (concatenated per
        level): everything else it reads from stored tiles when a proof needs them."""
        spans = edge_spans(size)
        if len(edge_hashes) != len(spans) or any(
            len(hashes) != (end - start) * HASH_SIZE
            for hashes, (start, end) in zip(edge_hashes, spans, strict=True)
        ):
            raise ValueError(f"the right edge of a tree of {size} spans {spans}")
        tree = cls(stored=True)
        tree._size = size
        tree._edge = [_Tile(hashes) for hashes in edge_hashes]
        tree._full = [start >> TILE_HEIGHT for start, _ in spans]
        return tree

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes")
        self._size += 1
        level = 0
        while True:
            tile = self._edge[level]
            tile.append(leaf)
            if tile.width < TILE_WIDTH:
                return
            key = (level, self._full[level])
            self._full[level] += 1
            self._edge[level] = _Tile()
            leaf = tile.root()  # the next level's new hash
            self._tiles[key] = tile
            if self._stored:
                self._completed[key] = StoredTile(level, key[1], bytes(tile.rows[0]), leaf)
                self._evict()
            level += 1
            if level == len(self._edge):
                self._edge.append(_Tile())
                self._full.append(0)

    def take_completed(self) -> list[StoredTile]:
        """The full tiles completed since the last call, in order (a stored tree only)."""
        completed = list(self._completed.values())
        self._completed.clear()
        return completed

    def missing_tiles(self, ranges: Iterable[tuple[int, int]]) -> set[TileKey]:
        """The full tiles not in memory that hashing these leaf ranges reads."""
        missing: set[TileKey] = set()
        for low, high in ranges:
            while low < high:
                n = high - low
                k = n if n & (n - 1) == 0 else _split(n)
                level = (k.bit_length() - 1) // TILE_HEIGHT
                key = (level, low >> (TILE_HEIGHT * (level + 1)))
                if (
                    key[1] != self._full[level]
                    and key not in self._tiles
                    and key not in self._completed
                ):
                    missing.add(key)
                low += k
        return missing

    def load_tiles(self, tiles: Iterable[tuple[int, int, bytes]]) -> None:
        """Make stored full tiles (level, index, hashes) resident; the least recently used beyond
        the bound are dropped first, so the ones loaded here stay for the proof that needs them."""
        self._evict()
        for level, index, hashes in tiles:
            if len(hashes) != TILE_BYTES or not 0 <= index < self._full[level]:
                raise ValueError(f"tile ({level}, {index}) is not a full tile of this tree")
            self._tiles[level, index] = _Tile(hashes)

    def _evict(self) -> None:
        while self._stored and len(self._tiles) > RESIDENT_TILES:
            self._tiles.popitem(last=False)

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise IndexError(f"no leaf {index} in a tree of {self.size}")
        return self._hash_at(0, index)

    def _hash_at(self, height: int, index: int) -> bytes:
        level, row = divmod(height, TILE_HEIGHT)
        shift = TILE_HEIGHT - row
        return self._tile(level, index >> shift).hash_at(row, index & ((1 << shift) - 1))

    def _tile(self, level: int, index: int) -> _Tile:
        if index == self._full[level]:
            return self._edge[level]
        key = (level, index)
        tile = self._tiles.get(key)
        if tile is not None:
            if self._stored:
                self._tiles.move_to_end(key)
            return tile
        completed = self._completed.get(key)
        if completed is None:
            raise MissingTile(key)
        tile = self._tiles[key] = _Tile(completed.hashes)
        return tile

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
        return [self._range_hash(low, high) for low, high in inclusion_ranges(index, size)]

    def inclusion_proofs(self) -> list[list[bytes]]:
        """PATH(i, D[0:size]) for every leaf i at once, in O(n log n) instead of n
        separate walks."""
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
        return [self._range_hash(low, high) for low, high in consistency_ranges(first, second)]

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
    """The root implied by an inclusion proof — RFC 9162 §2.1.3.2 steps 1–5 (without the
    compare)."""
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
    """Raise ``InvalidProof`` unless ``leaf`` is leaf ``index`` of the tree of ``size`` with
    ``root``."""
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
