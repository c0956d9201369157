"""The holder's timeline: an API only; it reads the other domains' tables and has none."""

from ecard.domain import Domain
from ecard.timeline import controllers

DOMAIN = Domain(name="timeline", controllers=tuple(controllers.CONTROLLERS))
