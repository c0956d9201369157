"""The permissioned consent log: writer registry, append with signed receipts, sealing into
signed, hash-chained Merkle blocks, and the proofs served from them.

Appending touches only the database (usable inside the caller's open piccolo transaction, so a
grant and its ledger entry commit together).  Sealing reads committed entries, extends the
RFC 9162 tree, signs the new tree head and, in the same transaction, writes the block, the tree's
newly full tiles and the block's anchoring job (the outbox the chain worker drains).  The chain is
never on either path.

The tree in memory is only its right edge plus a bounded set of recently used tiles: proofs load
the stored tiles they need, and a process that starts (or falls behind) resumes from the stored
tiles in a few queries, so neither memory nor start-up time grows with the log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from piccolo.engine.base import Engine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType

from ledger.errors import InvalidEntry, NotFound, NotYetSealed, Unavailable, WriterRejected
from ledger.merkle import (
    TILE_HEIGHT,
    TILE_WIDTH,
    MerkleTree,
    StoredTile,
    TileKey,
    consistency_ranges,
    edge_spans,
    inclusion_ranges,
    leaf_hash,
)
from ledger.records import (
    SIGNATURE_SIZE,
    ZERO_HASH,
    Block,
    Entry,
    Receipt,
    SignedBatch,
    batch_header,
    batch_tree,
    check_writer_id,
    decode_leaf,
    issue_receipts,
    key_id,
    leaf_bytes,
    raw_public_key,
    sign_block,
    signature_holds,
)
from ledger.tables import (
    LedgerAnchor,
    LedgerBlock,
    LedgerCommitment,
    LedgerEntry,
    LedgerTile,
    LedgerWriter,
    bind,
    tile_key,
    tile_position,
)

ACTIVE, WITHDRAWN = "active", "withdrawn"
logger = logging.getLogger("ledger")
_LOOKUP_CHUNK = 400  # values per membership lookup, far below SQLite's 32766 parameters
_MAX_SEQ = 2**63 - 1
_BACKFILL_CHUNK = 64 * TILE_WIDTH  # entry hashes read at a time when tiles are rebuilt
_BLOCKS_KEPT = 1024  # sealed blocks cached by tree size
_ENTRY_COLUMNS = (
    "seq, entry_hash, leaf, commitment, event, relying_party, writer_id, prev_seq, time_ms"
)


class Writer(msgspec.Struct, frozen=True):
    id: str
    key_id: str
    public_key: bytes
    status: str
    since: datetime


class ProvenEntry(msgspec.Struct, frozen=True):
    """A leaf with its inclusion path in the tree of the accompanying block."""

    seq: int
    leaf: bytes
    path: tuple[bytes, ...]

    @property
    def entry(self) -> Entry:
        return decode_leaf(self.leaf)


class InclusionProof(msgspec.Struct, frozen=True):
    seq: int
    entry_hash: bytes
    path: tuple[bytes, ...]
    block: Block


class ConsistencyProof(msgspec.Struct, frozen=True):
    first_size: int
    second_size: int
    first_root: bytes
    second_root: bytes
    path: tuple[bytes, ...]


class History(msgspec.Struct, frozen=True):
    """Every sealed entry for one commitment (oldest first, optionally only up to a seq), each
    with its inclusion proof in ``block``; ``unsealed`` counts later entries not yet in a block."""

    commitment: bytes
    block: Block
    entries: tuple[ProvenEntry, ...]
    unsealed: int


def _now_ms(clock: Callable[[], float]) -> int:
    return int(clock() * 1000)


def _tiles_missing(which: str) -> Unavailable:
    logger.error("stored Merkle tiles are missing: %s", which)
    return Unavailable(
        "ledger.tiles_missing", "stored Merkle tiles are missing; run the ledger audit"
    )


def _block_from_row(row: dict[str, Any]) -> Block:
    return Block(
        row["number"],
        row["tree_size"],
        bytes(row["root"]),
        bytes(row["prev_hash"]),
        row["sealed_ms"],
        row["log_key_id"],
        bytes(row["signature"]),
    )


_SEAL_LOCK = 0x6C67736C  # PostgreSQL advisory lock id ("lgsl"): one sealer at a time


class Ledger:
    """One log, identified by its Ed25519 key (receipts and tree heads), on a piccolo engine."""

    def __init__(
        self,
        engine: Engine[Any],
        log_key: Ed25519PrivateKey,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        bind(engine)
        self.engine = engine
        self._log_key = log_key
        self.public_key: Ed25519PublicKey = log_key.public_key()
        self.key_id = key_id(self.public_key)
        self.clock = clock
        self._tree: MerkleTree | None = None  # resumed from storage on first use
        self._blocks_by_size: dict[int, Block] = {}  # sealed blocks never change; bounded
        self._seal_lock = asyncio.Lock()

    def _write_transaction(self) -> Any:
        """Join the caller's transaction, or start one that takes SQLite's write lock at once."""
        if isinstance(self.engine, SQLiteEngine):
            return self.engine.transaction(transaction_type=TransactionType.immediate)
        return self.engine.transaction()

    # --- writers ---------------------------------------------------------------------------------

    async def register_writer(self, writer_id: str, public_key: Ed25519PublicKey) -> Writer:
        """Allow a writer to append.  Registering the same active key again is a no-op."""
        check_writer_id(writer_id)
        raw = raw_public_key(public_key)
        existing = await self._writer_row(writer_id)
        if existing is None:
            # processes starting together (a server's workers) register the same writer at once:
            # the later insert does nothing, and every one of them reads the row that won
            await LedgerWriter.insert(
                LedgerWriter(
                    id=writer_id,
                    public_key=raw,
                    key_id=key_id(public_key),
                    status=ACTIVE,
                    since=datetime.now(UTC),
                )
            ).on_conflict(action="DO NOTHING")
            existing = await self._writer_row(writer_id)
        if existing is not None and existing.status == ACTIVE and existing.public_key == raw:
            return existing
        raise WriterRejected("writer.exists", f"writer {writer_id!r} is already registered")

    async def withdraw_writer(self, writer_id: str) -> Writer:
        """Refuse every later append by this writer; its earlier entries stay verifiable."""
        writer = await self._writer_row(writer_id)
        if writer is None:
            raise WriterRejected("writer.unknown", f"writer {writer_id!r} is not registered")
        if writer.status == WITHDRAWN:
            return writer
        since = datetime.now(UTC)
        await LedgerWriter.update(
            {LedgerWriter.status: WITHDRAWN, LedgerWriter.since: since}
        ).where(LedgerWriter.id == writer_id)
        return msgspec.structs.replace(writer, status=WITHDRAWN, since=since)

    async def writers(self) -> list[Writer]:
        rows = await LedgerWriter.select().order_by(LedgerWriter.id)
        return [self._writer_from_row(row) for row in rows]

    async def _writer_row(self, writer_id: str) -> Writer | None:
        row = await LedgerWriter.select().where(LedgerWriter.id == writer_id).first()
        return None if row is None else self._writer_from_row(row)

    @staticmethod
    def _writer_from_row(row: dict[str, Any]) -> Writer:
        return Writer(
            row["id"], row["key_id"], bytes(row["public_key"]), row["status"], row["since"]
        )

    # --- append ----------------------------------------------------------------------------------

    async def append(self, batch: SignedBatch) -> list[Receipt]:
        """Append a writer's signed batch and return one signed receipt per entry, in order.

        Inside the caller's transaction the entries commit or roll back with it (a receipt from a
        rolled-back transaction promises an entry that will never be sealed: hand receipts out only
        after commit).  Refuses unknown or withdrawn writers and bad signatures."""
        tree = batch_tree(batch.bodies)
        if not isinstance(batch.signature, bytes) or len(batch.signature) != SIGNATURE_SIZE:
            raise WriterRejected("writer.bad_signature", "a writer signature is 64 bytes")
        header = batch_header(batch.writer_id, len(batch.bodies), tree.root())
        async with self._write_transaction():
            writer = await self._writer_row(batch.writer_id)
            if writer is None:
                raise WriterRejected(
                    "writer.unknown", f"writer {batch.writer_id!r} is not registered"
                )
            if writer.status != ACTIVE:
                raise WriterRejected(
                    "writer.withdrawn", f"writer {batch.writer_id!r} was withdrawn"
                )
            if not signature_holds(
                Ed25519PublicKey.from_public_bytes(writer.public_key), batch.signature, header
            ):
                raise WriterRejected(
                    "writer.bad_signature", "the writer's signature on the batch does not hold"
                )
            first_seq = await self._take_seqs(len(batch.bodies))
            commitments = {body.commitment for body in batch.bodies}
            previous = await self._latest_seqs(commitments)
            rows, hashes = [], []
            for index, (body, path) in enumerate(
                zip(batch.bodies, tree.inclusion_proofs(), strict=True)
            ):
                seq = first_seq + index
                entry = Entry(
                    body,
                    batch.writer_id,
                    previous.get(body.commitment),
                    len(batch.bodies),
                    index,
                    tuple(path),
                    batch.signature,
                )
                previous[body.commitment] = seq
                leaf = leaf_bytes(entry)
                entry_hash = leaf_hash(leaf)
                hashes.append(entry_hash)
                rows.append(
                    (
                        seq,
                        entry_hash,
                        leaf,
                        body.commitment,
                        str(body.event),
                        body.relying_party,
                        batch.writer_id,
                        entry.prev_seq,
                        body.time_ms,
                    )
                )
            await self._insert_entries(rows)
            await self._store_latest_seqs({c: previous[c] for c in commitments})
        return issue_receipts(self._log_key, self.key_id, first_seq, hashes, _now_ms(self.clock))

    async def _take_seqs(self, count: int) -> int:
        rows = await LedgerEntry.raw(
            "UPDATE ledger_head SET next_seq = next_seq + {} WHERE id = 1 RETURNING next_seq", count
        )
        if not rows:
            raise InvalidEntry(
                "entry.not_migrated", "the ledger_head row is missing: run the ledger migrations"
            )
        next_seq: int = rows[0]["next_seq"]
        return next_seq - count

    async def _latest_seqs(self, commitments: set[bytes]) -> dict[bytes, int]:
        """The latest seq of each commitment (read under the head lock, so it cannot change)."""
        rows = await self._select_where_in(
            "SELECT commitment, last_seq FROM ledger_commitment",
            "commitment",
            "bytea",
            list(commitments),
        )
        return {bytes(row["commitment"]): row["last_seq"] for row in rows}

    async def _select_where_in(
        self, select: str, column: str, array_type: str, values: list[Any]
    ) -> list[dict[str, Any]]:
        """The rows of ``select`` whose ``column`` is one of ``values``, asked in chunks: on
        PostgreSQL one array parameter (one prepared statement whatever the count), on SQLite a
        parameter per value (far below its 32766 limit)."""
        rows: list[dict[str, Any]] = []
        for start in range(0, len(values), _LOOKUP_CHUNK):
            chunk = values[start : start + _LOOKUP_CHUNK]
            if self.engine.engine_type == "sqlite":
                condition, args = f"{column} IN (" + ", ".join("{}" for _ in chunk) + ")", chunk
            else:
                condition, args = f"{column} = ANY({{}}::{array_type}[])", [chunk]
            rows += await LedgerEntry.raw(f"{select} WHERE {condition}", *args)
        return rows

    async def _store_latest_seqs(self, latest: dict[bytes, int]) -> None:
        await self._execute_many(
            "INSERT INTO ledger_commitment (commitment, last_seq) VALUES ({}, {}) "
            "ON CONFLICT (commitment) DO UPDATE SET last_seq = excluded.last_seq",
            list(latest.items()),
        )

    async def _insert_entries(self, rows: list[tuple[Any, ...]]) -> None:
        placeholders = ", ".join("{}" for _ in range(len(rows[0])))
        await self._execute_many(
            # constant columns and placeholders; the values are bound parameters
            f"INSERT INTO ledger_entry ({_ENTRY_COLUMNS}) VALUES ({placeholders})",  # noqa: S608
            rows,
        )

    async def _execute_many(self, template: str, rows: list[tuple[Any, ...]]) -> None:
        """Run one statement for many rows on the current transaction's driver connection.

        Piccolo's query builder costs more per parameter than the database does, which alone
        would cap appends below 10k/s; the driver's ``executemany`` (aiosqlite or asyncpg) runs in
        the same transaction, the one piccolo tracks in its contextvar."""
        transaction = self.engine.current_transaction.get()
        if transaction is None:
            raise RuntimeError("_execute_many runs only inside a transaction")
        count = len(rows[0])
        if self.engine.engine_type == "sqlite":
            sql = template.format(*("?" * count))
        else:
            sql = template.format(*(f"${i}" for i in range(1, count + 1)))
        await transaction.connection.executemany(sql, rows)

    # --- sealing ---------------------------------------------------------------------------------

    async def seal(self) -> Block | None:
        """Seal every committed entry since the last block into a new signed block, store the
        tiles it completes and queue its anchoring job, in one transaction.  Returns None when
        there is nothing new."""
        async with self._seal_lock:
            try:
                async with self._write_transaction():
                    if self.engine.engine_type == "postgres":
                        # one sealer at a time across processes: two would both read the same last
                        # block and one would fail on the block number (READ COMMITTED)
                        await LedgerBlock.raw("SELECT pg_advisory_xact_lock({})", _SEAL_LOCK)
                    last = await self.latest_block()
                    tree = await self._sync_tree(last.tree_size if last else 0)
                    sealed_size = tree.size
                    rows = await LedgerEntry.raw(
                        "SELECT seq, entry_hash FROM ledger_entry WHERE seq >= {} ORDER BY seq",
                        sealed_size,
                    )
                    for row in rows:
                        if row["seq"] != tree.size:
                            break  # a gap cannot be committed; stop at it defensively
                        tree.append(bytes(row["entry_hash"]))
                    if tree.size == sealed_size:
                        return None
                    block = sign_block(
                        self._log_key,
                        Block(
                            number=last.number + 1 if last else 0,
                            tree_size=tree.size,
                            root=tree.root(),
                            prev_hash=last.block_hash if last else ZERO_HASH,
                            sealed_ms=_now_ms(self.clock),
                            log_key_id=self.key_id,
                            signature=b"",
                        ),
                    )
                    await LedgerBlock.insert(
                        LedgerBlock(
                            number=block.number,
                            tree_size=block.tree_size,
                            root=block.root,
                            prev_hash=block.prev_hash,
                            block_hash=block.block_hash,
                            sealed_ms=block.sealed_ms,
                            log_key_id=block.log_key_id,
                            signature=block.signature,
                        )
                    )
                    await self._store_tiles(tree.take_completed())
                    await LedgerAnchor.insert(
                        LedgerAnchor(
                            block_number=block.number,
                            root=block.root,
                            tree_size=block.tree_size,
                            prev_hash=block.prev_hash,
                            status="pending",
                            updated_ms=block.sealed_ms,
                        )
                    )
                self._remember_block(block)
                return block
            except BaseException:
                # the tiles this seal completed were not stored: resume from storage next time
                self._tree = None
                raise

    async def run_sealer(self, interval: float, stop: asyncio.Event) -> None:
        """Seal every ``interval`` seconds until ``stop`` is set (and once more on the way out)."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
            try:
                await self.seal()
            except (
                Exception
            ):  # e.g. the database is briefly away: the entries wait for the next tick
                logger.exception("sealing failed; retrying in %.1f s", interval)

    async def _sync_tree(self, size: int) -> MerkleTree:
        """Bring the tree to exactly the first ``size`` sealed leaves: append the few new ones, or
        resume from the stored tiles when it is missing, ahead, or behind by more than a tile."""
        tree = self._tree
        if tree is None or tree.size > size or size - tree.size > TILE_WIDTH:
            tree = self._tree = await self._resume_tree(size)
        if tree.size < size:
            for entry_hash in await self._entry_hashes(tree.size, size):
                tree.append(entry_hash)
            tree.take_completed()  # the seals of those blocks stored them
        return tree

    async def _resume_tree(self, size: int) -> MerkleTree:
        """The tree of the first ``size`` sealed leaves from its stored right edge.  Tiles missing
        from storage (a log sealed before tiles were stored) are rebuilt from the entries and
        stored first, once."""
        full = size >> TILE_HEIGHT
        rows = await LedgerTile.raw(
            "SELECT count(*) AS stored FROM ledger_tile WHERE position < {}", tile_position(0, full)
        )
        stored = rows[0]["stored"]
        start = size if stored >= full else stored << TILE_HEIGHT
        tree = MerkleTree.resumed(start, await self._edge_hashes(start))
        if start < size:
            logger.warning("rebuilding Merkle tiles for entries %d to %d", start, size)
        while tree.size < size:
            for entry_hash in await self._entry_hashes(
                tree.size, min(size, tree.size + _BACKFILL_CHUNK)
            ):
                tree.append(entry_hash)
            async with self._write_transaction():
                await self._store_tiles(tree.take_completed())
        return tree

    async def _edge_hashes(self, size: int) -> list[bytes]:
        """The hashes of the right edge of the tree of ``size`` (see ``merkle.edge_spans``)."""
        spans = edge_spans(size)
        edge = [b"".join(await self._entry_hashes(*spans[0]))]
        for level, (start, end) in enumerate(spans[1:], start=1):
            rows = await LedgerTile.raw(
                "SELECT root FROM ledger_tile WHERE position >= {} AND position < {} "
                "ORDER BY position",
                tile_position(level - 1, start),
                tile_position(level - 1, end),
            )
            if len(rows) != end - start:
                raise _tiles_missing(f"level {level - 1}, {start} to {end}")
            edge.append(b"".join(bytes(row["root"]) for row in rows))
        return edge

    async def _entry_hashes(self, start: int, end: int) -> list[bytes]:
        rows = await LedgerEntry.raw(
            "SELECT entry_hash FROM ledger_entry WHERE seq >= {} AND seq < {} ORDER BY seq",
            start,
            end,
        )
        if len(rows) != end - start:
            raise InvalidEntry("entry.gap", f"entries {start} to {end} are not all stored")
        return [bytes(row["entry_hash"]) for row in rows]

    async def _store_tiles(self, tiles: list[StoredTile]) -> None:
        if tiles:
            await self._execute_many(
                "INSERT INTO ledger_tile (position, hashes, root) VALUES ({}, {}, {}) "
                "ON CONFLICT (position) DO NOTHING",
                [(tile_position(t.level, t.index), t.hashes, t.root) for t in tiles],
            )

    async def _load_tiles(self, tree: MerkleTree, ranges: list[tuple[int, int]]) -> None:
        """Load the stored tiles ``tree`` needs to hash these leaf ranges."""
        missing = tree.missing_tiles(ranges)
        if not missing:
            return
        found = await self.tiles(list(missing))
        if len(found) != len(missing):
            raise _tiles_missing(", ".join(map(str, sorted(missing - found.keys()))))
        tree.load_tiles((tile.level, tile.index, tile.hashes) for tile in found.values())

    async def tiles(self, keys: list[TileKey]) -> dict[TileKey, StoredTile]:
        """The stored full tiles among ``keys`` ((level, index) pairs)."""
        rows = await self._select_where_in(
            "SELECT position, hashes, root FROM ledger_tile",
            "position",
            "bigint",
            sorted(tile_position(level, index) for level, index in keys),
        )
        found: dict[TileKey, StoredTile] = {}
        for row in rows:
            key = tile_key(row["position"])
            found[key] = StoredTile(*key, bytes(row["hashes"]), bytes(row["root"]))
        return found

    def _remember_block(self, block: Block) -> None:
        if len(self._blocks_by_size) >= _BLOCKS_KEPT:
            self._blocks_by_size.clear()
        self._blocks_by_size[block.tree_size] = block

    # --- blocks and proofs -----------------------------------------------------------------------

    async def latest_block(self) -> Block | None:
        row = await LedgerBlock.select().order_by(LedgerBlock.number, ascending=False).first()
        return None if row is None else _block_from_row(row)

    async def block(self, number: int) -> Block:
        row = await LedgerBlock.select().where(LedgerBlock.number == number).first()
        if row is None:
            raise NotFound("notfound.block", f"no block {number}")
        return _block_from_row(row)

    async def blocks(self, start: int = 0, limit: int = 1000) -> list[Block]:
        rows = (
            await LedgerBlock.select()
            .where(LedgerBlock.number >= start)
            .order_by(LedgerBlock.number)
            .limit(limit)
        )
        return [_block_from_row(row) for row in rows]

    async def _block_at(self, tree_size: int | None) -> tuple[Block, MerkleTree]:
        """The block sealed at ``tree_size`` (the latest by default) and a tree that covers it."""
        if tree_size is None:
            block = await self.latest_block()
            if block is None:
                raise NotYetSealed("no block has been sealed yet")
        elif tree_size in self._blocks_by_size:
            block = self._blocks_by_size[tree_size]
        else:
            row = await LedgerBlock.select().where(LedgerBlock.tree_size == tree_size).first()
            if row is None:
                raise NotFound(
                    "notfound.tree_size", f"no block was sealed at tree size {tree_size}"
                )
            block = _block_from_row(row)
            self._remember_block(block)
        tree = self._tree
        if tree is None or tree.size < block.tree_size:
            async with self._seal_lock:
                tree = self._tree
                if tree is None or tree.size < block.tree_size:
                    tree = await self._sync_tree(block.tree_size)
        return block, tree

    async def inclusion_proof(self, seq: int, tree_size: int | None = None) -> InclusionProof:
        """Proof that entry ``seq`` is in the block sealed at ``tree_size`` (the latest
        by default)."""
        block, tree = await self._block_at(tree_size)
        if not 0 <= seq < block.tree_size:
            if seq < 0:
                raise NotFound("notfound.entry", f"no entry {seq}")
            await self.entry_leaf(seq)  # NotFound when there is no such entry at all
            raise NotYetSealed(f"entry {seq} is not sealed in a block of this size yet")
        await self._load_tiles(tree, [(seq, seq + 1), *inclusion_ranges(seq, block.tree_size)])
        return InclusionProof(
            seq, tree.leaf(seq), tuple(tree.inclusion_proof(seq, block.tree_size)), block
        )

    async def consistency_proof(
        self, first_size: int, second_size: int | None = None
    ) -> ConsistencyProof:
        """Proof that the log at ``second_size`` (the latest block by default) extends
        ``first_size``."""
        block, tree = await self._block_at(second_size)
        second = block.tree_size
        if 0 < first_size < second:
            await self._load_tiles(tree, [(0, first_size), *consistency_ranges(first_size, second)])
        path = tuple(tree.consistency_proof(first_size, second))
        return ConsistencyProof(first_size, second, tree.root(first_size), block.root, path)

    async def entry_leaf(self, seq: int) -> bytes:
        row = await LedgerEntry.select(LedgerEntry.leaf).where(LedgerEntry.seq == seq).first()
        if row is None:
            raise NotFound("notfound.entry", f"no entry {seq}")
        return bytes(row["leaf"])

    async def history(self, commitment: bytes, up_to_seq: int | None = None) -> History:
        """Every entry for ``commitment`` (up to and including ``up_to_seq``), each with its proof
        in the latest block — the evidence that a grant existed and what happened to it since."""
        block, tree = await self._block_at(None)
        rows = await LedgerEntry.raw(
            "SELECT seq, leaf FROM ledger_entry WHERE commitment = {} AND seq <= {} ORDER BY seq",
            commitment,
            _MAX_SEQ if up_to_seq is None else up_to_seq,
        )
        sealed = [row for row in rows if row["seq"] < block.tree_size]
        await self._load_tiles(
            tree,
            [r for row in sealed for r in inclusion_ranges(row["seq"], block.tree_size)],
        )
        proven = tuple(
            ProvenEntry(
                row["seq"],
                bytes(row["leaf"]),
                tuple(tree.inclusion_proof(row["seq"], block.tree_size)),
            )
            for row in sealed
        )
        return History(commitment, block, proven, len(rows) - len(sealed))

    async def history_proof(self, seq: int) -> History:
        """The complete history of the commitment of entry ``seq`` up to that entry — e.g. for an
        ``accessed`` entry, proof that a grant existed and was not revoked or expired before it."""
        leaf = await self.entry_leaf(seq)
        history = await self.history(decode_leaf(leaf).body.commitment, up_to_seq=seq)
        if not history.entries or history.entries[-1].seq != seq:
            raise NotYetSealed(f"entry {seq} is not sealed yet")
        return history

    # --- reading for the audit --------------------------------------------------------------------

    async def iter_entries(self, chunk: int = 5000) -> AsyncIterator[dict[str, Any]]:
        """Every stored entry row in seq order, read in chunks."""
        after = -1
        while True:
            rows = await LedgerEntry.raw(
                # constant columns, an int limit; ``after`` is a bound parameter
                f"SELECT {_ENTRY_COLUMNS} FROM ledger_entry WHERE seq > {{}} "  # noqa: S608
                f"ORDER BY seq LIMIT {int(chunk)}",
                after,
            )
            for row in rows:
                yield row
            if len(rows) < chunk:
                return
            after = rows[-1]["seq"]

    async def commitment_heads(self) -> dict[bytes, int]:
        """The stored latest seq of every commitment (the audit compares it with the entries)."""
        rows = await LedgerCommitment.select()
        return {bytes(row["commitment"]): row["last_seq"] for row in rows}

    async def anchor_jobs(self) -> list[dict[str, Any]]:
        return await LedgerAnchor.select().order_by(LedgerAnchor.block_number)
