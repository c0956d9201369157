"""The rules a batch of stock cards must keep, as a pure function of the batch and of what the
registry holds: every problem named by the card's index, the field and a code."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from ecard.registry import schemas
from ecard.registry.stock import PersonFacts, RowProblem, batch_problems

ALIVE = PersonFacts(deceased=False, has_stock_card=False)


def card(
    person: str = "p1", number: str = "S000000001", code: str = "AA000001", **dates: dt.date
) -> schemas.StockCard:
    return schemas.StockCard(
        person_id=person,
        card_number=number,
        chip_serial="00AA0001",
        identification_code=code,
        issue_date=dates.get("issue", dt.date(2026, 1, 1)),
        expiry_date=dates.get("expiry", dt.date(2036, 1, 1)),
    )


def test_a_good_batch_has_no_problem() -> None:
    cards = [card("p1", "S000000001", "AA000001"), card("p2", "S000000002", "AA000002")]
    assert batch_problems(cards, {"p1": ALIVE, "p2": ALIVE}, set(), set()) == []


def test_each_rule_names_the_card_and_field() -> None:
    persons = {
        "p1": ALIVE,
        "dead": PersonFacts(deceased=True, has_stock_card=False),
        "stocked": PersonFacts(deceased=False, has_stock_card=True),
    }
    cards = [
        card("p1", "S000000001", "AA000001"),
        card("ghost", "S000000002", "AA000002"),
        card("dead", "S000000003", "AA000003"),
        card("stocked", "S000000004", "AA000004"),
        card("p1", "S000000001", "AA000001", expiry=dt.date(2026, 1, 1)),
        card("p2", "TAKEN0001", "TAKEN001"),
    ]
    problems = batch_problems(cards, persons | {"p2": ALIVE}, {"TAKEN0001"}, {"TAKEN001"})
    assert problems == [
        RowProblem(1, "person_id", "person_not_found"),
        RowProblem(2, "person_id", "person_deceased"),
        RowProblem(3, "person_id", "stock_card_exists"),
        RowProblem(4, "expiry_date", "expiry_not_after_issue"),
        RowProblem(4, "person_id", "duplicate_person"),
        RowProblem(4, "card_number", "duplicate_card_number"),
        RowProblem(4, "identification_code", "duplicate_identification_code"),
        RowProblem(5, "card_number", "card_number_taken"),
        RowProblem(5, "identification_code", "identification_code_taken"),
    ]
    assert problems[0].as_error() == {"index": 1, "field": "person_id", "code": "person_not_found"}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["p1", "p2", "p3"]), st.sampled_from(["S000000001", "S000000002"])
        ),
        max_size=8,
    )
)
def test_only_the_later_of_two_equal_values_is_a_duplicate(rows: list[tuple[str, str]]) -> None:
    cards = [card(person, number, f"AB{i:06d}") for i, (person, number) in enumerate(rows)]
    persons = {p: ALIVE for p in ("p1", "p2", "p3")}
    flagged = {(p.index, p.code) for p in batch_problems(cards, persons, set(), set())}
    for index, (person, number) in enumerate(rows):
        earlier = rows[:index]
        assert ((index, "duplicate_person") in flagged) == any(p == person for p, _ in earlier)
        assert ((index, "duplicate_card_number") in flagged) == any(n == number for _, n in earlier)
