"""Small builders shared by the ledger tests."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import EntryBody, Event, SignedBatch, commit, sign_batch

WRITER_ID = "consent-service"


def grant_commitment(grant_id: str = "grant-1") -> bytes:
    """A commitment as the consent service makes it: canonical grant bytes and a stored salt."""
    return commit(f'{{"grant":"{grant_id}","scopes":["ssc.status"]}}'.encode(), os.urandom(16))


def body(
    event: Event = Event.GRANTED, commitment: bytes | None = None, party: str = "rp-hospital-1"
) -> EntryBody:
    return EntryBody(event, 1_790_000_000_000, party, commitment or grant_commitment())


def batch_of(key: Ed25519PrivateKey, *bodies: EntryBody, writer_id: str = WRITER_ID) -> SignedBatch:
    return sign_batch(writer_id, list(bodies), key)
