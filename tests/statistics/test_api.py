"""The statistics endpoints on both backends: departments' scope, grants and budget; operators'
k-suppressed figures; bad input as 400s with stable codes."""

from __future__ import annotations

import httpx
import pytest

from ecard.statistics import aggregate
from tests.helpers import World, basic, platform_of
from tests.statistics.conftest import HOUR, placed_verifier, verifications

USAGE = "/department/v1/statistics/usage"
OPERATOR_USAGE = "/operator/v1/statistics/usage"
RANGE = {"since": "2026-11-10", "until": "2026-11-10"}


async def _uses(client: httpx.AsyncClient, world: World) -> None:
    """330102: 200 uses by 40 cards; 330206: a cell of 9 uses by 9 cards; Shanghai 310104: 50
    uses by 25 cards."""
    hangzhou = await placed_verifier(world, "330102")
    ningbo = await placed_verifier(world, "330206")
    shanghai = await placed_verifier(world, "310104")
    await verifications(hangzhou, [n % 40 for n in range(200)])
    await verifications(ningbo, range(1000, 1009))
    await verifications(shanghai, [2000 + n % 25 for n in range(50)], region="310000")
    await aggregate.aggregate_hours(platform_of(client), [HOUR])


async def _department(world: World, regions: list[str], fields: list[str]) -> dict[str, str]:
    department = await world.new_client("department", regions=regions)
    granted = await world.client.put(
        f"/operator/v1/statistics/departments/{department['client_id']}",
        json={"fields": fields},
        headers=world.op(),
    )
    assert granted.status_code == 200, granted.text
    return department


def _auth(department: dict[str, str]) -> dict[str, str]:
    return basic(department["client_id"], department["client_secret"])


async def test_operators_see_exact_figures_without_the_small_cell(
    client: httpx.AsyncClient, world: World
) -> None:
    await _uses(client, world)
    for group_by in ("region", "province", "day", "", "prefecture,result"):
        response = await client.get(
            OPERATOR_USAGE, params={**RANGE, "group_by": group_by}, headers=world.op("readonly")
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["k"] == 10 and body["suppressed"] == 1
        assert sum(c["events"] for c in body["cells"]) == 250  # the 9 is in no total
        assert all(c["events"] >= 10 and c["cards"] >= 10 for c in body["cells"])
    refused = await client.get(OPERATOR_USAGE, params=RANGE, headers=world.op("registry_admin"))
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"


async def test_a_department_gets_noisy_figures_of_its_region_only(
    client: httpx.AsyncClient, world: World
) -> None:
    await _uses(client, world)
    department = await _department(world, ["330000"], ["hrss", "livelihood", "government"])
    ungranted = await world.new_client("department", regions=["330000"])
    response = await client.get(
        USAGE, params={**RANGE, "group_by": "region"}, headers=_auth(ungranted)
    )
    assert response.status_code == 403
    assert response.json()["code"] == "statistics_not_granted"
    other = await client.get(
        USAGE, params={**RANGE, "group_by": "region", "region": "310104"}, headers=_auth(department)
    )
    assert other.status_code == 403 and other.json()["code"] == "statistics_region_not_entitled"
    response = await client.get(
        USAGE,
        params={**RANGE, "group_by": "region,scenario", "epsilon": "1"},
        headers=_auth(department),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["noise"]["mechanism"] == "discrete_laplace"
    assert body["noise"]["charged_epsilon"] == pytest.approx(1.0)
    assert body["budget"] == [{"month": "2026-11", "spent_epsilon": 1.0, "limit_epsilon": 4.0}]
    regions = {c["region"] for c in body["cells"]}
    assert regions <= {"330000", "330102", "330206"} and "330102" in regions  # never Shanghai
    assert all(c["events"] >= 10 and "cards" not in c for c in body["cells"])
    # only scenarios of the granted fields; a noisy empty cell may show (that is the noise)
    granted = {"hrss", "government", "medical", "transport", "culture", "tourism"}
    assert {c["scenario"] for c in body["cells"]} <= granted
    assert any(c["region"] == "330102" and c["scenario"] == "medical" for c in body["cells"])
    # the Shanghai department sees Shanghai only
    shanghai = await _department(world, ["310000"], ["livelihood"])
    theirs = await client.get(
        USAGE, params={**RANGE, "group_by": "province"}, headers=_auth(shanghai)
    )
    assert {c["province"] for c in theirs.json()["cells"]} <= {"310000"}
    refused = await client.get(USAGE, params={**RANGE, "region": "330102"}, headers=_auth(shanghai))
    assert refused.json()["code"] == "statistics_region_not_entitled"


async def test_the_budget_runs_out_with_a_clear_error(
    client: httpx.AsyncClient, world: World
) -> None:
    await _uses(client, world)
    department = await _department(world, ["330000"], ["hrss"])
    params = {**RANGE, "group_by": "medium", "epsilon": "1.0"}
    for _ in range(4):  # 4 × ε 1.0 = the month's 4.0
        assert (
            await client.get(USAGE, params=params, headers=_auth(department))
        ).status_code == 200
    refused = await client.get(USAGE, params=params, headers=_auth(department))
    assert refused.status_code == 403
    assert refused.json()["code"] == "statistics_budget_exhausted"
    # another month's data has its own budget
    later = await client.get(
        USAGE,
        params={**params, "since": "2026-12-01", "until": "2026-12-02"},
        headers=_auth(department),
    )
    assert later.status_code == 200


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "statistics_query_invalid"),
        ({"since": "2026-11-31", "until": "2026-12-01"}, "statistics_query_invalid"),
        ({"since": "10/11/2026", "until": "2026-12-01"}, "statistics_query_invalid"),
        ({"since": "2026-12-02", "until": "2026-12-01"}, "statistics_query_invalid"),
        ({"since": "2020-01-01", "until": "2026-12-01"}, "statistics_range_too_large"),
        ({**RANGE, "group_by": "person"}, "statistics_dimension_unknown"),
        ({**RANGE, "group_by": "card_number"}, "statistics_dimension_unknown"),
        ({**RANGE, "group_by": "day,day"}, "statistics_dimension_unknown"),
        ({**RANGE, "region": "33'--"}, "statistics_query_invalid"),
        ({**RANGE, "epsilon": "abc"}, "statistics_epsilon_invalid"),
        ({**RANGE, "epsilon": "nan"}, "statistics_epsilon_invalid"),
        ({**RANGE, "epsilon": "5"}, "statistics_epsilon_invalid"),
        ({**RANGE, "epsilon": "0"}, "statistics_epsilon_invalid"),
        (
            {
                "since": "2026-09-01",
                "until": "2026-11-30",
                "group_by": "day,medium,channel,scenario",
            },
            "statistics_too_many_cells",
        ),
    ],
)
async def test_bad_input_is_a_400_with_a_stable_code(
    client: httpx.AsyncClient, world: World, params: dict[str, str], code: str
) -> None:
    department = await _department(world, ["330000"], ["hrss", "livelihood"])
    response = await client.get(USAGE, params=params, headers=_auth(department))
    assert response.status_code == 400, response.text
    assert response.json()["code"] == code
    spent = await client.get(USAGE, params={**RANGE, "epsilon": "1"}, headers=_auth(department))
    assert spent.json()["budget"][0]["spent_epsilon"] == 1.0  # refusals cost nothing


async def test_grants_name_known_fields_of_department_filings(
    client: httpx.AsyncClient, world: World
) -> None:
    url = f"/operator/v1/statistics/departments/{world.department['client_id']}"
    bad = await client.put(url, json={"fields": ["medical"]}, headers=world.op())
    assert bad.status_code == 400 and bad.json()["code"] == "statistics_field_unknown"
    channel = f"/operator/v1/statistics/departments/{world.channel['client_id']}"
    missing = await client.put(channel, json={"fields": ["hrss"]}, headers=world.op())
    assert missing.status_code == 404
    readonly = await client.put(url, json={"fields": ["hrss"]}, headers=world.op("readonly"))
    assert readonly.status_code == 403
