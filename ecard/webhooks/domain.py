"""Partner webhooks: endpoints API, the outbox's tables, ``ecard webhooks`` and the
delivery worker."""

from ecard.domain import Domain
from ecard.webhooks import cli, controllers, piccolo_app
from ecard.webhooks.delivery import background

DOMAIN = Domain(
    name="webhooks",
    controllers=tuple(controllers.CONTROLLERS),
    piccolo_app=piccolo_app.APP_CONFIG,
    register_cli=cli.register,
    background=background,
)
