"""The e-license (电子证照, 亮证): signed by the issuer, verifiable by anyone holding the trust
list."""

from __future__ import annotations

import msgspec
import pytest

from ecard.codes import sign_elicense
from ecard.offline import ElicenseClaims, OfflineError, Reason, RevokedCard, verify_elicense
from ecard.offline.es256 import b64url_encode
from tests.offline.helpers import (
    BEIJING,
    DAY,
    NOW,
    PSEUDONYM,
    ZHEJIANG,
    new_key,
    revocations,
    trust_store,
    trusted,
)

ZHEJIANG_KEY, BEIJING_KEY = new_key(), new_key()
TRUST = trust_store(trusted(ZHEJIANG_KEY, ZHEJIANG), trusted(BEIJING_KEY, BEIJING))
CLAIMS = ElicenseClaims(
    masked_name="张*三",
    masked_id_number="3301**********1234",
    card_number="A12345678",
    region=ZHEJIANG,
    card_issued_on="2021-03-15",
    card_status="active",
    pseudonym=PSEUDONYM,
    issued_at=NOW - 60,
    expires_at=NOW + 30 * DAY,
)
TOKEN = sign_elicense(CLAIMS, ZHEJIANG_KEY)


def test_an_elicense_verifies_offline_with_the_trust_list() -> None:
    result = verify_elicense(TOKEN, TRUST, revocations(), NOW)
    assert result.ok and result.claims == CLAIMS
    assert result.issuer is not None and result.issuer.region == ZHEJIANG


def test_the_document_is_a_jws_with_standard_time_claims() -> None:
    payload = msgspec.json.decode(msgspec.json.encode(CLAIMS))
    assert payload["iat"] == NOW - 60 and payload["exp"] == NOW + 30 * DAY


def test_a_tampered_elicense_is_refused() -> None:
    header, _, signature = TOKEN.split(".")
    forged = msgspec.structs.replace(CLAIMS, card_status="active", masked_name="李*四")
    tampered = f"{header}.{b64url_encode(msgspec.json.encode(forged))}.{signature}"
    assert verify_elicense(tampered, TRUST, None, NOW).reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("token", "now", "reason"),
    [
        (sign_elicense(CLAIMS, new_key()), NOW, Reason.UNKNOWN_KEY),
        (sign_elicense(CLAIMS, BEIJING_KEY), NOW, Reason.ISSUER_MISMATCH),
        (TOKEN, NOW + 31 * DAY, Reason.EXPIRED),
        (TOKEN, NOW - 3600, Reason.NOT_YET_VALID),
        ("not a token", NOW, Reason.MALFORMED),
        ("", NOW, Reason.MALFORMED),
    ],
)
def test_refusals_have_stable_reasons(token: str, now: int, reason: Reason) -> None:
    assert verify_elicense(token, TRUST, None, now).reason is reason


def test_a_revoked_card_or_withdrawn_key_fails() -> None:
    lost = RevokedCard(region=ZHEJIANG, pseudonym=PSEUDONYM)
    assert verify_elicense(TOKEN, TRUST, revocations(lost), NOW).reason is Reason.REVOKED
    withdrawn = trust_store(trusted(ZHEJIANG_KEY, ZHEJIANG, status="withdrawn"))
    assert verify_elicense(TOKEN, withdrawn, None, NOW).reason is Reason.KEY_WITHDRAWN


@pytest.mark.parametrize(
    "change",
    [{"masked_name": "张三"}, {"masked_id_number": "330102199001011234"}, {"expires_at": NOW - 60}],
)
def test_unmasked_or_inconsistent_documents_are_never_signed(change: dict[str, object]) -> None:
    with pytest.raises(OfflineError) as refused:
        sign_elicense(msgspec.structs.replace(CLAIMS, **change), ZHEJIANG_KEY)
    assert refused.value.reason is Reason.MALFORMED
