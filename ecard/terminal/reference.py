"""The reference terminal: what an acceptance device does, as a library.

Online it signs every request with its ES256 key and relays the chip's answers to the platform
(which plays the PSAM), or sends scanned codes.  Offline it holds the signed package (trust list,
revocation list, limits), accepts physical cards (with its PSAM's master keys), e-cards over NFC
(offline dynamic data authentication) and QR codes, signs one record per acceptance with a
monotonic counter, and uploads them when it is back.

A card is anything with ``transmit(command: bytes) -> bytes``: the virtual card, the HCE card,
or a PC/SC connection wrapped to that shape.  Physical cards offline are checked for authenticity
and expiry only: the revocation list names cards by their platform pseudonym, which a terminal
cannot compute from the chip, so a revoked card accepted offline shows up at reconciliation.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import httpx
import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.offline import (
    LoadedPackage,
    OfflineError,
    Usage,
    check_offline_acceptance,
    load_offline_package,
    verify,
)
from ecard.offline.es256 import b64url_encode
from ecard.terminal import hce, psam
from ecard.terminal import records as rec
from ecard.terminal.apdu import SW, decode_response
from ecard.terminal.card_model import SSSE_DF_NAME, parse_record
from ecard.terminal.errors import TerminalError

REQUEST_TYPE = "ecard-terminal-request+jwt"
AUTHORIZATION_SCHEME = "Terminal"
SELECT_SSSE = bytes.fromhex("00A40400") + bytes((len(SSSE_DF_NAME),)) + SSSE_DF_NAME + b"\x00"
READ_EF05_RECORD_1 = bytes.fromhex(
    "00B2012C00"
)  # record 1 of SFI 05: 卡识别码, or an e-card's certificate
READ_EXPIRY = bytes.fromhex("00B2062C00")  # record 6 of SFI 05: 卡有效期
CHALLENGE_BYTES = 8
HCE_CHALLENGE_BYTES = 16
CODE_USAGES = (Usage.SHOW, Usage.TERMINAL)


class Card(Protocol):
    def transmit(self, command: bytes) -> bytes: ...


def signed_authorization(
    private_key: ec.EllipticCurvePrivateKey,
    terminal_id: str,
    method: str,
    target: str,
    body: bytes,
    now: int,
) -> str:
    """``Authorization`` value of a terminal request: ES256 JWS over method, target, body digest,
    time and a fresh nonce (the platform accepts each nonce once)."""
    claims = {
        "iss": terminal_id,
        "htm": method,
        "htu": target,
        "bdh": b64url_encode(hashlib.sha256(body).digest()),
        "iat": now,
        "jti": b64url_encode(os.urandom(16)),
    }
    token = jwt.encode(claims, private_key, algorithm="ES256", headers={"typ": REQUEST_TYPE})
    return f"{AUTHORIZATION_SCHEME} {token}"


class Acceptance(msgspec.Struct, frozen=True):
    accepted: bool
    kind: rec.AcceptanceKind
    reference: str
    reason: str = ""


class CardRefused(Exception):
    """The card answered a command with an error status word, or with data that does not parse."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def exchange(card: Card, command: bytes) -> bytes:
    """Send a command; the response data when the card says 9000."""
    try:
        response = decode_response(card.transmit(command))
    except TerminalError as error:
        raise CardRefused(error.reason.value) from None
    if response.sw != SW.OK:
        raise CardRefused(f"sw_{response.sw:04x}")
    return response.data


class ReferenceTerminal:
    """One terminal; ``http`` is an ``httpx.AsyncClient`` pointed at the platform."""

    def __init__(
        self,
        terminal_id: str,
        private_key: ec.EllipticCurvePrivateKey,
        http: httpx.AsyncClient,
        root_public_key: ec.EllipticCurvePublicKey,
        *,
        psam_keys: Mapping[str, psam.MasterKeys] | psam.CardKeyRole | None = None,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.terminal_id = terminal_id
        self._key = private_key
        self._http = http
        self._root = root_public_key
        #: the offline PSAM: master keys per region in memory, or a card key role (a PSAM or an
        #: HSM holding them, ``ecard.crypto.provider``) asked by region
        self._psam: dict[str, psam.MasterKeys] | psam.CardKeyRole = (
            psam_keys
            if psam_keys is not None and not isinstance(psam_keys, Mapping)
            else dict(psam_keys or {})
        )
        self._clock = clock
        self._random = random_bytes
        self.package: LoadedPackage | None = None
        self.counter = 0
        self.pending: list[rec.SignedRecord] = []
        self.acceptances_since_sync = 0
        self._code_texts: dict[str, str] = {}
        self._used_codes: set[str] = set()

    def now(self) -> int:
        return int(self._clock())

    # --- online ---------------------------------------------------------------------------

    async def call(self, method: str, path: str, body: bytes = b"") -> httpx.Response:
        headers = {
            "Authorization": signed_authorization(
                self._key, self.terminal_id, method, path, body, self.now()
            )
        }
        if body:
            headers["Content-Type"] = "application/json"
        return await self._http.request(method, path, content=body, headers=headers)

    async def sync(self) -> LoadedPackage:
        """Fetch the offline package; a bad signature or an older version is refused
        (OfflineError)."""
        response = await self._http.get("/offline/v1/package")
        response.raise_for_status()
        self.package = load_offline_package(
            response.text, self._root, self.now(), held=self.package
        )
        self.acceptances_since_sync = 0
        return self.package

    async def authenticate_card_online(self, card: Card) -> httpx.Response:
        """卡鉴权 through the platform: relay the 卡识别码 record, our challenge and the answer."""
        card.transmit(SELECT_SSSE)
        record = card.transmit(READ_EF05_RECORD_1)
        challenge = self._random(CHALLENGE_BYTES)
        answer = card.transmit(
            bytes.fromhex("00880000") + bytes((len(challenge),)) + challenge + b"\x00"
        )
        body = msgspec.json.encode(
            {"card_record": record.hex(), "challenge": challenge.hex(), "answer": answer.hex()}
        )
        return await self.call("POST", "/terminal/v1/card-authentications", body)

    async def open_personal_data(self, card: Card) -> int:
        """EXTERNAL AUTHENTICATE with the platform's cryptogram; the card's status word."""
        card.transmit(SELECT_SSSE)
        record = card.transmit(READ_EF05_RECORD_1)
        challenge = card.transmit(bytes.fromhex("0084000008"))
        body = msgspec.json.encode({"card_record": record.hex(), "card_challenge": challenge.hex()})
        response = await self.call("POST", "/terminal/v1/external-authentications", body)
        response.raise_for_status()
        cryptogram = bytes.fromhex(response.json()["cryptogram"])
        answer = card.transmit(bytes.fromhex("0082000010") + cryptogram)
        return int.from_bytes(answer[-2:], "big")

    async def accept_code_online(self, text: str) -> httpx.Response:
        return await self.call(
            "POST", "/terminal/v1/codes/verifications", msgspec.json.encode({"code": text})
        )

    async def upload(self) -> httpx.Response:
        """Send every pending record (and the texts of the codes they name); kept until accepted."""
        references = {s.record.reference for s in self.pending}
        codes = {ref: text for ref, text in self._code_texts.items() if ref in references}
        body = msgspec.json.encode({"records": self.pending, "codes": codes})
        response = await self.call("POST", "/terminal/v1/records", body)
        if response.status_code == 200:
            self.pending, self._code_texts = [], {}
        return response

    # --- offline --------------------------------------------------------------------------

    def _record(self, kind: rec.AcceptanceKind, reference: str, reason: str | None) -> Acceptance:
        self.counter += 1
        record = rec.AcceptanceRecord(
            terminal_id=self.terminal_id,
            counter=self.counter,
            reference=reference,
            accepted_at=self.now(),
            kind=kind,
            result=rec.AcceptanceResult.REFUSED if reason else rec.AcceptanceResult.ACCEPTED,
            reason=reason or "",
        )
        self.pending.append(rec.sign_record(record, self._key))
        if not reason:
            self.acceptances_since_sync += 1
        return Acceptance(accepted=not reason, kind=kind, reference=reference, reason=reason or "")

    def _limit(self, kind: str) -> str | None:
        """Why one more offline acceptance of ``kind`` is not allowed now, if it is not."""
        if self.package is None:
            return "no_offline_package"
        reason = check_offline_acceptance(
            self.package, kind, self.acceptances_since_sync, self.now()
        )  # type: ignore[arg-type]
        return reason.value if reason else None

    def accept_card_offline(self, card: Card) -> Acceptance | None:
        """A physical card: authentic (PSAM), not expired, within the limits.  None when the card
        could not even be read (there is nothing to record it by)."""
        try:
            exchange(card, SELECT_SSSE)
            item, chip_code = parse_record(exchange(card, READ_EF05_RECORD_1))
            _, expiry = parse_record(exchange(card, READ_EXPIRY))
        except (CardRefused, TerminalError):
            return None
        if item.field != "card_identification_code":
            return None
        reference = rec.card_reference(str(chip_code))
        refusal = self._limit("card")
        if refusal or self.package is None:
            return self._record(rec.AcceptanceKind.CARD, reference, refusal or "no_offline_package")
        if reference in self.package.revoked_cards:
            return self._record(rec.AcceptanceKind.CARD, reference, "revoked")
        region = str(chip_code)[:6]
        if isinstance(self._psam, dict) and region not in self._psam:
            return self._record(rec.AcceptanceKind.CARD, reference, "no_psam_key")
        challenge = self._random(CHALLENGE_BYTES)
        try:
            answer = exchange(
                card, bytes.fromhex("00880000") + bytes((len(challenge),)) + challenge + b"\x00"
            )
        except CardRefused as refused:
            return self._record(rec.AcceptanceKind.CARD, reference, refused.reason)
        if isinstance(self._psam, dict):
            genuine = psam.verify_internal_authenticate(
                self._psam[region], str(chip_code), challenge, answer
            )
        else:
            genuine = self._psam.verify_internal_authenticate(
                region, str(chip_code), challenge, answer
            )
        if not genuine:
            return self._record(rec.AcceptanceKind.CARD, reference, "card_authentication_failed")
        if time.gmtime(self.now())[:3] > expiry.timetuple()[:3]:  # type: ignore[union-attr]
            return self._record(rec.AcceptanceKind.CARD, reference, "card_expired")
        return self._record(rec.AcceptanceKind.CARD, reference, None)

    def accept_hce_offline(self, card: Card) -> Acceptance | None:
        """An e-card over NFC: offline dynamic data authentication against the package."""
        try:
            exchange(card, SELECT_SSSE)
            record = exchange(card, READ_EF05_RECORD_1)
        except CardRefused:
            return None
        if len(record) < 2 or record[0] != hce.CERTIFICATE_TAG or record[1] != len(record) - 2:
            return None
        certificate = record[2:]
        try:
            reference = hce.parse_certificate(certificate).certificate_id
        except OfflineError:
            return None
        refusal = self._limit("code")
        if refusal or self.package is None:
            return self._record(rec.AcceptanceKind.HCE, reference, refusal or "no_offline_package")
        challenge = self._random(HCE_CHALLENGE_BYTES)
        try:
            answer = exchange(
                card, bytes.fromhex("00880000") + bytes((len(challenge),)) + challenge + b"\x00"
            )
        except CardRefused as refused:
            return self._record(rec.AcceptanceKind.HCE, reference, refused.reason)
        verdict = hce.authenticate_offline(
            certificate, challenge, answer, self.package.trust, self.package.revocations, self.now()
        )
        return self._record(rec.AcceptanceKind.HCE, reference, verdict.reason)

    def accept_code_offline(self, text: str) -> Acceptance | None:
        """A QR code: signature, time and revocation against the package; single use here."""
        if self.package is None:
            return None
        result = verify(
            text, self.package.trust, self.package.revocations, self.now(), usages=CODE_USAGES
        )
        if result.code_id is None:
            return None  # not even a well-formed code: nothing to record it by
        reference = rec.code_reference(result.code_id)
        self._code_texts[reference] = text
        reason: str | None = result.reason.value if result.reason else None
        if reason is None and reference in self._used_codes:
            reason = "already_used"
        reason = reason or self._limit("code")
        if reason is None:
            self._used_codes.add(reference)
        return self._record(rec.AcceptanceKind.QR, reference, reason)
