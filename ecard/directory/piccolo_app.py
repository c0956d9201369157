"""Piccolo app of the directory domain: its tables and migrations."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from ecard.directory.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="directory",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=TABLES,
)
