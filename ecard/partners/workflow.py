"""The filing workflow of seed clause (十八), as data and pure functions (no I/O).

A filing is submitted, assessed for feasibility (可行性评估), security-tested (安全测试),
approved and taken live; a live filing may be suspended and resumed; a filing not yet live, or
suspended, may be rejected, which is final.  Only a ``live`` filing works: its credentials
authenticate nothing in any other status.
"""

from __future__ import annotations

from enum import StrEnum


class FilingStatus(StrEnum):
    SUBMITTED = "submitted"
    ASSESSED = "assessed"  # 可行性评估 passed
    SECURITY_TESTED = "security_tested"  # 安全测试 passed
    APPROVED = "approved"
    LIVE = "live"
    SUSPENDED = "suspended"
    REJECTED = "rejected"


class Step(StrEnum):
    ASSESS = "assess"
    SECURITY_TEST = "security_test"
    APPROVE = "approve"
    GO_LIVE = "go_live"
    SUSPEND = "suspend"
    RESUME = "resume"
    REJECT = "reject"


S = FilingStatus

#: step -> (the statuses it may be taken from, the status it leads to)
STEPS: dict[Step, tuple[frozenset[FilingStatus], FilingStatus]] = {
    Step.ASSESS: (frozenset({S.SUBMITTED}), S.ASSESSED),
    Step.SECURITY_TEST: (frozenset({S.ASSESSED}), S.SECURITY_TESTED),
    Step.APPROVE: (frozenset({S.SECURITY_TESTED}), S.APPROVED),
    Step.GO_LIVE: (frozenset({S.APPROVED}), S.LIVE),
    Step.SUSPEND: (frozenset({S.LIVE}), S.SUSPENDED),
    Step.RESUME: (frozenset({S.SUSPENDED}), S.LIVE),
    Step.REJECT: (
        frozenset({S.SUBMITTED, S.ASSESSED, S.SECURITY_TESTED, S.APPROVED, S.SUSPENDED}),
        S.REJECTED,
    ),
}

#: The steps from ``submitted`` to ``live``, in order.
TO_LIVE: tuple[Step, ...] = (Step.ASSESS, Step.SECURITY_TEST, Step.APPROVE, Step.GO_LIVE)


class StepRefused(ValueError):
    """``step`` cannot be taken from ``status``."""

    def __init__(self, status: str, step: str) -> None:
        super().__init__(f"step {step} is not allowed from status {status}")
        self.status, self.step = status, step


def next_status(status: str, step: str) -> FilingStatus:
    """The status ``step`` leads to from ``status``; :class:`StepRefused` when not allowed (an
    unknown status or step included)."""
    try:
        sources, target = STEPS[Step(step)]
        current = FilingStatus(status)
    except ValueError:
        raise StepRefused(status, step) from None
    if current not in sources:
        raise StepRefused(status, step)
    return target


def allowed_steps(status: str) -> list[Step]:
    """The steps that may be taken from ``status``, in declaration order."""
    return [step for step, (sources, _) in STEPS.items() if status in sources]


def path_to(status: str, target: str) -> list[Step]:
    """The shortest sequence of steps from ``status`` to ``target`` (empty when equal);
    :class:`StepRefused` when ``target`` cannot be reached.  Used by the older paths, which name a
    target status instead of a step."""
    frontier: list[tuple[str, list[Step]]] = [(status, [])]
    seen = {status}
    while frontier:
        current, steps = frontier.pop(0)
        if current == target:
            return steps
        for step in allowed_steps(current):
            following = STEPS[step][1]
            if following not in seen:
                seen.add(following)
                frontier.append((following, [*steps, step]))
    raise StepRefused(status, f"to {target}")


def works(status: str) -> bool:
    """The one rule: only a live filing authenticates and is served."""
    return status == FilingStatus.LIVE


# --- the older vocabularies -----------------------------------------------------------------

#: ``api_client.status`` before filings, and what it became.
FROM_CLIENT_STATUS: dict[str, FilingStatus] = {"active": S.LIVE, "disabled": S.SUSPENDED}

#: ``oidc_client.status`` before filings, and what it became.
FROM_OIDC_STATUS: dict[str, FilingStatus] = {
    "pending": S.SUBMITTED,
    "approved": S.APPROVED,
    "live": S.LIVE,
    "suspended": S.SUSPENDED,
    "rejected": S.REJECTED,
}


def client_status(status: str) -> str:
    """A filing's status as ``/operator/v1/clients`` (and terminals) show it: active or disabled."""
    return "active" if works(status) else "disabled"


def oidc_status(status: str) -> str:
    """A filing's status as ``/operator/v1/oidc/clients`` shows it."""
    if status in (S.SUBMITTED, S.ASSESSED, S.SECURITY_TESTED):
        return "pending"
    return status
