"""The registry (持卡库): persons, cards, e-cards, channels, operators, stock cards, deaths.

Its ``ecard registry …`` commands are built by ``ecard.cli`` itself (``registry import``, and
``import-deaths`` from ``ecard.registry.deaths.register_cli``)."""

from ecard.domain import Domain
from ecard.registry import controllers, piccolo_app, stock_controllers
from ecard.registry.card_life import background

DOMAIN = Domain(
    name="registry",
    controllers=(*controllers.CONTROLLERS, *stock_controllers.CONTROLLERS),
    piccolo_app=piccolo_app.APP_CONFIG,
    background=background,
)
