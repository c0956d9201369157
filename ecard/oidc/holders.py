"""What the provider knows of a holder: their card's facts, and their pairwise subject."""

from __future__ import annotations

from ecard.errors import AppError
from ecard.oidc.provider import Provider
from ecard.oidc.scopes import HolderFacts, pseudonym
from ecard.oidc.service import RelyingParty
from ecard.registry.tables import ECard

# hand-written joins: piccolo's foreign-key chains cost more per request than the queries
_FACTS_SQL = (
    "SELECT e.status AS ecard_status, c.status AS card_status, c.region, p.id AS person_id, p.name"
    " FROM ecard e JOIN card c ON c.id = e.card JOIN person p ON p.id = c.person WHERE e.id = {}"
)


async def facts(ecard_id: str) -> HolderFacts | None:
    """The facts of an e-card whose card and e-card are both active, else None."""
    rows = await ECard.raw(_FACTS_SQL, ecard_id)
    row = rows[0] if rows else None
    if row is None or row["ecard_status"] != "active" or row["card_status"] != "active":
        return None
    return HolderFacts(
        ecard_id=ecard_id,
        person_id=row["person_id"],
        name=row["name"],
        card_status=row["card_status"],
        card_region=row["region"],
    )


async def require_active(op: Provider, ecard_id: str, client_id: str, actor: str) -> HolderFacts:
    """Only an active card and e-card log anyone in; a card lost meanwhile stops the login."""
    found = await facts(ecard_id)
    if found is None:
        await op.refused(actor, "login", client_id, "card or e-card not active")
        raise AppError("card_not_active", "the card or e-card is not active")
    return found


def subject(op: Provider, client: RelyingParty, holder: HolderFacts) -> str:
    """The pairwise ``sub``: one per person and sector, unlinkable across sectors."""
    return pseudonym(op.platform.pseudonym_key, "oidc-sub", client.sector, holder.person_id)
