"""Differential privacy for department queries, with OpenDP's measurements (no hand-made noise).

The privacy unit is **one card's uses in one hour** (a card-hour).  The aggregation job counts at
most ``cap`` events per card-hour in ``capped`` (the first ``cap`` in time order; uses naming no
card count one each), so adding or removing one card-hour changes the vector of a query's cell
counts by at most ``cap`` in L1 — whatever cells those uses fall in, since a query's cells
partition its facts.  The vector gets discrete Laplace noise of scale ``cap / ε``
(``opendp.measurements.make_laplace`` on integers), and OpenDP's own privacy map says what one
query costs: ``ε = map(cap)``.

Card-hours in different months are different units, so queries over different months compose in
parallel: the budget is kept per department and per month of data (``ecard.statistics.budget``).
A person active in many hours is protected by group privacy: h card-hours, h·ε.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import opendp.prelude as dp

dp.enable_features("contrib")

MICRO = 1_000_000


@dataclass(frozen=True)
class NoisePlan:
    """What one query adds and costs."""

    epsilon: float  # as the caller asked
    cap: int
    scale: float
    charged_micro: int  # OpenDP's privacy map at d_in = cap, in millionths of ε (rounded up)

    @property
    def charged(self) -> float:
        return self.charged_micro / MICRO


def _measurement(scale: float) -> Any:
    return dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=scale
    )


def plan(epsilon: float, cap: int) -> NoisePlan:
    """The noise scale for ``epsilon`` at sensitivity ``cap``, and its cost per OpenDP."""
    if not (epsilon > 0 and math.isfinite(epsilon)) or cap < 1:
        raise ValueError("epsilon must be positive and finite, cap at least 1")
    scale = cap / epsilon
    cost = float(_measurement(scale).map(cap))
    return NoisePlan(epsilon, cap, scale, math.ceil(cost * MICRO - 1e-6))


def noisy_counts(values: Sequence[int], noise: NoisePlan) -> list[int]:
    """The counts with discrete Laplace noise (one invocation of the measurement)."""
    if not values:
        return []
    return [int(v) for v in _measurement(noise.scale)(list(values))]
