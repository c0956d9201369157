"""Where the keyring lives: ``keys/keyring.json`` (mode 0600, never committed) or, in deployments
that inject secrets, the ``ECARD_KEYRING`` environment variable holding the same JSON.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import msgspec

from ecard.crypto.keyring import Keyring
from ecard.store.db import make_private_dirs

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
    once a second), so ``ecard keys withdraw`` takes effect in running workers without a restart."""

    def __init__(self, keys_dir: str | os.PathLike[str]) -> None:
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
