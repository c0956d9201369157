"""ES256 keys in a PKCS#11 token (SoftHSM2): generated there, signing there, never leaving it."""

from __future__ import annotations

import threading
import time
import uuid

import jwt
import msgspec
import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11

from ecard.codes.format import CodeSigner
from ecard.codes.trust import NO_REVOCATIONS, build_trust_list
from ecard.crypto.keyring import Keyring
from ecard.crypto.provider import KeyProviderError, KeyProviderUnavailable, open_key_provider
from ecard.crypto.provider.pkcs11 import Pkcs11KeyProvider
from ecard.offline import Usage, load_trust_list, sign_trust_list, verify
from ecard.offline.es256 import open_jws, sign_jws, thumbprint
from ecard.store.keyfiles import load_keyring, save_keyring
from tests.keys.conftest import SoftHsm

ECDSA = ec.ECDSA(hashes.SHA256())


def token_objects(softhsm: SoftHsm, key_id: str) -> dict[ObjectClass, dict[Attribute, object]]:
    """The token's own view of a key's objects, read through a separate session."""
    lib = pkcs11.lib(softhsm.module)
    with lib.get_token(token_label=softhsm.token_label).open(user_pin=None) as session:
        found = {}
        for obj in session.get_objects({Attribute.ID: bytes.fromhex(key_id)}):
            found[obj[Attribute.CLASS]] = obj
        return {
            cls: {
                attr: obj[attr]
                for attr in (Attribute.LABEL,)
                + (
                    (Attribute.SENSITIVE, Attribute.EXTRACTABLE, Attribute.NEVER_EXTRACTABLE)
                    if cls == ObjectClass.PRIVATE_KEY
                    else ()
                )
            }
            for cls, obj in found.items()
        }


def test_a_key_generated_in_the_token_is_recorded_by_its_public_half_only(
    hsm_provider: Pkcs11KeyProvider, tmp_path
) -> None:
    ring = Keyring.create(["330000"], keys=hsm_provider)
    for record in ring.keys:
        assert record.private_pem is None and record.token_object is not None
        assert record.kid == thumbprint(record.public_key())  # RFC 7638, as for file keys
    save_keyring(tmp_path, ring)
    text = (tmp_path / "keyring.json").read_text()
    assert "PRIVATE KEY" not in text and '"d"' not in text
    assert load_keyring(tmp_path).keys[1].token_object == ring.keys[1].token_object


def test_the_private_key_is_sensitive_and_cannot_be_exported(
    hsm_provider: Pkcs11KeyProvider, softhsm: SoftHsm
) -> None:
    record = hsm_provider.generate("issuer", "330000", int(time.time()))
    assert record.token_object is not None
    lib = pkcs11.lib(softhsm.module)
    with lib.get_token(token_label=softhsm.token_label).open(rw=True) as session:
        private = session.get_key(
            object_class=ObjectClass.PRIVATE_KEY, id=bytes.fromhex(record.token_object.id)
        )
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.NEVER_EXTRACTABLE] is True
        with pytest.raises(p11.AttributeSensitive):
            private[Attribute.VALUE]  # the scalar itself
        wrapping = session.generate_key(
            pkcs11.KeyType.AES, 256, template={Attribute.WRAP: True, Attribute.TOKEN: False}
        )
        with pytest.raises(p11.KeyUnextractable):
            wrapping.wrap_key(private)  # not even encrypted under a key of our choosing
        with pytest.raises(p11.AttributeReadOnly):
            private[Attribute.EXTRACTABLE] = True
    signer = hsm_provider.private_key(record)
    with pytest.raises(KeyProviderError):
        signer.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    with pytest.raises(KeyProviderError):
        signer.private_numbers()


def test_signatures_made_in_the_token_verify_with_the_recorded_public_key(
    hsm_provider: Pkcs11KeyProvider,
) -> None:
    record = hsm_provider.generate("issuer", "330000", int(time.time()))
    signer = hsm_provider.private_key(record)
    signature = signer.sign(b"payload", ECDSA)
    record.public_key().verify(signature, b"payload", ECDSA)
    other = hsm_provider.generate("issuer", "330000", int(time.time()))
    with pytest.raises(InvalidSignature):
        other.public_key().verify(signature, b"payload", ECDSA)


def test_codes_signed_in_the_token_verify_offline_against_the_trust_list(
    hsm_provider: Pkcs11KeyProvider,
) -> None:
    now = int(time.time())
    ring = Keyring.create(["330000", "110000"], now=now - 60, keys=hsm_provider)
    root = hsm_provider.private_key(ring.root)
    trust_token = sign_trust_list(build_trust_list(ring, now), root)
    store = load_trust_list(trust_token, ring.root.public_key(), now)
    signer = CodeSigner("330000", hsm_provider.private_key(ring.signing_key("330000")))
    code = signer.sign(
        signer.claims(
            pseudonym=bytes(16),
            serial=7,
            issued_at=now,
            masked_name="张*三",
            card_last4="1234",
            usage=Usage.SHOW,
        )
    )
    result = verify(code, store, NO_REVOCATIONS, now)
    assert (
        result.ok
        and result.issuer is not None
        and result.issuer.kid == ring.signing_key("330000").kid
    )
    # a code from one province verifies at a verifier of another through the same list
    other = CodeSigner("110000", hsm_provider.private_key(ring.signing_key("110000")))
    assert verify(
        other.sign(
            other.claims(
                pseudonym=bytes(16), serial=1, issued_at=now, masked_name="李*", card_last4="0001"
            )
        ),
        store,
        NO_REVOCATIONS,
        now,
    ).ok


def test_signed_documents_fall_back_to_random_nonces_and_still_verify(
    hsm_provider: Pkcs11KeyProvider,
) -> None:
    """RFC 6979 is no PKCS#11 mechanism: the same document signed twice differs in its signature
    only, and both verify (the file provider's deterministic path is tests/offline's)."""
    root = hsm_provider.private_key(hsm_provider.generate("root", None, int(time.time())))
    first, second = (sign_jws(b'{"a":1}', root, "test+json") for _ in range(2))
    assert first.rsplit(".", 1)[0] == second.rsplit(".", 1)[0]
    assert first != second
    for token in (first, second):
        assert open_jws(token, "test+json", root.public_key()) == b'{"a":1}'


def test_id_tokens_signed_by_pyjwt_with_a_token_key(hsm_provider: Pkcs11KeyProvider) -> None:
    record = hsm_provider.generate("issuer", "330000", int(time.time()))
    token = jwt.encode(
        {"sub": "pairwise", "aud": "rp"},
        hsm_provider.private_key(record),
        algorithm="ES256",
        headers={"kid": record.kid},
    )
    claims = jwt.decode(token, record.public_key(), algorithms=["ES256"], audience="rp")
    assert claims["sub"] == "pairwise"
    assert jwt.get_unverified_header(token)["kid"] == record.kid


def test_many_threads_share_the_one_session(hsm_provider: Pkcs11KeyProvider) -> None:
    record = hsm_provider.generate("issuer", "330000", int(time.time()))
    signer, errors, done = hsm_provider.private_key(record), [], []

    def work(n: int) -> None:
        try:
            for i in range(40):
                data = f"{n}:{i}".encode()
                record.public_key().verify(signer.sign(data, ECDSA), data, ECDSA)
            done.append(n)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and sorted(done) == list(range(8))


def test_a_lost_session_is_reopened(hsm_provider: Pkcs11KeyProvider) -> None:
    record = hsm_provider.generate("issuer", "330000", int(time.time()))
    signer = hsm_provider.private_key(record)
    signer.sign(b"before", ECDSA)
    session = hsm_provider.token._session  # the process's one session, closed under its feet
    assert session is not None
    session.close()
    record.public_key().verify(signer.sign(b"after", ECDSA), b"after", ECDSA)


def test_a_destroyed_key_no_longer_signs(hsm_provider: Pkcs11KeyProvider, softhsm) -> None:
    record = hsm_provider.generate("issuer", "330000", int(time.time()))
    hsm_provider.private_key(record).sign(b"x", ECDSA)
    assert hsm_provider.destroy(record) is True
    assert record.token_object is not None
    assert token_objects(softhsm, record.token_object.id) == {}
    with pytest.raises(KeyProviderUnavailable, match="not in PKCS#11 token"):
        hsm_provider.private_key(record).sign(b"x", ECDSA)
    assert hsm_provider.destroy(record) is False  # idempotent


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        # a wrong PIN: test_cli.py, in a process of its own (login state is per process and
        # token: in this process the provider fixture is already logged in)
        ({"token_label": "no-such-token"}, "no token with this label"),
        ({"module": "/nonexistent/libpkcs11.so"}, "cannot load the module"),
    ],
)
def test_an_unusable_token_is_a_clear_error_without_the_pin(
    softhsm: SoftHsm, change: dict[str, str], reason: str
) -> None:
    settings = {"module": softhsm.module, "token_label": softhsm.token_label, "pin": softhsm.pin}
    provider = open_key_provider("pkcs11", **(settings | change))
    with pytest.raises(KeyProviderUnavailable, match=reason) as caught:
        provider.generate("issuer", "330000", int(time.time()))
    assert softhsm.pin not in str(caught.value) and "00000000" not in str(caught.value)
    assert softhsm.pin not in repr(provider)


def test_pkcs11_needs_all_of_its_settings() -> None:
    with pytest.raises(KeyProviderError, match="ECARD_PKCS11_PIN"):
        open_key_provider("pkcs11", module="/x.so", token_label="t")


def test_a_file_keyring_is_refused_by_the_pkcs11_provider_and_back(
    hsm_provider: Pkcs11KeyProvider,
) -> None:
    file_ring, hsm_ring = Keyring.create(["330000"]), Keyring.create(["330000"], keys=hsm_provider)
    with pytest.raises(KeyProviderError, match="file key"):
        hsm_provider.private_key(file_ring.root)
    with pytest.raises(KeyProviderError, match="ECARD_KEY_PROVIDER=pkcs11"):
        open_key_provider("file").private_key(hsm_ring.root)


def test_records_of_both_providers_round_trip_through_json(
    hsm_provider: Pkcs11KeyProvider,
) -> None:
    for ring in (Keyring.create(["330000"]), Keyring.create(["330000"], keys=hsm_provider)):
        again = msgspec.json.decode(msgspec.json.encode(ring), type=Keyring)
        assert [k.public_jwk() for k in again.keys] == [k.public_jwk() for k in ring.keys]


def test_labels_name_role_and_region(hsm_provider: Pkcs11KeyProvider, softhsm: SoftHsm) -> None:
    region = "4" + uuid.uuid4().hex[:5].translate(str.maketrans("abcdef", "123456"))
    record = hsm_provider.generate("issuer", region, int(time.time()))
    assert record.token_object is not None
    objects = token_objects(softhsm, record.token_object.id)
    assert {o[Attribute.LABEL] for o in objects.values()} == {record.token_object.label}
    assert record.token_object.label.startswith(f"ecard-issuer-{region}-")
