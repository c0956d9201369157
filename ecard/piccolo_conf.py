"""Piccolo's configuration module (``PICCOLO_CONF=ecard.piccolo_conf``).

``ecard.store.db.bind_engine`` replaces ``DB`` with the running service's engine; the default here
serves piccolo's own command line (``piccolo migrations new registry --auto``).

Piccolo's ``AppRegistry`` imports its apps by module name; those names are computed from
``ecard.domains.DOMAINS`` (``Domain.piccolo_app_module``), never kept by hand.
"""

import os

from piccolo.conf.apps import AppRegistry

from ecard.domains import DOMAINS
from ecard.store.db import make_engine

DB = make_engine(os.environ.get("ECARD_DATABASE_URL", "sqlite:///var/ecard.db"))

APP_REGISTRY = AppRegistry(
    apps=[d.piccolo_app_module for d in DOMAINS if d.piccolo_app_module is not None]
)
