"""The evidence rules on their own (pure, no platform): any input ends in a catalogue refusal or
an accepted evidence, never in another exception."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from ecard.crypto.jwk import public_jwk
from ecard.errors import AppError
from ecard.registry.evidence import METHODS, check_evidence, sign_evidence, subject_binding
from tests.helpers import identity_number

KEY = ec.generate_private_key(ec.SECP256R1())
JWK = public_jwk(KEY.public_key())
NUMBER = identity_number()
AUDIENCE = "https://ecard.example.test"
POLICY = {"*": ["face_liveness", "face_compare_police", "counter_in_person"]}
CODES = {
    "evidence_required",
    "evidence_invalid",
    "evidence_method_not_accepted",
    "evidence_key_missing",
}


def check(evidence: object, public_jwk: object = JWK, **overrides):
    arguments = {
        "channel_id": "ch_app",
        "audience": AUDIENCE,
        "identity_number": NUMBER,
        "region": "330000",
        "policy": POLICY,
        "purpose": "issuance",
        "now": time.time(),
        "max_age": 300,
        **overrides,
    }
    return check_evidence(evidence, public_jwk, **arguments)


def signed(**claims) -> str:
    return sign_evidence(
        KEY,
        channel_id="ch_app",
        audience=AUDIENCE,
        identity_number=NUMBER,
        method="face_liveness",
        reference="r-1",
        **claims,
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_good_evidence_passes_and_names_what_the_record_keeps() -> None:
    accepted = check(signed(jti="j-1"))
    assert (accepted.method, accepted.reference, accepted.jti) == ("face_liveness", "r-1", "j-1")
    assert len(accepted.digest) == 64


def test_the_subject_binds_jti_and_the_normalized_number() -> None:
    lower = NUMBER[:-1] + NUMBER[-1].lower()
    assert (
        subject_binding("j", lower) == subject_binding("j", NUMBER) != subject_binding("k", NUMBER)
    )
    assert len(subject_binding("j", NUMBER)) == 43  # base64url of 32 bytes, no padding


@pytest.mark.parametrize(
    "public",
    [
        None,
        "",
        {"kty": "RSA"},
        {"kty": "EC", "crv": "P-384", "x": "a", "y": "b"},
        {**JWK, "d": "secret"},
        "not json",
        7,
    ],
)
def test_an_unusable_registered_key_is_key_missing(public: object) -> None:
    with pytest.raises(AppError) as refused:
        check(signed(), public)
    assert refused.value.code == "evidence_key_missing"


def test_other_algorithms_and_unsigned_tokens_are_refused() -> None:
    claims = jwt.decode(signed(), options={"verify_signature": False})
    for token in (
        jwt.encode(claims, "s" * 32, algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),
    ):
        with pytest.raises(AppError) as refused:
            check(token)
        assert refused.value.code == "evidence_invalid"


def test_deeply_nested_json_is_refused_before_parsing() -> None:
    nested = b64(b'{"alg":"ES256","x":' + b"[" * 2000 + b"]" * 2000 + b"}")
    with pytest.raises(AppError) as refused:
        check(f"{nested}.{b64(b'{}')}.{b64(b'sig')}")
    assert refused.value.code == "evidence_invalid"


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=300),
        st.binary(max_size=100),
        st.lists(
            st.text(
                alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.",
                max_size=80,
            ),
            min_size=1,
            max_size=5,
        ).map(".".join),
    )
)
def test_junk_is_always_a_catalogue_refusal(junk: object) -> None:
    try:
        check(junk)
    except AppError as refused:
        assert refused.code in CODES
    else:
        pytest.fail("junk was accepted")


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["iss", "aud", "method", "iat", "jti", "ref", "subject", "purpose", "x"]),
        _json_values,
        max_size=9,
    )
)
def test_signed_claims_of_any_shape_are_refused_or_accepted_never_crash(claims: dict) -> None:
    header = b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = ECAlgorithm(ECAlgorithm.SHA256).sign(f"{header}.{payload}".encode(), KEY)
    token = f"{header}.{payload}.{b64(signature)}"
    try:
        check(token)
    except AppError as refused:
        assert refused.code in CODES


def test_the_method_catalogue_covers_the_default_policy() -> None:
    assert set(POLICY["*"]) <= set(METHODS)
