"""The pure DPoP proof checker (ecard.crypto.dpop): each rule refuses what RFC 9449 refuses, and
no input, however malformed, raises anything but the checker's own DpopError."""

from __future__ import annotations

import base64
import json
import time

import jwt
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ecard.auth import HolderAccess, _holder_access, holder_access_token
from ecard.crypto import dpop
from tests.holder_sessions.conftest import Device

URL = "https://ecard.example.gov.cn/holder/v1/codes"
NOW = 1_800_000_000.0
PHONE = Device()
ED_PHONE = Device("EdDSA")
TOKEN = "echa_token"


def check(proof: object, **overrides: object) -> dpop.DpopProof:
    arguments: dict = {
        "method": "POST",
        "url": URL,
        "now": NOW,
        "access_token": TOKEN,
        "expected_jkt": PHONE.jkt,
    }
    arguments.update(overrides)
    return dpop.check_proof(proof, **arguments)


def proof(**claims: object) -> str:
    return PHONE.proof("POST", URL, TOKEN, **{"iat": int(NOW), **claims})


def sign(header: dict, claims: object, device: Device = PHONE) -> str:
    """A JWS over any header and claims (pyjwt's encoder refuses some of them)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(
        signing_input.encode(), device.key
    )
    return f"{signing_input}.{b64(signature)}"


def refused(rule: str, candidate: object, **overrides: object) -> None:
    with pytest.raises(dpop.DpopError) as caught:
        check(candidate, **overrides)
    assert caught.value.rule == rule, caught.value


def test_a_good_proof_passes_and_names_its_key() -> None:
    checked = check(proof(jti="one"))
    assert checked.jkt == PHONE.jkt and checked.jti == "one" and checked.htm == "POST"


def test_ed25519_is_accepted_and_can_be_switched_off() -> None:
    made = ED_PHONE.proof("POST", URL, TOKEN, iat=int(NOW))
    assert check(made, expected_jkt=ED_PHONE.jkt).jkt == ED_PHONE.jkt
    refused("alg", made, expected_jkt=ED_PHONE.jkt, algorithms=("ES256",))


def test_rule_typ() -> None:
    refused("typ", proof(header={"typ": "JWT"}))
    refused("typ", proof(header={"typ": None}))


def test_rule_alg_refuses_none_macs_and_unknown_algorithms() -> None:
    header = (
        base64.urlsafe_b64encode(
            json.dumps({"typ": "dpop+jwt", "alg": "none", "jwk": PHONE.jwk}).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    body = (
        base64.urlsafe_b64encode(
            b'{"jti":"a","htm":"POST","htu":"%s","iat":%d}' % (URL.encode(), int(NOW))
        )
        .rstrip(b"=")
        .decode()
    )
    refused("alg", f"{header}.{body}.AAAA")
    hs = jwt.encode(
        {"jti": "a", "htm": "POST", "htu": URL, "iat": int(NOW)},
        "k" * 32,
        algorithm="HS256",
        headers={"typ": "dpop+jwt", "jwk": {"kty": "oct", "k": "a2s"}},
    )
    refused("alg", hs)


def test_rule_jwk_refuses_private_keys_and_mismatched_types() -> None:
    private = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(PHONE.key))
    assert "d" in private
    refused("jwk", proof(header={"jwk": private}))
    refused("jwk", proof(header={"jwk": ED_PHONE.jwk}))  # an OKP key under ES256
    refused("jwk", proof(header={"jwk": None}))
    refused("jwk", proof(header={"jwk": {**PHONE.jwk, "crv": "P-384"}}))


def test_rule_signature() -> None:
    other_key = Device()
    refused(
        "signature", proof(header={"jwk": other_key.jwk})
    )  # signed by PHONE, claims other_key's jwk
    good = proof()
    head, _, signature = good.split(".")
    tampered_body = (
        base64.urlsafe_b64encode(
            json.dumps({"jti": "x", "htm": "POST", "htu": URL, "iat": int(NOW)}).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    refused("signature", f"{head}.{tampered_body}.{signature}")


def test_rule_claims() -> None:
    refused("claims", proof(jti=None))
    refused("claims", proof(jti="x" * 129))
    refused("claims", proof(htm=None))
    refused("claims", proof(iat="now"))
    refused("claims", proof(iat=True))
    refused("claims", proof(iat=10**30))


def test_rule_htm() -> None:
    refused("htm", proof(htm="GET"))
    refused("htm", proof(htm="post"))


@pytest.mark.parametrize(
    "htu",
    [
        "https://ECARD.example.gov.cn/holder/v1/codes",
        "https://ecard.example.gov.cn:443/holder/v1/codes",
        "https://ecard.example.gov.cn/holder/v1/codes?x=1#frag",
    ],
)
def test_rule_htu_normalises_scheme_host_port_and_ignores_query(htu: str) -> None:
    assert check(proof(htu=htu)).htu == htu


@pytest.mark.parametrize(
    "htu",
    [
        "http://ecard.example.gov.cn/holder/v1/codes",
        "https://ecard.example.gov.cn:8443/holder/v1/codes",
        "https://evil.example/holder/v1/codes",
        "https://ecard.example.gov.cn/holder/v1/Codes",
        "https://user@ecard.example.gov.cn/holder/v1/codes",
        "/holder/v1/codes",
        "https://[::1/holder",
        "https://ecard.example.gov.cn:99999/holder/v1/codes",
    ],
)
def test_rule_htu_refuses_another_url(htu: str) -> None:
    refused("htu", proof(htu=htu))


def test_rule_iat_window() -> None:
    assert check(proof(iat=int(NOW) - 60))
    refused("iat", proof(iat=int(NOW) - 61))
    refused("iat", proof(iat=int(NOW) + 61))
    assert check(proof(iat=int(NOW) + 200), window=300)


def test_rule_ath() -> None:
    refused("ath", proof(ath=None))
    refused("ath", proof(ath=dpop.access_token_hash("echa_other")))
    assert check(proof(ath=None), access_token=None)  # a refresh carries no access token


def test_rule_key_binding() -> None:
    refused("jkt", proof(), expected_jkt=Device().jkt)
    assert check(proof(), expected_jkt=None).jkt == PHONE.jkt


def test_rule_nonce() -> None:
    key = b"n" * 32
    with pytest.raises(dpop.DpopNonceRequired):
        check(proof(), nonce_key=key)
    fresh = dpop.make_nonce(key, NOW)
    assert check(proof(nonce=fresh), nonce_key=key)
    assert check(proof(nonce=dpop.make_nonce(key, NOW - 300)), nonce_key=key)  # the previous step
    with pytest.raises(dpop.DpopNonceRequired):
        check(proof(nonce=dpop.make_nonce(key, NOW - 600)), nonce_key=key)
    with pytest.raises(dpop.DpopNonceRequired):
        check(proof(nonce=dpop.make_nonce(b"x" * 32, NOW)), nonce_key=key)


def test_the_thumbprint_is_rfc_7638() -> None:
    # RFC 7638 §3.1's example is RSA; this is the EC example of RFC 9449 §6.1 (jkt of its key)
    jwk = {
        "kty": "EC",
        "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
        "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
        "crv": "P-256",
    }
    assert dpop.jwk_thumbprint(jwk) == "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    with pytest.raises(dpop.DpopError):
        dpop.jwk_thumbprint({"kty": ["EC"]})


def test_tokens_minted_before_the_binding_still_read() -> None:
    class Platform:
        holder_token_key = b"k" * 32

    class OldAccess(msgspec.Struct, array_like=True, frozen=True):
        session_id: str
        ecard_id: str
        card_id: str
        channel_id: str
        issued_at: float
        expires_at: int

    old = OldAccess("s", "e", "c", "ch", 1.5, 2_000_000_000)
    body = msgspec.msgpack.encode(old)
    import hmac

    from ecard.auth import HOLDER_ACCESS_PREFIX, _b64url

    token = (
        HOLDER_ACCESS_PREFIX
        + _b64url(body)
        + "."
        + _b64url(hmac.digest(Platform.holder_token_key, body, "sha256")[:16])
    )
    assert _holder_access(Platform, token) == HolderAccess(
        "s", "e", "c", "ch", 1.5, 2_000_000_000, None
    )
    bound = HolderAccess("s", "e", "c", "ch", 1.5, 2_000_000_000, PHONE.jkt)
    assert _holder_access(Platform, holder_access_token(Platform, bound)) == bound
    # an unbound token is minted as before, so a worker of the previous release reads it too
    unbound = HolderAccess("s", "e", "c", "ch", 1.5, 2_000_000_000)
    assert holder_access_token(Platform, unbound) == token


# --- malformed input: only DpopError ------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(max_size=300),
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        JSON_VALUES,
    )
)
def test_arbitrary_input_is_refused_with_the_checkers_error(candidate: object) -> None:
    with pytest.raises(dpop.DpopError):
        check(candidate)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(header=JSON_VALUES, claims=JSON_VALUES, signature=st.binary(max_size=80))
def test_arbitrary_json_parts_are_refused_with_the_checkers_error(
    header: object, claims: object, signature: bytes
) -> None:
    candidate = ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature) or "A"]
    )
    with pytest.raises(dpop.DpopError):
        check(candidate)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    header_extra=st.dictionaries(
        st.sampled_from(["typ", "alg", "jwk", "kid", "x5c"]), JSON_VALUES, max_size=3
    ),
    claims=st.dictionaries(
        st.sampled_from(["jti", "htm", "htu", "iat", "ath", "nonce"]), JSON_VALUES, max_size=6
    ),
)
def test_well_signed_proofs_with_arbitrary_members_never_raise_anything_else(
    header_extra: dict, claims: dict
) -> None:
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": PHONE.jwk, **header_extra}
    try:
        check(sign(header, claims))
    except dpop.DpopError:
        pass


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(claims=JSON_VALUES)
def test_well_signed_proofs_with_arbitrary_claims_are_refused_with_the_checkers_error(
    claims: object,
) -> None:
    with pytest.raises(dpop.DpopError):
        check(sign({"typ": "dpop+jwt", "alg": "ES256", "jwk": PHONE.jwk}, claims))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(position=st.integers(min_value=0), replacement=st.sampled_from("AZaz09-_.=+/ \x00é"))
def test_a_changed_character_is_refused_or_changes_nothing(position: int, replacement: str) -> None:
    good = proof(jti="fixed")
    index = position % len(good)
    changed = good[:index] + replacement + good[index + 1 :]
    try:
        result = check(changed)
    except dpop.DpopError:
        return
    assert result == check(good)  # only a character that changes no bit of the value may pass


def test_a_proof_made_now_checks_against_the_clock() -> None:
    fresh = PHONE.proof("POST", URL, TOKEN)
    assert check(fresh, now=time.time()).jkt == PHONE.jkt
