"""The platform side of terminals: registration, signed requests, online card authentication
(the platform plays the PSAM), e-card device certificates for NFC, and offline record uploads
with their reconciliation.

Each check is one named step.  Relayed card answers go through the pure codecs, whose typed
refusals become catalogue errors with the core's reason code in the detail.

Card authentication goes through the key provider's PSAM role (``platform.keys.card_keys``,
:class:`ecard.terminal.psam.CardKeyRole`): with the ``file`` provider the issuer master keys are
derived per region from the keyring's secrets by HKDF (so every worker and restart derives the same
keys and nothing new is stored); with ``pkcs11`` they are secret keys in the HSM and never leave
it (``docs/terminal-card-model.md``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ecard.auth import ClientPrincipal
from ecard.codes.service import CodeService
from ecard.codes.trust import REVOKED_STATUSES, card_pseudonym
from ecard.crypto.keyring import Keyring, KeyringError
from ecard.crypto.provider.files import software_master_keys
from ecard.errors import AppError
from ecard.offline import OfflineError, parse_code
from ecard.offline.es256 import (
    b64url_encode,
    public_key_from_jwk,
    short_key_id,
    thumbprint,
    verify_raw,
)
from ecard.partners import credentials
from ecard.partners.workflow import FilingStatus, client_status, works
from ecard.platform import Platform
from ecard.registry import lifecycle
from ecard.registry.schemas import ClientCreate, ClientStatusChange
from ecard.registry.service import AccessService, audit
from ecard.registry.tables import Card
from ecard.terminal import hce, psam, schemas
from ecard.terminal import records as rec
from ecard.terminal.apdu import SW, decode_response
from ecard.terminal.card_model import (
    CardFacts,
    check_facts,
    chip_code_or_none,
    chip_identification_code,
    parse_record,
    registry_identification_codes,
)
from ecard.terminal.errors import TerminalError
from ecard.terminal.reference import AUTHORIZATION_SCHEME, REQUEST_TYPE
from ecard.terminal.tables import HceCertificate, Terminal, TerminalAnomaly, TerminalRecord
from ecard.terminal.virtual_card import VirtualCard

REQUEST_WINDOW_SECONDS = 60  # a signed request is good this long either side of the platform clock
CHALLENGE_MEMORY_SECONDS = 7 * 86_400  # a card challenge is refused again for this long
HCE_CERTIFICATE_SECONDS = 86_400
RECENT_ANOMALIES = 50
PERSONAL_DATA_ENTITLEMENT = "card_personal_data"
_ANOMALY_BUCKETS = (
    "conflicts",
    "rollbacks",
    "wrong_key",
    "revoked_before_acceptance",
    "expired_codes",
)


# --- keys and the registry as a chip sees it ----------------------------------------------------


def issuer_master_keys(ring: Keyring, region: str) -> psam.MasterKeys:
    """The region's software SM4 master keys (internal and external authentication), derived by
    HKDF from the keyring: the ``file`` provider's, and a reference terminal's offline PSAM."""
    return software_master_keys(ring, region)


def card_facts(card: dict, social_security_number: str) -> CardFacts:
    """What the chip of a registry card carries (``card`` has Card columns and ``person.*``)."""
    try:
        facts = CardFacts(
            card_number=card["card_number"],
            card_identification_code=chip_identification_code(
                card["region"], card["identification_code"]
            ),
            card_type="3",
            spec_version="3.00",
            issuing_org_code=card["region"],
            issue_date=card["issue_date"],
            expiry_date=card["expiry_date"],
            social_security_number=social_security_number,
            name=card["person.name"],
            gender=card["person.gender"],
            ethnicity=card["person.ethnicity"],
            birth_date=card["person.birth_date"],
        )
        check_facts(facts)
    except TerminalError as error:
        raise AppError("card_not_on_chip", f"{error.reason.value}: {error.detail}") from None
    return facts


def _terminal_error(error: TerminalError | OfflineError) -> AppError:
    return AppError("terminal_apdu_invalid", f"{error.reason.value}: {error.detail}".rstrip(": "))


def _response_data(response_hex: str, what: str) -> bytes:
    """The data of a relayed response APDU that ended in 9000."""
    try:
        response = decode_response(bytes.fromhex(response_hex))
    except (TerminalError, ValueError) as error:
        raise (
            _terminal_error(error)
            if isinstance(error, TerminalError)
            else AppError("terminal_apdu_invalid", "odd hex")
        ) from None
    if response.sw != SW.OK:
        raise AppError("card_answer_refused", f"{what}: SW {response.sw:04X}")
    return response.data


def _chip_code_of(record_response_hex: str) -> str:
    try:
        item, value = parse_record(_response_data(record_response_hex, "READ RECORD"))
    except TerminalError as error:
        raise _terminal_error(error) from None
    if item.field != "card_identification_code":
        raise AppError(
            "terminal_apdu_invalid", f"bad_record: item {item.tag:02X} is not the 卡识别码"
        )
    return str(value)


def _epoch(value: object) -> int:
    return int(value.timestamp()) if isinstance(value, dt.datetime) else int(time.time())


def _json_list(value: object) -> list[str]:
    return json.loads(value) if isinstance(value, str) else list(value or [])


def _stored_record(row: dict) -> rec.AcceptanceRecord:
    return rec.AcceptanceRecord(
        terminal_id=row["terminal"],
        counter=row["counter"],
        reference=row["reference"],
        accepted_at=row["accepted_at"],
        kind=rec.AcceptanceKind(row["kind"]),
        result=rec.AcceptanceResult(row["result"]),
        reason=row["reason"],
    )


@dataclass(frozen=True)
class TerminalPrincipal:
    client: ClientPrincipal
    public_key: ec.EllipticCurvePublicKey

    @property
    def id(self) -> str:
        return self.client.id


def _terminal_view(row: dict[str, Any]) -> schemas.TerminalView:
    """A ``terminal`` row joined with its client's name, status and entitlements, as shown."""
    return schemas.TerminalView(
        id=row["id"],
        name=row["client.name"],
        institution=row["institution"],
        terminal_kind=row["terminal_kind"],
        address=row["address"],
        region=row["region"],
        status=client_status(row["client.status"]),  # active | disabled, as before filings
        entitlements=_json_list(row["client.entitlements"]),
        created_at=row["created_at"],
    )


_CARD_COLUMNS = (
    Card.id,
    Card.region,
    Card.card_number,
    Card.identification_code,
    Card.status,
    Card.issue_date,
    Card.expiry_date,
    Card.person.id,
    Card.person.name,
    Card.person.gender,
    Card.person.ethnicity,
    Card.person.birth_date,
    Card.person.id_number_enc,
)


@dataclass
class TerminalService:
    platform: Platform
    codes: CodeService

    # --- registration (operators) ---------------------------------------------------------

    async def register(self, data: schemas.TerminalCreate, actor: str) -> schemas.TerminalView:
        try:
            public_key_from_jwk(data.public_jwk)
        except OfflineError:
            raise AppError("validation_failed", "public_jwk must be a P-256 public JWK") from None
        client = await AccessService(self.platform).create_client(
            ClientCreate(
                kind="terminal",
                name=data.name,
                regions=[data.region],
                entitlements=data.entitlements,
                public_jwk=data.public_jwk,
            ),
            actor,
        )
        await Terminal.insert(
            Terminal(
                id=client.id,
                client=client.id,
                institution=data.institution,
                terminal_kind=data.terminal_kind,
                address=data.address,
                region=data.region,
            )
        ).run()
        await audit(actor, "terminal.register", "terminal", client.id, institution=data.institution)
        return await self.get(client.id)

    async def get(self, terminal_id: str) -> schemas.TerminalView:
        row = (
            await Terminal.select(
                Terminal.all_columns(),
                Terminal.client.name,
                Terminal.client.status,
                Terminal.client.entitlements,
            )
            .where(Terminal.id == terminal_id)
            .first()
        )
        if row is None:
            raise AppError("terminal_not_found")
        return _terminal_view(row)

    async def search(
        self,
        *,
        region: str | None,
        status: str | None,
        kind: str | None,
        q: str | None,
        limit: int,
        offset: int,
    ) -> schemas.TerminalPage:
        """Terminals, oldest first, filtered by region (province code), status, kind and a text
        found in the institution, name or address (case-insensitive)."""
        query = Terminal.select(
            Terminal.all_columns(),
            Terminal.client.name,
            Terminal.client.status,
            Terminal.client.entitlements,
        )
        count = Terminal.count()
        conditions = []
        if region:
            conditions.append(Terminal.region == region)
        if status:
            live = FilingStatus.LIVE.value
            conditions.append(
                Terminal.client.status == live
                if status == "active"
                else Terminal.client.status != live
            )
        if kind:
            conditions.append(Terminal.terminal_kind == kind)
        if q:
            needle = "%" + q.replace("\\", "").replace("%", "").replace("_", "") + "%"
            # SQLite's LIKE already ignores ASCII case (and has no ILIKE)
            op = "like" if self.platform.settings.is_sqlite else "ilike"
            conditions.append(
                getattr(Terminal.institution, op)(needle)
                | getattr(Terminal.client.name, op)(needle)
                | getattr(Terminal.address, op)(needle)
            )
        for condition in conditions:
            query, count = query.where(condition), count.where(condition)
        rows = (
            await query.order_by(Terminal.created_at)
            .order_by(Terminal.id)
            .limit(limit)
            .offset(offset)
        )
        items = [_terminal_view(row) for row in rows]
        return schemas.TerminalPage(items=items, total=await count, limit=limit, offset=offset)

    async def set_status(
        self, terminal_id: str, change: schemas.TerminalStatusChange, actor: str
    ) -> schemas.TerminalView:
        await self.get(terminal_id)
        await AccessService(self.platform).set_client_status(
            terminal_id, ClientStatusChange(status=change.status, reason=change.reason), actor
        )
        return await self.get(terminal_id)

    # --- signed requests ------------------------------------------------------------------

    async def authenticate_request(
        self, authorization: str | None, method: str, target: str, body: bytes
    ) -> TerminalPrincipal:
        """A compact JWS over method, target, body digest, time and a single-use nonce."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme != AUTHORIZATION_SCHEME or not token:
            raise AppError("terminal_signature_invalid", "Authorization: Terminal <signed request>")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AppError("terminal_signature_invalid", "not a compact JWS") from None
        terminal_id = unverified.get("iss")
        # the terminal's filing and its usable keys (ecard.partners.credentials: a rotation
        # overlaps the old key with the new one)
        record = await credentials.filing(terminal_id) if isinstance(terminal_id, str) else None
        keys = record.keys(time.time()) if record and "terminal" in record.capabilities else []
        if record is None or not keys:
            raise AppError("terminal_signature_invalid", "unknown terminal")
        if header.get("alg") != "ES256" or header.get("typ") != REQUEST_TYPE:
            raise AppError(
                "terminal_signature_invalid", f"alg ES256 and typ {REQUEST_TYPE} required"
            )
        claims = None
        for key in keys:
            public_key = public_key_from_jwk(key.public_jwk or {})
            try:
                claims = jwt.decode(
                    token,
                    public_key,
                    algorithms=["ES256"],
                    options={
                        "require": ["iss", "iat", "jti", "htm", "htu", "bdh"],
                        "verify_iat": False,
                    },
                )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                break
        if claims is None:
            raise AppError("terminal_signature_invalid", "signature does not verify")
        if not works(record.status):
            raise AppError("terminal_disabled")
        if (
            not isinstance(claims["iat"], int)
            or abs(time.time() - claims["iat"]) > REQUEST_WINDOW_SECONDS
        ):
            raise AppError(
                "terminal_request_stale", f"iat must be within {REQUEST_WINDOW_SECONDS} s of now"
            )
        signed = (claims["htm"], claims["htu"], claims["bdh"])
        if signed != (method, target, b64url_encode(hashlib.sha256(body).digest())):
            raise AppError(
                "terminal_signature_invalid", "the signature covers another method, path or body"
            )
        nonce = f"treq:{terminal_id}:{hashlib.sha256(str(claims['jti']).encode()).hexdigest()}"
        if not await self.platform.store.put_if_absent(
            nonce, b"1", ttl=2 * REQUEST_WINDOW_SECONDS + 1
        ):
            raise AppError("terminal_request_replayed")
        client = ClientPrincipal(
            id=record.id,
            kind="terminal",
            name=record.name,
            regions=record.regions,
            entitlements=record.entitlements,
            capabilities=tuple(record.capabilities),
        )
        return TerminalPrincipal(client, public_key)

    # --- the platform as PSAM -------------------------------------------------------------

    async def _card_by_chip_code(self, chip_code: str) -> dict:
        candidates = registry_identification_codes(chip_code)
        rows = await Card.select(*_CARD_COLUMNS).where(Card.identification_code.is_in(candidates))
        row = next(
            (r for r in rows for code in candidates if r["identification_code"] == code), None
        )
        if row is None or chip_code_or_none(row["region"], row["identification_code"]) != chip_code:
            raise AppError("card_not_found")
        return row

    def _fields(self, card: dict, terminal: TerminalPrincipal) -> schemas.VerifiedFields:
        """The same entitlement rules as online code verification (the code service's)."""
        person = {
            "name": card["person.name"],
            "id_number_enc": card["person.id_number_enc"],
            "person_id": card["person.id"],
        }
        return self.codes.entitled_fields({**card, **person}, terminal.client)

    async def authenticate_card(
        self, terminal: TerminalPrincipal, data: schemas.CardAuthenticationRequest
    ) -> schemas.CardAuthenticationResult:
        """卡鉴权: the answer must be the genuine card's for a never-used challenge; then status."""
        chip_code = _chip_code_of(data.card_record)
        answer = _response_data(data.answer, "INTERNAL AUTHENTICATE")
        challenge = bytes.fromhex(data.challenge) if len(data.challenge) % 2 == 0 else b""
        if len(challenge) not in psam.CHALLENGE_SIZES:
            raise AppError("terminal_apdu_invalid", "bad_challenge: challenges are 8 or 16 bytes")
        card = await self._card_by_chip_code(chip_code)
        role = self.platform.keys.card_keys
        if not role.verify_internal_authenticate(card["region"], chip_code, challenge, answer):
            await audit(terminal.client.actor, "card.authenticate_failed", "card", card["id"])
            raise AppError("card_authentication_failed")
        marker = "tchal:" + hashlib.sha256(chip_code.encode() + challenge).hexdigest()
        if not await self.platform.store.put_if_absent(marker, b"1", ttl=CHALLENGE_MEMORY_SECONDS):
            raise AppError("card_challenge_replayed")
        await audit(
            terminal.client.actor, "card.authenticate", "card", card["id"], status=card["status"]
        )
        # the chip itself: an expired physical card is never accepted at a terminal, whatever the
        # province decided for e-cards of expired cards
        usable = lifecycle.is_usable(
            lifecycle.CardFacts(card["status"], card["expiry_date"]), dt.date.today(), "suspend"
        )
        return schemas.CardAuthenticationResult(
            authentic=True,
            usable=usable,
            card_status=card["status"],
            expiry_date=card["expiry_date"],
            region=card["region"],
            reference=rec.card_reference(chip_code),
            fields=self._fields(card, terminal),
        )

    async def external_cryptogram(
        self, terminal: TerminalPrincipal, data: schemas.ExternalAuthenticationRequest
    ) -> schemas.ExternalAuthenticationResult:
        """The cryptogram that opens the chip's personal data: entitled terminals, active cards."""
        if PERSONAL_DATA_ENTITLEMENT not in terminal.client.entitlements:
            raise AppError(
                "forbidden", f"the terminal is not entitled to {PERSONAL_DATA_ENTITLEMENT}"
            )
        chip_code = _chip_code_of(data.card_record)
        challenge = _response_data(data.card_challenge, "GET CHALLENGE")
        if len(challenge) not in psam.CHALLENGE_SIZES:
            raise AppError("terminal_apdu_invalid", "bad_challenge: challenges are 8 or 16 bytes")
        card = await self._card_by_chip_code(chip_code)
        if not lifecycle.is_usable(
            lifecycle.CardFacts(card["status"], card["expiry_date"]), dt.date.today(), "suspend"
        ):
            raise AppError("card_not_active")
        role = self.platform.keys.card_keys
        await audit(terminal.client.actor, "card.open_personal_data", "card", card["id"])
        cryptogram = role.external_authenticate_cryptogram(card["region"], chip_code, challenge)
        return schemas.ExternalAuthenticationResult(cryptogram=cryptogram.hex().upper())

    async def virtual_card(self, card_id: str, **options: object) -> VirtualCard:
        """A virtual chip personalised from the registry: its data and keys match the platform's."""
        row = await Card.select(*_CARD_COLUMNS).where(Card.id == card_id).first()
        if row is None:
            raise AppError("card_not_found")
        number = self.platform.field_cipher.decrypt(
            row["person.id_number_enc"], f"person:{row['person.id']}"
        )
        facts = card_facts(row, number)
        keys = self.platform.keys.card_keys.card_keys(row["region"], facts.card_identification_code)
        return VirtualCard(facts, keys, **options)  # type: ignore[arg-type]

    # --- the e-card over NFC ----------------------------------------------------------------

    async def provision_hce(
        self, ecard_id: str, card_id: str, data: schemas.HceProvisionRequest
    ) -> schemas.HceProvisioned:
        try:
            device_key = public_key_from_jwk(data.device_key)
        except OfflineError:
            raise AppError("hce_device_key_invalid") from None
        region = (await Card.select(Card.region).where(Card.id == card_id).first() or {}).get(
            "region"
        )
        if region is None:
            raise AppError("card_not_found")
        try:
            issuer = self.platform.keys.ring.signing_key(region)
        except KeyringError:
            raise AppError("code_signing_unavailable", f"region {region}") from None
        now = int(time.time())
        claims = hce.CertificateClaims(
            region=region,
            key_id=short_key_id(issuer.kid),
            not_before=now,
            not_after=now + HCE_CERTIFICATE_SECONDS,
            pseudonym=card_pseudonym(self.platform.pseudonym_key, card_id),
            device_key=hce.device_key_bytes(device_key),
        )
        certificate = hce.issue_certificate(claims, self.platform.keys.private_key(issuer))
        certificate_id = hce.certificate_id(hce.encode_body(claims))
        await HceCertificate.insert(
            HceCertificate(
                id=certificate_id,
                ecard=ecard_id,
                card=card_id,
                device_key_thumbprint=thumbprint(device_key),
                not_before=claims.not_before,
                not_after=claims.not_after,
            )
        ).run()
        return schemas.HceProvisioned(
            certificate=b64url_encode(certificate),
            certificate_id=certificate_id,
            region=region,
            not_before=claims.not_before,
            not_after=claims.not_after,
        )

    # --- offline records ----------------------------------------------------------------------

    async def _stored_around(self, terminal_id: str, counters: list[int]) -> list[rec.SignedRecord]:
        """The stored records a batch is judged against: those in its counter range, and the
        nearest one below and above it.  Enough, because stored records are monotone (a counter
        and its clock rise together, or the record was not stored), so the nearest neighbours
        hold the latest earlier and the earliest later times; an upload costs the batch, not
        the terminal's whole history."""
        if not counters:
            return []
        low, high = min(counters), max(counters)
        mine = TerminalRecord.terminal == terminal_id
        rows = [
            *await TerminalRecord.select().where(
                mine & (TerminalRecord.counter >= low) & (TerminalRecord.counter <= high)
            ),
            *await TerminalRecord.select()
            .where(mine & (TerminalRecord.counter < low))
            .order_by(TerminalRecord.counter, ascending=False)
            .limit(1),
            *await TerminalRecord.select()
            .where(mine & (TerminalRecord.counter > high))
            .order_by(TerminalRecord.counter)
            .limit(1),
        ]
        return [
            rec.SignedRecord(_stored_record(row), bytes.fromhex(row["signature"])) for row in rows
        ]

    @staticmethod
    async def _store(
        accepted: tuple[rec.SignedRecord, ...],
    ) -> tuple[set[str], dict[str, rec.AcceptanceRecord]]:
        """Insert the accepted records atomically on their unique key (on conflict do nothing):
        the keys this upload stored, and the records held under the keys a concurrent upload
        stored first (for :func:`records.settle_lost_races`)."""
        if not accepted:
            return set(), {}
        rows = (
            await TerminalRecord.insert(
                *[
                    TerminalRecord(
                        record_key=rec.record_key(s.record),
                        terminal=s.record.terminal_id,
                        counter=s.record.counter,
                        reference=s.record.reference,
                        accepted_at=s.record.accepted_at,
                        kind=s.record.kind.value,
                        result=s.record.result.value,
                        reason=s.record.reason,
                        signature=s.signature.hex(),
                    )
                    for s in accepted
                ]
            )
            .on_conflict(action="DO NOTHING")
            .returning(TerminalRecord.record_key)
            .run()
        )
        inserted = {row["record_key"] for row in rows}
        lost = sorted({rec.record_key(s.record) for s in accepted} - inserted)
        held: dict[str, rec.AcceptanceRecord] = {}
        for start in range(0, len(lost), 500):
            chunk = lost[start : start + 500]
            held.update(
                (row["record_key"], _stored_record(row))
                for row in await TerminalRecord.select().where(
                    TerminalRecord.record_key.is_in(chunk)
                )
            )
        return inserted, held

    @staticmethod
    async def _gaps(terminal_id: str) -> list[schemas.Gap]:
        """Counters never uploaded, found by the database (window function) over counters only."""
        rows = await TerminalRecord.raw(
            "SELECT prev + 1 AS first, counter - 1 AS last FROM (SELECT counter, LAG(counter, 1, 0)"
            " OVER (ORDER BY counter) AS prev FROM terminal_record WHERE terminal = {}) AS held"
            " WHERE counter > prev + 1 ORDER BY first",
            terminal_id,
        )
        return [schemas.Gap(row["first"], row["last"]) for row in rows]

    async def _revoked_at(self, references: set[str]) -> dict[str, int]:
        """When each referenced physical card stopped being active (revoked cards only)."""
        if not references:
            return {}
        rows = await Card.select(Card.chip_reference, Card.updated_at).where(
            Card.chip_reference.is_in(sorted(references))
            & Card.status.is_in(list(REVOKED_STATUSES))
        )
        return {row["chip_reference"]: _epoch(row["updated_at"]) for row in rows}

    async def _expires_at(self, references: set[str], codes: dict[str, str]) -> dict[str, int]:
        """When each referenced e-card certificate or QR code expired.  A QR code counts only when
        its text is uploaded, parses, is the referenced one and carries a genuine signature."""
        found: dict[str, int] = {}
        if references:
            rows = await HceCertificate.select(
                HceCertificate.id, HceCertificate.not_after, HceCertificate.revoked_at
            ).where(HceCertificate.id.is_in(sorted(references)))
            # a certificate revoked early (its card replaced or ended) ends then
            found.update(
                {
                    row["id"]: min(row["not_after"], row["revoked_at"] or row["not_after"])
                    for row in rows
                }
            )
        trust = self.codes.publisher.trust_store()
        for reference, text in codes.items():
            try:
                parsed = parse_code(text)
            except OfflineError:
                continue
            key = trust.by_short_id.get(parsed.claims.key_id)
            genuine = key is not None and verify_raw(
                key.public_key, parsed.signature, parsed.signature_input
            )
            if genuine and rec.code_reference(parsed.code_id) == reference:
                found[reference] = parsed.claims.expires_at
        return found

    async def upload(self, terminal: TerminalPrincipal, body: bytes) -> schemas.UploadReport:
        """Idempotent by terminal id + counter; every record lands in exactly one bucket.

        The batch is judged against what is stored, then inserted atomically on the unique record
        key; a record a concurrent upload stored first in the meantime is re-judged against it
        (duplicate or conflict), so racing uploads of different content for one counter store
        one, report the other as a conflict and write its anomaly, whatever the interleaving."""
        try:
            upload = msgspec.json.decode(body, type=schemas.RecordUpload)
        except msgspec.DecodeError as error:
            raise AppError("terminal_records_invalid", str(error)) from None
        batch = upload.records
        card_refs = {s.record.reference for s in batch if s.record.kind is rec.AcceptanceKind.CARD}
        code_refs = {
            s.record.reference for s in batch if s.record.kind is not rec.AcceptanceKind.CARD
        }
        own_counters = [s.record.counter for s in batch if s.record.terminal_id == terminal.id]
        result = rec.reconcile(
            await self._stored_around(terminal.id, own_counters),
            batch,
            terminal_keys={terminal.id: terminal.public_key},
            revoked_at=await self._revoked_at(card_refs),
            code_expires_at=await self._expires_at(code_refs, upload.codes),
        )
        result = rec.settle_lost_races(result, *await self._store(result.accepted))
        anomalies = [
            TerminalAnomaly(
                terminal=terminal.id,
                anomaly=bucket,
                counter=s.record.counter,
                reference=s.record.reference,
                accepted_at=s.record.accepted_at,
                record=msgspec.json.encode(s).decode(),
            )
            for bucket in _ANOMALY_BUCKETS
            for s in getattr(result, bucket)
        ]
        if anomalies:
            await TerminalAnomaly.insert(*anomalies).run()
        return schemas.UploadReport(
            stored=len(result.accepted),
            duplicates=[s.record.counter for s in result.duplicates],
            conflicts=[s.record.counter for s in result.conflicts],
            rollbacks=[s.record.counter for s in result.rollbacks],
            wrong_key=[s.record.counter for s in result.wrong_key],
            gaps=await self._gaps(terminal.id),
            revoked_before_acceptance=[s.record.counter for s in result.revoked_before_acceptance],
            expired_codes=[s.record.counter for s in result.expired_codes],
        )

    async def reconciliation(self, terminal_id: str) -> schemas.ReconciliationReport:
        view = await self.get(terminal_id)
        rows = await TerminalRecord.select(
            TerminalRecord.counter, TerminalRecord.result, TerminalRecord.accepted_at
        ).where(TerminalRecord.terminal == terminal_id)
        anomalies = (
            await TerminalAnomaly.select()
            .where(TerminalAnomaly.terminal == terminal_id)
            .order_by(TerminalAnomaly.id, ascending=False)
        )
        counts: dict[str, int] = {}
        for row in anomalies:
            counts[row["anomaly"]] = counts.get(row["anomaly"], 0) + 1
        accepted = sum(1 for row in rows if row["result"] == rec.AcceptanceResult.ACCEPTED)
        return schemas.ReconciliationReport(
            terminal=view,
            records=len(rows),
            accepted=accepted,
            refused=len(rows) - accepted,
            last_counter=max((row["counter"] for row in rows), default=0),
            last_accepted_at=max((row["accepted_at"] for row in rows), default=None),
            gaps=[
                schemas.Gap(g.first, g.last)
                for g in rec.counter_gaps(terminal_id, (r["counter"] for r in rows))
            ],
            anomalies=counts,
            recent_anomalies=[
                schemas.AnomalyView(
                    anomaly=row["anomaly"],
                    counter=row["counter"],
                    reference=row["reference"],
                    accepted_at=row["accepted_at"],
                    found_at=row["found_at"],
                )
                for row in anomalies[:RECENT_ANOMALIES]
            ],
        )
