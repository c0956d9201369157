"""Usage statistics: the aggregation job, department and operator figures, the signed monthly
report and ``ecard statistics``."""

from ecard.domain import Domain
from ecard.statistics import cli, controllers, piccolo_app
from ecard.statistics.aggregate import background

DOMAIN = Domain(
    name="statistics",
    controllers=tuple(controllers.CONTROLLERS),
    piccolo_app=piccolo_app.APP_CONFIG,
    register_cli=cli.register,
    background=background,
)
