"""The authorization matrix, from routes down to fields: every operator role × every registry view
returns exactly what :data:`ecard.registry.visibility.VISIBILITY` says, on both backends.

* the table has a row for every field of every view struct and a column for every role, so a
  field added to a view later fails here until someone decides who may see it;
* a role with ``pii:full`` sees every field as stored (that response is the reference); every
  other role gets, field by field, the reference value, its mask (never the value itself), or no
  member at all;
* searching by identity number or by name is refused to roles without ``pii:full``;
* every read is audited: the operator, the subject ids, the field names and levels, and no value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from ecard.auth import ROLE_PERMISSIONS
from ecard.crypto.fields import secret_digest
from ecard.crypto.identity import birth_date_of
from ecard.registry import schemas, visibility
from ecard.registry.tables import AuditEvent, OperatorToken
from ecard.registry.visibility import ABSENT, FULL, MASKED, VISIBILITY
from tests.helpers import World

ROLES = tuple(ROLE_PERMISSIONS)
FULL_ROLES = tuple(r for r in ROLES if visibility.PII_PERMISSION in ROLE_PERMISSIONS[r])
LESSER_ROLES = tuple(r for r in ROLES if r not in FULL_ROLES)
WRITE_ROLES = tuple(r for r in ROLES if "registry:write" in ROLE_PERMISSIONS[r])
#: fields that identify a person or a card: never ``full`` without ``pii:full``
IDENTIFYING = {
    "person": {"name", "identity_number", "birth_date", "ethnicity"},
    "card": {"card_number", "chip_serial", "identification_code"},
}


# --- the table itself ---------------------------------------------------------------------------


def test_the_table_has_a_column_for_every_role_and_a_row_for_every_field_of_every_view() -> None:
    assert set(visibility.ROLES) == set(ROLE_PERMISSIONS)
    assert set(VISIBILITY) == set(visibility.STRUCTS)
    for view, struct in visibility.STRUCTS.items():
        fields = set(struct.__struct_fields__)
        assert set(VISIBILITY[view]) == fields, (
            f"{view}: fields without a rule or rules without a field"
        )
        for field, row in VISIBILITY[view].items():
            assert set(row) == set(ROLES), (view, field)
            assert set(row.values()) <= {FULL, MASKED, ABSENT}, (view, field)


def test_every_registry_view_struct_is_in_the_table_or_said_not_to_be_an_operator_view_of_personal_data() -> (  # noqa: E501 - the name is the rule
    None
):
    views = {
        obj
        for name, obj in vars(schemas).items()
        if name.endswith("View") and isinstance(obj, type) and issubclass(obj, msgspec.Struct)
    }
    decided = set(visibility.STRUCTS.values()) | set(visibility.NOT_PERSONAL)
    assert views - decided == set(), "a view nobody decided the visibility of"


def test_fields_some_role_does_not_see_are_optional_and_the_others_required() -> None:
    for view, struct in visibility.STRUCTS.items():
        info = msgspec.structs.fields(struct)
        for field in info:
            can_be_absent = ABSENT in VISIBILITY[view][field.name].values()
            if can_be_absent:
                assert field.default is msgspec.UNSET, (
                    f"{view}.{field.name} may be absent: default UNSET"
                )
            else:
                assert field.required, f"{view}.{field.name} is shown to every role: required"


def test_masked_cells_have_a_mask_and_the_policy_holds() -> None:
    for view, rows in VISIBILITY.items():
        for field, row in rows.items():
            if MASKED in row.values():
                assert callable(visibility.MASKS.get(view, {}).get(field)), (view, field)
            for role in FULL_ROLES:
                assert row[role] == FULL, f"{role} has pii:full but not {view}.{field}"
            for role in LESSER_ROLES:
                if field in IDENTIFYING.get(view, ()):
                    assert row[role] != FULL, f"{role} lacks pii:full but sees {view}.{field}"
    assert {f for f, r in VISIBILITY["card"].items() if r["readonly"] == ABSENT} >= {
        "chip_serial",
        "identification_code",
    }
    assert VISIBILITY["person"]["birth_date"]["auditor"] == ABSENT


def test_docs_operators_md_shows_the_same_table() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "operators.md").read_text(
        encoding="utf-8"
    )
    documented: dict[str, dict[str, dict[str, str]]] = {}
    view = None
    for line in text.splitlines():
        if line.startswith("### "):
            view = line[4:].strip()
        elif view and line.startswith("| field |"):
            columns = [c.strip() for c in line.strip("|").split("|")][1:]
            assert columns == list(visibility.ROLES), (view, columns)
            documented[view] = {}
        elif view in documented and line.startswith("| ") and not line.startswith("| ---"):
            field, *cells = [c.strip() for c in line.strip("|").split("|")]
            documented[view][field] = dict(zip(visibility.ROLES, cells, strict=True))
    assert documented == VISIBILITY


def test_the_operator_mask_of_an_identity_number_keeps_neither_birth_date_nor_check_digit() -> None:
    number = "11010519491231002X"
    masked = visibility.mask_identity_number_for_operators(number)
    assert masked == "110105************" and len(masked) == len(number)
    assert "19491231" not in masked and not masked.endswith("X")


# --- every role × every view, over HTTP, on both backends --------------------------------------


def expected_item(view: str, role: str, reference: dict[str, Any]) -> dict[str, Any]:
    """What ``role`` must get, given what a ``pii:full`` role got (JSON values)."""
    expected: dict[str, Any] = {}
    for field, value in reference.items():
        cell = VISIBILITY[view][field][role]
        if cell == FULL:
            expected[field] = value
        elif cell == MASKED:
            expected[field] = visibility.MASKS[view][field](value)
            assert expected[field] != value, (view, field)
    return expected


def check(wrong: list[str], where: str, view: str, role: str, got: Any, reference: Any) -> None:
    if isinstance(reference, list):
        if not isinstance(got, list) or len(got) != len(reference):
            wrong.append(f"{where} as {role}: {len(reference)} items expected, got {got!r:.200}")
            return
        for got_item, reference_item in zip(got, reference, strict=True):
            check(wrong, where, view, role, got_item, reference_item)
        return
    expected = expected_item(view, role, reference)
    if got != expected:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        differ = sorted(f for f in set(got) & set(expected) if got[f] != expected[f])
        wrong.append(
            f"{where} as {role}: missing {missing}, unexpected {extra}, different {differ}"
        )


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (
        response.request.url,
        response.status_code,
        response.text,
    )
    return response.json()


async def _subject(world: World) -> dict[str, str]:
    holder = await world.person_with_card("欧阳小明")
    await _ok(
        await world.client.post(
            f"/operator/v1/cards/{holder['card_id']}/status",
            json={"status": "lost", "reason": "12333 hotline"},
            headers=world.op(),
        )
    )
    return holder


async def _reads(world: World, role: str, holder: dict[str, str]) -> dict[str, tuple[str, Any]]:
    """Every operator read of a registry view that ``role`` may make: where → (view, body)."""
    http, headers = world.client, world.op(role)
    person, card = holder["person_id"], holder["card_id"]
    persons = await _ok(
        await http.get("/operator/v1/persons", params={"region": "330000"}, headers=headers)
    )
    cards = await _ok(
        await http.get("/operator/v1/cards", params={"person_id": person}, headers=headers)
    )
    reads = {
        "GET person": (
            "person",
            await _ok(await http.get(f"/operator/v1/persons/{person}", headers=headers)),
        ),
        "GET persons": ("person", [p for p in persons["items"] if p["id"] == person]),
        "GET card": (
            "card",
            await _ok(await http.get(f"/operator/v1/cards/{card}", headers=headers)),
        ),
        "GET cards": ("card", cards["items"]),
        "GET card history": (
            "card_history",
            await _ok(await http.get(f"/operator/v1/cards/{card}/history", headers=headers)),
        ),
    }
    if role in FULL_ROLES:
        for key, value in (
            ("identity_number", holder["identity_number"]),
            ("name", holder["name"]),
        ):
            found = await _ok(
                await http.get("/operator/v1/persons", params={key: value}, headers=headers)
            )
            reads[f"GET persons?{key}"] = ("person", found["items"])
    if role in WRITE_ROLES:  # what a write answers is a read too
        reads["PATCH person"] = (
            "person",
            await _ok(await http.patch(f"/operator/v1/persons/{person}", json={}, headers=headers)),
        )
    return reads


async def test_every_role_sees_every_view_exactly_as_the_table_says(world: World) -> None:
    holder = await _subject(world)
    reference_role = FULL_ROLES[0]
    reference = await _reads(world, reference_role, holder)
    # the reference is the stored truth
    person = reference["GET person"][1]
    assert (
        person["name"] == holder["name"] and person["identity_number"] == holder["identity_number"]
    )
    assert person["birth_date"] == birth_date_of(holder["identity_number"]).isoformat()
    assert reference["GET card"][1]["card_number"] == holder["card_number"]
    assert {"chip_serial", "identification_code"} <= set(reference["GET card"][1])
    assert [p["id"] for p in reference["GET persons?identity_number"][1]] == [holder["person_id"]]
    assert len(reference["GET persons"][1]) == len(reference["GET cards"][1]) == 1
    assert [e["to_status"] for e in reference["GET card history"][1]] == ["active", "lost"]

    wrong: list[str] = []
    views_seen = set()
    for role in ROLES:
        reads = await _reads(world, role, holder)
        for where, (view, body) in reads.items():
            views_seen.add(view)
            ref_where = (
                where if where in reference else "GET person"
            )  # PATCH answers the person view
            check(wrong, where, view, role, body, reference[ref_where][1])
    assert views_seen == set(VISIBILITY), "a view of the table no request returned"
    assert not wrong, "\n".join(wrong)


async def test_lesser_roles_get_the_masks_spelled_out(world: World) -> None:
    holder = await _subject(world)
    for role in LESSER_ROLES:
        person = await _ok(
            await world.client.get(
                f"/operator/v1/persons/{holder['person_id']}", headers=world.op(role)
            )
        )
        assert person["name"] == "欧**明"
        assert person["identity_number"] == holder["identity_number"][:6] + "************"
        card = await _ok(
            await world.client.get(
                f"/operator/v1/cards/{holder['card_id']}", headers=world.op(role)
            )
        )
        assert (
            card["card_number"]
            == "*" * (len(holder["card_number"]) - 4) + holder["card_number"][-4:]
        )
        assert "chip_serial" not in card and "identification_code" not in card
        text = json.dumps([person, card], ensure_ascii=False)
        assert holder["identity_number"][6:14] not in text and holder["name"] not in text


# --- exact search needs pii:full -----------------------------------------------------------------


@pytest.mark.parametrize("settings", ["embedded"], indirect=True)
async def test_exact_search_is_refused_without_pii_full(world: World) -> None:
    holder = await world.person_with_card()
    searches = {
        "identity_number": {"identity_number": holder["identity_number"]},
        "name": {"name": holder["name"]},
        "both": {
            "identity_number": holder["identity_number"],
            "name": holder["name"],
            "region": "330000",
        },
        "region": {"region": "330000"},
        "none": {},
    }
    wrong = []
    for role in ROLES:
        for label, params in searches.items():
            response = await world.client.get(
                "/operator/v1/persons", params=params, headers=world.op(role)
            )
            exact = label not in ("region", "none")
            expected = 403 if exact and role in LESSER_ROLES else 200
            if response.status_code != expected or (
                expected == 403 and response.json()["code"] != "forbidden"
            ):
                wrong.append(
                    f"{role} searching by {label}: expected {expected}, got "
                    f"{response.status_code} {response.text[:120]}"
                )
    assert not wrong, "\n".join(wrong)


# --- every read is audited ------------------------------------------------------------------------


async def _operator_id(token: str) -> str:
    row = (
        await OperatorToken.select(OperatorToken.operator)
        .where(OperatorToken.digest == secret_digest(token))
        .first()
    )
    assert row is not None
    return row["operator"]


async def test_every_operator_read_is_audited_with_ids_and_field_names_but_no_values(
    world: World,
) -> None:
    holder = await _subject(world)
    secrets_of_holder = [
        holder["name"],
        holder["identity_number"],
        holder["identity_number"][6:14],
        holder["card_number"],
        birth_date_of(holder["identity_number"]).isoformat(),
    ]
    for role in ROLES:
        operator_id = await _operator_id(world.tokens[role])
        last = (
            await AuditEvent.select(AuditEvent.id).order_by(AuditEvent.id, ascending=False).first()
        )
        reads = await _reads(world, role, holder)
        rows = (
            await AuditEvent.select()
            .where(
                (AuditEvent.actor_id == operator_id) & (AuditEvent.id > (last["id"] if last else 0))
            )
            .order_by(AuditEvent.id)
        )
        actions = [r["action"] for r in rows]
        expected_actions = [
            "person.search",
            "card.list",
            "person.read",
            "card.read",
            "card.history.read",
        ]
        if role in FULL_ROLES:
            expected_actions += ["person.search", "person.search"]
        if role in WRITE_ROLES:
            expected_actions += ["person.read"]  # the PATCH's answer
        assert actions == expected_actions, (role, actions)
        assert len(rows) == len(reads)
        for row in rows:
            assert row["actor_kind"] == "operator"
            detail = json.loads(row["detail"]) if isinstance(row["detail"], str) else row["detail"]
            text = json.dumps(detail, ensure_ascii=False) + row["reason"] + row["target_id"]
            assert not [s for s in secrets_of_holder if s in text], (role, row)
            view = {
                "person.read": "person",
                "person.search": "person",
                "card.read": "card",
                "card.list": "card",
                "card.history.read": "card_history",
            }[row["action"]]
            expected_fields = {f: r[role] for f, r in VISIBILITY[view].items() if r[role] != ABSENT}
            assert detail["fields"] == expected_fields, (role, row["action"], detail["fields"])
            if row["action"] in ("person.read",):
                assert row["target_id"] == holder["person_id"]
            elif row["action"] in ("card.read", "card.history.read"):
                assert (
                    row["target_id"] == holder["card_id"]
                    and detail["person"] == holder["person_id"]
                )
            elif row["action"] == "card.list":
                assert detail["subjects"] == [holder["card_id"]] and detail["persons"] == [
                    holder["person_id"]
                ]
            else:  # person.search
                assert holder["person_id"] in detail["subjects"]
                assert set(detail["filters"]) <= {"identity_number", "name", "region"}
