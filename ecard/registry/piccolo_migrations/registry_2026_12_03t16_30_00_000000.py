"""One filing per partner (issue 18): ``api_client`` becomes the filing, with the capabilities it is
filed for (``capabilities``), its organisation and when it last changed; its status is indexed (the
catalogue is listed by status).  The status values and the credentials move in the ``partners``
app's first migration, which runs after the ``oidc`` app's tables exist."""

from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import JSON, Timestamptz, Varchar
from piccolo.columns.indexes import IndexMethod
from piccolo.engine.finder import engine_finder

ID = "2026-12-03T16:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "api_client: capabilities, organisation, updated_at; index on status"


def _params(**overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "null": False,
        "primary_key": False,
        "unique": False,
        "index": False,
        "index_method": IndexMethod.btree,
        "choices": None,
        "db_column_name": None,
        "secret": False,
    }
    params.update(overrides)
    return params


async def index_status() -> None:
    engine = engine_finder()
    if engine is None:
        raise RuntimeError("no database engine configured")
    await engine.run_ddl("CREATE INDEX IF NOT EXISTS api_client_status ON api_client (status)")


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="registry", description=DESCRIPTION)
    for name, column_class, params in (
        ("capabilities", JSON, _params(default="{}")),
        ("organisation", Varchar, _params(length=128, default="")),
        # SQLite adds no column with a non-constant default to a table with rows: null here,
        # filled from created_at by the partners app's migration
        ("updated_at", Timestamptz, _params(default=None, null=True)),
    ):
        manager.add_column(
            table_class_name="ApiClient",
            tablename="api_client",
            column_name=name,
            db_column_name=name,
            column_class_name=column_class.__name__,
            column_class=column_class,
            params=params,
            schema=None,
        )
    manager.add_raw(index_status)
    return manager
