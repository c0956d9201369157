"""Give the verifications recorded before ``code_verification.pseudonym`` existed the pseudonym
of their card (a separate migration: piccolo runs a migration's raw steps before its new
columns)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-11-30T05:30:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "backfill code_verification.pseudonym"


async def backfill() -> None:
    await engine_finder().run_ddl(
        "UPDATE code_verification SET pseudonym ="
        " (SELECT x.pseudonym FROM code_pseudonym x WHERE x.card = code_verification.card)"
        " WHERE card IS NOT NULL AND pseudonym IS NULL"
    )


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="codes", description=DESCRIPTION)
    manager.add_raw(backfill)
    return manager
