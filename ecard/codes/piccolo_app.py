"""Piccolo app of the code service: its tables and migrations."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from ecard.codes.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="codes",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=TABLES,
)
