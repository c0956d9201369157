"""idempotency_record: responses are stored encrypted and expire (``expires_ms``, indexed for the
purge).  The records written before held whole responses in cleartext — client secrets, holder
tokens, identity numbers — so they are deleted, not converted: a retry of one of them within its
day simply runs again (issue 16 §3)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import BigInt
from piccolo.columns.indexes import IndexMethod
from piccolo.engine.finder import engine_finder
from piccolo.engine.sqlite import SQLiteEngine

ID = "2026-12-01T16:00:00:161600"
VERSION = "1.38.0"
DESCRIPTION = "idempotency_record.expires_ms; drop the cleartext records"


async def purge_cleartext() -> None:
    engine = engine_finder()
    if not isinstance(engine, SQLiteEngine):
        await engine.run_ddl("DELETE FROM idempotency_record")
        return
    # overwrite the freed pages too, so the cleartext does not linger in the file
    before = await engine.run_ddl("PRAGMA secure_delete")
    await engine.run_ddl("PRAGMA secure_delete = ON")
    await engine.run_ddl("DELETE FROM idempotency_record")
    await engine.run_ddl(f"PRAGMA secure_delete = {int(next(iter(before[0].values())))}")


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="registry", description=DESCRIPTION)
    manager.add_raw(purge_cleartext)
    manager.add_column(
        table_class_name="IdempotencyRecord",
        tablename="idempotency_record",
        column_name="expires_ms",
        db_column_name="expires_ms",
        column_class_name="BigInt",
        column_class=BigInt,
        params={
            "default": 0,
            "null": False,
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
