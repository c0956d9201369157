"""Online verification of a scanned code (扫码亮证): ``POST /verifier/v1/verifications``.

A registered verifier presents a code's text; the answer is ``valid`` with the fields it is
entitled to see, or the reason of the first check that refused.  The checks, in order:

1. :func:`check_code`: the offline kit's checks (:func:`ecard.offline.verify`): format, issuer
   and key, signature, key state, time window, usage.  Nothing more is asked of a code that fails.
2. Another province's code is answered by its issuer (:meth:`OnlineVerification.ask_issuer`).
3. :func:`check_not_withdrawn`: the card has not left ``active`` since the code was issued.  Every
   status change away from ``active`` first writes a withdrawal marker into the shared store
   (:func:`ecard.codes.trust.withdraw_codes`), so one store read answers on every worker for a
   card reported lost a second ago.  Online, this and the card's status are the revocation check.
4. :func:`check_card_usable`: the card's row (:func:`read_card_row`), read only when
   :func:`card_row_needed` (the store cannot vouch for the code's whole life, the verifier is
   entitled to more than the code shows, or the province suspends expired cards): the card is
   known and usable now (:func:`ecard.registry.lifecycle.card_usable`).
5. :func:`check_single_use`: the first use wins, on every worker (an atomic ``consume_once``).
6. The verification is recorded for the holder (:func:`history_row`); if the record cannot be
   written, a valid use is released (:func:`release_use`) and the verifier gets the error.
7. :func:`released_fields`: what the verifier is entitled to see, of a valid code only.

Every check returns a refusal (a reason code) or None.  Any text gets a reasoned answer; only a
platform that cannot answer (store or database down) raises.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from ecard.auth import ClientPrincipal
from ecard.codes import schemas
from ecard.codes.federation import PeerVerification
from ecard.codes.tables import CodePseudonym, CodeVerification
from ecard.codes.trust import NO_REVOCATIONS, TrustPublisher, code_withdrawal_key
from ecard.crypto.fields import FieldCipher
from ecard.crypto.identity import mask_card_number, mask_identity_number, mask_name
from ecard.offline import (
    DEFAULT_SKEW_SECONDS,
    CodeClaims,
    Reason,
    TrustStore,
    Usage,
    VerificationResult,
    verify,
)
from ecard.platform import Platform
from ecard.registry import lifecycle
from ecard.settings import Peer
from ecard.store.db import as_date
from ecard.store.ephemeral import Consumption, EphemeralStore, Revocation, StoreUnavailable
from ecard.store.group_insert import GroupInsert

# Reasons found only online, beside the offline kit's Reason codes.
ALREADY_USED = "already_used"
CARD_NOT_ACTIVE = "card_not_active"
UNKNOWN_CARD = "unknown_card"
VALID = "valid"

#: The fields a code carries itself (besides its card being active): a verifier entitled to no
#: more is answered without reading the card's row.
CODE_FIELDS = frozenset({"masked_name", "card_status", "region"})

#: Offline refusals that come after the signature and key checks passed: the code is genuinely
#: the platform's, so the attempt belongs in the holder's history.
_GENUINE_REFUSALS = frozenset({Reason.EXPIRED, Reason.NOT_YET_VALID, Reason.WRONG_USAGE})

#: A code shown to a verifier is for showing (扫码亮证).
_SHOWN = (Usage.SHOW,)

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


# --- the checks, in order ------------------------------------------------------------------


def check_code(text: str, trust: TrustStore, now: int) -> VerificationResult:
    """Format, issuer and key, signature, key state, time window (with the kit's clock skew) and
    usage ``show``, exactly as a terminal checks offline.  The revocation list is not consulted:
    online, the card's withdrawal marker and status answer for the card."""
    return verify(text, trust, NO_REVOCATIONS, now, DEFAULT_SKEW_SECONDS, usages=_SHOWN)


async def withdrawal_marker(store: EphemeralStore, claims: CodeClaims) -> bool | None:
    """Whether the card left ``active`` after the code was issued, from the shared store's
    marker (:func:`ecard.codes.trust.withdraw_codes`); None when the store's contents begin after
    the code was issued (a flush may have lost a marker), so the registry must answer."""
    state = await store.check_revocation([code_withdrawal_key(claims.pseudonym)], claims.issued_at)
    return None if state is Revocation.PREDATES_STORE else state is Revocation.REVOKED


def check_not_withdrawn(withdrawn: bool | None) -> str | None:
    """Refuses a code whose card was withdrawn since it was issued (:func:`withdrawal_marker`)."""
    return CARD_NOT_ACTIVE if withdrawn else None


def suspends_expired_cards(policies: Mapping[str, lifecycle.ExpiryPolicy], region: str) -> bool:
    """Whether the province suspends the e-cards of expired cards: a code does not carry its
    card's expiry, so only the card's row can tell."""
    policy = lifecycle.policy_for(policies, region, None)
    return policy is not None and policy.expired_card == "suspend"


def card_row_needed(
    withdrawn: bool | None,
    entitlements: Collection[str],
    region: str,
    policies: Mapping[str, lifecycle.ExpiryPolicy],
) -> bool:
    """The registry is read when the store cannot answer for the card, when the verifier may
    see more than the code shows, and where the province suspends expired cards."""
    return (
        withdrawn is None
        or not CODE_FIELDS.issuperset(entitlements)
        or suspends_expired_cards(policies, region)
    )


async def read_card_row(pseudonym: bytes) -> dict[str, Any] | None:
    """The card a pseudonym stands for, with its status as of now (never cached)."""
    # hand-written join: piccolo's foreign-key chains cost more per request than the query
    rows = await CodePseudonym.raw(
        "SELECT c.id, c.status, c.region, c.card_number, c.expiry_date, p.id AS person_id, p.name,"
        " p.id_number_enc FROM code_pseudonym x JOIN card c ON c.id = x.card"
        " JOIN person p ON p.id = c.person WHERE x.pseudonym = {}",
        pseudonym.hex(),
    )
    return rows[0] if rows else None


def check_card_usable(
    card: Mapping[str, Any] | None, policies: Mapping[str, lifecycle.ExpiryPolicy]
) -> str | None:
    """Refuses a code whose pseudonym names no card, or whose card is not usable today under its
    province's policy (:func:`ecard.registry.lifecycle.card_usable`)."""
    if card is None:
        return UNKNOWN_CARD
    if not lifecycle.card_usable(
        policies, card["status"], as_date(card["expiry_date"]), card["region"]
    ):
        return CARD_NOT_ACTIVE
    return None


async def check_single_use(
    store: EphemeralStore, code_id: str, claims: CodeClaims, now: int
) -> str | None:
    """First use wins, across every worker; a store emptied since the code was issued fails
    closed (``consume_once`` refuses a code older than its contents)."""
    ttl = max(1, claims.expires_at + DEFAULT_SKEW_SECONDS - now)
    outcome = await store.consume_once(f"code:{code_id}", ttl, claims.issued_at)
    return None if outcome is Consumption.FIRST_USE else ALREADY_USED


async def release_use(store: EphemeralStore, code_id: str) -> None:
    """Undo a use that was never answered as valid (its record could not be written, so the
    verifier gets a 503): the verifier's retry, or another one, may still use the code.  If
    the store cannot be reached either, the code stays used (fail closed)."""
    with contextlib.suppress(StoreUnavailable):
        await store.delete(f"code:{code_id}")


# --- the record and the answer -------------------------------------------------------------

HISTORY_COLUMNS = (
    CodeVerification.at,
    CodeVerification.verifier,
    CodeVerification.card,
    CodeVerification.pseudonym,
    CodeVerification.code_id,
    CodeVerification.region,
    CodeVerification.result,
)


def history_row(
    verifier: str,
    card: str | None,
    pseudonym: str | None,
    code_id: str | None,
    region: str | None,
    result: str,
) -> tuple[object, ...]:
    """A verification record, in the order of :data:`HISTORY_COLUMNS`, stamped now.  ``card``:
    the card's id where its row was read; ``pseudonym`` (hex): once the code proved genuine."""
    return (dt.datetime.now(dt.UTC), verifier, card, pseudonym, code_id, region, result)


def is_genuine(code: VerificationResult) -> bool:
    """The code passed the signature and key checks: the attempt is the holder's to see."""
    return code.claims is not None and (code.ok or code.reason in _GENUINE_REFUSALS)


def entitled_fields(
    card: Mapping[str, Any], verifier: ClientPrincipal, cipher: FieldCipher
) -> schemas.VerifiedFields:
    """The fields of a card's row (card and person columns) that this caller may see; the
    identity number is decrypted only for a caller entitled to it (or its masked form)."""
    entitled = set(verifier.entitlements)
    name = card["name"]
    number = (
        cipher.decrypt(card["id_number_enc"], f"person:{card['person_id']}")
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


def released_fields(
    claims: CodeClaims,
    card: Mapping[str, Any] | None,
    verifier: ClientPrincipal,
    cipher: FieldCipher,
) -> schemas.VerifiedFields:
    """What this verifier may see of a valid code: from the card's row when it was read
    (verifiers entitled to more than the code shows), else from the code itself."""
    if card is not None:
        return entitled_fields(card, verifier, cipher)
    shown = {"masked_name": claims.masked_name, "card_status": "active", "region": claims.region}
    return schemas.VerifiedFields(**{k: v for k, v in shown.items() if k in verifier.entitlements})


def fields_from_issuer(
    answer: PeerVerification, verifier: ClientPrincipal
) -> schemas.VerifiedFields:
    """Of the fields another province's issuer released, those this verifier may see here."""
    entitled = set(verifier.entitlements) & set(schemas.VerifiedFields.__struct_fields__)
    return schemas.VerifiedFields(**{k: v for k, v in answer.fields.items() if k in entitled})


def answer(
    code: VerificationResult,
    now: int,
    reason: str,
    *,
    valid: bool = False,
    expires_at: int | None = None,
    fields: schemas.VerifiedFields | None = None,
) -> schemas.VerificationResult:
    """The verifier's answer: ``reason`` and its messages, the issuer once the key was found,
    and for a valid code only its expiry and ``fields``."""
    issuer = code.issuer
    return schemas.VerificationResult(
        valid=valid,
        reason=None if valid else reason,
        message=reason_message(reason),
        verified_at=now,
        issuer_region=issuer.region if issuer else None,
        issuer_name=issuer.issuer_name if issuer else None,
        expires_at=expires_at if valid else None,
        fields=fields if valid and fields is not None else schemas.VerifiedFields(),
    )


# --- the pipeline --------------------------------------------------------------------------


@dataclass
class OnlineVerification:
    """The verification pipeline of one worker (held by :class:`ecard.codes.service.CodeService`,
    whose trust publisher and card reader it uses); call it with a code's text and the verifier."""

    platform: Platform
    publisher: TrustPublisher
    #: the registry read of step 4 (:func:`read_card_row`, unless the service gives another)
    read_card: Callable[[bytes], Awaitable[dict[str, Any] | None]] = read_card_row
    history: GroupInsert = field(
        default_factory=lambda: GroupInsert(CodeVerification, HISTORY_COLUMNS)
    )

    async def __call__(self, text: str, verifier: ClientPrincipal) -> schemas.VerificationResult:
        """Steps 1 to 7 for ``text`` presented by ``verifier``."""
        await self.publisher.federation.refresh()
        now = int(time.time())
        code = check_code(text, self.publisher.trust_store(now), now)
        claims = code.claims
        if code.reason is not None or claims is None:  # claims are always set on success
            reason: str = code.reason.value if code.reason is not None else Reason.MALFORMED.value
            await self.record(verifier, code, None, reason)
            return answer(code, now, reason)
        peer = self.publisher.federation.peer_for(claims.region)
        if peer is not None:  # another province's card: only its issuer knows its status and use
            return await self.ask_issuer(peer, text, verifier, code, now)
        card, refusal = await self.check_card_and_use(code, claims, verifier, now)
        reason = refusal or VALID
        await self.record(verifier, code, card, reason)
        if refusal is not None:
            return answer(code, now, refusal)
        fields = released_fields(claims, card, verifier, self.platform.field_cipher)
        return answer(code, now, VALID, valid=True, expires_at=claims.expires_at, fields=fields)

    async def check_card_and_use(
        self, code: VerificationResult, claims: CodeClaims, verifier: ClientPrincipal, now: int
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Steps 3 to 5 for a code that passed the offline checks: the card's row (None when
        not read) and the first refusal (None: the code is valid and now used)."""
        store, policies = self.platform.store, self.platform.settings.card_policies
        withdrawn = await withdrawal_marker(store, claims)
        refusal = check_not_withdrawn(withdrawn)
        card = None
        # read even for a withdrawn card when needed: the record names the card it read
        if card_row_needed(withdrawn, verifier.entitlements, claims.region, policies):
            card = await self.read_card(claims.pseudonym)
            refusal = refusal or check_card_usable(card, policies)
        if refusal is None:
            refusal = await check_single_use(store, code.code_id or "", claims, now)
        return card, refusal

    async def record(
        self,
        verifier: ClientPrincipal,
        code: VerificationResult,
        card: Mapping[str, Any] | None,
        reason: str,
    ) -> None:
        """Step 6: the record names the card by the code's pseudonym (no lookup); if it cannot
        be written, a valid use is released and the error raised: never "valid" unrecorded."""
        claims = code.claims
        row = history_row(
            verifier.id,
            card["id"] if card else None,
            claims.pseudonym.hex() if claims is not None and is_genuine(code) else None,
            code.code_id,
            claims.region if claims else None,
            reason,
        )
        try:
            await self.history.add(row)
        except Exception:
            if reason == VALID:  # nobody was told the code is valid: it must not stay used up
                await release_use(self.platform.store, code.code_id or "")
            raise

    async def ask_issuer(
        self,
        peer: Peer,
        text: str,
        verifier: ClientPrincipal,
        code: VerificationResult,
        now: int,
    ) -> schemas.VerificationResult:
        """Step 2: route to the issuing deployment, record its answer, and pass on only the fields
        this verifier may see here."""
        reply = await self.publisher.federation.verify_at_issuer(peer, text)
        reason = VALID if reply.valid else (reply.reason or UNKNOWN_CARD)
        region = code.claims.region if code.claims else None
        await self.history.add(history_row(verifier.id, None, None, code.code_id, region, reason))
        return answer(
            code,
            now,
            reason,
            valid=reply.valid,
            expires_at=reply.expires_at,
            fields=fields_from_issuer(reply, verifier) if reply.valid else None,
        )


__all__ = [
    "ALREADY_USED",
    "CARD_NOT_ACTIVE",
    "CODE_FIELDS",
    "REASON_MESSAGES",
    "UNKNOWN_CARD",
    "VALID",
    "OnlineVerification",
    "entitled_fields",
    "reason_message",
]
