"""The index the webhook delivery worker polls by: pending rows by due time."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-12-03T14:10:01:000000"
VERSION = "1.38.0"
DESCRIPTION = "webhook_delivery (status, next_attempt_at) index"


async def due_index() -> None:
    await engine_finder().run_ddl(
        "CREATE INDEX IF NOT EXISTS webhook_delivery_due ON webhook_delivery (status, "
        "next_attempt_at)"
    )


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="webhooks", description=DESCRIPTION)
    manager.add_raw(due_index)
    return manager
