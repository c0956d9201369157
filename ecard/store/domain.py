"""The database's own upkeep as a domain: no tables or routes, one background task that keeps the
append-only logs' monthly partitions and retention (``ecard.store.partitions``)."""

from ecard.domain import Domain
from ecard.store import partitions

DOMAIN = Domain(name="partitions", background=partitions.background)
