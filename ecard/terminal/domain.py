"""Acceptance terminals (读卡扫码终端): the gateway, offline upload, HCE, ``ecard terminal``."""

from ecard.domain import Domain
from ecard.terminal import cli, controllers, piccolo_app

DOMAIN = Domain(
    name="terminal",
    controllers=tuple(controllers.CONTROLLERS),
    piccolo_app=piccolo_app.APP_CONFIG,
    register_cli=cli.register,
)
