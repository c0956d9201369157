"""``seed_demo``: two provinces' worth of institutions and applications over several scenarios,
searchable at once, and idempotent."""

from __future__ import annotations

import httpx

from ecard.directory.demo import seed_demo
from tests.helpers import platform_of


async def test_the_demo_directory(client: httpx.AsyncClient) -> None:
    counts = await seed_demo(platform_of(client))
    assert set(counts) == {"330000", "310000"} and all(n >= 5 for n in counts.values())
    assert await seed_demo(platform_of(client)) == counts  # again: updated, not duplicated

    async def total(path: str, **params) -> int:
        response = await client.get(path, params=params)
        assert response.status_code == 200, response.text
        return response.json()["total"]

    assert await total("/directory/v1/institutions", region="33") == 7
    assert await total("/directory/v1/institutions", region="31") == 5
    assert await total("/directory/v1/applications", region="310101") == 5
    assert await total("/directory/v1/institutions", medium="chip_card", region="33") == 4
    assert await total("/directory/v1/institutions", scenario="medical") == 4
    near = await client.get(
        "/directory/v1/institutions", params={"lat": 31.23, "lon": 121.475, "radius": 3000}
    )
    items = near.json()["items"]
    assert len(items) >= 3 and {i["entry"]["province"] for i in items} == {"310000"}
    distances = [i["nearby"]["distance_m"] for i in items]
    assert distances == sorted(distances) and distances[-1] <= 3000
