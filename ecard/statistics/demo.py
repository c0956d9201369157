"""``seed_demo_usage(platform)``: use for ``ecard demo init``, enough for non-empty charts.

It writes online verification records (``code_verification``, what the verification pipeline
records: no personal data, a card pseudonym per use) at the places the directory demo registered
(its terminals, linked to institutions of several counties and scenarios), over the last
``days`` days, from a pool of synthetic card pseudonyms (no person or card is created; a tenth are
cards of another province), then runs the aggregation job over those days.  Deterministic for a
seed; idempotent: its rows carry ``demo`` code ids and are replaced on each run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random

from ecard.codes.tables import CodeVerification
from ecard.platform import Platform
from ecard.statistics import aggregate
from ecard.statistics import dimensions as dims
from ecard.terminal.tables import Terminal

DEMO_CODE_PREFIX = "demo"
REFUSALS = ("expired", "already_used", "card_not_active")


async def seed_demo_usage(
    platform: Platform, *, days: int = 30, per_day: int = 40, holders: int = 400, seed: int = 20
) -> dict[str, int]:
    """Seed ``per_day`` verifications per place per day; returns how many rows and facts."""
    rng = random.Random(seed)  # noqa: S311 (demo data, not security)
    places = [
        r["id"]
        for r in await Terminal.select(Terminal.id).where(
            Terminal.region.like(platform.settings.region_code[:2] + "%")
        )
    ]
    await CodeVerification.delete().where(CodeVerification.code_id.like(DEMO_CODE_PREFIX + "%"))
    if not places:
        return {"verifications": 0, "facts": 0}
    own = platform.settings.region_code[:2] + "0000"
    other = "310000" if own != "310000" else "330000"
    pool = [
        hashlib.sha256(f"demo-holder-{seed}-{i}".encode()).hexdigest()[:32] for i in range(holders)
    ]
    now = int(dt.datetime.now(dt.UTC).timestamp())
    first_day = now - (days - 1) * dims.DAY
    rows = []
    serial = 0
    for day in range(days):
        for place in places:
            weight = 0.75 + 0.25 * (hashlib.sha256(place.encode()).digest()[0] % 3)
            for _ in range(int(per_day * weight)):
                serial += 1
                at = min(first_day + day * dims.DAY + rng.randrange(-12 * 3600, 0), now)
                holder = rng.choice(pool)
                region = other if int(holder[:2], 16) < 26 else own
                result = "valid" if rng.random() < 0.93 else rng.choice(REFUSALS)
                rows.append(
                    CodeVerification(
                        at=dt.datetime.fromtimestamp(at, dt.UTC),
                        verifier=place,
                        pseudonym=holder,
                        code_id=f"{DEMO_CODE_PREFIX}{serial:028x}",
                        region=region,
                        result=result,
                    )
                )
    for start in range(0, len(rows), 500):
        await CodeVerification.insert(*rows[start : start + 500]).run()
    done = await aggregate.aggregate_hours(
        platform, aggregate.hours_between(first_day - dims.DAY, now + 1)
    )
    return {"verifications": len(rows), "facts": done.facts}
