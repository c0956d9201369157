"""Holder sessions (issue 17): the device key a session is bound to (DPoP ``jkt``), why it ended
(``ended_reason``: a card's suspension is not a refresh token's reuse), and the refresh chain it
continues (``family``, ``started_at``, ``last_used``) for the holder's list of sessions."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Timestamptz, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-03T14:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "holder_session: jkt, ended_reason, family, started_at, last_used"


def _params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "default": None,
        "null": True,
        "primary_key": False,
        "unique": False,
        "index": False,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
    }
    params.update(overrides)
    return params


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="registry", description=DESCRIPTION)
    for name, length, index in (
        ("jkt", 64, False),
        ("ended_reason", 24, False),
        ("family", 32, True),
    ):
        manager.add_column(
            table_class_name="HolderSession",
            tablename="holder_session",
            column_name=name,
            db_column_name=name,
            column_class_name="Varchar",
            column_class=Varchar,
            params=_params(length=length, index=index),
            schema=None,
        )
    for name in ("started_at", "last_used"):
        manager.add_column(
            table_class_name="HolderSession",
            tablename="holder_session",
            column_name=name,
            db_column_name=name,
            column_class_name="Timestamptz",
            column_class=Timestamptz,
            params=_params(),
            schema=None,
        )
    return manager
