"""Ledger records and the exact bytes that are hashed and signed (pure: no I/O).

Every signed or hashed form is a small big-endian binary layout that starts with a four-byte
magic and a version byte, so a signature made for one kind of record can never be replayed as
another, and any language can rebuild the bytes from docs/ledger.md.  Keys are Ed25519 (chosen by
measurement, see docs/ledger.md); key ids are RFC 7638 JWK thumbprints.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import re
import struct

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger.errors import InvalidEntry, InvalidProof
from ledger.merkle import HASH_SIZE, MerkleTree, leaf_hash, root_from_inclusion_proof

ENTRY_MAGIC = b"ECLE\x01"  # entry body, what the writer vouches for
BATCH_MAGIC = b"ECLB\x01"  # the writer's signed batch header
LEAF_MAGIC = b"ECLL\x01"  # the Merkle leaf: body + writer + log-assigned link + signature path
RECEIPT_MAGIC = b"ECLR\x01"  # the log's signed promise of inclusion
HEAD_MAGIC = b"ECLT\x01"  # the log's signed tree head of a block

SIGNATURE_SIZE = 64
NO_PREVIOUS = 2**64 - 1  # prev_seq of the first entry for a commitment
ZERO_HASH = bytes(HASH_SIZE)  # prev_hash of block 0
MAX_BATCH = 4096
MIN_SALT = 16
_WRITER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_MAX_PARTY_BYTES = 255


class Event(enum.StrEnum):
    REQUESTED = "requested"
    GRANTED = "granted"
    DENIED = "denied"
    REVOKED = "revoked"
    EXPIRED = "expired"
    ACCESSED = "accessed"


_EVENT_CODE = {event: code for code, event in enumerate(Event, start=1)}
_CODE_EVENT = {code: event for event, code in _EVENT_CODE.items()}


class EntryBody(msgspec.Struct, frozen=True):
    """What a writer records: no personal data, only a salted commitment to the grant."""

    event: Event
    time_ms: int
    relying_party: str
    commitment: bytes


class SignedBatch(msgspec.Struct, frozen=True):
    """One or more bodies under one writer signature over their Merkle root."""

    writer_id: str
    bodies: tuple[EntryBody, ...]
    signature: bytes


class Entry(msgspec.Struct, frozen=True):
    """A ledger leaf: the body, its writer's batch signature with the body's path in the batch,
    and ``prev_seq``, the log's link to the previous entry for the same commitment."""

    body: EntryBody
    writer_id: str
    prev_seq: int | None
    batch_size: int
    batch_index: int
    batch_path: tuple[bytes, ...]
    signature: bytes


class Receipt(msgspec.Struct, frozen=True):
    """The log's signed promise that ``entry_hash`` is leaf ``seq``; one log signature covers the
    ``count`` entries appended together from ``first_seq``, ``path`` places this one among them."""

    log_key_id: str
    seq: int
    entry_hash: bytes
    issued_ms: int
    first_seq: int
    count: int
    path: tuple[bytes, ...]
    signature: bytes


class Block(msgspec.Struct, frozen=True):
    """A sealed block: the signed tree head of the whole log at ``tree_size``, chained to the
    previous block by ``prev_hash``."""

    number: int
    tree_size: int
    root: bytes
    prev_hash: bytes
    sealed_ms: int
    log_key_id: str
    signature: bytes

    @property
    def block_hash(self) -> bytes:
        return hashlib.sha256(head_bytes(self)).digest()


# --- keys ---------------------------------------------------------------------------------------


def key_id(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint of the key's OKP JWK."""
    x = base64.urlsafe_b64encode(raw_public_key(public_key)).rstrip(b"=").decode()
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    return (
        base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    )


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    if not isinstance(public_key, Ed25519PublicKey):
        raise InvalidEntry("writer.key_unsupported", "ledger keys must be Ed25519")
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def signature_holds(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def commit(canonical: bytes, salt: bytes) -> bytes:
    """The salted commitment a ledger entry carries instead of the grant: HMAC-SHA256 keyed by the
    salt.  Delete the salt and the entry can no longer be linked to the grant or its holder."""
    if len(salt) < MIN_SALT:
        raise InvalidEntry("entry.salt_too_short", f"the salt must have at least {MIN_SALT} bytes")
    return hmac.digest(salt, canonical, "sha256")


# --- entry bodies and writer batches -------------------------------------------------------------


def check_writer_id(writer_id: str) -> None:
    if not isinstance(writer_id, str) or not _WRITER_ID.fullmatch(writer_id):
        raise InvalidEntry("entry.bad_writer_id", "a writer id is 1-64 of A-Z a-z 0-9 . _ : -")


def body_bytes(body: EntryBody) -> bytes:
    """ENTRY_MAGIC | event u8 | time_ms u64 | commitment[32] | len u8 | relying_party utf-8."""
    if body.event not in _EVENT_CODE:
        raise InvalidEntry("entry.bad_event", f"unknown event {body.event!r}")
    if not isinstance(body.time_ms, int) or not 0 <= body.time_ms < 2**63:
        raise InvalidEntry("entry.bad_time", "time_ms must be a non-negative 63-bit integer")
    if not isinstance(body.commitment, bytes) or len(body.commitment) != HASH_SIZE:
        raise InvalidEntry("entry.bad_commitment", "the commitment must be 32 bytes")
    party = body.relying_party.encode() if isinstance(body.relying_party, str) else b""
    if not 0 < len(party) <= _MAX_PARTY_BYTES:
        raise InvalidEntry("entry.bad_relying_party", "the relying party id must be 1-255 bytes")
    return b"".join(
        (
            ENTRY_MAGIC,
            struct.pack(">BQ", _EVENT_CODE[body.event], body.time_ms),
            body.commitment,
            bytes([len(party)]),
            party,
        )
    )


def batch_tree(bodies: tuple[EntryBody, ...]) -> MerkleTree:
    """The Merkle tree over the bodies' hashes whose root a writer signs."""
    if not isinstance(bodies, tuple | list) or not 0 < len(bodies) <= MAX_BATCH:
        raise InvalidEntry("entry.bad_batch_size", f"a batch holds 1-{MAX_BATCH} entries")
    if not all(isinstance(body, EntryBody) for body in bodies):
        raise InvalidEntry("entry.malformed", "a batch holds EntryBody records")
    return MerkleTree(leaf_hash(body_bytes(body)) for body in bodies)


def batch_header(writer_id: str, count: int, root: bytes) -> bytes:
    """BATCH_MAGIC | len u8 | writer_id | count u32 | root[32] — what the writer signs."""
    check_writer_id(writer_id)
    return (
        BATCH_MAGIC + bytes([len(writer_id)]) + writer_id.encode() + struct.pack(">I", count) + root
    )


def sign_batch(
    writer_id: str, bodies: tuple[EntryBody, ...] | list[EntryBody], key: Ed25519PrivateKey
) -> SignedBatch:
    """Sign bodies as a writer: one signature over the Merkle root of their hashes."""
    bodies = tuple(bodies)
    root = batch_tree(bodies).root()
    return SignedBatch(writer_id, bodies, key.sign(batch_header(writer_id, len(bodies), root)))


def entry_batch_header(entry: Entry) -> bytes | None:
    """The batch header the writer signed, rebuilt from the entry's path (None if malformed)."""
    try:
        root = root_from_inclusion_proof(
            entry.batch_index, entry.batch_size, leaf_hash(body_bytes(entry.body)), entry.batch_path
        )
        return batch_header(entry.writer_id, entry.batch_size, root)
    except (InvalidProof, InvalidEntry):
        return None


def entry_signature_holds(entry: Entry, writer_key: Ed25519PublicKey) -> bool:
    """Check the writer's signature on one entry alone, through its path in the signed batch."""
    header = entry_batch_header(entry)
    return header is not None and signature_holds(writer_key, entry.signature, header)


# --- leaves ---------------------------------------------------------------------------------------


def leaf_bytes(entry: Entry) -> bytes:
    """LEAF_MAGIC | len u16 | body | len u8 | writer_id | prev_seq u64 | batch_size u32 |
    batch_index u32 | count u8 | path[32 * count] | signature[64]."""
    body = body_bytes(entry.body)
    writer = entry.writer_id.encode()
    prev = NO_PREVIOUS if entry.prev_seq is None else entry.prev_seq
    return b"".join(
        (
            LEAF_MAGIC,
            struct.pack(">H", len(body)),
            body,
            bytes([len(writer)]),
            writer,
            struct.pack(">QIIB", prev, entry.batch_size, entry.batch_index, len(entry.batch_path)),
            *entry.batch_path,
            entry.signature,
        )
    )


class _Reader:
    """Bounds-checked cursor over bytes; every overrun is an ``InvalidEntry``."""

    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def take(self, n: int) -> bytes:
        if self.offset + n > len(self.data):
            raise InvalidEntry("entry.malformed", "the record is truncated")
        chunk = self.data[self.offset : self.offset + n]
        self.offset += n
        return chunk

    def unpack(self, layout: str) -> tuple[int, ...]:
        return struct.unpack(layout, self.take(struct.calcsize(layout)))

    def end(self) -> None:
        if self.offset != len(self.data):
            raise InvalidEntry("entry.malformed", "trailing bytes after the record")


def decode_body(data: bytes) -> EntryBody:
    reader = _Reader(data)
    if reader.take(len(ENTRY_MAGIC)) != ENTRY_MAGIC:
        raise InvalidEntry("entry.malformed", "not an entry body (magic or version)")
    code, time_ms = reader.unpack(">BQ")
    commitment = reader.take(HASH_SIZE)
    party = reader.take(reader.unpack(">B")[0])
    reader.end()
    if code not in _CODE_EVENT:
        raise InvalidEntry("entry.bad_event", f"unknown event code {code}")
    try:
        relying_party = party.decode()
    except UnicodeDecodeError as exc:
        raise InvalidEntry("entry.bad_relying_party", "the relying party id is not UTF-8") from exc
    body = EntryBody(_CODE_EVENT[code], time_ms, relying_party, commitment)
    if body_bytes(body) != data:
        raise InvalidEntry("entry.malformed", "the body is not in canonical form")
    return body


def decode_leaf(data: bytes) -> Entry:
    """Parse a leaf, refusing anything that does not re-encode to the same bytes."""
    reader = _Reader(data)
    if reader.take(len(LEAF_MAGIC)) != LEAF_MAGIC:
        raise InvalidEntry("entry.malformed", "not a ledger leaf (magic or version)")
    body = decode_body(reader.take(reader.unpack(">H")[0]))
    try:
        writer_id = reader.take(reader.unpack(">B")[0]).decode()
    except UnicodeDecodeError as exc:
        raise InvalidEntry("entry.bad_writer_id", "the writer id is not UTF-8") from exc
    check_writer_id(writer_id)
    prev, batch_size, batch_index, path_length = reader.unpack(">QIIB")
    path = tuple(reader.take(HASH_SIZE) for _ in range(path_length))
    signature = reader.take(SIGNATURE_SIZE)
    reader.end()
    if not batch_index < batch_size <= MAX_BATCH:
        raise InvalidEntry("entry.malformed", "the batch position is out of range")
    return Entry(
        body,
        writer_id,
        None if prev == NO_PREVIOUS else prev,
        batch_size,
        batch_index,
        path,
        signature,
    )


# --- receipts and tree heads ----------------------------------------------------------------------


def receipt_header(
    log_key_id: str, first_seq: int, count: int, root: bytes, issued_ms: int
) -> bytes:
    """RECEIPT_MAGIC | len u8 | log_key_id | first_seq u64 | count u32 | root[32] | issued_ms u64,
    where root is the RFC 9162 root over the entry hashes appended together."""
    return b"".join(
        (
            RECEIPT_MAGIC,
            bytes([len(log_key_id)]),
            log_key_id.encode(),
            struct.pack(">QI", first_seq, count),
            root,
            struct.pack(">Q", issued_ms),
        )
    )


def issue_receipts(
    log_key: Ed25519PrivateKey,
    log_key_id: str,
    first_seq: int,
    entry_hashes: list[bytes],
    issued_ms: int,
) -> list[Receipt]:
    """One log signature for the whole append, a receipt (with its path) for every entry."""
    tree = MerkleTree(entry_hashes)
    count = len(entry_hashes)
    signature = log_key.sign(receipt_header(log_key_id, first_seq, count, tree.root(), issued_ms))
    return [
        Receipt(log_key_id, first_seq + i, h, issued_ms, first_seq, count, tuple(path), signature)
        for i, (h, path) in enumerate(zip(entry_hashes, tree.inclusion_proofs(), strict=True))
    ]


def verify_receipt(receipt: Receipt, log_public_key: Ed25519PublicKey) -> None:
    """Raise ``InvalidProof`` unless the log with this key promised this entry at this seq."""
    if receipt.log_key_id != key_id(log_public_key):
        raise InvalidProof("receipt.wrong_log", "the receipt names another log key")
    if not receipt.first_seq <= receipt.seq < receipt.first_seq + receipt.count:
        raise InvalidProof("receipt.malformed", "the seq is outside the receipt's batch")
    root = root_from_inclusion_proof(
        receipt.seq - receipt.first_seq, receipt.count, receipt.entry_hash, receipt.path
    )
    header = receipt_header(
        receipt.log_key_id, receipt.first_seq, receipt.count, root, receipt.issued_ms
    )
    if not signature_holds(log_public_key, receipt.signature, header):
        raise InvalidProof(
            "receipt.bad_signature", "the log's signature on the receipt does not hold"
        )


def head_bytes(block: Block) -> bytes:
    """HEAD_MAGIC | len u8 | log_key_id | number u64 | tree_size u64 | root[32] | prev_hash[32] |
    sealed_ms u64 — signed by the log; its SHA-256 is the block hash the next block chains to."""
    return b"".join(
        (
            HEAD_MAGIC,
            bytes([len(block.log_key_id)]),
            block.log_key_id.encode(),
            struct.pack(">QQ", block.number, block.tree_size),
            block.root,
            block.prev_hash,
            struct.pack(">Q", block.sealed_ms),
        )
    )


def sign_block(log_key: Ed25519PrivateKey, unsigned: Block) -> Block:
    return msgspec.structs.replace(unsigned, signature=log_key.sign(head_bytes(unsigned)))


def verify_block(block: Block, log_public_key: Ed25519PublicKey) -> None:
    """Raise ``InvalidProof`` unless the log with this key signed this tree head."""
    if block.log_key_id != key_id(log_public_key):
        raise InvalidProof("block.wrong_log", f"block {block.number} names another log key")
    if not signature_holds(log_public_key, block.signature, head_bytes(block)):
        raise InvalidProof(
            "block.bad_signature", f"the tree head of block {block.number} is not signed by the log"
        )
