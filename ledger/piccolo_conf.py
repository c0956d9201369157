"""Piccolo configuration for using the ledger on its own (``ledger.migrations.migrate``); a host
application such as ecard lists ``ledger.piccolo_app`` in its own registry instead."""

from typing import Any

from piccolo.conf.apps import AppRegistry
from piccolo.engine.base import Engine

DB: Engine[Any] | None = None

APP_REGISTRY = AppRegistry(apps=["ledger.piccolo_app"])
