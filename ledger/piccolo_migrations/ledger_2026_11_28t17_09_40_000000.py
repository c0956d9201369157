"""Seed the one-row sequence counter ``ledger_head`` (its table exists after the first
migration)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-28T17:09:40:000000"
VERSION = "1.38.0"
DESCRIPTION = "Seed the ledger sequence counter"


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="ledger", description=DESCRIPTION)

    async def seed_head() -> None:
        engine = engine_finder()
        if engine is None:  # migrations run only once piccolo found the engine
            raise RuntimeError("piccolo found no database engine for the ledger")
        await engine.run_ddl("INSERT INTO ledger_head (id, next_seq) VALUES (1, 0)")

    async def remove_head() -> None:
        engine = engine_finder()
        if engine is None:  # migrations run only once piccolo found the engine
            raise RuntimeError("piccolo found no database engine for the ledger")
        await engine.run_ddl("DELETE FROM ledger_head WHERE id = 1")

    manager.add_raw(seed_head)
    manager.add_raw_backwards(remove_head)
    return manager
