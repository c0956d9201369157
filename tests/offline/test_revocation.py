"""The revocation list (黑名单), full and as deltas: a holder ends up with exactly the platform's
set or refuses the update."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecard.offline import (
    OfflineError,
    Reason,
    RevocationList,
    RevocationSet,
    RevokedCard,
    apply_revocation_delta,
    build_revocation_delta,
    build_revocation_list,
    load_revocation_list,
    sign_revocation_delta,
    sign_revocation_list,
    sign_trust_list,
)
from ecard.offline.es256 import b64url_decode, sign_jws
from ecard.offline.revocation import set_digest
from tests.offline.helpers import BEIJING, DAY, NOW, ZHEJIANG, new_key, trust_list

ROOT = new_key()
REASON_WORDS = ("lost", "frozen", "cancelled", "deceased", "other", "reason", "revoked_at")


def card(n: int, region: str = ZHEJIANG) -> RevokedCard:
    return RevokedCard(region=region, pseudonym=n.to_bytes(16, "big"))


def full(entries: list[RevokedCard], version: int) -> RevocationList:
    return build_revocation_list(
        entries, version=version, issued_at=NOW - 60, next_update=NOW + DAY
    )


def load(revocation_list: RevocationList, **options: int) -> RevocationSet:
    return load_revocation_list(
        sign_revocation_list(revocation_list, ROOT), ROOT.public_key(), NOW, **options
    )


def test_a_signed_list_loads_and_answers_lookups() -> None:
    state = load(full([card(1), card(2, BEIJING)], version=3))
    assert state.version == 3
    assert state.lookup(ZHEJIANG, card(1).pseudonym) == card(1)
    assert state.lookup(BEIJING, card(2).pseudonym) == card(2, BEIJING)
    assert state.lookup(ZHEJIANG, card(2).pseudonym) is None


def test_a_list_says_which_cards_and_nothing_about_why_or_when() -> None:
    """A pseudonym is in every code and e-license of its holder: a reason or an exact time next
    to it would tell every verifier who ever saw one of them (of a death, say)."""
    token = sign_revocation_list(full([card(1), card(2, BEIJING)], version=3), ROOT)
    payload = msgspec.json.decode(b64url_decode(token.split(".")[1]))
    assert set(payload) == {"version", "issued_at", "next_update", "digest", "entries"}
    assert all(set(entry) == {"region", "pseudonym"} for entry in payload["entries"])
    assert not any(
        word in token_text for word in REASON_WORDS for token_text in (token, str(payload))
    )


def test_an_old_list_is_refused_once_past_its_bounds_whenever_it_is_fetched() -> None:
    """A list keeps the time it was published: fetched again a day later it is the same document,
    and as stale as it then is; a verifier may also bound the age itself."""
    token = sign_revocation_list(full([card(1)], version=3), ROOT)
    assert token == sign_revocation_list(full([card(1)], version=3), ROOT)  # deterministic
    assert load_revocation_list(token, ROOT.public_key(), NOW + DAY - 60).version == 3
    for now, max_age in ((NOW + DAY + 60, None), (NOW + 600, 300)):
        with pytest.raises(OfflineError) as refused:
            load_revocation_list(token, ROOT.public_key(), now, max_age_seconds=max_age)
        assert refused.value.reason is Reason.STALE_REVOCATION_LIST


def test_a_format_1_list_is_refused() -> None:
    """Lists of the earlier format (with reasons) have another type: never loaded as format 2."""
    payload = msgspec.json.encode(
        {
            "version": 1,
            "issued_at": NOW - 60,
            "next_update": NOW + DAY,
            "digest": bytes(32),
            "entries": [
                {"region": ZHEJIANG, "pseudonym": bytes(16), "reason": "lost", "revoked_at": NOW}
            ],
        }
    )
    with pytest.raises(OfflineError) as refused:
        load_revocation_list(
            sign_jws(payload, ROOT, "ecard-revocation-list+json"), ROOT.public_key(), NOW
        )
    assert refused.value.reason is Reason.WRONG_TYPE


def test_freshness_rollback_and_kind_are_checked() -> None:
    token = sign_revocation_list(full([card(1)], version=3), ROOT)
    for now, held, reason in (
        (NOW + 2 * DAY, 0, Reason.STALE_REVOCATION_LIST),
        (NOW - 3600, 0, Reason.NOT_YET_VALID),
        (NOW, 4, Reason.ROLLBACK),
    ):
        with pytest.raises(OfflineError) as refused:
            load_revocation_list(token, ROOT.public_key(), now, held_version=held)
        assert refused.value.reason is reason
    with pytest.raises(OfflineError) as refused:
        load_revocation_list(sign_trust_list(trust_list(), ROOT), ROOT.public_key(), NOW)
    assert refused.value.reason is Reason.WRONG_TYPE


def test_a_list_whose_digest_does_not_match_its_entries_is_refused() -> None:
    honest = full([card(1), card(2)], version=1)
    dishonest = msgspec.structs.replace(honest, entries=honest.entries[:1])
    with pytest.raises(OfflineError) as refused:
        sign_revocation_list(dishonest, ROOT)
    assert refused.value.reason is Reason.MALFORMED


cards = st.builds(card, st.integers(1, 40), st.sampled_from([ZHEJIANG, BEIJING]))


@settings(max_examples=60, deadline=None)
@given(st.lists(cards, max_size=15), st.lists(cards, max_size=15))
def test_a_delta_takes_a_holder_of_version_n_to_exactly_version_m(
    old_entries: list[RevokedCard], new_entries: list[RevokedCard]
) -> None:
    old = full(list({e.ref: e for e in old_entries}.values()), version=5)
    new = full(list({e.ref: e for e in new_entries}.values()), version=9)
    holder = load(old)
    delta = sign_revocation_delta(build_revocation_delta(old, new), ROOT)
    updated = apply_revocation_delta(holder, delta, ROOT.public_key(), NOW)
    assert updated.version == 9
    assert updated.by_card == {e.ref: e for e in new.entries}
    assert updated.digest == set_digest(new.entries) == new.digest


def test_a_delta_from_another_base_is_refused() -> None:
    v1, v2, v3 = (full([card(i) for i in range(n)], version=n) for n in (1, 2, 3))
    delta_2_to_3 = sign_revocation_delta(build_revocation_delta(v2, v3), ROOT)
    with pytest.raises(OfflineError) as refused:
        apply_revocation_delta(load(v1), delta_2_to_3, ROOT.public_key(), NOW)
    assert refused.value.reason is Reason.DELTA_BASE_MISMATCH


def test_a_delta_that_does_not_produce_the_signed_set_is_refused() -> None:
    old, new = full([card(1)], version=1), full([card(1), card(2), card(3)], version=2)
    incomplete = msgspec.structs.replace(build_revocation_delta(old, new), added=[card(2)])
    with pytest.raises(OfflineError) as refused:
        apply_revocation_delta(
            load(old), sign_revocation_delta(incomplete, ROOT), ROOT.public_key(), NOW
        )
    assert refused.value.reason is Reason.DELTA_DIGEST_MISMATCH


def test_a_delta_signed_by_another_key_is_refused() -> None:
    old, new = full([], version=1), full([card(1)], version=2)
    forged = sign_revocation_delta(build_revocation_delta(old, new), new_key())
    with pytest.raises(OfflineError) as refused:
        apply_revocation_delta(load(old), forged, ROOT.public_key(), NOW)
    assert refused.value.reason is Reason.BAD_SIGNATURE


def test_a_removed_card_is_accepted_again_after_the_delta() -> None:
    old, new = full([card(1), card(2)], version=1), full([card(2)], version=2)
    delta = build_revocation_delta(old, new)
    assert [c.pseudonym for c in delta.removed] == [card(1).pseudonym] and delta.added == []
    updated = apply_revocation_delta(
        load(old), sign_revocation_delta(delta, ROOT), ROOT.public_key(), NOW
    )
    assert updated.lookup(ZHEJIANG, card(1).pseudonym) is None


def test_duplicate_cards_are_refused() -> None:
    with pytest.raises(OfflineError) as refused:
        full([card(1), card(1)], version=1)
    assert refused.value.reason is Reason.MALFORMED
