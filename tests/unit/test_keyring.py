"""Key lifecycle: rotate keeps old keys verify-only, withdraw stops them at once."""

import pytest

from ecard.crypto.keyring import RETIRED_VERIFY_SECONDS, Keyring, KeyringError


def test_init_creates_a_root_and_one_issuer_key_per_region() -> None:
    ring = Keyring.create(["330000", "110000"], now=1000)
    assert ring.root.role == "root"
    assert ring.regions() == ["110000", "330000"]
    assert {k.kid for k in ring.verification_keys(now=1000)} == {k.kid for k in ring.issuer_keys()}


def test_rotation_keeps_the_old_key_for_verification_until_its_window_ends() -> None:
    ring = Keyring.create(["330000"], now=1000)
    old = ring.signing_key("330000")
    new = ring.rotate("330000", now=2000)
    assert ring.signing_key("330000").kid == new.kid != old.kid
    assert old.status == "retired"
    assert old.kid in {k.kid for k in ring.verification_keys(now=2001)}
    assert old.kid not in {
        k.kid for k in ring.verification_keys(now=2000 + RETIRED_VERIFY_SECONDS + 1)
    }


def test_withdrawal_removes_a_key_at_once_and_replaces_an_active_one() -> None:
    ring = Keyring.create(["330000"], now=1000)
    old = ring.signing_key("330000")
    ring.withdraw(old.kid, now=1500)
    assert old.kid not in {k.kid for k in ring.verification_keys(now=1501)}
    assert ring.signing_key("330000").kid != old.kid
    with pytest.raises(KeyringError) as err:
        ring.withdraw(old.kid)
    assert err.value.code == "key_state_conflict"


def test_retiring_the_only_signer_of_a_region_is_refused() -> None:
    ring = Keyring.create(["330000"])
    with pytest.raises(KeyringError, match="only active key"):
        ring.retire(ring.signing_key("330000").kid)


def test_unknown_key_ids_and_the_root_key_are_protected() -> None:
    ring = Keyring.create(["330000"])
    with pytest.raises(KeyringError) as err:
        ring.withdraw("nope")
    assert err.value.code == "key_not_found"
    with pytest.raises(KeyringError):
        ring.withdraw(ring.root.kid)
