"""Piccolo's configuration module (``PICCOLO_CONF=ecard.piccolo_conf``).

``ecard.store.db.bind_engine`` replaces ``DB`` with the running service's engine; the default here
serves piccolo's own command line (``piccolo migrations new registry --auto``).
"""

import os

from piccolo.conf.apps import AppRegistry

from ecard.store.db import APP_MODULES, make_engine

DB = make_engine(os.environ.get("ECARD_DATABASE_URL", "sqlite:///var/ecard.db"))

APP_REGISTRY = AppRegistry(apps=APP_MODULES)
