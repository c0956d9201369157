"""The signed QR code: issuing, verification (two of them served as hot routes), e-license,
revocation list, and the ``ecard verify`` command."""

from ecard.codes import cli, controllers, piccolo_app
from ecard.domain import Domain

DOMAIN = Domain(
    name="codes",
    controllers=tuple(controllers.CONTROLLERS),
    hot_routes=controllers.HOT_ROUTES,
    piccolo_app=piccolo_app.APP_CONFIG,
    register_cli=cli.register,
)
