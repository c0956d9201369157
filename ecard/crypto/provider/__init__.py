"""Key providers: where the platform's private keys live and how they sign.

Two implementations, chosen by ``ECARD_KEY_PROVIDER``:

- ``file`` (:mod:`.files`, the default, for development): keys are generated in this process and
  kept as PEM in the keyring (``keys/keyring.json``, mode 0600).
- ``pkcs11`` (:mod:`.pkcs11`, for production): ES256 root and issuer keys are generated *in* a
  hardware security module (``ECARD_PKCS11_MODULE``, ``ECARD_PKCS11_TOKEN_LABEL``,
  ``ECARD_PKCS11_PIN``), non-extractable and sensitive, and sign there; the keyring holds only
  their public keys and their token objects' label and id.  The card master keys (卡认证/卡鉴权)
  are secret-key objects in the same token.

Every signing call site asks one question, :meth:`KeyProvider.private_key` ("a signer for this
key record"), and gets a :class:`cryptography...ec.EllipticCurvePrivateKey`: a software key, or a
token-backed one whose ``sign()`` runs in the HSM and returns DER like any other, so pyjwt and the
code format work unchanged.  Card authentication asks :meth:`KeyProvider.card_keys` for the PSAM
role (:class:`ecard.terminal.psam.CardKeyRole`).

A token that cannot be reached, or refuses the PIN, raises :class:`KeyProviderUnavailable`: the
service answers 503 ``key_provider_unavailable`` with ``Retry-After``, the CLI prints one line.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec

from ecard.crypto.keyring import KeyGenerator, KeyRecord, Keyring, KeyRole
from ecard.terminal.psam import CardKeyRole

ProviderName = Literal["file", "pkcs11"]


class KeyProviderError(RuntimeError):
    """A key provider is misconfigured, or a key is not where its record says it is."""


class KeyProviderUnavailable(KeyProviderError):
    """The key store (the HSM) cannot be used right now: not reachable, no such token, PIN
    refused, session lost and not reopened.  Requests answer 503; nothing is half done."""


class KeyProvider(KeyGenerator, ABC):
    """Where private keys live.  Implementations are safe to share between threads."""

    name: ProviderName
    #: whether a signature waits on a device (an HSM): hot paths then sign off the event loop
    blocking: bool = False

    @abstractmethod
    def generate(self, role: KeyRole, region: str | None, now: int) -> KeyRecord:
        """A new active ES256 key (P-256) and its keyring record; kid = RFC 7638 thumbprint."""

    @abstractmethod
    def private_key(self, record: KeyRecord) -> ec.EllipticCurvePrivateKey:
        """A signer for ``record``.  Cheap after the first call (cached per key)."""

    @abstractmethod
    def destroy(self, record: KeyRecord) -> bool:
        """Delete the key's private half where it lives; True if something was deleted.  Only
        for keys nothing needs any more (:attr:`KeyRecord.needs_private_key`)."""

    @abstractmethod
    def card_keys(self, ring: Callable[[], Keyring]) -> CardKeyRole:
        """The PSAM role (card master keys) for the keyring ``ring()`` returns."""

    @abstractmethod
    def ensure_card_masters(self, region: str) -> bool:
        """Make the region's card master keys where the provider keeps them, if missing (test and
        development tokens; a production key system loads them by key ceremony).  True if made."""

    def check(self) -> None:
        """Raise :class:`KeyProviderUnavailable` unless keys can be used now."""

    def close(self) -> None:
        """Release sessions; the provider reopens them on next use."""

    def prune(self, ring: Keyring) -> list[KeyRecord]:
        """Destroy the private halves nothing needs any more (withdrawn keys, retired keys past
        their verification window); the records stay, verify-only or refused as before."""
        return [key for key in ring.keys if not key.needs_private_key and self.destroy(key)]


def open_key_provider(
    name: ProviderName,
    *,
    module: str | None = None,
    token_label: str | None = None,
    pin: str | None = None,
) -> KeyProvider:
    """The provider a deployment's settings name (``ECARD_KEY_PROVIDER`` and the
    ``ECARD_PKCS11_*`` settings).  Opening does not touch the token yet: the first use does."""
    if name == "file":
        from ecard.crypto.provider.files import FileKeyProvider

        return FileKeyProvider()
    missing = [
        setting
        for setting, value in (
            ("ECARD_PKCS11_MODULE", module),
            ("ECARD_PKCS11_TOKEN_LABEL", token_label),
            ("ECARD_PKCS11_PIN", pin),
        )
        if not value
    ]
    if missing:
        raise KeyProviderError(f"ECARD_KEY_PROVIDER=pkcs11 needs {', '.join(missing)}")
    from ecard.crypto.provider.pkcs11 import Pkcs11KeyProvider

    assert module and token_label and pin  # noqa: S101 - checked just above, for the type checker
    return Pkcs11KeyProvider(module=module, token_label=token_label, pin=pin)


__all__ = [
    "KeyProvider",
    "KeyProviderError",
    "KeyProviderUnavailable",
    "ProviderName",
    "open_key_provider",
]
