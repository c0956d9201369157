"""Every domain of the service, in one static list: ``DOMAINS``.

The order is the piccolo migration order (a domain's tables may refer to an earlier one's) and
the order in which controllers are mounted, commands added and background tasks entered.  To
add a domain: give its package a ``domain.py`` with ``DOMAIN = Domain(...)`` and import it here
(``docs/ARCHITECTURE.md``).

Only ``ecard.app``, ``ecard.cli``, ``ecard.store.db`` and ``ecard.piccolo_conf`` import this
module, and they do it inside functions (or, for piccolo's configuration, on its own import),
since the domains' controllers import ``ecard.app``; no domain imports it.
"""

from ecard import ledger_domain
from ecard.codes import domain as codes
from ecard.consent import domain as consent
from ecard.console import domain as console
from ecard.directory import domain as directory
from ecard.domain import Domain
from ecard.oidc import domain as oidc
from ecard.partners import domain as partners
from ecard.registry import domain as registry
from ecard.statistics import domain as statistics
from ecard.store import domain as store
from ecard.terminal import domain as terminal
from ecard.timeline import domain as timeline
from ecard.webhooks import domain as webhooks

DOMAINS: tuple[Domain, ...] = (
    registry.DOMAIN,
    ledger_domain.DOMAIN,
    oidc.DOMAIN,
    partners.DOMAIN,
    codes.DOMAIN,
    consent.DOMAIN,
    terminal.DOMAIN,
    timeline.DOMAIN,
    webhooks.DOMAIN,
    directory.DOMAIN,
    statistics.DOMAIN,  # reads the tables of every domain above
    console.DOMAIN,
    store.DOMAIN,  # partition maintenance: no tables, a background task
)
