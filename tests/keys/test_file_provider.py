"""The ``file`` provider (development) keeps today's behaviour: PEM keys in the keyring, the card
master keys derived from its secrets, deterministic signed documents; withdrawn keys lose their
PEM when the CLI prunes."""

from __future__ import annotations

import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.codes.trust import build_trust_list
from ecard.crypto.keyring import RETIRED_VERIFY_SECONDS, Keyring
from ecard.crypto.provider import open_key_provider
from ecard.crypto.provider.files import FileKeyProvider
from ecard.offline.es256 import open_jws, sign_jws
from ecard.store.keyfiles import KeyringSource, load_keyring, save_keyring

ECDSA = ec.ECDSA(hashes.SHA256())


def test_file_keys_sign_deterministic_documents() -> None:
    provider = open_key_provider("file")
    ring = Keyring.create(["330000"], keys=provider)
    root = provider.private_key(ring.root)
    assert ring.root.private_pem is not None and provider.private_key(ring.root) is root
    first, second = (sign_jws(b"{}", root, "t+json") for _ in range(2))
    assert first == second  # RFC 6979: re-made documents are the same bytes
    assert open_jws(first, "t+json", ring.root.public_key()) == b"{}"


def test_prune_drops_the_pem_of_keys_nothing_needs(tmp_path) -> None:
    provider = FileKeyProvider()
    now = int(time.time())
    ring = Keyring.create(["330000", "110000"], now=now - 10 * RETIRED_VERIFY_SECONDS)
    stale = ring.signing_key("110000")
    ring.rotate("110000", now=now - 5 * RETIRED_VERIFY_SECONDS)  # retired long ago
    fresh = ring.signing_key("330000")
    ring.rotate("330000", now=now)  # retired now: still verifies, keeps its PEM
    withdrawn = ring.withdraw(ring.signing_key("330000").kid, now=now)
    pruned = {key.kid for key in provider.prune(ring)}
    assert pruned == {stale.kid, withdrawn.kid}
    assert fresh.private_pem is not None and ring.root.private_pem is not None
    assert provider.prune(ring) == []  # idempotent
    save_keyring(tmp_path, ring)
    again = load_keyring(tmp_path)
    assert again.find(withdrawn.kid).private_pem is None
    # still listed (withdrawn keys refuse their codes by id), public half intact
    listed = {key.kid: key for key in build_trust_list(again, now).keys}
    assert listed[withdrawn.kid].status == "withdrawn"
    assert again.find(withdrawn.kid).public_jwk() == withdrawn.public_jwk()


def test_the_keyring_source_signs_through_its_provider(tmp_path) -> None:
    save_keyring(tmp_path, Keyring.create(["330000"]))
    source = KeyringSource(tmp_path)
    record = source.ring.signing_key("330000")
    signature = source.private_key(record).sign(b"x", ECDSA)
    record.public_key().verify(signature, b"x", ECDSA)
    assert source.card_keys.cipher == "SM4"
