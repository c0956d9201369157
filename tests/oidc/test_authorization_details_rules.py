"""The ``authorization_details`` parser (RFC 9396) and the approval's data choice on arbitrary
input: a typed refusal, never a crash, and nothing granted that was not asked."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from ecard.errors import AppError
from ecard.oidc.authorization import REQUEST_CHECKS, consent_ask
from ecard.oidc.login_session import granted_data
from ecard.oidc.schemas import ConsentAsk

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)


@given(st.one_of(st.text(max_size=200), json_values.map(json.dumps)))
def test_any_authorization_details_parse_or_are_refused_as_invalid(raw):
    try:
        ask = consent_ask({"authorization_details": raw})
    except AppError as error:
        assert error.code == "invalid_authorization_details"
    else:
        assert isinstance(ask, ConsentAsk) and ask.scopes
        assert len(ask.scopes) == len(set(ask.scopes))


def test_a_well_formed_detail_becomes_the_consent_ask_and_none_is_no_ask():
    raw = json.dumps(
        [
            {
                "type": "ecard_consent",
                "datatypes": ["card.status", "card.status", "identity.basic"],
                "purpose_code": "loan_application",
                "purpose": "  贷款 ",
                "duration_seconds": 3600,
            }
        ]
    )
    ask = consent_ask({"authorization_details": raw})
    assert ask == ConsentAsk(
        scopes=["card.status", "identity.basic"],
        purpose_code="loan_application",
        purpose="贷款",
        duration_seconds=3600,
    )
    assert consent_ask({}) is None
    assert REQUEST_CHECKS[-1].__name__ == "authorization_details_are_ours"


ASK = ConsentAsk(
    scopes=["identity.basic", "card.status"], purpose_code="other", purpose="x", duration_seconds=1
)


@given(st.none() | st.lists(st.sampled_from(["identity.basic", "card.status", "benefit.payments"])))
def test_an_approval_grants_a_subset_of_what_was_asked_in_the_asked_order(chosen):
    try:
        granted = granted_data(ASK, chosen)
    except AppError as error:
        assert error.code == "consent_scopes_not_requested"
        assert "benefit.payments" in chosen
    else:
        assert granted is not None and set(granted) <= set(ASK.scopes)
        assert granted == [s for s in ASK.scopes if chosen is None or s in chosen]


def test_a_login_without_a_data_request_grants_no_data():
    assert granted_data(None, None) is None and granted_data(None, []) is None
    try:
        granted_data(None, ["card.status"])
    except AppError as error:
        assert error.code == "consent_scopes_not_requested"
    else:
        raise AssertionError("granted data nobody asked for")
