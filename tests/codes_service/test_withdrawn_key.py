"""A withdrawn (compromised) issuer key fails every code it signed at once, in running workers.

Its own keyring (``keys_dir`` overridden here), so the other tests keep theirs."""

from __future__ import annotations

import asyncio

import pytest

from ecard.crypto.keyring import Keyring
from ecard.offline import parse_code
from ecard.store.keyfiles import load_keyring, save_keyring
from tests.codes_service.conftest import Holder, Verifier, fetch_code, present
from tests.codes_service.test_verify import refused
from tests.helpers import World


@pytest.fixture()
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("keys")
    save_keyring(directory, Keyring.create(["330000", "110000"]))
    return str(directory)


async def test_a_withdrawn_key_fails_its_codes_at_once(
    world: World, holder: Holder, pharmacy: Verifier, keys_dir: str
) -> None:
    code = (await fetch_code(world.client, holder))["code"]
    ring = load_keyring(keys_dir)
    ring.withdraw(ring.signing_key("330000").kid)
    save_keyring(keys_dir, ring)
    await asyncio.sleep(1.1)  # running workers re-read the keyring file at most once a second
    refused(await present(world.client, pharmacy, code), "key_withdrawn")
    fresh = (await fetch_code(world.client, holder))["code"]  # signed with the region's new key
    assert parse_code(fresh).claims.key_id != parse_code(code).claims.key_id
    assert (await present(world.client, pharmacy, fresh))["valid"] is True
