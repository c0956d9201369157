"""Fixtures of the statistics tests: use records written as the services write them."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence

from ecard.codes.tables import CodeVerification

#: 2026-11-10 10:00 CST, an hour in the past
HOUR = int(dt.datetime(2026, 11, 10, 2, tzinfo=dt.UTC).timestamp())
DAY = "2026-11-10"


def pseudonym(n: int) -> str:
    return hashlib.sha256(f"test-holder-{n}".encode()).hexdigest()[:32]


async def verifications(
    verifier: str,
    holders: Sequence[int],
    *,
    at: int = HOUR,
    region: str = "330000",
    result: str = "valid",
) -> None:
    """One online verification per holder number (its pseudonym), ``at`` plus a second each."""
    await CodeVerification.insert(
        *[
            CodeVerification(
                at=dt.datetime.fromtimestamp(at + i, dt.UTC),
                verifier=verifier,
                pseudonym=pseudonym(n),
                code_id=f"{i:032x}",
                region=region,
                result=result,
            )
            for i, n in enumerate(holders)
        ]
    ).run()


async def placed_verifier(world, county: str, scenarios: str = ",medical,") -> str:
    """A verifier filed for the county's province, installed at an institution of the county (as
    ``ecard directory`` links terminals to institutions)."""
    from ecard.directory.tables import DirectoryInstitution, DirectoryTerminal

    verifier = await world.new_client("verifier", regions=[county[:2] + "0000"])
    institution = f"{county[:2]}0000-test-{verifier['client_id'][-8:]}"
    await DirectoryInstitution.insert(
        DirectoryInstitution(
            id=institution,
            province=county[:2] + "0000",
            uscc="",
            name_zh="测试",
            name_en="t",
            kind="hospital",
            address_zh="",
            region=county,
            lat=30.0,
            lon=120.0,
            scenarios=scenarios,
        )
    ).run()
    await DirectoryTerminal.insert(
        DirectoryTerminal(
            id=f"{institution}/{verifier['client_id']}",
            institution=institution,
            terminal=verifier["client_id"],
            media=",qr_code,",
        )
    ).run()
    return verifier["client_id"]
