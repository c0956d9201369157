"""The ``file`` key provider (development): keys generated in software, kept as PEM in the keyring.

Card master keys are derived by HKDF from the keyring's secrets
(:meth:`ecard.crypto.keyring.Secrets.card_master_key`), so every worker and restart derives the
same keys and nothing new is stored; cards compute with SM4.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.crypto.jwk import public_jwk
from ecard.crypto.keyring import SOFTWARE_KEYS, KeyRecord, Keyring, KeyRole
from ecard.crypto.provider import KeyProvider, KeyProviderError
from ecard.terminal.psam import CardKeyRole, MasterKeys, SoftwareCardKeys


@lru_cache(maxsize=64)
def private_key_of(private_pem: str) -> ec.EllipticCurvePrivateKey:
    """Parsing a PEM costs more than a signature; keys are parsed once per worker."""
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TypeError("issuer and root keys are P-256")
    return key


def software_master_keys(ring: Keyring, region: str) -> MasterKeys:
    """The region's card master keys derived from the keyring's secrets (software role)."""
    return MasterKeys(
        internal_auth=ring.secrets.card_master_key(region, "internal"),
        external_auth=ring.secrets.card_master_key(region, "external"),
    )


class FileKeyProvider(KeyProvider):
    name = "file"

    def generate(self, role: KeyRole, region: str | None, now: int) -> KeyRecord:
        return SOFTWARE_KEYS.generate(role, region, now)

    def private_key(self, record: KeyRecord) -> ec.EllipticCurvePrivateKey:
        if record.private_pem is None:
            where = "a PKCS#11 token" if record.token_object else "nowhere"
            raise KeyProviderError(
                f"key {record.kid} is kept in {where}; set ECARD_KEY_PROVIDER=pkcs11 "
                "(and ECARD_PKCS11_*) to use it"
            )
        return private_key_of(record.private_pem)

    def destroy(self, record: KeyRecord) -> bool:
        """Drop the PEM from the record (the keyring file is then rewritten without it); the
        public key stays, so the key still verifies (retired) or is still refused by id
        (withdrawn)."""
        if record.private_pem is None:
            return False
        record.public = public_jwk(record.public_key())
        record.private_pem = None
        return True

    def card_keys(self, ring: Callable[[], Keyring]) -> CardKeyRole:
        return SoftwareCardKeys(lambda region: software_master_keys(ring(), region))

    def ensure_card_masters(self, region: str) -> bool:
        return False  # derived on use, never stored
