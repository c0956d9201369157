"""Dynamic codes and 扫码亮证 online: issue a code or e-license to a holder, verify a scanned code
for a registered verifier, and keep every verification on record for the holder.

Online verification is the offline ``verify()`` (format, issuer, signature, key state, time, usage)
followed by the checks only the platform can make.  The card is still active *now*: a valid code
proves it was active when the code was issued, and every status change away from ``active``
first writes a withdrawal marker into the shared store (:func:`ecard.codes.trust.withdraw_codes`),
so one read of the store answers, on every worker, for a card reported lost a second ago.  The
card's row is read only when the store cannot vouch for the code's whole life (its contents began
after the code was issued) or the verifier is entitled to more than the code shows.  Then the
code is consumed (one atomic ``consume_once`` in the shared store, so exactly one of any number of
racing verifiers wins).  The record names the card by the code's pseudonym: no lookup.
"""

from __future__ import annotations

import contextlib
import datetime as dt
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
from ecard.codes.trust import (
    NO_REVOCATIONS,
    TrustPublisher,
    card_pseudonym,
    code_withdrawal_key,
    private_key_of,
)
from ecard.crypto.fields import secret_digest
from ecard.crypto.identity import mask_card_number, mask_identity_number, mask_name
from ecard.crypto.keyring import KeyRecord, Keyring, KeyringError
from ecard.errors import AppError
from ecard.offline import (
    DEFAULT_SKEW_SECONDS,
    CodeClaims,
    ElicenseClaims,
    Reason,
    Usage,
    VerificationResult,
    verify,
)
from ecard.offline.code_format import BodyTemplate
from ecard.platform import Platform
from ecard.registry import lifecycle
from ecard.registry.tables import Card
from ecard.settings import Peer
from ecard.store.db import as_date
from ecard.store.ephemeral import Consumption, Revocation, StoreUnavailable
from ecard.store.group_insert import GroupInsert
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

# Reasons found only online, beside the offline kit's Reason codes.
ALREADY_USED = "already_used"
CARD_NOT_ACTIVE = "card_not_active"
UNKNOWN_CARD = "unknown_card"
VALID = "valid"

#: The fields a code carries itself (besides its card being active): a verifier entitled to no
#: more is answered without reading the card's row.
CODE_FIELDS = frozenset({"masked_name", "card_status", "region"})
HISTORY_COLUMNS = (
    CodeVerification.at,
    CodeVerification.verifier,
    CodeVerification.card,
    CodeVerification.pseudonym,
    CodeVerification.code_id,
    CodeVerification.region,
    CodeVerification.result,
)


def _history_row(
    verifier: str,
    card: str | None,
    pseudonym: str | None,
    code_id: str | None,
    region: str | None,
    result: str,
) -> tuple:
    """A verification record, in the order of :data:`HISTORY_COLUMNS`, stamped now."""
    return (dt.datetime.now(dt.UTC), verifier, card, pseudonym, code_id, region, result)


#: Offline refusals that come after the signature and key checks passed: the code is genuinely
#: the platform's, so the attempt belongs in the holder's history.
_GENUINE_REFUSALS = frozenset({Reason.EXPIRED, Reason.NOT_YET_VALID, Reason.WRONG_USAGE})

REASON_MESSAGES: dict[str, tuple[str, str]] = {
    VALID: ("有效", "Valid"),
    Reason.MALFORMED: ("二维码格式错误", "The code is malformed"),
    Reason.WRONG_PREFIX: ("不是电子社保卡二维码", "Not a social security e-card code"),
    Reason.UNSUPPORTED_VERSION: ("不支持的二维码版本", "Unsupported code version"),
    Reason.TOO_LONG: ("二维码内容过长", "The code is too long"),
    Reason.UNKNOWN_ISSUER: ("签发机构未知", "Unknown issuer"),
    Reason.UNKNOWN_KEY: ("签名密钥未知", "Unknown signing key"),
    Reason.ISSUER_MISMATCH: ("签发地区与密钥不符", "The key belongs to another issuer"),
    Reason.BAD_SIGNATURE: ("签名无效，可能被篡改", "Bad signature: the code may be forged"),
    Reason.KEY_WITHDRAWN: ("签名密钥已作废", "The signing key was withdrawn"),
    Reason.KEY_NOT_VALID: ("签名密钥不在有效期内", "The signing key is outside its validity"),
    Reason.EXPIRED: ("二维码已过期，请刷新", "The code has expired; refresh it"),
    Reason.NOT_YET_VALID: ("二维码尚未生效", "The code is not yet valid"),
    Reason.WRONG_USAGE: ("二维码用途不符", "This code is for another use"),
    Reason.REVOKED: ("社保卡已列入黑名单", "The card is revoked"),
    Reason.STALE_TRUST_LIST: ("信任列表已过期", "The trust list is stale"),
    Reason.STALE_REVOCATION_LIST: ("黑名单已过期", "The revocation list is stale"),
    ALREADY_USED: ("二维码已被使用", "The code was already used"),
    CARD_NOT_ACTIVE: (
        "社保卡状态异常（挂失、冻结或注销）",
        "The card is not active (lost, frozen or cancelled)",
    ),
    UNKNOWN_CARD: ("未找到该卡", "No card for this code"),
}


_MESSAGES = {reason: {"zh-CN": zh, "en": en} for reason, (zh, en) in REASON_MESSAGES.items()}


def reason_message(reason: str) -> dict[str, str]:
    """Both languages' message for a reason (shared dicts: callers only serialize them)."""
    return _MESSAGES.get(reason) or {"zh-CN": reason, "en": reason}


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
    _history: GroupInsert = field(
        default_factory=lambda: GroupInsert(CodeVerification, HISTORY_COLUMNS)
    )

    def __post_init__(self) -> None:
        self.publisher = TrustPublisher(self.platform)

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
                region, private_key_of(record.private_pem)
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
        worker; after a later flush of the store, codes of that one second are refused, not replayable."""
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
        return schemas.CodeIssued(
            code=signer.sign_from(template, _SERIALS.getrandbits(32), issued_at),
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
        key = private_key_of(self._issuer_key(row["region"]).private_pem)
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
        await self.publisher.federation.refresh()
        now = int(time.time())
        offline = verify(
            text,
            self.publisher.trust_store(now),
            NO_REVOCATIONS,
            now,
            DEFAULT_SKEW_SECONDS,
            usages=(Usage.SHOW,),
        )
        claims = offline.claims
        peer = self.publisher.federation.peer_for(claims.region) if offline.ok and claims else None
        if peer is not None:  # another province's card: only its issuer knows its status and use
            return await self._verify_at_issuer(peer, text, verifier, offline, now)
        reason: str = VALID if offline.ok else offline.reason.value  # type: ignore[union-attr]
        card: dict | None = None
        if offline.ok and claims is not None:
            withdrawn = await self._withdrawn_since(claims)
            # the registry is read when the store cannot answer, when the verifier may see more than
            # the code shows, and where the province suspends e-cards of expired cards (the code
            # does not carry the card's expiry)
            if (
                withdrawn is None
                or not CODE_FIELDS.issuperset(verifier.entitlements)
                or self._suspends_expired(claims.region)
            ):
                card = await self._card_of(claims.pseudonym)
                if card is None:
                    reason = UNKNOWN_CARD
                elif not lifecycle.card_usable(
                    self.platform.settings.card_policies,
                    card["status"],
                    as_date(card["expiry_date"]),
                    card["region"],
                ):
                    reason = CARD_NOT_ACTIVE
            if withdrawn:
                reason = CARD_NOT_ACTIVE
            if reason == VALID:
                reason = await self._consume(
                    offline.code_id or "", claims.issued_at, claims.expires_at, now
                )
        genuine = claims is not None and (offline.ok or offline.reason in _GENUINE_REFUSALS)
        record = _history_row(
            verifier.id,
            card["id"] if card else None,
            claims.pseudonym.hex() if genuine else None,  # type: ignore[union-attr]
            offline.code_id,
            claims.region if claims else None,
            reason,
        )
        try:
            await self._history.add(record)
        except Exception:
            if reason == VALID:  # nobody was told the code is valid: it must not stay used up
                await self._release(offline.code_id or "")
            raise
        valid = reason == VALID
        return schemas.VerificationResult(
            valid=valid,
            reason=None if valid else reason,
            message=reason_message(reason),
            verified_at=now,
            issuer_region=offline.issuer.region if offline.issuer else None,
            issuer_name=offline.issuer.issuer_name if offline.issuer else None,
            expires_at=claims.expires_at if claims and valid else None,
            fields=self._fields(claims, card, verifier)
            if valid and claims
            else schemas.VerifiedFields(),
        )

    def _suspends_expired(self, region: str) -> bool:
        policy = lifecycle.policy_for(self.platform.settings.card_policies, region, None)
        return policy is not None and policy.expired_card == "suspend"

    async def _withdrawn_since(self, claims: CodeClaims) -> bool | None:
        """Whether the card left ``active`` after the code was issued, from the shared store's
        marker (:func:`withdraw_codes`); None when the store's contents begin after the code was
        issued (a flush may have lost a marker), so the registry must answer."""
        state = await self.platform.store.check_revocation(
            [code_withdrawal_key(claims.pseudonym)], claims.issued_at
        )
        return None if state is Revocation.PREDATES_STORE else state is Revocation.REVOKED

    async def _verify_at_issuer(
        self,
        peer: Peer,
        text: str,
        verifier: ClientPrincipal,
        offline: VerificationResult,
        now: int,
    ) -> schemas.VerificationResult:
        """Route to the issuing deployment; pass on only the fields this verifier may see here."""
        answer = await self.publisher.federation.verify_at_issuer(peer, text)
        reason = VALID if answer.valid else (answer.reason or UNKNOWN_CARD)
        region = offline.claims.region if offline.claims else None
        await self._history.add(
            _history_row(verifier.id, None, None, offline.code_id, region, reason)
        )
        entitled = set(verifier.entitlements) & set(schemas.VerifiedFields.__struct_fields__)
        return schemas.VerificationResult(
            valid=answer.valid,
            reason=None if answer.valid else reason,
            message=reason_message(reason),
            verified_at=now,
            issuer_region=offline.issuer.region if offline.issuer else None,
            issuer_name=offline.issuer.issuer_name if offline.issuer else None,
            expires_at=answer.expires_at if answer.valid else None,
            fields=schemas.VerifiedFields(
                **{k: v for k, v in answer.fields.items() if k in entitled}
            )
            if answer.valid
            else schemas.VerifiedFields(),
        )

    @staticmethod
    async def _card_of(pseudonym: bytes) -> dict | None:
        """The card a pseudonym stands for, with its status as of now (never cached)."""
        # hand-written join: piccolo's foreign-key chains cost more per request than the query
        rows = await CodePseudonym.raw(
            "SELECT c.id, c.status, c.region, c.card_number, c.expiry_date, p.id AS person_id, p.name,"
            " p.id_number_enc FROM code_pseudonym x JOIN card c ON c.id = x.card"
            " JOIN person p ON p.id = c.person WHERE x.pseudonym = {}",
            pseudonym.hex(),
        )
        return rows[0] if rows else None

    async def _consume(self, code_id: str, issued_at: int, expires_at: int, now: int) -> str:
        """First use wins, across every worker; a store emptied since issue fails closed."""
        ttl = max(1, expires_at + DEFAULT_SKEW_SECONDS - now)
        outcome = await self.platform.store.consume_once(f"code:{code_id}", ttl, issued_at)
        return VALID if outcome is Consumption.FIRST_USE else ALREADY_USED

    async def _release(self, code_id: str) -> None:
        """Undo a use that was never answered as valid (its record could not be written, so the
        verifier gets a 503): the verifier's retry, or another one, may still use the code.  If
        the store cannot be reached either, the code stays used (fail closed)."""
        with contextlib.suppress(StoreUnavailable):
            await self.platform.store.delete(f"code:{code_id}")

    def _fields(
        self, claims: CodeClaims, card: dict | None, verifier: ClientPrincipal
    ) -> schemas.VerifiedFields:
        """What this verifier may see: from the card's row when it was read (verifiers entitled
        to more than the code shows), else from the code itself."""
        if card is not None:
            return self.entitled_fields(card, verifier)
        shown = {
            "masked_name": claims.masked_name,
            "card_status": "active",
            "region": claims.region,
        }
        return schemas.VerifiedFields(
            **{k: v for k, v in shown.items() if k in verifier.entitlements}
        )

    def entitled_fields(self, card: dict, verifier: ClientPrincipal) -> schemas.VerifiedFields:
        """The fields of a card's row (card and person columns) that this caller may see."""
        entitled = set(verifier.entitlements)
        name = card["name"]
        number = (
            self.platform.field_cipher.decrypt(card["id_number_enc"], f"person:{card['person_id']}")
            if entitled & {"identity_number", "masked_identity_number"}
            else None
        )
        values = {
            "masked_name": mask_name(name),
            "card_status": card["status"],
            "region": card["region"],
            "masked_card_number": mask_card_number(card["card_number"]),
            "masked_identity_number": mask_identity_number(number) if number else None,
            "full_name": name,
            "card_number": card["card_number"],
            "identity_number": number,
        }
        return schemas.VerifiedFields(**{k: v for k, v in values.items() if k in entitled})

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
            token_type="Bearer",
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
            "SELECT c.id FROM ecard e JOIN card k ON k.id = e.card JOIN card c ON c.person = k.person WHERE e.id = {}",
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
