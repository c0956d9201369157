"""The service zone: directory API, feed and page, its tables, ``ecard directory`` and the
puller of peers' feeds."""

from ecard.directory import cli, controllers, piccolo_app
from ecard.directory.peers import background
from ecard.domain import Domain

DOMAIN = Domain(
    name="directory",
    controllers=tuple(controllers.CONTROLLERS),
    piccolo_app=piccolo_app.APP_CONFIG,
    register_cli=cli.register,
    background=background,
)
