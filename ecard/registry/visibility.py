"""Which operator role sees which field of each registry view: one table, read by the service
when it shapes a response and by the tests that check every role × every view.

Levels: ``full`` (the stored value), ``masked`` (the value through :data:`MASKS`), ``absent``
(the member is left out of the JSON object).  A view's struct gives a field that some role does
not see the default ``msgspec.UNSET``, so an absent field is not sent at all.

The policy, in short (``docs/operators.md`` has the table and the reasons):

* ``admin`` and ``registry_admin`` hold ``pii:full`` and see every field as stored;
* ``auditor`` and ``readonly`` see names as 张*三 / 张*, identity numbers as the six-digit
  administrative-division code followed by twelve ``*`` (no birth date, no sequence number, no
  check digit), card numbers with only the last four characters; the birth date, the ethnicity,
  the chip serial and the 卡识别码 are absent.

Searching by identity number or by name needs ``pii:full`` as well (:data:`EXACT_SEARCH_FILTERS`):
with it a masked view would still confirm the one person left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal

import msgspec

from ecard.crypto.identity import mask_card_number, mask_name
from ecard.errors import AppError
from ecard.registry import schemas

Level = Literal["full", "masked", "absent"]
FULL: Final = "full"
MASKED: Final = "masked"
ABSENT: Final = "absent"

#: The operator roles, in the order of the table's columns (``ecard.auth.ROLE_PERMISSIONS``).
ROLES: tuple[str, ...] = ("admin", "registry_admin", "auditor", "readonly")

#: How internal callers without an operator (scripts, benchmarks) get a view: as the least role.
LEAST_PRIVILEGED_ROLE = "readonly"

#: The permission that lets a role see personal data unmasked and search by it.
PII_PERMISSION = "pii:full"

#: Search filters that name one person: refused to roles without :data:`PII_PERMISSION`.
EXACT_SEARCH_FILTERS: tuple[str, ...] = ("identity_number", "name")


def mask_identity_number_for_operators(number: str) -> str:
    """330102199001011234 -> 330102************: the administrative division (where the number
    was first issued) only.  The birth date (7th–14th), the sequence number (15th–17th, whose
    parity is the gender) and the check digit (18th) are hidden: the check digit alone would
    narrow the birth date to one day in eleven."""
    return number[:6] + "*" * (len(number) - 6)


def _columns(**rows: tuple[Level, Level, Level, Level]) -> dict[str, dict[str, Level]]:
    return {field: dict(zip(ROLES, levels, strict=True)) for field, levels in rows.items()}


# fmt: off
#: view → field → role → level.  Every field of every view struct has a row (a test fails
#: otherwise), so a field added later is not shown until someone decides who may see it.
VISIBILITY: dict[str, dict[str, dict[str, Level]]] = {
    # GET /operator/v1/persons, GET|PATCH /operator/v1/persons/{id}, POST /operator/v1/persons
    "person": _columns(
        #                  admin   registry_admin  auditor  readonly
        id=               (FULL,   FULL,           FULL,    FULL),
        name=             (FULL,   FULL,           MASKED,  MASKED),
        gender=           (FULL,   FULL,           FULL,    FULL),
        ethnicity=        (FULL,   FULL,           ABSENT,  ABSENT),
        birth_date=       (FULL,   FULL,           ABSENT,  ABSENT),
        region=           (FULL,   FULL,           FULL,    FULL),
        identity_number=  (FULL,   FULL,           MASKED,  MASKED),
        created_at=       (FULL,   FULL,           FULL,    FULL),
    ),
    # GET /operator/v1/cards, GET /operator/v1/cards/{id}, POST /operator/v1/cards,
    # POST /operator/v1/cards/{id}/status
    "card": _columns(
        #                  admin   registry_admin  auditor  readonly
        id=               (FULL,   FULL,           FULL,    FULL),
        person_id=        (FULL,   FULL,           FULL,    FULL),
        card_number=      (FULL,   FULL,           MASKED,  MASKED),
        region=           (FULL,   FULL,           FULL,    FULL),
        chip_serial=      (FULL,   FULL,           ABSENT,  ABSENT),
        identification_code=(FULL, FULL,           ABSENT,  ABSENT),
        issue_date=       (FULL,   FULL,           FULL,    FULL),
        expiry_date=      (FULL,   FULL,           FULL,    FULL),
        status=           (FULL,   FULL,           FULL,    FULL),
        status_version=   (FULL,   FULL,           FULL,    FULL),
    ),
    # GET /operator/v1/cards/{id}/history: a card's life (lost, deceased …) is about its holder
    "card_history": _columns(
        #                  admin   registry_admin  auditor  readonly
        from_status=      (FULL,   FULL,           FULL,    FULL),
        to_status=        (FULL,   FULL,           FULL,    FULL),
        actor=            (FULL,   FULL,           FULL,    FULL),
        reason=           (FULL,   FULL,           FULL,    FULL),
        at=               (FULL,   FULL,           FULL,    FULL),
    ),
}
# fmt: on

#: The struct each view is returned as (its fields are exactly the view's rows).
STRUCTS: dict[str, type[msgspec.Struct]] = {
    "person": schemas.PersonView,
    "card": schemas.CardView,
    "card_history": schemas.StatusEventView,
}

#: Structs of the registry that are not operator views of personal data, and why (a new
#: ``…View`` struct must be put here or in :data:`STRUCTS`; a test checks).
NOT_PERSONAL: dict[type[msgspec.Struct], str] = {
    schemas.ECardView: (
        "returned to the holder (its own) and to the channel that issued it, never to an operator;"
        " masked there for every caller"
    ),
    schemas.AuditEventView: "ids, actions and field names; the audit trail holds no personal data",
    schemas.ClientView: "a registered organisation or app, not a person",
    schemas.HolderSessionView: (
        "returned only to the holder (their own sessions): channel ids and names, times"
    ),
    schemas.CardBatchView: "a batch of stock cards: outlet, counts and card ids, no person's data",
}

#: How a ``masked`` cell is masked.
MASKS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "person": {"name": mask_name, "identity_number": mask_identity_number_for_operators},
    "card": {"card_number": mask_card_number},
}


def level(view: str, field: str, role: str) -> Level:
    """The level of one cell.  A role without a column is refused (403) rather than shown
    anything; a field without a row is a programming error (KeyError, caught by the tests)."""
    row = VISIBILITY[view][field]
    if role not in row:
        raise AppError("forbidden", f"role {role} has no column in the visibility table")
    return row[role]


def shape(view: str, role: str, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Level]]:
    """``values`` (every field of the view, as stored) as ``role`` may see them, and what was
    returned: field → ``full`` / ``masked`` (absent fields are left out of both)."""
    shown: dict[str, Any] = {}
    levels: dict[str, Level] = {}
    for field, value in values.items():
        cell = level(view, field, role)
        if cell == ABSENT:
            continue
        shown[field] = value if cell == FULL or value is None else MASKS[view][field](value)
        levels[field] = cell
    return shown, levels
