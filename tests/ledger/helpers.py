"""Small builders shared by the ledger tests."""

from __future__ import annotations

import itertools
import os

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger import Block, EntryBody, Event, Ledger, SignedBatch, commit, sign_batch
from ledger.verify import verify_consistency_proof, verify_inclusion_proof

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


SEALS = (
    700,
    700,
    1,
    900,
    300,
)  # 2601 entries: ten full tiles, seals ending inside and between them


async def grow(
    ledger: Ledger, writer_key: Ed25519PrivateKey, sizes: tuple[int, ...] = SEALS
) -> list[Block]:
    blocks = []
    for size in sizes:
        for start in range(0, size, 250):
            await ledger.append(
                batch_of(writer_key, *(body() for _ in range(min(250, size - start))))
            )
        block = await ledger.seal()
        assert block is not None
        blocks.append(block)
    return blocks


async def check_proofs(ledger: Ledger, blocks: list[Block], seqs: range) -> None:
    for seq in seqs:
        verify_inclusion_proof(await ledger.inclusion_proof(seq), ledger.public_key)
    for first, second in itertools.pairwise(blocks):
        proof = await ledger.consistency_proof(first.tree_size, second.tree_size)
        verify_consistency_proof(proof, first, second, ledger.public_key)
