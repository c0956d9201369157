"""Audit of the whole log and the checks a receipt or proof holder runs.

``audit`` re-derives everything from the stored leaves: entry hashes, writer signatures, the
per-commitment links, every block's root, signature and hash link, every stored Merkle tile, and
every anchor against the chain (in memory bounded by the number of blocks and grants, not
entries); each problem names its position (entry seq or block number).  The other functions are
pure checks a relying party can run with nothing but the log's public key.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Protocol

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.errors import InvalidEntry, InvalidProof, LedgerError, NotYetSealed
from ledger.log import ConsistencyProof, History, InclusionProof, Ledger
from ledger.merkle import (
    TILE_HEIGHT,
    MerkleTree,
    StoredTile,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from ledger.records import (
    ZERO_HASH,
    Block,
    Entry,
    Event,
    Receipt,
    decode_leaf,
    entry_batch_header,
    entry_signature_holds,
    signature_holds,
    verify_block,
    verify_receipt,
)

_TILES_PER_CHECK = 64  # completed tiles compared with storage per query


class Problem(msgspec.Struct, frozen=True):
    code: str
    message: str
    seq: int | None = None
    block: int | None = None


class AuditReport(msgspec.Struct):
    entries: int = 0
    blocks: int = 0
    anchors_confirmed: int = 0
    anchors_pending: int = 0
    problems: list[Problem] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class ChainRecord(msgspec.Struct, frozen=True):
    """What the chain says was anchored for one block."""

    block_number: int
    root: bytes
    tree_size: int
    prev_hash: bytes
    tx_hash: str


class AnchorReader(Protocol):
    async def anchored(self, block_number: int) -> ChainRecord | None: ...


class ReceiptCheck(msgspec.Struct, frozen=True):
    """``sealed`` with the inclusion proof once a block covers the entry, else ``pending``."""

    status: str
    proof: InclusionProof | None = None


class Standing(msgspec.Struct, frozen=True):
    """What a verified history says: ``live`` when the last grant has not been denied, revoked or
    expired by the end of the history (for a history ending at an access: at that access)."""

    commitment: bytes
    last_seq: int
    last_event: Event
    granted_seq: int | None
    live: bool


_ENDING = {Event.DENIED, Event.REVOKED, Event.EXPIRED}


# --- pure checks ----------------------------------------------------------------------------------


def verify_inclusion_proof(proof: InclusionProof, log_public_key: Ed25519PublicKey) -> None:
    """The tree head is the log's, and the entry hash is leaf ``seq`` under its root."""
    verify_block(proof.block, log_public_key)
    verify_inclusion(
        proof.seq, proof.block.tree_size, proof.entry_hash, proof.path, proof.block.root
    )


def verify_receipt_inclusion(
    receipt: Receipt, proof: InclusionProof, log_public_key: Ed25519PublicKey
) -> None:
    """The log kept its promise: the receipt is genuine and its entry sits at its seq in a signed
    block."""
    verify_receipt(receipt, log_public_key)
    if proof.seq != receipt.seq or not hmac.compare_digest(proof.entry_hash, receipt.entry_hash):
        raise InvalidProof(
            "receipt.broken_promise", f"entry {receipt.seq} is not the one the receipt promised"
        )
    verify_inclusion_proof(proof, log_public_key)


def verify_consistency_proof(
    proof: ConsistencyProof, first: Block, second: Block, log_public_key: Ed25519PublicKey
) -> None:
    """Both tree heads are the log's and the second extends the first (the log was not
    rewritten)."""
    verify_block(first, log_public_key)
    verify_block(second, log_public_key)
    if (proof.first_size, proof.second_size) != (first.tree_size, second.tree_size):
        raise InvalidProof(
            "proof.size_mismatch", "the proof is for other tree sizes than these blocks"
        )
    verify_consistency(first.tree_size, second.tree_size, first.root, second.root, proof.path)


def verify_history(
    history: History,
    log_public_key: Ed25519PublicKey,
    writer_keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> Standing:
    """Check a commitment's history and say where the grant stood at its end.

    Every entry must be in the log's signed block, carry the commitment, and link to the one before
    it (the first links to nothing), so no entry of this commitment can have been left out — the
    audit checks those links for the whole log.  With ``writer_keys`` the writers' signatures are
    checked too."""
    verify_block(history.block, log_public_key)
    if not history.entries:
        raise InvalidProof("history.empty", "the history has no sealed entry")
    previous: int | None = None
    granted: int | None = None
    live = False
    entry: Entry | None = None
    for proven in history.entries:
        try:
            entry = decode_leaf(proven.leaf)
        except InvalidEntry as exc:
            raise InvalidProof("history.malformed", f"entry {proven.seq}: {exc.message}") from exc
        verify_inclusion(
            proven.seq,
            history.block.tree_size,
            leaf_hash(proven.leaf),
            proven.path,
            history.block.root,
        )
        if entry.body.commitment != history.commitment:
            raise InvalidProof(
                "history.other_commitment", f"entry {proven.seq} is about another grant"
            )
        if entry.prev_seq != previous:
            raise InvalidProof(
                "history.broken_link", f"entry {proven.seq} does not follow entry {previous}"
            )
        if writer_keys is not None:
            key = writer_keys.get(entry.writer_id)
            if key is None or not entry_signature_holds(entry, key):
                raise InvalidProof(
                    "history.bad_signature", f"entry {proven.seq} is not signed by its writer"
                )
        if entry.body.event is Event.GRANTED:
            granted, live = proven.seq, True
        elif entry.body.event in _ENDING:
            live = False
        previous = proven.seq
    if entry is None or previous is None:  # unreachable: the entries are not empty (above)
        raise InvalidProof("history.empty", "the history has no sealed entry")
    return Standing(history.commitment, previous, entry.body.event, granted, live)


# --- against the stored log -----------------------------------------------------------------------


async def check_receipt(
    ledger: Ledger, receipt: Receipt, log_public_key: Ed25519PublicKey | None = None
) -> ReceiptCheck:
    """Verify a receipt and, once its entry is sealed, that the log kept the promise."""
    key = log_public_key or ledger.public_key
    verify_receipt(receipt, key)
    try:
        proof = await ledger.inclusion_proof(receipt.seq)
    except NotYetSealed:
        return ReceiptCheck("pending")
    verify_receipt_inclusion(receipt, proof, key)
    return ReceiptCheck("sealed", proof)


async def audit(
    ledger: Ledger,
    *,
    log_public_key: Ed25519PublicKey | None = None,
    chain: AnchorReader | None = None,
) -> AuditReport:
    """Check the whole stored log; every problem found is listed with its position."""
    key = log_public_key or ledger.public_key
    report = AuditReport()
    blocks = await _audit_blocks(ledger, key, report)
    await _audit_entries(ledger, report, blocks)
    await _audit_anchors(ledger, blocks, chain, report)
    return report


async def _audit_entries(ledger: Ledger, report: AuditReport, blocks: dict[int, Block]) -> None:
    """Re-derive the tree from the leaves, a bounded tree streaming through them: every block's
    root is checked when the tree reaches its size, every stored tile as it completes."""
    writers = {
        w.id: Ed25519PublicKey.from_public_bytes(w.public_key) for w in await ledger.writers()
    }
    verified_batch: tuple[bytes, bytes] | None = None  # a batch's entries are consecutive
    latest_by_commitment: dict[bytes, int] = {}
    blocks_at: dict[int, list[Block]] = {}
    for block in blocks.values():
        blocks_at.setdefault(block.tree_size, []).append(block)
    sealed_size = max(blocks_at, default=0)
    tree = MerkleTree(stored=True)
    completed: list[StoredTile] = []
    async for row in ledger.iter_entries():
        seq = row["seq"]
        problems = report.problems
        if seq != tree.size:
            problems.append(
                Problem("entry.gap", f"expected entry {tree.size}, found {seq}", seq=seq)
            )
        leaf = bytes(row["leaf"])
        computed = leaf_hash(leaf)
        tree.append(computed)
        report.entries += 1
        for block in blocks_at.get(tree.size, ()):
            if not hmac.compare_digest(tree.root(), block.root):
                problems.append(
                    Problem(
                        "block.root_mismatch",
                        "the entries do not hash to the block's root",
                        block=block.number,
                    )
                )
        completed += tree.take_completed()
        if len(completed) >= _TILES_PER_CHECK:
            await _audit_tiles(ledger, completed, sealed_size, report)
            completed = []
        if not hmac.compare_digest(computed, bytes(row["entry_hash"])):
            problems.append(
                Problem("entry.hash_mismatch", "the stored hash is not the leaf's hash", seq=seq)
            )
        try:
            entry = decode_leaf(leaf)
        except InvalidEntry as exc:
            problems.append(Problem("entry.malformed", exc.message, seq=seq))
            continue
        body = entry.body
        stored = (
            bytes(row["commitment"]),
            row["event"],
            row["relying_party"],
            row["writer_id"],
            row["prev_seq"],
            row["time_ms"],
        )
        if stored != (
            body.commitment,
            body.event.value,
            body.relying_party,
            entry.writer_id,
            entry.prev_seq,
            body.time_ms,
        ):
            problems.append(
                Problem(
                    "entry.columns_mismatch", "the indexed columns disagree with the leaf", seq=seq
                )
            )
        if entry.prev_seq != latest_by_commitment.get(body.commitment):
            problems.append(
                Problem(
                    "entry.broken_link",
                    "prev_seq is not the previous entry of its commitment",
                    seq=seq,
                )
            )
        latest_by_commitment[body.commitment] = seq
        writer = writers.get(entry.writer_id)
        if writer is None:
            problems.append(
                Problem(
                    "entry.unknown_writer", f"writer {entry.writer_id!r} is not registered", seq=seq
                )
            )
            continue
        header = entry_batch_header(entry)
        if header is not None and (header, entry.signature) == verified_batch:
            continue  # one Ed25519 verification per writer batch, not per entry
        if header is not None and signature_holds(writer, entry.signature, header):
            verified_batch = (header, entry.signature)
        else:
            problems.append(
                Problem("entry.bad_signature", "the writer's signature does not hold", seq=seq)
            )
    await _audit_tiles(ledger, completed, sealed_size, report)
    for size, at_size in sorted(blocks_at.items()):
        if size > tree.size:
            report.problems.extend(
                Problem(
                    "block.missing_entries",
                    f"the log holds only {tree.size} entries",
                    block=block.number,
                )
                for block in at_size
            )
    if await ledger.commitment_heads() != latest_by_commitment:
        report.problems.append(
            Problem(
                "commitment.heads_mismatch",
                "the stored latest seq per commitment disagrees with the entries",
            )
        )


async def _audit_tiles(
    ledger: Ledger, completed: list[StoredTile], sealed_size: int, report: AuditReport
) -> None:
    """The stored tiles are exactly the ones the leaves complete within the sealed tree (a tile
    past the last block is stored by the seal that covers it)."""
    expected = [
        tile
        for tile in completed
        if (tile.index + 1) << (TILE_HEIGHT * (tile.level + 1)) <= sealed_size
    ]
    stored = await ledger.tiles([(tile.level, tile.index) for tile in expected])
    for tile in expected:
        first_seq = tile.index << (TILE_HEIGHT * (tile.level + 1))
        found = stored.get((tile.level, tile.index))
        if found is None:
            report.problems.append(
                Problem(
                    "tile.missing", f"tile {tile.level}/{tile.index} is not stored", seq=first_seq
                )
            )
        elif found != tile:
            report.problems.append(
                Problem(
                    "tile.mismatch",
                    f"stored tile {tile.level}/{tile.index} is not the leaves' hashes",
                    seq=first_seq,
                )
            )


async def _audit_blocks(
    ledger: Ledger, key: Ed25519PublicKey, report: AuditReport
) -> dict[int, Block]:
    blocks: dict[int, Block] = {}
    previous: Block | None = None
    start = 0
    while batch := await ledger.blocks(start):
        for block in batch:
            blocks[block.number] = block
            report.blocks += 1
            expected_number = previous.number + 1 if previous else 0
            expected_prev = previous.block_hash if previous else ZERO_HASH
            if block.number != expected_number:
                report.problems.append(
                    Problem("block.gap", f"expected block {expected_number}", block=block.number)
                )
            if not hmac.compare_digest(block.prev_hash, expected_prev):
                report.problems.append(
                    Problem(
                        "block.broken_chain",
                        "prev_hash is not the previous block's hash",
                        block=block.number,
                    )
                )
            try:
                verify_block(block, key)
            except InvalidProof as exc:
                report.problems.append(Problem(exc.code, exc.message, block=block.number))
            if previous and block.tree_size <= previous.tree_size:
                report.problems.append(
                    Problem("block.tree_shrank", "the tree did not grow", block=block.number)
                )
            previous = block
        start = batch[-1].number + 1
    return blocks


async def _audit_anchors(
    ledger: Ledger, blocks: dict[int, Block], chain: AnchorReader | None, report: AuditReport
) -> None:
    jobs = {row["block_number"]: row for row in await ledger.anchor_jobs()}
    for number in sorted(blocks.keys() - jobs.keys()):
        report.problems.append(
            Problem("anchor.job_missing", "the block has no anchoring job", block=number)
        )
    chain_reachable = chain is not None
    for number, job in sorted(jobs.items()):
        block = blocks.get(number)
        if block is None:
            report.problems.append(
                Problem("anchor.unknown_block", "an anchoring job for no block", block=number)
            )
            continue
        if (bytes(job["root"]), job["tree_size"], bytes(job["prev_hash"])) != (
            block.root,
            block.tree_size,
            block.prev_hash,
        ):
            report.problems.append(
                Problem(
                    "anchor.job_mismatch",
                    "the anchoring job disagrees with its block",
                    block=number,
                )
            )
        if job["status"] != "confirmed":
            report.anchors_pending += 1
            continue
        if not chain_reachable or chain is None:
            continue
        try:
            record = await chain.anchored(number)
        except LedgerError as exc:
            report.problems.append(Problem("anchor.chain_unreachable", exc.message, block=number))
            chain_reachable = False
            continue
        if record is None:
            report.problems.append(
                Problem(
                    "anchor.missing_on_chain",
                    "no anchor on chain for a confirmed block",
                    block=number,
                )
            )
        elif (record.root, record.tree_size, record.prev_hash) != (
            block.root,
            block.tree_size,
            block.prev_hash,
        ):
            report.problems.append(
                Problem(
                    "anchor.chain_mismatch",
                    "the chain holds another root for this block",
                    block=number,
                )
            )
        elif job["tx_hash"] and job["tx_hash"].lower() != record.tx_hash.lower():
            report.problems.append(
                Problem(
                    "anchor.tx_mismatch",
                    "the recorded transaction is not the anchoring one",
                    block=number,
                )
            )
        else:
            report.anchors_confirmed += 1
