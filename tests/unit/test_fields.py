"""Field encryption, blind indexes and key ids."""

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.crypto.fields import (
    FieldCipher,
    FieldDecryptionError,
    blind_index,
    secret_digest,
    secrets_match,
)
from ecard.offline.es256 import thumbprint


def test_ciphertext_round_trips_and_is_bound_to_its_row() -> None:
    cipher = FieldCipher(os.urandom(32))
    blob = cipher.encrypt("11010519491231002X", "person:a")
    assert b"11010519491231002X" not in blob
    assert cipher.decrypt(blob, "person:a") == "11010519491231002X"
    with pytest.raises(FieldDecryptionError):
        cipher.decrypt(blob, "person:b")  # moved to another row
    with pytest.raises(FieldDecryptionError):
        FieldCipher(os.urandom(32)).decrypt(blob, "person:a")  # another key
    with pytest.raises(FieldDecryptionError):
        cipher.decrypt(blob[:-1] + bytes([blob[-1] ^ 1]), "person:a")  # tampered


def test_encrypting_twice_gives_different_ciphertexts() -> None:
    cipher = FieldCipher(os.urandom(32))
    assert cipher.encrypt("x", "c") != cipher.encrypt("x", "c")


def test_blind_index_is_stable_per_key_and_unlinkable_across_keys() -> None:
    key = os.urandom(32)
    assert blind_index(key, "11010519491231002X") == blind_index(key, "11010519491231002X")
    assert blind_index(key, "11010519491231002X") != blind_index(
        os.urandom(32), "11010519491231002X"
    )


def test_secret_comparison() -> None:
    assert secrets_match("s3cret", secret_digest("s3cret"))
    assert not secrets_match("s3creT", secret_digest("s3cret"))


def test_rfc7638_thumbprint_matches_the_rfc_method() -> None:
    # RFC 7638 §3.1 works an RSA example; for EC the same rule gives this canonical JSON
    import base64
    import hashlib
    import json

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    n = key.public_numbers()
    members = {
        "crv": "P-256",
        "kty": "EC",
        "x": base64.urlsafe_b64encode(n.x.to_bytes(32, "big")).rstrip(b"=").decode(),
        "y": base64.urlsafe_b64encode(n.y.to_bytes(32, "big")).rstrip(b"=").decode(),
    }
    canonical = '{"crv":"P-256","kty":"EC","x":"' + members["x"] + '","y":"' + members["y"] + '"}'
    assert json.dumps(members, separators=(",", ":")) == canonical
    expected = (
        base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    )
    assert thumbprint(key) == expected
