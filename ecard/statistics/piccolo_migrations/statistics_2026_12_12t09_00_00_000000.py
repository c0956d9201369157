"""Usage statistics (issue 20): ``statistics_fact`` (hourly and daily facts with sketches),
``statistics_state`` (the job's progress), ``statistics_grant`` (departments' fields) and
``statistics_budget`` (privacy budget spent per department and month)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt, Bytea, Text, Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-12T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "statistics tables (usage facts, grants, privacy budgets)"


def _params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "null": False,
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


COLUMNS: dict[tuple[str, str], list[tuple[str, type, dict[str, Any]]]] = {
    ("StatisticsFact", "statistics_fact"): [
        ("id", Varchar, _params(length=200, default="", primary_key=True)),
        ("grain", Varchar, _params(length=1, default="", index=True)),
        ("bucket", BigInt, _params(default=0, index=True)),
        ("day", Varchar, _params(length=10, default="", index=True)),
        ("region", Varchar, _params(length=6, default="", index=True)),
        ("scenario", Varchar, _params(length=16, default="")),
        ("medium", Varchar, _params(length=16, default="")),
        ("channel", Varchar, _params(length=40, default="")),
        ("result", Varchar, _params(length=8, default="")),
        ("cross_province", Varchar, _params(length=8, default="")),
        ("events", BigInt, _params(default=0)),
        ("capped", BigInt, _params(default=0)),
        ("cards", BigInt, _params(default=0)),
        ("sketch", Bytea, _params(default=b"")),
        ("built_at", BigInt, _params(default=0)),
    ],
    ("StatisticsState", "statistics_state"): [
        ("name", Varchar, _params(length=32, default="", primary_key=True)),
        ("value", BigInt, _params(default=0)),
    ],
    ("StatisticsGrant", "statistics_grant"): [
        ("department", Varchar, _params(length=40, default="", primary_key=True)),
        ("fields", Text, _params(default=",")),
        ("granted_by", Varchar, _params(length=64, default="")),
        ("granted_at", BigInt, _params(default=0)),
    ],
    ("StatisticsBudget", "statistics_budget"): [
        ("id", Varchar, _params(length=56, default="", primary_key=True)),
        ("department", Varchar, _params(length=40, default="", index=True)),
        ("month", Varchar, _params(length=7, default="")),
        ("spent_micro", BigInt, _params(default=0)),
        ("queries", BigInt, _params(default=0)),
        ("updated_at", BigInt, _params(default=0)),
    ],
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="statistics", description=DESCRIPTION)
    for class_name, tablename in COLUMNS:
        manager.add_table(class_name=class_name, tablename=tablename, schema=None, columns=None)
    for (class_name, tablename), columns in COLUMNS.items():
        for name, column_class, params in columns:
            manager.add_column(
                table_class_name=class_name,
                tablename=tablename,
                column_name=name,
                db_column_name=name,
                column_class_name=column_class.__name__,
                column_class=column_class,
                params=params,
                schema=None,
            )
    return manager
