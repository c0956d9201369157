"""A login's token family remembers the consent grant its approval made (``consent_id``), so a
refresh answers with that grant's ``authorization_details`` as they stand (RFC 9396 §7)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.columns.indexes import IndexMethod

ID = "2026-12-03T19:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "oidc_token_family.consent_id"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="oidc", description=DESCRIPTION)
    manager.add_column(
        table_class_name="OidcTokenFamily",
        tablename="oidc_token_family",
        column_name="consent_id",
        db_column_name="consent_id",
        column_class_name="Varchar",
        column_class=Varchar,
        params={
            "length": 32,
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
