"""The operator console (``/console/``): pages only, no tables of its own."""

from ecard.console import controllers
from ecard.domain import Domain

DOMAIN = Domain(name="console", controllers=tuple(controllers.CONTROLLERS))
