"""The trusted front door (issue 17): ``liveness_evidence`` (the channel's 实人 check behind an
issuance or a password reset: method, time, reference, a digest of the signed evidence) and
``holder_credential`` (the person's 电子社保卡密码: an argon2id hash and its lockout state)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import BigInt, ForeignKey, Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table

ID = "2026-12-03T14:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "liveness_evidence, holder_credential"


class Person(Table, tablename="person", schema=None):
    id = Varchar(length=32, primary_key=True)


class Card(Table, tablename="card", schema=None):
    id = Varchar(length=32, primary_key=True)


class ECard(Table, tablename="ecard", schema=None):
    id = Varchar(length=32, primary_key=True)


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
    ("LivenessEvidence", "liveness_evidence"): [
        ("id", Varchar, _params(length=32, default="", primary_key=True)),
        ("ecard", ForeignKey, _foreign_key(ECard, index=True)),
        ("card", ForeignKey, _foreign_key(Card, index=True)),
        ("channel", ForeignKey, _foreign_key(ApiClient, index=True)),
        ("method", Varchar, _params(length=32, default="")),
        ("checked_at", BigInt, _params(default=0)),
        ("channel_reference", Varchar, _params(length=128, default="")),
        ("jti", Varchar, _params(length=128, default="", index=True)),
        ("jws_digest", Varchar, _params(length=64, default="", unique=True)),
        ("purpose", Varchar, _params(length=16, default="")),
        ("created_at", Timestamptz, _params(default=TimestamptzNow())),
    ],
    ("HolderCredential", "holder_credential"): [
        ("id", Varchar, _params(length=32, default="", primary_key=True)),
        ("person", ForeignKey, _foreign_key(Person, unique=True)),
        ("password_hash", Varchar, _params(length=160, default="")),
        ("failures", Integer, _params(default=0)),
        ("locked_until", BigInt, _params(default=None, null=True)),
        ("set_at", Timestamptz, _params(default=TimestamptzNow())),
        ("updated_at", Timestamptz, _params(default=TimestamptzNow())),
    ],
}


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="registry", description=DESCRIPTION)
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
