"""The provider's parsers and rules on arbitrary input: a typed refusal, never a crash."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecard.errors import AppError
from ecard.oidc.controllers import single_values
from ecard.oidc.policy import USER_CODE_ALPHABET
from ecard.oidc.records import new_user_code, normalize_user_code, s256, with_query
from ecard.oidc.scopes import SCOPES, parse_scope, pseudonym
from ecard.oidc.service import check_redirect_uri

ALL = frozenset(s for s, spec in SCOPES.items() if not spec.needs_consent)  # the login scopes
words = st.text(alphabet=string.ascii_letters + "_:", min_size=1, max_size=12)


@given(st.lists(words, max_size=6))
def test_scopes_are_known_filed_and_include_openid_or_refused(requested):
    raw = " ".join(requested)
    try:
        normalised = parse_scope(raw, ALL)
    except AppError as error:
        assert error.code == "invalid_scope"
        assert "openid" not in requested or any(s not in SCOPES for s in requested)
    else:
        assert "openid" in normalised.split() and set(normalised.split()) <= ALL
        assert len(normalised.split()) == len(set(normalised.split()))


@given(st.sampled_from(sorted(ALL - {"openid"})))
def test_a_scope_the_client_did_not_file_is_refused(scope):
    with pytest.raises(AppError, match="not filed"):
        parse_scope(f"openid {scope}", frozenset({"openid"}))


@given(st.sampled_from(sorted(s for s, spec in SCOPES.items() if spec.needs_consent)))
def test_a_consent_scope_is_never_a_login_scope_even_when_filed(scope):
    """``needs_consent``: asked for in ``authorization_details``, released under a live grant."""
    with pytest.raises(AppError, match="consent grant"):
        parse_scope(f"openid {scope}", frozenset(SCOPES))


@given(st.text(max_size=200))
def test_redirect_uris_are_https_or_loopback_without_fragments(uri):
    try:
        host = check_redirect_uri(uri)
    except AppError as error:
        assert error.code == "invalid_client_metadata"
    else:
        assert host and "#" not in uri
        assert uri.startswith(("https://", "http://"))


@given(st.text(max_size=20))
def test_user_codes_normalise_to_the_canonical_form_or_nothing(raw):
    code = normalize_user_code(raw)
    assert code == "" or (
        len(code) == 9 and code[4] == "-" and set(code.replace("-", "")) <= set(USER_CODE_ALPHABET)
    )


def test_generated_user_codes_survive_how_people_type_them():
    for _ in range(50):
        code = new_user_code()
        assert normalize_user_code(code.lower().replace("-", " ")) == code


@given(st.lists(st.tuples(st.sampled_from("abc"), st.text(max_size=5)), max_size=6))
def test_repeated_parameters_are_refused(items):
    keys = [k for k, _ in items]
    try:
        values = single_values(items)
    except AppError as error:
        assert error.code == "invalid_request" and len(keys) != len(set(keys))
    else:
        assert len(keys) == len(set(keys)) and all(values[k] for k in values)


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30), st.text(max_size=30))
def test_pairwise_identifiers_differ_between_sectors(sector_a, sector_b, person):
    key = b"k" * 32
    if sector_a != sector_b:
        assert pseudonym(key, "oidc-sub", sector_a, person) != pseudonym(
            key, "oidc-sub", sector_b, person
        )
    assert pseudonym(key, "oidc-sub", sector_a, person) == pseudonym(
        key, "oidc-sub", sector_a, person
    )


def test_pkce_s256_matches_rfc_7636_appendix_b():
    assert (
        s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_redirect_parameters_keep_the_filed_query():
    assert (
        with_query("https://rp/cb?x=1", {"code": "a b", "state": None})
        == "https://rp/cb?x=1&code=a+b"
    )
