"""Where the keyring lives: ``keys/keyring.json`` (mode 0600, never committed) or, in deployments
that inject secrets, the ``ECARD_KEYRING`` environment variable holding the same JSON.

With the ``pkcs11`` key provider the file holds no private ES256 key: only public keys and the
token objects' labels and ids (:mod:`ecard.crypto.provider`).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.crypto.keyring import KeyRecord, Keyring
from ecard.crypto.provider import KeyProvider, ProviderName, open_key_provider
from ecard.store.db import make_private_dirs
from ecard.terminal.psam import CardKeyRole

T = TypeVar("T")
KEYRING_FILE = "keyring.json"
ENV_KEYRING = "ECARD_KEYRING"


class KeyringMissing(RuntimeError):
    """No keyring yet: run ``ecard keys init`` (``ecard serve`` does it in development)."""


def keyring_path(keys_dir: str | os.PathLike[str]) -> Path:
    return Path(keys_dir) / KEYRING_FILE


def load_keyring(keys_dir: str | os.PathLike[str]) -> Keyring:
    if env := os.environ.get(ENV_KEYRING):
        return msgspec.json.decode(env, type=Keyring)
    path = keyring_path(keys_dir)
    if not path.exists():
        raise KeyringMissing(f"no keyring at {path}; run `ecard keys init`")
    return msgspec.json.decode(path.read_bytes(), type=Keyring)


def save_keyring(keys_dir: str | os.PathLike[str], ring: Keyring) -> Path:
    """Write atomically (temp file + rename) with owner-only permissions."""
    if os.environ.get(ENV_KEYRING):
        raise RuntimeError(f"the keyring comes from {ENV_KEYRING}; change it where it is managed")
    path = keyring_path(keys_dir)
    make_private_dirs(path.parent)  # a new keys directory is 0700, whatever the umask
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".keyring-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(msgspec.json.format(msgspec.json.encode(ring)))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class KeyringSource:
    """The running service's view of the keyring, re-read when the file changes (checked at most
    once a second), so ``ecard keys withdraw`` takes effect in running workers without a restart;
    and the key provider that holds the private keys (the one way to a signer:
    :meth:`private_key`)."""

    def __init__(
        self, keys_dir: str | os.PathLike[str], provider: KeyProvider | None = None
    ) -> None:
        self.provider = provider if provider is not None else open_key_provider("file")
        self._card_keys: CardKeyRole | None = None
        self._path = keyring_path(keys_dir)
        self._keys_dir = keys_dir
        self._ring = load_keyring(keys_dir)
        self._mtime = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> float:
        try:
            return self._path.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    @property
    def ring(self) -> Keyring:
        now = time.monotonic()
        if now - self._checked >= 1.0 and not os.environ.get(ENV_KEYRING):
            self._checked = now
            mtime = self._stat()
            if mtime != self._mtime:
                self._ring, self._mtime = load_keyring(self._keys_dir), mtime
        return self._ring

    def private_key(self, record: KeyRecord) -> ec.EllipticCurvePrivateKey:
        """A signer for the record: a software key, or one that signs in the HSM."""
        return self.provider.private_key(record)

    async def signing(self, work: Callable[[], T]) -> T:
        """Run ``work`` (a signature on a hot path): inline with software keys, in a worker thread
        with an HSM, whose round trip must not stall the event loop (python-pkcs11 releases the
        GIL while the token works)."""
        if self.provider.blocking:
            return await asyncio.to_thread(work)
        return work()

    @property
    def card_keys(self) -> CardKeyRole:
        """The PSAM role: card master keys, derived card keys and cryptograms."""
        if self._card_keys is None:
            self._card_keys = self.provider.card_keys(lambda: self.ring)
        return self._card_keys


def key_provider_of(settings: KeySettings) -> KeyProvider:
    """The provider ``settings`` name (``ECARD_KEY_PROVIDER``, ``ECARD_PKCS11_*``)."""
    return open_key_provider(
        settings.key_provider,
        module=settings.pkcs11_module,
        token_label=settings.pkcs11_token_label,
        pin=settings.pkcs11_pin,
    )


class KeySettings(Protocol):
    """The settings a key provider is chosen by (:class:`ecard.settings.Settings` has them)."""

    @property
    def key_provider(self) -> ProviderName: ...
    @property
    def pkcs11_module(self) -> str | None: ...
    @property
    def pkcs11_token_label(self) -> str | None: ...
    @property
    def pkcs11_pin(self) -> str | None: ...
