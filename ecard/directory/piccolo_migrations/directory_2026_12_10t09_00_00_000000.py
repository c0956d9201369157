"""The service zone (issue 20): ``directory_application`` (the public listing of a filing),
``directory_institution`` (places where the card is used), ``directory_terminal`` (terminals
installed at an institution), ``directory_head`` (this deployment's directory version) and
``directory_peer_state`` (how far each peer's feed is followed)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import (
    BigInt,
    DoublePrecision,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-10T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "directory tables (service zone)"


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


def _text(**overrides: Any) -> dict[str, Any]:
    return _params(default=",", **overrides)


COLUMNS: dict[tuple[str, str], list[tuple[str, type, dict[str, Any]]]] = {
    ("DirectoryApplication", "directory_application"): [
        ("id", Varchar, _params(length=56, default="", primary_key=True)),
        ("province", Varchar, _params(length=6, default="", index=True)),
        ("client_id", Varchar, _params(length=48, default="", index=True)),
        ("source", Varchar, _params(length=8, default="local")),
        ("status", Varchar, _params(length=12, default="listed")),
        ("name_zh", Varchar, _params(length=128, default="")),
        ("name_en", Varchar, _params(length=128, default="")),
        ("operator_zh", Varchar, _params(length=128, default="")),
        ("operator_en", Varchar, _params(length=128, default="")),
        ("scenarios", Text, _text()),
        ("media", Text, _text()),
        ("regions", Text, _text()),
        ("entry_url", Varchar, _params(length=512, default=None, null=True)),
        ("description_zh", Text, _params(default="")),
        ("description_en", Text, _params(default="")),
        ("search_text", Text, _params(default="")),
        ("published", Integer, _params(default=0)),
        ("version", BigInt, _params(default=0, index=True)),
        ("updated_at", Timestamptz, _params(default=TimestamptzNow())),
    ],
    ("DirectoryInstitution", "directory_institution"): [
        ("id", Varchar, _params(length=56, default="", primary_key=True)),
        ("province", Varchar, _params(length=6, default="", index=True)),
        ("source", Varchar, _params(length=8, default="local")),
        ("status", Varchar, _params(length=12, default="listed")),
        ("uscc", Varchar, _params(length=18, default="", index=True)),
        ("name_zh", Varchar, _params(length=128, default="")),
        ("name_en", Varchar, _params(length=128, default="")),
        ("kind", Varchar, _params(length=32, default="")),
        ("address_zh", Varchar, _params(length=256, default="")),
        ("address_en", Varchar, _params(length=256, default="")),
        ("region", Varchar, _params(length=6, default="", index=True)),
        ("lat", DoublePrecision, _params(default=0.0, index=True)),
        ("lon", DoublePrecision, _params(default=0.0)),
        ("hours", Text, _params(default="[]")),
        ("scenarios", Text, _text()),
        ("declared", Text, _text()),
        ("media", Text, _text()),
        ("terminals", Integer, _params(default=0)),
        ("search_text", Text, _params(default="")),
        ("version", BigInt, _params(default=0, index=True)),
        ("updated_at", Timestamptz, _params(default=TimestamptzNow())),
    ],
    ("DirectoryTerminal", "directory_terminal"): [
        ("id", Varchar, _params(length=100, default="", primary_key=True)),
        ("institution", Varchar, _params(length=56, default="", index=True)),
        ("terminal", Varchar, _params(length=40, default="", index=True)),
        ("media", Text, _text()),
    ],
    ("DirectoryHead", "directory_head"): [
        ("id", Integer, _params(default=0, primary_key=True)),
        ("version", BigInt, _params(default=0)),
    ],
    ("DirectoryPeerState", "directory_peer_state"): [
        ("url", Varchar, _params(length=512, default="", primary_key=True)),
        ("publisher", Varchar, _params(length=6, default="")),
        ("version", BigInt, _params(default=0)),
        ("fetched_at", BigInt, _params(default=0)),
        ("checked_at", BigInt, _params(default=0)),
        ("last_error", Varchar, _params(length=256, default="")),
    ],
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="directory", description=DESCRIPTION)
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
