"""Piccolo tables of the ledger.  ``bind(engine)`` points them at the caller's engine.

``ledger_entry.leaf`` holds the canonical leaf bytes (the truth that is hashed into the tree); the
other entry columns are copies kept for lookups, and the audit checks they still agree.
``ledger_head`` is a one-row counter: taking the next sequence numbers locks it until the
appending transaction ends, so sequence numbers have no gaps even when a caller rolls back.
"""

from __future__ import annotations

from typing import Any

from piccolo.columns import BigInt, Bytea, Integer, Text, Timestamptz, Varchar
from piccolo.engine.base import Engine
from piccolo.table import Table


class LedgerWriter(Table, tablename="ledger_writer"):
    id = Varchar(length=64, primary_key=True)
    public_key = Bytea()
    key_id = Varchar(length=64)
    status = Varchar(length=16)  # active | withdrawn
    since = Timestamptz()


class LedgerHead(Table, tablename="ledger_head"):
    id = Integer(primary_key=True)
    next_seq = BigInt(default=0)


class LedgerEntry(Table, tablename="ledger_entry"):
    seq = BigInt(primary_key=True)
    entry_hash = Bytea()
    leaf = Bytea()
    commitment = Bytea(index=True)
    event = Varchar(length=16)
    relying_party = Varchar(length=255)
    writer_id = Varchar(length=64)
    prev_seq = BigInt(null=True, default=None)
    time_ms = BigInt()


class LedgerCommitment(Table, tablename="ledger_commitment"):
    """The latest seq of each commitment: the link the next entry of that grant gets.  A unique key
    keeps the lookup an index probe on every engine, with or without table statistics."""

    commitment = Bytea(primary_key=True)
    last_seq = BigInt()


class LedgerTile(Table, tablename="ledger_tile"):
    """The sealed tree's full tiles (see ``ledger.merkle``): 256 hashes of height 8·level, 8 KiB,
    and their subtree hash.  Immutable once written.  ``position`` is ``level << 48 | index``, so
    the tiles of one level are one key range."""

    position = BigInt(primary_key=True)
    hashes = Bytea()
    root = Bytea()


class LedgerBlock(Table, tablename="ledger_block"):
    number = BigInt(primary_key=True)
    tree_size = BigInt(unique=True)
    root = Bytea()
    prev_hash = Bytea()
    block_hash = Bytea()
    sealed_ms = BigInt()
    log_key_id = Varchar(length=64)
    signature = Bytea()


class LedgerAnchor(Table, tablename="ledger_anchor"):
    """The anchoring outbox: one row per sealed block, written in the sealing transaction."""

    block_number = BigInt(primary_key=True)
    root = Bytea()
    tree_size = BigInt()
    prev_hash = Bytea()
    status = Varchar(length=16, index=True)  # pending | sent | confirmed | conflict
    tx_hash = Varchar(length=66, null=True, default=None)
    chain_block = BigInt(null=True, default=None)
    confirmations = Integer(default=0)
    attempts = Integer(default=0)
    last_error = Text(null=True, default=None)
    updated_ms = BigInt(default=0)


TABLES: list[type[Table]] = [
    LedgerWriter,
    LedgerHead,
    LedgerEntry,
    LedgerCommitment,
    LedgerTile,
    LedgerBlock,
    LedgerAnchor,
]


_TILE_LEVEL_SHIFT = 48


def tile_position(level: int, index: int) -> int:
    return level << _TILE_LEVEL_SHIFT | index


def tile_key(position: int) -> tuple[int, int]:
    """(level, index) of a tile's position."""
    return position >> _TILE_LEVEL_SHIFT, position & ((1 << _TILE_LEVEL_SHIFT) - 1)


def bind(engine: Engine[Any]) -> None:
    """Run every ledger query on ``engine`` (and so inside its current transaction, if any)."""
    for table in TABLES:
        table._meta.db = engine
