"""Piccolo app of the registry: its tables and migrations."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from ecard.registry.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="registry",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=TABLES,
)
