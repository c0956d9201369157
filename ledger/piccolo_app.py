"""Piccolo app of the ledger: its tables and migrations."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from ledger.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="ledger",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=TABLES,
)
