"""code_verification.pseudonym: a verification names the card as its code does, so recording it
needs no lookup (the next migration gives the rows before it the pseudonym of their card)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-11-30T05:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "code_verification.pseudonym"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="codes", description=DESCRIPTION)
    manager.add_column(
        table_class_name="CodeVerification",
        tablename="code_verification",
        column_name="pseudonym",
        db_column_name="pseudonym",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 32,
            "default": None,
            "null": True,
            "primary_key": False,
            "unique": False,
            "index": True,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )
    return manager
