"""Stock cards (库存卡, issue 17): ``card_batch`` (a batch of personalised cards made for one
outlet) and ``card_batch_item`` (which batch each stock card came in; the card table is
unchanged)."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.base import OnDelete, OnUpdate
from piccolo.columns.column_types import ForeignKey, Integer, Serial, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.columns.indexes import IndexMethod
from piccolo.table import Table

ID = "2026-12-03T14:50:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "card_batch, card_batch_item"


class Card(Table, tablename="card", schema=None):
    id = Varchar(length=32, primary_key=True)


class CardBatch(Table, tablename="card_batch", schema=None):
    id = Varchar(length=32, primary_key=True)


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
    ("CardBatch", "card_batch"): [
        ("id", Varchar, _params(length=32, default="", primary_key=True)),
        ("outlet", Varchar, _params(length=64, default="", index=True)),
        ("region", Varchar, _params(length=6, default="", index=True)),
        ("status", Varchar, _params(length=16, default="produced")),
        ("card_count", Integer, _params(default=0)),
        ("created_by", Varchar, _params(length=64, default="")),
        ("created_at", Timestamptz, _params(default=TimestamptzNow())),
        ("delivered_by", Varchar, _params(length=64, default=None, null=True)),
        ("delivered_at", Timestamptz, _params(default=None, null=True)),
    ],
    ("CardBatchItem", "card_batch_item"): [
        ("id", Serial, _params(primary_key=True)),
        ("batch", ForeignKey, _foreign_key(CardBatch, index=True)),
        ("card", ForeignKey, _foreign_key(Card, unique=True)),
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
