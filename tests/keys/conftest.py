"""Fixtures of the HSM tests: a SoftHSM2 token of their own, the pkcs11 key provider on it, a
keyring whose keys live in it, and the service's settings pointing at it.

SoftHSM2 reads its configuration (``SOFTHSM2_CONF``) once, when the module is initialised in a
process, so each test process (each xdist worker) makes one temporary token directory and config
before anything loads the module; tests keep apart by the keys' own labels.  Nothing global is
needed beyond Debian's ``softhsm2`` package (``scripts/install_softhsm.sh``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from ecard.crypto.keyring import Keyring
from ecard.settings import Settings
from ecard.store.keyfiles import save_keyring
from tests.helpers import require

TOKEN_LABEL = "ecard-test"
USER_PIN = "31415926"
SO_PIN = "27182818"
REGIONS = ["330000", "110000"]


def softhsm_module() -> str | None:
    candidates = [
        "/usr/lib/softhsm/libsofthsm2.so",
        *glob.glob("/usr/lib/*/softhsm/libsofthsm2.so"),
    ]
    return next((path for path in candidates if os.path.exists(path)), None)


@dataclass(frozen=True)
class SoftHsm:
    module: str
    conf: str
    token_label: str
    pin: str

    def environ(self) -> dict[str, str]:
        """What a process (``ecard keys ...``) needs to use the token."""
        return {
            "SOFTHSM2_CONF": self.conf,
            "ECARD_KEY_PROVIDER": "pkcs11",
            "ECARD_PKCS11_MODULE": self.module,
            "ECARD_PKCS11_TOKEN_LABEL": self.token_label,
            "ECARD_PKCS11_PIN": self.pin,
        }


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    module = softhsm_module()
    require(
        bool(module and shutil.which("softhsm2-util")),
        "SoftHSM2 (softhsm2-util and libsofthsm2.so)",
        "run scripts/install_softhsm.sh (Debian's softhsm2)",
    )
    assert module is not None
    directory = tmp_path_factory.mktemp("softhsm")
    (directory / "tokens").mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {directory / 'tokens'}\n"
        "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
    )
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            TOKEN_LABEL,
            "--pin",
            USER_PIN,
            "--so-pin",
            SO_PIN,
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # before this process first loads the module
    try:
        yield SoftHsm(module, str(conf), TOKEN_LABEL, USER_PIN)
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture(scope="session")
def hsm_provider(softhsm: SoftHsm):  # type: ignore[no-untyped-def]
    from ecard.crypto.provider.pkcs11 import Pkcs11KeyProvider

    provider = Pkcs11KeyProvider(
        module=softhsm.module, token_label=softhsm.token_label, pin=softhsm.pin
    )
    yield provider
    provider.close()


@pytest.fixture(scope="session")
def hsm_keys_dir(tmp_path_factory: pytest.TempPathFactory, hsm_provider) -> str:  # type: ignore[no-untyped-def]
    """A keyring for two issuers whose keys are in the token, a day old (codes from the past can
    be signed), with the card master keys of both regions."""
    directory = tmp_path_factory.mktemp("hsm-keys")
    ring = Keyring.create(REGIONS, now=int(time.time()) - 86_400, keys=hsm_provider)
    save_keyring(directory, ring)
    for region in REGIONS:
        hsm_provider.ensure_card_masters(region)
    return str(directory)


@pytest.fixture()
def keys_dir(hsm_keys_dir: str) -> str:
    """The service under test (``settings``/``client``/``world``) uses the HSM keyring."""
    return hsm_keys_dir


@pytest.fixture()
def settings(settings: Settings, softhsm: SoftHsm) -> Settings:
    """The shared settings fixture (both storage backends), with keys in the SoftHSM2 token."""
    return msgspec.structs.replace(
        settings,
        key_provider="pkcs11",
        pkcs11_module=softhsm.module,
        pkcs11_token_label=softhsm.token_label,
        pkcs11_pin=softhsm.pin,
    )


def ecard_command(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real ``ecard`` command (``python -m ecard.cli``) in ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "ecard.cli", *args],
        check=False,
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
