"""The ledger's tables and migrations as a domain of ecard.

``ledger`` imports nothing from ``ecard``, so it cannot declare itself here; ecard declares it
on its side.  Its HTTP API, command and relay belong to the consent domain
(``ecard.consent.domain``), which is what writes to it."""

from ecard.domain import Domain
from ledger import piccolo_app

DOMAIN = Domain(name="ledger", piccolo_app=piccolo_app.APP_CONFIG)
