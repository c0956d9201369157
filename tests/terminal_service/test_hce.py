"""The e-card's device certificate and the HCE card, pure: parsing never fails untyped, and the
terminal's offline check passes only the genuine, current, unrevoked e-card holding its key."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from ecard.offline import (
    OfflineError,
    Reason,
    RevocationSet,
    RevokedCard,
    TrustedKey,
    TrustList,
    TrustStore,
)
from ecard.offline.es256 import public_jwk, short_key_id, thumbprint
from ecard.offline.revocation import build_revocation_list
from ecard.terminal import hce
from ecard.terminal.hce import HceReason
from ecard.terminal.reference import READ_EF05_RECORD_1, SELECT_SSSE

ISSUER = ec.generate_private_key(ec.SECP256R1())
DEVICE = ec.generate_private_key(ec.SECP256R1())
NOW = 1_800_000_000
PSEUDONYM = bytes(range(16))
TRUST = TrustStore.from_list(
    TrustList(
        version=1,
        issued_at=NOW - 10,
        next_update=NOW + 86_400,
        keys=[
            TrustedKey(
                region="330000",
                kid=thumbprint(ISSUER.public_key()),
                jwk=public_jwk(ISSUER.public_key()),
                not_before=NOW - 100,
                not_after=NOW + 10**6,
                status="active",
            )
        ],
    )
)


def revocations(*revoked: bytes) -> RevocationSet:
    entries = [RevokedCard(region="330000", pseudonym=p) for p in revoked]
    return RevocationSet.from_list(
        build_revocation_list(entries, version=1, issued_at=NOW - 10, next_update=NOW + 3600)
    )


def certificate(**change: object) -> bytes:
    claims: dict[str, object] = {
        "region": "330000",
        "key_id": short_key_id(thumbprint(ISSUER.public_key())),
        "not_before": NOW - 60,
        "not_after": NOW + 3600,
        "pseudonym": PSEUDONYM,
        "device_key": hce.device_key_bytes(DEVICE.public_key()),
    }
    claims.update(change)
    return hce.issue_certificate(hce.CertificateClaims(**claims), ISSUER)  # type: ignore[arg-type]


def authenticate(
    card: hce.HceCard, revoked: RevocationSet | None = None, now: int = NOW
) -> str | None:
    card.transmit(SELECT_SSSE)
    record = card.transmit(READ_EF05_RECORD_1)[:-2]
    challenge = bytes(range(16))
    answer = card.transmit(bytes.fromhex("0088000010") + challenge + b"\x00")[:-2]
    return hce.authenticate_offline(
        record[2:], challenge, answer, TRUST, revoked or revocations(), now
    ).reason


def test_the_genuine_e_card_passes_and_each_failure_has_its_reason() -> None:
    assert authenticate(hce.HceCard(certificate(), DEVICE)) is None
    assert (
        authenticate(hce.HceCard(certificate(), ec.generate_private_key(ec.SECP256R1())))
        == HceReason.FORGED_ANSWER
    )
    assert authenticate(hce.HceCard(certificate(), DEVICE), now=NOW + 7200) == Reason.EXPIRED
    assert (
        authenticate(hce.HceCard(certificate(), DEVICE), revocations(PSEUDONYM)) == Reason.REVOKED
    )
    tampered = bytearray(certificate())
    tampered[25] ^= 1  # inside the pseudonym
    assert authenticate(hce.HceCard(bytes(tampered), DEVICE)) == Reason.BAD_SIGNATURE
    other_issuer = hce.issue_certificate(
        hce.parse_certificate(certificate()).claims, ec.generate_private_key(ec.SECP256R1())
    )
    assert authenticate(hce.HceCard(other_issuer, DEVICE)) == Reason.BAD_SIGNATURE


def test_the_hce_card_answers_like_a_chip() -> None:
    card = hce.HceCard(certificate(), DEVICE)
    status = lambda command: card.transmit(bytes.fromhex(command))[-2:].hex().upper()
    assert status("00B2012C00") == "6986"  # nothing selected yet
    assert card.transmit(SELECT_SSSE)[-2:] == b"\x90\x00"
    assert [
        status(c)
        for c in (
            "80B2012C00",
            "0020000003123456",
            "00B2022C00",
            "00B2013400",
            "00B2012C05",
            "00A4",
        )
    ] == ["6E00", "6D00", "6A83", "6A82", "6CA8", "6700"]


def test_certificates_refuse_bad_claims() -> None:
    for change in (
        {"region": "33"},
        {"not_after": NOW - 100},
        {"not_after": NOW + 8 * 86_400},
        {"device_key": b"\x04" + bytes(64)},
    ):
        try:
            certificate(**change)
        except OfflineError as error:
            assert error.reason is Reason.MALFORMED
        else:
            raise AssertionError(change)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_fail_typed(raw: bytes) -> None:
    try:
        hce.parse_certificate(raw)
    except OfflineError:
        pass
    assert (
        hce.authenticate_offline(raw, bytes(16), bytes(64), TRUST, revocations(), NOW).reason
        is not None
    )


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10**9), st.integers(1, 7 * 86_400), st.binary(min_size=1, max_size=16))
def test_certificates_round_trip(not_before: int, lifetime: int, pseudonym: bytes) -> None:
    raw = certificate(not_before=not_before, not_after=not_before + lifetime, pseudonym=pseudonym)
    parsed = hce.parse_certificate(raw)
    assert (parsed.claims.not_before, parsed.claims.pseudonym) == (not_before, pseudonym)
