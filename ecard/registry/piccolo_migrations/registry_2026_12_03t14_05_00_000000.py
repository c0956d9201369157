"""The card's whole life (issue 17): statuses up to 24 characters (``replacement_pending``), when a
临时挂失 lapses, and the replacement lineage (``replaces`` / ``replaced_by`` / its reason)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt, Date, Varchar
from piccolo.columns.indexes import IndexMethod
from piccolo.engine.finder import engine_finder
from piccolo.engine.sqlite import SQLiteEngine

ID = "2026-12-03T14:05:00:000000"
VERSION = "1.38.0"
DESCRIPTION = (
    "card: 24-character statuses, loss_lapses_at, replaces, replaced_by, replacement_reason;"
    " person.deceased_on"
)


async def widen_statuses() -> None:
    engine = engine_finder()
    if isinstance(engine, SQLiteEngine):  # SQLite does not enforce VARCHAR lengths
        return
    await engine.run_ddl("ALTER TABLE card ALTER COLUMN status TYPE VARCHAR(24)")
    await engine.run_ddl("ALTER TABLE card_status_event ALTER COLUMN from_status TYPE VARCHAR(24)")
    await engine.run_ddl("ALTER TABLE card_status_event ALTER COLUMN to_status TYPE VARCHAR(24)")


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
    manager.add_raw(widen_statuses)
    manager.add_column(
        table_class_name="Card",
        tablename="card",
        column_name="loss_lapses_at",
        db_column_name="loss_lapses_at",
        column_class_name="BigInt",
        column_class=BigInt,
        params=_params(index=True),
        schema=None,
    )
    for name, length in (("replaces", 32), ("replaced_by", 32), ("replacement_reason", 24)):
        manager.add_column(
            table_class_name="Card",
            tablename="card",
            column_name=name,
            db_column_name=name,
            column_class_name="Varchar",
            column_class=Varchar,
            params=_params(length=length),
            schema=None,
        )
    manager.add_column(
        table_class_name="Person",
        tablename="person",
        column_name="deceased_on",
        db_column_name="deceased_on",
        column_class_name="Date",
        column_class=Date,
        params=_params(),
        schema=None,
    )
    return manager
