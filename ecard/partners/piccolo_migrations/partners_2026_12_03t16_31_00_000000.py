"""The application catalogue (issue 18): ``partner_credential`` (a filing's secrets, as digests, and
public keys, with their rotation overlap) and ``filing_step`` (who took each workflow step)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import (
    JSON,
    BigInt,
    ForeignKey,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table

ID = "2026-12-03T16:31:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "partner_credential, filing_step"


class ApiClient(Table, tablename="api_client", schema=None):
    id = Varchar(length=40, primary_key=True)


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


def _foreign_key(references: type[Table], **overrides: Any) -> dict[str, Any]:
    return _params(
        references=references,
        on_delete=OnDelete.cascade,
        on_update=OnUpdate.cascade,
        target_column=None,
        **overrides,
    )


COLUMNS: dict[tuple[str, str], list[tuple[str, type, dict[str, Any]]]] = {
    ("PartnerCredential", "partner_credential"): [
        ("id", Varchar, _params(length=32, default="", primary_key=True)),
        ("application", ForeignKey, _foreign_key(ApiClient, index=True)),
        ("kind", Varchar, _params(length=8, default="")),
        ("secret_digest", Varchar, _params(length=64, default=None, null=True)),
        ("public_jwk", JSON, _params(default=None, null=True)),
        ("kid", Varchar, _params(length=64, default=None, null=True)),
        ("created_at", BigInt, _params(default=0)),
        ("created_by", Varchar, _params(length=64, default="")),
        ("not_after", BigInt, _params(default=None, null=True)),
        ("ended_at", BigInt, _params(default=None, null=True)),
        ("ended_by", Varchar, _params(length=64, default=None, null=True)),
    ],
    ("FilingStep", "filing_step"): [
        ("id", Serial, _params(primary_key=True)),
        ("application", ForeignKey, _foreign_key(ApiClient, index=True)),
        ("step", Varchar, _params(length=16, default="")),
        ("from_status", Varchar, _params(length=16, default=None, null=True)),
        ("to_status", Varchar, _params(length=16, default="")),
        ("actor", Varchar, _params(length=64, default="")),
        ("reason", Text, _params(default="")),
        ("detail", JSON, _params(default="{}")),
        ("at", Timestamptz, _params(default=TimestamptzNow())),
    ],
}


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="partners", description=DESCRIPTION)
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
