from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt, Bytea
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-28T17:26:38:082006"
VERSION = "1.38.0"
DESCRIPTION = "Latest seq per commitment"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="ledger", description=DESCRIPTION)

    manager.add_table(
        class_name="LedgerCommitment",
        tablename="ledger_commitment",
        schema=None,
        columns=None,
    )

    manager.add_column(
        table_class_name="LedgerCommitment",
        tablename="ledger_commitment",
        column_name="commitment",
        db_column_name="commitment",
        column_class_name="Bytea",
        column_class=Bytea,
        params={
            "default": b"",
            "null": False,
            "primary_key": True,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    manager.add_column(
        table_class_name="LedgerCommitment",
        tablename="ledger_commitment",
        column_name="last_seq",
        db_column_name="last_seq",
        column_class_name="BigInt",
        column_class=BigInt,
        params={
            "default": 0,
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    return manager
