"""Signing side of the QR code format: turn claims into ``EC1:`` text with an issuer key.

The format itself (layout, parsing, limits) lives in :mod:`ecard.offline.code_format`, because
verifiers and terminals need it without the rest of ecard.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from ecard.offline.code_format import (
    DEFAULT_LIFETIME,
    BodyTemplate,
    CodeClaims,
    Usage,
    encode_body,
    encode_text,
    signature_input,
)
from ecard.offline.es256 import short_key_id, sign_raw, thumbprint


class CodeSigner:
    """One issuer key of one region; signs codes with that key's id written in."""

    def __init__(self, region: str, private_key: ec.EllipticCurvePrivateKey) -> None:
        self.region = region
        self.key_thumbprint = thumbprint(private_key.public_key())
        self.key_id = short_key_id(self.key_thumbprint)
        self._private_key = private_key

    def claims(
        self,
        *,
        pseudonym: bytes,
        serial: int,
        issued_at: int,
        masked_name: str,
        card_last4: str,
        lifetime: int = DEFAULT_LIFETIME,
        usage: Usage = Usage.SHOW,
    ) -> CodeClaims:
        return CodeClaims(
            region=self.region,
            key_id=self.key_id,
            pseudonym=pseudonym,
            serial=serial,
            issued_at=issued_at,
            lifetime=lifetime,
            usage=usage,
            masked_name=masked_name,
            card_last4=card_last4,
        )

    def sign(self, claims: CodeClaims) -> str:
        """The QR text.  Raises OfflineError(MALFORMED) when a field breaks a format rule
        (for example an unmasked name), so no bad code is ever signed."""
        if claims.key_id != self.key_id or claims.region != self.region:
            raise ValueError("these claims name another key or region than this signer's")
        return self._sign_body(encode_body(claims))

    def template(
        self, *, pseudonym: bytes, masked_name: str, card_last4: str, lifetime: int, usage: Usage
    ) -> BodyTemplate:
        """A card's codes with this key, checked once (see :meth:`sign_from`)."""
        return BodyTemplate(
            self.claims(
                pseudonym=pseudonym,
                serial=0,
                issued_at=0,
                masked_name=masked_name,
                card_last4=card_last4,
                lifetime=lifetime,
                usage=usage,
            )
        )

    def sign_from(self, template: BodyTemplate, serial: int, issued_at: int) -> str:
        """The QR text of the template's code with this serial and issue time."""
        if template.key_id != self.key_id:
            raise ValueError("this template names another key than this signer's")
        return self._sign_body(template.body(serial, issued_at))

    def _sign_body(self, body: bytes) -> str:
        return encode_text(body, sign_raw(self._private_key, signature_input(body)))
