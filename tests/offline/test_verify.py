"""Offline verification of codes: what a verifier without the platform learns from a scan."""

from __future__ import annotations

import base45
from hypothesis import given, settings
from hypothesis import strategies as st

from ecard.codes.elicense import sign_elicense
from ecard.codes.format import CodeSigner
from ecard.offline import (
    ElicenseClaims,
    Reason,
    RevocationSet,
    RevokedCard,
    Usage,
    build_revocation_list,
    parse_code,
    verify,
    verify_elicense,
)
from ecard.offline.code_format import PREFIX
from tests.offline.helpers import (
    BEIJING,
    DAY,
    NOW,
    PSEUDONYM,
    SHANGHAI,
    ZHEJIANG,
    new_key,
    revocations,
    sign_code,
    trust_store,
    trusted,
)

ZHEJIANG_KEY, BEIJING_KEY = new_key(), new_key()
ZHEJIANG_SIGNER = CodeSigner(ZHEJIANG, ZHEJIANG_KEY)
TRUST = trust_store(trusted(ZHEJIANG_KEY, ZHEJIANG), trusted(BEIJING_KEY, BEIJING))
NO_REVOCATIONS = revocations()
CODE = sign_code(ZHEJIANG_SIGNER, issued_at=NOW - 5)


def test_a_fresh_code_verifies_and_shows_only_masked_data() -> None:
    result = verify(CODE, TRUST, NO_REVOCATIONS, NOW)
    assert result.ok and result.reason is None
    assert result.claims is not None
    assert (result.claims.masked_name, result.claims.card_last4) == ("张*三", "1234")
    assert result.claims.region == ZHEJIANG and result.issuer is not None
    assert result.issuer.region == ZHEJIANG
    assert result.code_id == parse_code(CODE).code_id


def test_a_code_from_one_province_verifies_at_a_verifier_of_another() -> None:
    """跨省用卡: a Beijing verifier holds the national trust list, not Zhejiang's keys directly."""
    beijing_code = sign_code(CodeSigner(BEIJING, BEIJING_KEY))
    assert verify(beijing_code, TRUST, NO_REVOCATIONS, NOW).ok
    assert verify(CODE, TRUST, NO_REVOCATIONS, NOW).ok


def test_time_window_with_clock_skew() -> None:
    issued = NOW - 5
    expires = issued + 60
    assert verify(CODE, TRUST, NO_REVOCATIONS, expires - 1, skew_seconds=0).ok
    assert verify(CODE, TRUST, NO_REVOCATIONS, expires, skew_seconds=0).reason is Reason.EXPIRED
    assert verify(CODE, TRUST, NO_REVOCATIONS, expires + 29, skew_seconds=30).ok
    assert (
        verify(CODE, TRUST, NO_REVOCATIONS, expires + 30, skew_seconds=30).reason is Reason.EXPIRED
    )
    early = verify(CODE, TRUST, NO_REVOCATIONS, issued - 31, skew_seconds=30)
    assert early.reason is Reason.NOT_YET_VALID
    assert verify(CODE, TRUST, NO_REVOCATIONS, issued - 30, skew_seconds=30).ok


def test_a_revoked_card_is_refused_with_its_revocation_entry() -> None:
    entry = RevokedCard(region=ZHEJIANG, pseudonym=PSEUDONYM)
    result = verify(CODE, TRUST, revocations(entry), NOW)
    assert result.reason is Reason.REVOKED and result.revocation == entry


def test_a_listed_card_is_refused_whenever_its_code_was_issued() -> None:
    """A list says a card is revoked as of its issued_at (no time per card): a code issued before
    the list, as every code of a revoked card is, is refused."""
    entry = RevokedCard(region=ZHEJIANG, pseudonym=PSEUDONYM)
    listed = RevocationSet.from_list(
        build_revocation_list([entry], version=2, issued_at=NOW - 1, next_update=NOW + DAY)
    )
    assert parse_code(CODE).claims.issued_at < listed.issued_at
    assert verify(CODE, TRUST, listed, NOW).reason is Reason.REVOKED
    later = sign_code(ZHEJIANG_SIGNER, issued_at=NOW)
    assert verify(later, TRUST, listed, NOW).reason is Reason.REVOKED


def test_revocation_is_per_issuer_region() -> None:
    same_pseudonym_elsewhere = RevokedCard(region=BEIJING, pseudonym=PSEUDONYM)
    assert verify(CODE, TRUST, revocations(same_pseudonym_elsewhere), NOW).ok


def test_a_withdrawn_key_fails_even_for_codes_it_signed_before_withdrawal() -> None:
    withdrawn = trust_store(trusted(ZHEJIANG_KEY, ZHEJIANG, status="withdrawn"))
    assert verify(CODE, withdrawn, NO_REVOCATIONS, NOW).reason is Reason.KEY_WITHDRAWN


def test_a_retired_key_still_verifies_inside_its_window_but_not_after() -> None:
    retired = trust_store(trusted(ZHEJIANG_KEY, ZHEJIANG, status="retired", not_after=NOW + 10))
    assert verify(CODE, retired, NO_REVOCATIONS, NOW).ok
    gone = trust_store(trusted(ZHEJIANG_KEY, ZHEJIANG, status="retired", not_after=NOW - 3 * DAY))
    assert verify(CODE, gone, NO_REVOCATIONS, NOW).reason is Reason.KEY_NOT_VALID


def test_a_code_signed_before_its_key_was_valid_is_refused() -> None:
    late_key = trust_store(trusted(ZHEJIANG_KEY, ZHEJIANG, not_before=NOW + 3600))
    assert verify(CODE, late_key, NO_REVOCATIONS, NOW).reason is Reason.KEY_NOT_VALID


def test_a_code_re_signed_with_an_unknown_key_is_refused() -> None:
    impostor = CodeSigner(ZHEJIANG, new_key())
    assert verify(sign_code(impostor), TRUST, NO_REVOCATIONS, NOW).reason is Reason.UNKNOWN_KEY


def test_a_code_of_a_region_without_keys_is_an_unknown_issuer() -> None:
    stranger = CodeSigner(SHANGHAI, new_key())
    assert verify(sign_code(stranger), TRUST, NO_REVOCATIONS, NOW).reason is Reason.UNKNOWN_ISSUER


def test_an_issuer_cannot_sign_codes_for_another_region() -> None:
    """Beijing's key is trusted, but only for Beijing cards."""
    forged = sign_code(CodeSigner(ZHEJIANG, BEIJING_KEY))
    assert verify(forged, TRUST, NO_REVOCATIONS, NOW).reason is Reason.ISSUER_MISMATCH


def test_a_verifier_can_restrict_usages() -> None:
    login_code = sign_code(ZHEJIANG_SIGNER, usage=Usage.LOGIN)
    result = verify(login_code, TRUST, NO_REVOCATIONS, NOW, usages={Usage.SHOW, Usage.TERMINAL})
    assert result.reason is Reason.WRONG_USAGE
    assert verify(CODE, TRUST, NO_REVOCATIONS, NOW, usages={Usage.SHOW}).ok


def test_stale_lists_are_not_trusted() -> None:
    stale_trust = trust_store(trusted(ZHEJIANG_KEY, ZHEJIANG), next_update=NOW - 3600)
    assert verify(CODE, stale_trust, NO_REVOCATIONS, NOW).reason is Reason.STALE_TRUST_LIST
    stale_revocations = revocations(next_update=NOW - 3600)
    result = verify(CODE, TRUST, stale_revocations, NOW)
    assert result.reason is Reason.STALE_REVOCATION_LIST


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_single_bit_flip_makes_the_code_fail(data: st.DataObject) -> None:
    raw = bytearray(base45.b45decode(CODE[len(PREFIX) :]))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    result = verify(PREFIX + base45.b45encode(bytes(raw)).decode(), TRUST, NO_REVOCATIONS, NOW)
    assert not result.ok and isinstance(result.reason, Reason)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_single_character_change_in_the_text_makes_the_code_fail(data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(CODE) - 1))
    replacement = data.draw(st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:a\n"))
    tampered = CODE[:position] + replacement + CODE[position + 1 :]
    if tampered != CODE:
        assert not verify(tampered, TRUST, NO_REVOCATIONS, NOW).ok


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_garbage_gets_a_result_with_a_reason_never_an_exception(garbage: str | bytes) -> None:
    result = verify(garbage, TRUST, NO_REVOCATIONS, NOW)
    assert not result.ok and isinstance(result.reason, Reason)


def test_an_elicense_is_not_vouched_for_by_a_stale_revocation_list() -> None:
    """A lost card's e-license must not verify again against an old list fetched later."""
    claims = ElicenseClaims(
        masked_name="张*三",
        masked_id_number="3301**********1234",
        card_number="C1234****",
        region=ZHEJIANG,
        card_issued_on="2020-01-01",
        card_status="active",
        pseudonym=PSEUDONYM,
        issued_at=NOW - 60,
        expires_at=NOW + 30 * DAY,
    )
    token = sign_elicense(claims, ZHEJIANG_KEY)
    lost = revocations(RevokedCard(region=ZHEJIANG, pseudonym=PSEUDONYM))
    assert verify_elicense(token, TRUST, lost, NOW).reason is Reason.REVOKED
    old = revocations(next_update=NOW - 3_600)  # a list from before the loss, past its time
    assert verify_elicense(token, TRUST, old, NOW).reason is Reason.STALE_REVOCATION_LIST
    assert verify_elicense(token, TRUST, revocations(), NOW).ok
