"""Run the ledger's piccolo migrations on an engine without a host application."""

from __future__ import annotations

import os
from typing import Any, cast

from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.apps.migrations.tables import Migration
from piccolo.engine.base import Engine

from ledger import piccolo_conf
from ledger.errors import LedgerError
from ledger.tables import bind


async def migrate(engine: Engine[Any]) -> None:
    """Apply the pending ledger migrations to ``engine`` and bind the ledger tables to it."""
    previous = os.environ.get("PICCOLO_CONF")
    os.environ["PICCOLO_CONF"] = "ledger.piccolo_conf"
    piccolo_conf.DB = engine
    Migration._meta.db = engine
    bind(engine)
    try:
        result = await run_forwards(app_name="ledger")
    finally:
        if previous is None:
            os.environ.pop("PICCOLO_CONF", None)
        else:
            os.environ["PICCOLO_CONF"] = previous
    if not result.success:
        # piccolo sets a message on every failed result
        raise LedgerError("ledger.migration_failed", cast(str, result.message))
