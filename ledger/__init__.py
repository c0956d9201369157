"""A permissioned, tamper-evident consent ledger (reusable: imports nothing from ``ecard``).

Entries carry no personal data — an event, a time, the relying party's id and a salted commitment
to the grant — and are signed by registered writers, acknowledged at once with a signed receipt,
sealed into signed RFC 9162 Merkle blocks chained by hash, and anchored on an EVM chain.
"""

from ledger.errors import (
    AnchorError,
    InvalidEntry,
    InvalidProof,
    LedgerError,
    NotFound,
    NotYetSealed,
    Unavailable,
    WriterRejected,
)
from ledger.log import ConsistencyProof, History, InclusionProof, Ledger, ProvenEntry, Writer
from ledger.records import (
    Block,
    Entry,
    EntryBody,
    Event,
    Receipt,
    SignedBatch,
    commit,
    decode_leaf,
    key_id,
    sign_batch,
    verify_block,
    verify_receipt,
)
from ledger.tables import bind

__all__ = [
    "AnchorError",
    "Block",
    "ConsistencyProof",
    "Entry",
    "EntryBody",
    "Event",
    "History",
    "InclusionProof",
    "InvalidEntry",
    "InvalidProof",
    "Ledger",
    "LedgerError",
    "NotFound",
    "NotYetSealed",
    "ProvenEntry",
    "Receipt",
    "SignedBatch",
    "Unavailable",
    "Writer",
    "WriterRejected",
    "bind",
    "commit",
    "decode_leaf",
    "key_id",
    "sign_batch",
    "verify_block",
    "verify_receipt",
]
