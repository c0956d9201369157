from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt, Bytea
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-30T10:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "Stored Merkle tiles: the tree in memory is only its right edge"


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


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="ledger", description=DESCRIPTION)
    manager.add_table(class_name="LedgerTile", tablename="ledger_tile", schema=None, columns=None)
    for name, column_class, params in (
        ("position", BigInt, _params(default=0, primary_key=True)),
        ("hashes", Bytea, _params(default=b"")),
        ("root", Bytea, _params(default=b"")),
    ):
        manager.add_column(
            table_class_name="LedgerTile",
            tablename="ledger_tile",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )
    return manager
