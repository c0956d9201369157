"""An index for the operators' person search by region (issue 19, scale test): the search pages by
``created_at, id`` within a region, and in a provincial registry nearly every person has the
province's region code, so the index on ``region`` alone left PostgreSQL sorting every person of
the province for each page (measured at 5 million persons in ``scripts/bench/scale_registry.py``,
``docs/CAPACITY.md``).  With ``(region, created_at, id)`` the first page is read in order from
the index.  On a large existing table the build takes minutes and holds the table's write lock:
run it in a maintenance window, or create the index ``CONCURRENTLY`` by hand first (the
``IF NOT EXISTS`` then makes this migration a no-op)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-12-03T20:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "person: index on (region, created_at, id) for the search by region"


async def index_region_pages() -> None:
    engine = engine_finder()
    if engine is None:
        raise RuntimeError("no database engine configured")
    await engine.run_ddl(
        "CREATE INDEX IF NOT EXISTS person_region_created ON person (region, created_at, id)"
    )


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="registry", description=DESCRIPTION)
    manager.add_raw(index_region_pages)
    return manager
