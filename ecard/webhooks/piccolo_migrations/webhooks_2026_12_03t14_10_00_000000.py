"""Webhooks: ``webhook_endpoint`` (one per partner, secrets encrypted) and ``webhook_delivery``
(the outbox and delivery log).  The worker's composite index follows in the next migration
(piccolo runs a migration's raw steps before its new tables exist)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import (
    JSON,
    Bytea,
    DoublePrecision,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table

ID = "2026-12-03T14:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook_endpoint and webhook_delivery (signed partner webhooks from an outbox)"


class ApiClient(Table, tablename="api_client", schema=None):
    id = Varchar(
        length=40,
        default="",
        null=False,
        primary_key=True,
        unique=False,
        index=False,
        index_method=IndexMethod.btree,
        choices=None,
        db_column_name=None,
        secret=False,
    )


def _params(**extra: object) -> dict:
    return {
        "null": False,
        "primary_key": False,
        "unique": False,
        "index": False,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
        **extra,
    }


def _client_fk(**extra: object) -> dict:
    return _params(
        references=ApiClient,
        on_delete=OnDelete.cascade,
        on_update=OnUpdate.cascade,
        target_column=None,
        **extra,
    )


ENDPOINT = (
    ("id", Varchar, _params(default="", length=32, primary_key=True)),
    ("client", ForeignKey, _client_fk(unique=True)),
    ("url", Varchar, _params(default="", length=2048)),
    ("secret_enc", Bytea, _params(default=b"")),
    ("previous_secret_enc", Bytea, _params(default=None, null=True)),
    ("previous_expires_at", DoublePrecision, _params(default=None, null=True)),
    ("event_types", JSON, _params(default='["*"]')),
    ("status", Varchar, _params(default="active", length=16)),
    ("created_at", Timestamptz, _params(default=TimestamptzNow())),
    ("updated_at", Timestamptz, _params(default=TimestamptzNow())),
)

DELIVERY = (
    ("id", Varchar, _params(default="", length=40, primary_key=True)),
    ("client", ForeignKey, _client_fk(index=True)),
    ("event_type", Varchar, _params(default="", length=40, index=True)),
    ("payload", Text, _params(default="")),
    ("created_at", DoublePrecision, _params(default=0.0, index=True)),
    ("retry_since", DoublePrecision, _params(default=0.0)),
    ("status", Varchar, _params(default="", length=24, index=True)),
    ("attempts", Integer, _params(default=0)),
    ("next_attempt_at", DoublePrecision, _params(default=None, null=True, index=True)),
    ("claim", Varchar, _params(default=None, null=True, length=32)),
    ("last_status_code", Integer, _params(default=None, null=True)),
    ("last_error", Varchar, _params(default=None, null=True, length=200)),
    ("delivered_at", DoublePrecision, _params(default=None, null=True)),
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="webhooks", description=DESCRIPTION)
    for class_name, tablename, columns in (
        ("WebhookEndpoint", "webhook_endpoint", ENDPOINT),
        ("WebhookDelivery", "webhook_delivery", DELIVERY),
    ):
        manager.add_table(class_name=class_name, tablename=tablename, schema=None, columns=None)
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
