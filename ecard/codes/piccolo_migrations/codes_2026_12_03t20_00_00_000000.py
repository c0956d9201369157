"""``code_verification`` partitioned by month (issue 19): the verification log keeps its retention
by detaching whole months (``ecard db maintain``) instead of deleting rows.

PostgreSQL only (SQLite keeps plain tables):
:func:`ecard.store.partitions.partition_existing_table` moves the rows into a new table
partitioned by month on ``at``, in this migration's transaction, and swaps the names; the primary
key becomes (id, at). On a large table this holds the table's lock for as long as the copy takes:
run it in a maintenance window (``docs/retention.md``)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

from ecard.store.partitions import partition_existing_table

ID = "2026-12-03T20:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "code_verification partitioned by month on at"


async def partition() -> None:
    engine = engine_finder()
    if engine is None:
        raise RuntimeError("no database engine configured")
    await partition_existing_table(engine, "code_verification")


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="codes", description=DESCRIPTION)
    manager.add_raw(partition)
    return manager
