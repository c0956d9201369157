"""The terminal's offline package: lists and limits under one signature; never older than held."""

from __future__ import annotations

import msgspec
import pytest

from ecard.codes.format import CodeSigner
from ecard.offline import (
    LoadedPackage,
    OfflineError,
    OfflineLimits,
    OfflinePackage,
    Reason,
    Usage,
    build_revocation_list,
    card_reference,
    check_offline_acceptance,
    load_offline_package,
    sign_offline_package,
    sign_revocation_list,
    sign_trust_list,
    verify,
)
from tests.offline.helpers import DAY, NOW, ZHEJIANG, new_key, sign_code, trust_list, trusted

ROOT = new_key()
ISSUER = new_key()
LIMITS = OfflineLimits(
    max_offline_seconds=3 * DAY, max_offline_acceptances=500, accepted_kinds=["card", "code"]
)


def package(
    version: int, *, lists_version: int = 1, limits: OfflineLimits = LIMITS
) -> OfflinePackage:
    trust = trust_list(trusted(ISSUER, ZHEJIANG), version=lists_version, next_update=NOW + 7 * DAY)
    revocations = build_revocation_list(
        [], version=lists_version, issued_at=NOW - 60, next_update=NOW + 7 * DAY
    )
    return OfflinePackage(
        version=version,
        issued_at=NOW - 60,
        trust_list=sign_trust_list(trust, ROOT),
        revocation_list=sign_revocation_list(revocations, ROOT),
        limits=limits,
    )


def load(token: str, now: int = NOW, held: LoadedPackage | None = None) -> LoadedPackage:
    return load_offline_package(token, ROOT.public_key(), now, held=held)


def refusal(token: str, now: int = NOW, held: LoadedPackage | None = None) -> Reason:
    with pytest.raises(OfflineError) as refused:
        load(token, now, held)
    return refused.value.reason


def test_a_terminal_verifies_codes_offline_with_its_package() -> None:
    loaded = load(sign_offline_package(package(4), ROOT))
    code = sign_code(CodeSigner(ZHEJIANG, ISSUER), usage=Usage.TERMINAL)
    assert check_offline_acceptance(loaded, "code", acceptances_since_sync=0, now=NOW) is None
    assert verify(code, loaded.trust, loaded.revocations, NOW, usages={Usage.TERMINAL}).ok


def test_a_package_with_a_bad_signature_is_refused() -> None:
    assert refusal(sign_offline_package(package(4), new_key())) is Reason.BAD_SIGNATURE


def test_a_package_with_lists_signed_by_another_key_is_refused() -> None:
    forged_list = sign_trust_list(trust_list(trusted(new_key(), ZHEJIANG)), new_key())
    honest = msgspec.structs.replace(package(4), trust_list=forged_list)
    assert refusal(sign_offline_package(honest, ROOT)) is Reason.BAD_SIGNATURE


def test_an_older_package_than_the_one_held_is_refused() -> None:
    held = load(sign_offline_package(package(4), ROOT))
    assert refusal(sign_offline_package(package(3), ROOT), held=held) is Reason.ROLLBACK
    assert (
        load(sign_offline_package(package(5, lists_version=2), ROOT), held=held).content.version
        == 5
    )


def test_a_newer_package_carrying_older_lists_is_refused() -> None:
    held = load(sign_offline_package(package(4, lists_version=2), ROOT))
    assert (
        refusal(sign_offline_package(package(5, lists_version=1), ROOT), held=held)
        is Reason.ROLLBACK
    )


def test_a_package_past_its_offline_period_is_refused() -> None:
    assert (
        refusal(sign_offline_package(package(1), ROOT), now=NOW + 4 * DAY)
        is Reason.OFFLINE_TOO_LONG
    )


def test_other_signed_documents_are_not_packages() -> None:
    assert refusal(sign_trust_list(trust_list(), ROOT)) is Reason.WRONG_TYPE


def test_offline_limits() -> None:
    cards_only = OfflineLimits(
        max_offline_seconds=DAY, max_offline_acceptances=2, accepted_kinds=["card"]
    )
    loaded = load(sign_offline_package(package(1, limits=cards_only), ROOT))
    assert check_offline_acceptance(loaded, "code", 0, NOW) is Reason.KIND_NOT_ACCEPTED
    assert check_offline_acceptance(loaded, "card", 1, NOW) is None
    assert check_offline_acceptance(loaded, "card", 2, NOW) is Reason.OFFLINE_LIMIT_REACHED
    assert check_offline_acceptance(loaded, "card", 0, NOW + DAY) is Reason.OFFLINE_TOO_LONG


def test_the_platform_refuses_to_sign_limits_no_terminal_would_load() -> None:
    no_time = OfflineLimits(
        max_offline_seconds=0, max_offline_acceptances=1, accepted_kinds=["card"]
    )
    with pytest.raises(OfflineError) as refused:
        sign_offline_package(package(1, limits=no_time), ROOT)
    assert refused.value.reason is Reason.MALFORMED


def test_the_chip_blacklist_travels_under_the_package_signature() -> None:
    lost_chip = card_reference("330000D15600000000000000000000A1")
    blacklisted = msgspec.structs.replace(package(5), revoked_cards=[lost_chip])
    loaded = load(sign_offline_package(blacklisted, ROOT))
    assert lost_chip in loaded.revoked_cards
    assert (
        card_reference("330000d15600000000000000000000a1") == lost_chip
    )  # case-blind, as chips differ
    assert "330000D156" not in lost_chip  # a digest, never the 卡识别码 itself
    assert load(sign_offline_package(package(6), ROOT)).revoked_cards == frozenset()
