"""Consent (精准授权): requests, grants, revocation, the consented data API, the ledger's HTTP
API, the ``ecard ledger`` command and the ledger relay.  The ledger's own tables are declared in
``ecard.ledger_domain``."""

from ecard.consent import cli, controllers, piccolo_app
from ecard.consent.ledger_bridge import background, ledger_readiness
from ecard.domain import Domain

DOMAIN = Domain(
    name="consent",
    controllers=tuple(controllers.CONTROLLERS),
    piccolo_app=piccolo_app.APP_CONFIG,
    register_cli=cli.register,
    background=background,
    readiness={"ledger": ledger_readiness},
)
