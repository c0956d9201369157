"""The signed trust list: only the root key's, current, never older, and of the right kind."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecard.codes.format import CodeSigner
from ecard.offline import (
    OfflineError,
    Reason,
    load_trust_list,
    sign_revocation_list,
    sign_trust_list,
    verify,
)
from ecard.offline.es256 import b64url_encode
from ecard.offline.revocation import build_revocation_list
from ecard.offline.trust import TrustedKey
from tests.offline.helpers import (
    BEIJING,
    DAY,
    NOW,
    ZHEJIANG,
    new_key,
    revocations,
    sign_code,
    trust_list,
    trusted,
)

ROOT = new_key()
ZHEJIANG_KEY, BEIJING_KEY = new_key(), new_key()
ENTRIES = (trusted(ZHEJIANG_KEY, ZHEJIANG), trusted(BEIJING_KEY, BEIJING))
TOKEN = sign_trust_list(trust_list(*ENTRIES, version=7), ROOT)


def refusal(token: str, now: int = NOW, **options: int) -> Reason:
    with pytest.raises(OfflineError) as refused:
        load_trust_list(token, ROOT.public_key(), now, **options)
    return refused.value.reason


def test_a_signed_trust_list_loads_and_verifies_codes_of_every_issuer() -> None:
    store = load_trust_list(TOKEN, ROOT.public_key(), NOW)
    assert store.content.version == 7 and store.regions == {ZHEJIANG, BEIJING}
    for region, key in ((ZHEJIANG, ZHEJIANG_KEY), (BEIJING, BEIJING_KEY)):
        assert verify(sign_code(CodeSigner(region, key)), store, revocations(), NOW).ok


def test_a_list_signed_by_another_key_is_refused() -> None:
    assert refusal(sign_trust_list(trust_list(*ENTRIES), new_key())) is Reason.BAD_SIGNATURE


def test_a_tampered_payload_is_refused() -> None:
    header, _, signature = TOKEN.split(".")
    forged = msgspec.json.encode(trust_list(*ENTRIES, trusted(new_key(), ZHEJIANG)))
    assert refusal(f"{header}.{b64url_encode(forged)}.{signature}") is Reason.BAD_SIGNATURE


def test_another_signed_document_is_not_taken_for_a_trust_list() -> None:
    empty = build_revocation_list([], version=1, issued_at=NOW, next_update=NOW + DAY)
    assert refusal(sign_revocation_list(empty, ROOT)) is Reason.WRONG_TYPE


def test_freshness_and_rollback() -> None:
    assert refusal(TOKEN, now=NOW + 2 * DAY) is Reason.STALE_TRUST_LIST
    assert refusal(TOKEN, now=NOW - 3600) is Reason.NOT_YET_VALID
    assert refusal(TOKEN, held_version=8) is Reason.ROLLBACK
    assert load_trust_list(TOKEN, ROOT.public_key(), NOW, held_version=7).content.version == 7


def test_the_platform_refuses_to_sign_an_entry_whose_kid_is_not_its_keys_thumbprint() -> None:
    wrong = msgspec.structs.replace(ENTRIES[0], kid=ENTRIES[1].kid)
    with pytest.raises(OfflineError) as refused:
        sign_trust_list(trust_list(wrong), ROOT)
    assert refused.value.reason is Reason.MALFORMED


def test_a_private_key_in_the_list_is_refused() -> None:
    leaky = TrustedKey(
        **{**msgspec.structs.asdict(ENTRIES[0]), "jwk": {**ENTRIES[0].jwk, "d": "AA"}}
    )
    with pytest.raises(OfflineError):
        sign_trust_list(trust_list(leaky), ROOT)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300), st.from_regex(r"\A[A-Za-z0-9_-]{0,60}(\.[A-Za-z0-9_-]{0,90}){2}\Z")
    )
)
def test_garbage_tokens_only_ever_fail_with_a_reason(garbage: str) -> None:
    assert isinstance(refusal(garbage), Reason)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"alg": st.just("ES256")},
            optional={"kid": json_values, "typ": json_values, "crit": json_values},
        ),
    ),
    json_values,
)
def test_tokens_with_odd_headers_and_payloads_only_ever_fail_with_a_reason(
    header: object, payload: object
) -> None:
    parts = (msgspec.json.encode(header), msgspec.json.encode(payload), bytes(64))
    assert isinstance(refusal(".".join(b64url_encode(part) for part in parts)), Reason)
