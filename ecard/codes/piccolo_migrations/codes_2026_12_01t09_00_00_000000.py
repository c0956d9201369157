"""Revocation list format 2: ``revocation_version`` records when each version was published (its
list is signed with that time, and served so ever after), and the log forgets why and exactly
when each card was revoked (the public list never says it; the registry keeps the status)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt, Integer, Varchar
from piccolo.columns.indexes import IndexMethod
from piccolo.engine.finder import engine_finder

ID = "2026-12-01T09:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "revocation_version; no reason or time in revocation_change"


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


async def scrub() -> None:
    await engine_finder().run_ddl(
        "UPDATE revocation_change SET reason = 'revoked', revoked_at = 0 WHERE reason IS NOT NULL"
    )


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="codes", description=DESCRIPTION)
    manager.add_table(
        class_name="RevocationVersion", tablename="revocation_version", schema=None, columns=None
    )
    for name, column_class, params in (
        ("version", Integer, _params(default=0, primary_key=True)),
        ("published_at", BigInt, _params(default=0)),
        ("digest", Varchar, _params(default="", length=64)),
    ):
        manager.add_column(
            table_class_name="RevocationVersion",
            tablename="revocation_version",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )
    manager.add_raw(scrub)
    return manager
