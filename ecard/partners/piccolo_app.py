"""Piccolo app of the application catalogue: its tables and migrations."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

from ecard.partners.tables import TABLES

APP_CONFIG = AppConfig(
    app_name="partners",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=TABLES,
)
