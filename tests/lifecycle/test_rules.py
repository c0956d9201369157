"""The card-life rules as a pure state machine: every status reachable, final statuses final,
usability and revocation consistent, policies resolved by region."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ecard.registry import lifecycle
from ecard.registry.lifecycle import CardStatus, TransitionRefused
from ecard.settings import CardPolicy

STATUSES = list(CardStatus)
ACTORS = ["holder", "operator", "system"]


def test_every_status_is_reachable_from_a_produced_or_new_active_card() -> None:
    seen, frontier = (
        {CardStatus.PRODUCED, CardStatus.ACTIVE},
        [CardStatus.PRODUCED, CardStatus.ACTIVE],
    )
    while frontier:
        for target in lifecycle.TRANSITIONS[frontier.pop()]:
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    assert seen == set(CardStatus)


def test_final_statuses_have_no_way_out() -> None:
    for status in lifecycle.FINAL:
        assert lifecycle.TRANSITIONS[status] == {}
        for target in CardStatus:
            with pytest.raises(TransitionRefused) as refused:
                lifecycle.check_transition(status, target, "operator")
            assert refused.value.code == "invalid_status_transition"


def test_a_pending_replacement_can_no_longer_be_undone_to_active() -> None:
    with pytest.raises(TransitionRefused):
        lifecycle.check_transition("replacement_pending", "active", "operator")


def test_a_holder_may_only_report_and_undo_a_temporary_loss() -> None:
    holder_moves = {
        (source, target)
        for source, targets in lifecycle.TRANSITIONS.items()
        for target, actors in targets.items()
        if "holder" in actors
    }
    assert holder_moves == {
        (CardStatus.ACTIVE, CardStatus.LOST_TEMPORARY),
        (CardStatus.LOST_TEMPORARY, CardStatus.ACTIVE),
        (CardStatus.ISSUED, CardStatus.ACTIVE),
    }
    with pytest.raises(TransitionRefused) as refused:
        lifecycle.check_transition("lost", "active", "holder")
    assert refused.value.code == "forbidden"


@given(st.lists(st.tuples(st.sampled_from(STATUSES), st.sampled_from(ACTORS)), max_size=40))
def test_any_sequence_of_attempts_keeps_the_rules(attempts: list[tuple[CardStatus, str]]) -> None:
    """Random attempts from an active card: refused moves change nothing; once final, always final;
    usable exactly when active; revoked exactly when it was once held and is not active now."""
    status = CardStatus.ACTIVE
    for target, actor in attempts:
        try:
            lifecycle.check_transition(status, target, actor)  # type: ignore[arg-type]
        except TransitionRefused:
            assert (
                target not in lifecycle.TRANSITIONS[status]
                or actor not in lifecycle.TRANSITIONS[status][target]
            )
            continue
        assert status not in lifecycle.FINAL
        status = target
        assert status not in lifecycle.STOCK  # a card never goes back to stock
        far_future = dt.date(2999, 1, 1)
        assert lifecycle.is_usable(
            lifecycle.CardFacts(status, far_future), dt.date(2026, 1, 1)
        ) == (status == CardStatus.ACTIVE)
        assert lifecycle.is_revoked(status) == (status != CardStatus.ACTIVE)


@given(st.text(max_size=30))
def test_unknown_statuses_are_refused_as_validation_errors(value: str) -> None:
    if value in {s.value for s in CardStatus}:
        return
    with pytest.raises(TransitionRefused) as refused:
        lifecycle.check_transition(value, "active", "operator")
    assert refused.value.code == "validation_failed"


def test_expiry_policy_decides_only_for_expired_active_cards() -> None:
    today = dt.date(2026, 12, 3)
    expired = lifecycle.CardFacts("active", dt.date(2026, 12, 2))
    last_day = lifecycle.CardFacts("active", today)
    assert lifecycle.is_usable(expired, today, "continue")
    assert not lifecycle.is_usable(expired, today, "suspend")
    assert lifecycle.is_usable(last_day, today, "suspend")  # valid through its expiry date
    assert not lifecycle.is_usable(
        lifecycle.CardFacts("lost", dt.date(2999, 1, 1)), today, "continue"
    )


def test_policies_resolve_by_region_then_province_then_default() -> None:
    policies = {
        "*": CardPolicy(temporary_loss_days=7),
        "440000": CardPolicy(temporary_loss_days=15, expired_card="suspend"),
        "440300": CardPolicy(temporary_loss_days=3),
    }
    assert lifecycle.policy_key(policies, "440300") == "440300"
    assert lifecycle.policy_key(policies, "440100") == "440000"
    assert lifecycle.policy_key(policies, "330000") == "*"
    assert lifecycle.policy_key({}, "330000") is None
    expired = dt.date(2020, 1, 1)
    assert not lifecycle.card_usable(policies, "active", expired, "440100", dt.date(2026, 1, 1))
    assert lifecycle.card_usable(policies, "active", expired, "330000", dt.date(2026, 1, 1))


def test_a_temporary_loss_lapses_after_the_province_period() -> None:
    assert lifecycle.temporary_loss_lapses_at(1_000.0, 7) == 1_000.0 + 7 * 86_400
