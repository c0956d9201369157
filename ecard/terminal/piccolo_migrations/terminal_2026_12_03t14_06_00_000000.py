from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-03T14:06:00:000000"
VERSION = "1.38.0"
DESCRIPTION = (
    "hce_certificate.revoked_at: a certificate dies with its card (replaced, cancelled, deceased)"
)


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="terminal", description=DESCRIPTION)
    manager.add_column(
        table_class_name="HceCertificate",
        tablename="hce_certificate",
        column_name="revoked_at",
        db_column_name="revoked_at",
        column_class_name="BigInt",
        column_class=BigInt,
        params={
            "default": None,
            "null": True,
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
