"""Dynamic codes and 扫码亮证 online: issue a code or e-license to a holder, verify a scanned code
for a registered verifier, and keep every verification on record for the holder.

Online verification is a pipeline of named checks, one per rule, in
:mod:`ecard.codes.verification` (the offline ``verify()``, then what only the platform knows: the
card's withdrawal and status, single use, the verifier's entitlement); the service holds it, one
per worker, with its caches.
"""

from __future__ import annotations

import math
import os
import random
import secrets
import time
from dataclasses import dataclass, field

import msgspec

from ecard.auth import ClientPrincipal, HolderPrincipal, active_client
from ecard.codes import schemas
from ecard.codes.elicense import sign_elicense
from ecard.codes.format import CodeSigner
from ecard.codes.render import ErrorCorrection, RenderError, render_png, render_svg
from ecard.codes.tables import CodePseudonym, CodeVerification
from ecard.codes.trust import TrustPublisher, card_pseudonym
from ecard.codes.verification import (
    ALREADY_USED,
    CARD_NOT_ACTIVE,
    UNKNOWN_CARD,
    VALID,
    OnlineVerification,
    entitled_fields,
    read_card_row,
    reason_message,
)
from ecard.crypto.fields import secret_digest
from ecard.crypto.identity import mask_card_number, mask_identity_number, mask_name
from ecard.crypto.keyring import KeyRecord, Keyring, KeyringError
from ecard.errors import AppError
from ecard.offline import ElicenseClaims, Usage
from ecard.offline.code_format import BodyTemplate
from ecard.platform import Platform
from ecard.registry.tables import Card
from ecard.store.ttl_cache import TtlCache

ELICENSE_LIFETIME = 86_400
CARD_DISPLAY_TTL = 60.0  # masked name and card number change rarely; status is never cached
_CACHE_LIMIT = 100_000  # cards whose display and pseudonym row a worker remembers
PSEUDONYM_ROW_TTL = 3600.0  # how long a worker trusts that a card's pseudonym row exists
VERIFIER_SESSION_PREFIX = "ecvs_"
VERIFIER_SESSION_TTL = 900
HISTORY_PAGE_MAX = 200
#: A code's serial only makes the codes of one card and second distinct (its signature makes it
#: genuine), so a seeded generator serves: a system call per code released the GIL mid-request.
#: Seeded from the OS at start and again in every forked worker.
_SERIALS = random.Random()  # noqa: S311 - uniqueness, not secrecy
os.register_at_fork(after_in_child=_SERIALS.seed)
#: refresh this long before expiry, so a scan never meets a code in its last seconds
REFRESH_MARGIN = 10


def _session_key(token: str) -> str:
    return f"vsess:{secret_digest(token)}"


def _session_refused() -> AppError:
    return AppError("token_invalid", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class _SessionRecord(msgspec.Struct):
    id: str
    kind: str
    name: str
    regions: list[str]
    entitlements: list[str]


@dataclass(slots=True)
class _CardDisplay:
    region: str
    masked_name: str
    card_last4: str
    pseudonym: bytes
    template: BodyTemplate | None = None  # the card's codes with the key and lifetime last used


@dataclass
class CodeService:
    """One per worker (it keeps caches): see :func:`ecard.codes.controllers.provide_codes`."""

    platform: Platform
    publisher: TrustPublisher = field(init=False)
    _signers: dict[str, CodeSigner] = field(default_factory=dict)  # by key id
    _region_signers: dict[str, tuple[Keyring, CodeSigner]] = field(
        default_factory=dict
    )  # for the ring in use
    _display: TtlCache[str, _CardDisplay] = field(
        default_factory=lambda: TtlCache(CARD_DISPLAY_TTL, _CACHE_LIMIT)
    )
    _mapped: TtlCache[str, bool] = field(
        default_factory=lambda: TtlCache(PSEUDONYM_ROW_TTL, _CACHE_LIMIT)
    )
    _store_start: int | None = None  # first whole second the single-use markers cover
    _verification: OnlineVerification = field(init=False)

    def __post_init__(self) -> None:
        self.publisher = TrustPublisher(self.platform)
        # the card reader is looked up on each call: a reader replaced on the class (tests count
        # the registry reads) is the one used
        self._verification = OnlineVerification(
            self.platform, self.publisher, read_card=lambda pseudonym: self._card_of(pseudonym)
        )

    # --- issuing ---------------------------------------------------------------------------
    def _issuer_key(self, region: str) -> KeyRecord:
        try:
            return self.platform.keys.ring.signing_key(region)
        except KeyringError:
            raise AppError("code_signing_unavailable", f"region {region}") from None

    def _signer(self, region: str) -> CodeSigner:
        """The region's active key as a signer; looked up again whenever the keyring is re-read
        (a rotation or withdrawal replaces the ring, see ``KeyringSource``)."""
        ring = self.platform.keys.ring
        known = self._region_signers.get(region)
        if known is not None and known[0] is ring:
            return known[1]
        record = self._issuer_key(region)
        signer = self._signers.get(record.kid)
        if signer is None:
            signer = self._signers[record.kid] = CodeSigner(
                region, self.platform.keys.private_key(record)
            )
        self._region_signers[region] = (ring, signer)
        return signer

    async def _card_display(self, card_id: str) -> _CardDisplay:
        cached = self._display.get(card_id)
        if cached is not None:
            return cached
        row = (
            await Card.select(Card.region, Card.card_number, Card.person.name)
            .where(Card.id == card_id)
            .first()
        )
        if row is None:
            raise AppError("card_not_found")
        display = _CardDisplay(
            region=row["region"],
            masked_name=mask_name(row["person.name"]),
            card_last4=row["card_number"][-4:].upper(),
            pseudonym=card_pseudonym(self.platform.pseudonym_key, card_id),
        )
        self._display.put(card_id, display)
        if self._mapped.get(card_id) is None:
            await (
                CodePseudonym.insert(CodePseudonym(pseudonym=display.pseudonym.hex(), card=card_id))
                .on_conflict(action="DO NOTHING")
                .run()
            )
            self._mapped.put(card_id, True)
        return display

    async def _issued_at(self) -> int:
        """Now in whole seconds, but never before the store's start: ``consume_once`` refuses a
        code issued before it (fail closed), and a code's second is rounded down.  Read once per
        worker; after a later flush of the store, codes of that one second are refused, not
        replayable."""
        if self._store_start is None:
            self._store_start = math.ceil(await self.platform.store.store_started_at())
        return max(int(time.time()), self._store_start)

    async def issue_code(self, holder: HolderPrincipal) -> schemas.CodeIssued:
        """A code for the holder's card; the holder dependency already refused inactive cards."""
        display = await self._card_display(holder.card_id)
        signer = self._signer(display.region)
        lifetime = self.platform.settings.code_lifetime
        template = display.template
        if template is None or template.key_id != signer.key_id or template.lifetime != lifetime:
            template = display.template = signer.template(
                pseudonym=display.pseudonym,
                masked_name=display.masked_name,
                card_last4=display.card_last4,
                lifetime=lifetime,
                usage=Usage.SHOW,
            )
        issued_at = await self._issued_at()
        expires_at = issued_at + lifetime
        serial = _SERIALS.getrandbits(32)
        code = await self.platform.keys.signing(
            lambda: signer.sign_from(template, serial, issued_at)
        )
        return schemas.CodeIssued(
            code=code,
            issued_at=issued_at,
            expires_at=expires_at,
            refresh_at=expires_at - min(REFRESH_MARGIN, lifetime // 3),
            lifetime=lifetime,
        )

    @staticmethod
    def render(
        code: str,
        image_format: schemas.ImageFormat,
        scale: int,
        border: int,
        level: ErrorCorrection,
    ) -> bytes:
        try:
            if image_format == "png":
                return render_png(code, scale=scale, border=border, error_correction=level)
            return render_svg(code, scale=scale, border=border, error_correction=level).encode()
        except RenderError as exc:
            raise AppError("code_too_large", str(exc)) from None

    async def issue_elicense(self, holder: HolderPrincipal) -> schemas.ElicenseIssued:
        row = (
            await Card.select(
                Card.region,
                Card.card_number,
                Card.issue_date,
                Card.status,
                Card.person.id,
                Card.person.name,
                Card.person.id_number_enc,
            )
            .where(Card.id == holder.card_id)
            .first()
        )
        if row is None:
            raise AppError("card_not_found")
        number = self.platform.field_cipher.decrypt(
            row["person.id_number_enc"], f"person:{row['person.id']}"
        )
        key = self.platform.keys.private_key(self._issuer_key(row["region"]))
        now = int(time.time())
        claims = ElicenseClaims(
            masked_name=mask_name(row["person.name"]),
            masked_id_number=mask_identity_number(number),
            card_number=mask_card_number(row["card_number"]),
            region=row["region"],
            card_issued_on=row["issue_date"].isoformat(),
            card_status=row["status"],
            pseudonym=card_pseudonym(self.platform.pseudonym_key, holder.card_id),
            issued_at=now,
            expires_at=now + ELICENSE_LIFETIME,
        )
        return schemas.ElicenseIssued(
            token=sign_elicense(claims, key), expires_at=claims.expires_at
        )

    # --- verifying -------------------------------------------------------------------------
    async def verify(self, text: str, verifier: ClientPrincipal) -> schemas.VerificationResult:
        """Verify a scanned code for ``verifier`` (:class:`OnlineVerification`): a reasoned
        answer for any text; raises only when the platform cannot answer (store or database)."""
        return await self._verification(text, verifier)

    #: the registry read of a verification (:func:`ecard.codes.verification.read_card_row`)
    _card_of = staticmethod(read_card_row)

    def entitled_fields(self, card: dict, verifier: ClientPrincipal) -> schemas.VerifiedFields:
        """The fields of a card's row (card and person columns) that this caller may see."""
        return entitled_fields(card, verifier, self.platform.field_cipher)

    # --- verifier sessions (the verifier page) ---------------------------------------------
    async def open_verifier_session(self, verifier: ClientPrincipal) -> schemas.VerifierSession:
        token = VERIFIER_SESSION_PREFIX + secrets.token_urlsafe(32)
        record = _SessionRecord(
            id=verifier.id,
            kind=verifier.kind,
            name=verifier.name,
            regions=list(verifier.regions),
            entitlements=list(verifier.entitlements),
        )
        await self.platform.store.put(
            _session_key(token), msgspec.json.encode(record), VERIFIER_SESSION_TTL
        )
        return schemas.VerifierSession(
            access_token=token,
            token_type="Bearer",  # noqa: S106 - the OAuth token type, not a secret
            expires_in=VERIFIER_SESSION_TTL,
            verifier_name=verifier.name,
            entitlements=list(verifier.entitlements),
        )

    async def verifier_of_session(self, token: str) -> ClientPrincipal:
        """The verifier a page session speaks for, as its client row says now: a session ends
        with its logout, its 15 minutes, or its client's disabling (seen within the client row
        cache's :data:`ecard.auth.CLIENT_CACHE_SECONDS`, as for every other client credential)."""
        raw = await self.platform.store.get(_session_key(token))
        if raw is None:
            raise _session_refused()
        record = msgspec.json.decode(raw, type=_SessionRecord)
        verifier = await active_client(
            record.id, "verifier"
        )  # today's entitlements, not the login's
        if verifier is None:
            raise _session_refused()
        return verifier

    async def close_verifier_session(self, token: str) -> None:
        """Logout: the token is refused from now on, on every worker (the shared store holds it)."""
        await self.platform.store.delete(_session_key(token))

    # --- the holder's history --------------------------------------------------------------
    async def history(
        self, holder: HolderPrincipal, limit: int, offset: int
    ) -> schemas.HolderVerificationPage:
        if not 1 <= limit <= HISTORY_PAGE_MAX or offset < 0:
            raise AppError(
                "validation_failed", f"limit must be 1..{HISTORY_PAGE_MAX} and offset ≥ 0"
            )
        # every card of the person whose e-card this is: a replacement card (new id, new
        # pseudonym) keeps the history of the cards before it
        lineage = await Card.raw(
            "SELECT c.id FROM ecard e JOIN card k ON k.id = e.card"
            " JOIN card c ON c.person = k.person WHERE e.id = {}",
            holder.ecard_id,
        )
        card_ids = {row["id"] for row in lineage} | {holder.card_id}
        key = self.platform.pseudonym_key
        mine = CodeVerification.pseudonym.is_in(
            sorted(card_pseudonym(key, card).hex() for card in card_ids)
        )
        rows = (
            await CodeVerification.select(
                CodeVerification.at, CodeVerification.verifier.name, CodeVerification.result
            )
            .where(mine)
            .order_by(CodeVerification.id, ascending=False)
            .limit(limit)
            .offset(offset)
        )
        items = [
            schemas.HolderVerification(
                at=row["at"], verifier=row["verifier.name"], result=row["result"]
            )
            for row in rows
        ]
        return schemas.HolderVerificationPage(
            items=items,
            total=await CodeVerification.count().where(mine),
            limit=limit,
            offset=offset,
        )


# the reasons and messages of a verification are also this module's (``ecard.codes.cli``)
__all__ = [
    "ALREADY_USED",
    "CARD_NOT_ACTIVE",
    "UNKNOWN_CARD",
    "VALID",
    "CodeService",
    "reason_message",
]
