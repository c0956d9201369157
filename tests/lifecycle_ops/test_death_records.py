"""Death records (死亡人员) imported from CSV over the API: persons marked, every card ended with
all its effects, rejected rows by line and reason code, and a second import changing nothing."""

from __future__ import annotations

import pytest

from tests.helpers import World, bearer, identity_number
from tests.lifecycle_ops.conftest import new_batch, stock_card

CSV = {"Content-Type": "text/csv; charset=utf-8"}


async def post_deaths(world: World, text: str, *, dry_run: bool = False, role: str = "admin"):  # type: ignore[no-untyped-def]
    return await world.client.post(
        "/operator/v1/death-records" + ("?dry_run=true" if dry_run else ""),
        content=text.encode(),
        headers={**CSV, **world.op(role)},
    )


async def card_status(world: World, card_id: str) -> str:
    return (await world.client.get(f"/operator/v1/cards/{card_id}", headers=world.op())).json()[
        "status"
    ]


async def history_length(world: World, card_id: str) -> int:
    return len(
        (await world.client.get(f"/operator/v1/cards/{card_id}/history", headers=world.op())).json()
    )


async def test_an_import_marks_persons_ends_their_cards_and_reports_bad_rows_by_line(
    world: World,
) -> None:
    holder = await world.person_with_card()
    issued = await world.issue(holder)
    token = issued["session"]["access_token"]
    assert (await world.client.get("/holder/v1/ecard", headers=bearer(token))).status_code == 200
    other = await world.person_with_card(name="李四")
    batch = await new_batch(world, [stock_card(other["person_id"])])  # a stock card ends too
    (stock,) = batch["card_ids"]
    stranger = identity_number()

    text = (
        "\n".join(
            [
                "identity_number,died_on,source_ref",
                f"{holder['identity_number']},2026-11-30,GA-330102-2026-000123",  # 2
                f"{other['identity_number']},2026-11-29,MZ-2026-77",  # 3
                f"{holder['identity_number'][:17]}0,2026-11-30,GA-1"
                if holder["identity_number"][17] != "0"
                else f"{holder['identity_number'][:17]}1,2026-11-30,GA-1",  # 4: check digit
                f"{other['identity_number']},2026-13-01,GA-2",  # 5
                f"{stranger},2026-11-30,GA-3",  # 6: no such person
                f"{other['identity_number']},2999-01-01,GA-4",  # 7
                f"{holder['identity_number']},2026-11-30,GA-5",  # 8: again
                "",  # 9: blank, not a row
                f"{other['identity_number']},2026-11-30,张三",  # 10
            ]
        )
        + "\n"
    )
    response = await post_deaths(world, text)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["dry_run"] is False
    assert (
        report["rows_read"],
        report["persons_marked"],
        report["cards_ended"],
        report["already_deceased"],
    ) == (8, 2, 3, 0)
    assert [(r["line"], r["reason"]) for r in report["rejected"]] == [
        (4, "invalid_identity_number"),
        (5, "malformed_date"),
        (6, "unknown_person"),
        (7, "future_date"),
        (8, "duplicate_in_file"),
        (10, "invalid_source_ref"),
    ]
    assert report["rejected_total"] == 6 and not report["rejected_truncated"]
    for number in (holder["identity_number"], other["identity_number"], stranger):
        assert number not in response.text  # never echoed back

    for card in (holder["card_id"], other["card_id"], stock):
        assert await card_status(world, card) == "deceased"
    # the e-card's holder token is refused at once
    refused = await world.client.get("/holder/v1/ecard", headers=bearer(token))
    assert refused.status_code == 401, refused.text

    # the same file again changes nothing
    events = [await history_length(world, c) for c in (holder["card_id"], other["card_id"], stock)]
    again = (await post_deaths(world, text)).json()
    assert (again["persons_marked"], again["cards_ended"], again["already_deceased"]) == (0, 0, 2)
    assert [
        await history_length(world, c) for c in (holder["card_id"], other["card_id"], stock)
    ] == events

    # and the audit trail tells who did it and on which record, never the identity number
    trail = await world.client.get(
        f"/operator/v1/audit?target_id={holder['person_id']}", headers=world.op()
    )
    marked = [e for e in trail.json()["items"] if e["action"] == "person.deceased"]
    assert len(marked) == 1 and marked[0]["detail"]["source_ref"] == "GA-330102-2026-000123"
    assert holder["identity_number"] not in trail.text


async def test_a_dry_run_reports_and_changes_nothing(world: World) -> None:
    holder = await world.person_with_card()
    text = f"identity_number,died_on,source_ref\n{holder['identity_number']},2026-11-30,GA-9\n"
    report = (await post_deaths(world, text, dry_run=True)).json()
    assert (report["dry_run"], report["persons_marked"], report["cards_ended"]) == (True, 1, 1)
    assert await card_status(world, holder["card_id"]) == "active"
    assert await history_length(world, holder["card_id"]) == 1


@pytest.mark.parametrize("settings", ["embedded"], indirect=True)
async def test_a_file_is_refused_whole_when_malformed_too_large_or_not_csv(world: World) -> None:
    holder = await world.person_with_card()
    no_header = await post_deaths(world, f"{holder['identity_number']},2026-11-30,GA-1\n")
    assert no_header.status_code == 400 and no_header.json()["code"] == "death_records_invalid"
    too_many = await post_deaths(world, "identity_number,died_on,source_ref\n" + "\n" * 20_001)
    assert too_many.status_code == 413 and too_many.json()["code"] == "death_records_too_large"
    as_json = await world.client.post(
        "/operator/v1/death-records", json={"rows": []}, headers=world.op()
    )
    assert as_json.status_code == 415
    readonly = await post_deaths(world, "identity_number,died_on,source_ref\n", role="readonly")
    assert readonly.status_code == 403
    assert await card_status(world, holder["card_id"]) == "active"
