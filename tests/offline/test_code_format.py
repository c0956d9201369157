"""The EC1 code format: what is signed parses back exactly, stays small, and anything else is
refused with a stable reason (never an unexpected exception)."""

from __future__ import annotations

import base45
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecard.codes.format import CodeSigner
from ecard.offline import CodeClaims, OfflineError, Reason, Usage, parse_code
from ecard.offline.code_format import MAX_TEXT_LENGTH, PREFIX, b45decode, b45encode, encode_body
from ecard.offline.es256 import verify_raw
from tests.offline.helpers import NOW, PSEUDONYM, ZHEJIANG, new_key, sign_code

KEY = new_key()
SIGNER = CodeSigner(ZHEJIANG, KEY)

masked_names = st.builds(
    lambda head, tail: head + "*" + tail,
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=1, max_size=3),
    st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=3),
)
claims_strategy = st.builds(
    CodeClaims,
    region=st.from_regex(r"\A[0-9]{6}\Z"),
    key_id=st.just(SIGNER.key_id),
    pseudonym=st.binary(min_size=1, max_size=16),
    serial=st.integers(0, 2**32 - 1),
    issued_at=st.integers(0, 2**32 - 1),
    masked_name=masked_names,
    card_last4=st.from_regex(r"\A[0-9A-Z]{4}\Z"),
    lifetime=st.integers(15, 300),
    usage=st.sampled_from(Usage),
)


@settings(max_examples=150, deadline=None)
@given(claims_strategy)
def test_every_valid_code_parses_back_to_what_was_signed(claims: CodeClaims) -> None:
    signer = CodeSigner(claims.region, KEY)
    text = signer.sign(claims)
    parsed = parse_code(text)
    assert parsed.claims == claims
    assert verify_raw(KEY.public_key(), parsed.signature, parsed.signature_input)
    assert text.startswith(PREFIX) and len(text) <= MAX_TEXT_LENGTH


@settings(max_examples=150, deadline=None)
@given(claims_strategy)
def test_a_card_template_signs_the_same_codes_as_its_claims(claims: CodeClaims) -> None:
    """The issuer lays out a card's code once (BodyTemplate) and fills in serial and time."""
    signer = CodeSigner(claims.region, KEY)
    template = signer.template(
        pseudonym=claims.pseudonym,
        masked_name=claims.masked_name,
        card_last4=claims.card_last4,
        lifetime=claims.lifetime,
        usage=claims.usage,
    )
    assert template.body(claims.serial, claims.issued_at) == encode_body(claims)
    assert parse_code(signer.sign_from(template, claims.serial, claims.issued_at)).claims == claims


def test_a_template_refuses_what_a_code_may_not_carry() -> None:
    with pytest.raises(OfflineError) as unmasked:
        SIGNER.template(
            pseudonym=PSEUDONYM,
            masked_name="张三丰",
            card_last4="1234",
            lifetime=60,
            usage=Usage.SHOW,
        )
    assert unmasked.value.reason is Reason.MALFORMED
    template = SIGNER.template(
        pseudonym=PSEUDONYM, masked_name="张*丰", card_last4="1234", lifetime=60, usage=Usage.SHOW
    )
    for serial, issued_at in ((2**32, NOW), (-1, NOW), (1, 2**32)):
        with pytest.raises(OfflineError):
            template.body(serial, issued_at)
    with pytest.raises(ValueError, match="another key"):
        CodeSigner(ZHEJIANG, new_key()).sign_from(template, 1, NOW)


def test_a_typical_code_is_at_most_180_characters_of_qr_alphanumeric_text() -> None:
    text = sign_code(SIGNER)
    assert len(text) <= 180
    assert set(text) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def test_the_code_carries_no_plaintext_beyond_the_masked_fields() -> None:
    parsed = parse_code(sign_code(SIGNER, masked_name="张*三", card_last4="5678"))
    readable = parsed.body.decode("utf-8", errors="ignore")
    assert "张*三" in readable and "5678" in readable
    assert PSEUDONYM not in readable.encode()  # the pseudonym is binary, not text


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=400), st.binary(max_size=400)))
def test_arbitrary_input_only_ever_fails_with_a_reason(data: str | bytes) -> None:
    with pytest.raises(OfflineError) as refused:
        parse_code(data)
    assert isinstance(refused.value.reason, Reason)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=140))
def test_arbitrary_base45_payloads_parse_or_fail_with_a_format_reason(payload: bytes) -> None:
    try:
        parse_code(PREFIX + base45.b45encode(payload).decode())
    except OfflineError as refused:
        assert refused.reason in {Reason.MALFORMED, Reason.UNSUPPORTED_VERSION}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("HC1:NCFOXN%TS3DH", Reason.WRONG_PREFIX),
        ("https://example.com/", Reason.WRONG_PREFIX),
        ("", Reason.WRONG_PREFIX),
        ("ec1:ABC", Reason.WRONG_PREFIX),
        ("EC2:ABCDEF", Reason.UNSUPPORTED_VERSION),
        ("EC10:ABCDEF", Reason.UNSUPPORTED_VERSION),
        ("EC1:" + "A" * MAX_TEXT_LENGTH, Reason.TOO_LONG),
        ("EC1:abc", Reason.MALFORMED),
        ("EC1:GGW", Reason.MALFORMED),  # a base45 triple above 0xFFFF
        ("EC1:0", Reason.MALFORMED),
        ("EC1:", Reason.MALFORMED),
    ],
)
def test_foreign_and_broken_texts_get_a_clear_reason(text: str, reason: Reason) -> None:
    with pytest.raises(OfflineError) as refused:
        parse_code(text)
    assert refused.value.reason is reason


def test_a_trailing_newline_is_not_silently_accepted() -> None:
    with pytest.raises(OfflineError) as refused:
        parse_code(sign_code(SIGNER) + "\n")
    assert refused.value.reason is Reason.MALFORMED


def test_every_truncation_of_a_code_is_refused() -> None:
    text = sign_code(SIGNER)
    for end in range(len(text)):
        with pytest.raises(OfflineError):
            parse_code(text[:end])


def test_a_body_of_another_version_is_unsupported_even_behind_the_ec1_prefix() -> None:
    body = bytearray(encode_body(parse_code(sign_code(SIGNER)).claims))
    body[0] = 2
    with pytest.raises(OfflineError) as refused:
        parse_code(PREFIX + base45.b45encode(bytes(body) + bytes(64)).decode())
    assert refused.value.reason is Reason.UNSUPPORTED_VERSION


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("masked_name", "张三丰"),  # not masked
        ("masked_name", "张*" * 10),  # too long
        ("masked_name", "张*\n"),
        ("card_last4", "12a4"),
        ("card_last4", "12345"),
        ("lifetime", 14),
        ("lifetime", 301),
        ("pseudonym", b""),
        ("pseudonym", bytes(17)),
        ("serial", 2**32),
        ("issued_at", -1),
    ],
)
def test_the_signer_refuses_fields_that_break_the_format(field: str, value: object) -> None:
    with pytest.raises(OfflineError) as refused:
        sign_code(SIGNER, **{field: value})
    assert refused.value.reason is Reason.MALFORMED


def test_the_signer_refuses_claims_naming_another_key() -> None:
    other = CodeSigner(ZHEJIANG, new_key())
    claims = other.claims(
        pseudonym=PSEUDONYM, serial=1, issued_at=NOW, masked_name="张*三", card_last4="1234"
    )
    with pytest.raises(ValueError):
        SIGNER.sign(claims)


def test_code_ids_differ_per_code_and_ignore_signature_malleability() -> None:
    first, second = parse_code(sign_code(SIGNER, serial=1)), parse_code(sign_code(SIGNER, serial=2))
    assert first.code_id != second.code_id
    # the same body signed twice (ECDSA is randomised) is the same code
    assert parse_code(sign_code(SIGNER, serial=1)).code_id == first.code_id


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_our_base45_decoder_inverts_the_base45_package(data: bytes) -> None:
    assert b45decode(base45.b45encode(data).decode()) == data


def test_every_16_bit_group_encodes_as_the_base45_package_does() -> None:
    """The encoder divides by 45 with a multiply and shift that must be exact for every group."""
    groups = b"".join(value.to_bytes(2, "big") for value in range(1 << 16))
    assert b45encode(groups) == base45.b45encode(groups).decode()
    assert b45decode(b45encode(groups)) == groups


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_our_base45_encoder_matches_the_base45_package(data: bytes) -> None:
    assert b45encode(data) == base45.b45encode(data).decode()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:a~\n张", max_size=30))
def test_our_base45_decoder_accepts_exactly_what_the_package_accepts(text: str) -> None:
    try:
        expected: bytes | None = base45.b45decode(text) if "\n" not in text else None
    except ValueError:
        expected = None
    try:
        assert b45decode(text) == expected
    except OfflineError as refused:
        assert expected is None and refused.reason is Reason.MALFORMED
