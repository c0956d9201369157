"""Signing the social security card e-license (电子证照); verification is
:func:`ecard.offline.elicense.verify_elicense`, which works offline with the trust list."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from ecard.offline.documents import ELICENSE_TYPE, sign_document
from ecard.offline.elicense import ElicenseClaims, check_elicense_claims


def sign_elicense(claims: ElicenseClaims, issuer_private_key: ec.EllipticCurvePrivateKey) -> str:
    """A compact ES256 JWS with the issuer key's thumbprint as ``kid``.  Refuses (OfflineError,
    MALFORMED) claims whose name or identity number is not masked."""
    check_elicense_claims(claims)
    return sign_document(claims, ELICENSE_TYPE, issuer_private_key)
