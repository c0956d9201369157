"""The filing workflow of (十八) as a pure module: every allowed step, every refused one."""

from __future__ import annotations

import pytest

from ecard.partners import workflow
from ecard.partners.workflow import FilingStatus as S
from ecard.partners.workflow import Step, StepRefused


def test_the_way_to_live_is_four_steps_in_order() -> None:
    status = S.SUBMITTED
    for step, expected in zip(
        workflow.TO_LIVE, (S.ASSESSED, S.SECURITY_TESTED, S.APPROVED, S.LIVE), strict=True
    ):
        status = workflow.next_status(status, step)
        assert status == expected
    assert workflow.works(status)


@pytest.mark.parametrize(
    ("status", "step"),
    [
        (S.SUBMITTED, Step.APPROVE),  # skips the assessment and the security test
        (S.SUBMITTED, Step.GO_LIVE),
        (S.ASSESSED, Step.APPROVE),  # skips the security test
        (S.SECURITY_TESTED, Step.GO_LIVE),  # not approved
        (S.LIVE, Step.REJECT),  # live filings are suspended, not rejected
        (S.REJECTED, Step.RESUME),  # rejection is final
        (S.REJECTED, Step.ASSESS),
        (S.APPROVED, Step.RESUME),
        ("active", Step.SUSPEND),  # an older status is no status of the workflow
        (S.LIVE, "delete"),
    ],
)
def test_a_step_out_of_order_is_refused(status: str, step: str) -> None:
    with pytest.raises(StepRefused):
        workflow.next_status(status, step)


def test_only_live_works() -> None:
    assert [s for s in S if workflow.works(s)] == [S.LIVE]


def test_live_and_suspended_alternate_and_rejection_is_final() -> None:
    assert workflow.next_status(S.LIVE, Step.SUSPEND) == S.SUSPENDED
    assert workflow.next_status(S.SUSPENDED, Step.RESUME) == S.LIVE
    assert workflow.next_status(S.SUSPENDED, Step.REJECT) == S.REJECTED
    assert workflow.allowed_steps(S.REJECTED) == []


def test_the_older_paths_walk_the_shortest_way() -> None:
    assert workflow.path_to(S.SUBMITTED, S.LIVE) == list(workflow.TO_LIVE)
    assert workflow.path_to(S.ASSESSED, S.APPROVED) == [Step.SECURITY_TEST, Step.APPROVE]
    assert workflow.path_to(S.LIVE, S.LIVE) == []
    with pytest.raises(StepRefused):
        workflow.path_to(S.REJECTED, S.LIVE)


def test_the_older_vocabularies() -> None:
    assert workflow.client_status(S.LIVE) == "active"
    assert {workflow.client_status(s) for s in S if s != S.LIVE} == {"disabled"}
    assert workflow.oidc_status(S.ASSESSED) == "pending"
    assert workflow.oidc_status(S.SUSPENDED) == "suspended"
    assert workflow.FROM_CLIENT_STATUS == {"active": S.LIVE, "disabled": S.SUSPENDED}
