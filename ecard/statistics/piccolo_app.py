"""Piccolo app of the statistics domain: its tables and migrations."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from ecard.statistics.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="statistics",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=TABLES,
)
