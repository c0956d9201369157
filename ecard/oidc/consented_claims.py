"""Claims a login carries only under consent (精准授权): those of ``identity.basic`` (real name,
identity number), released in the login's ID token and at userinfo when

1. the filing is live, filed for ``data`` and entitled to the scope (its consent entitlements),
2. a live grant of that filing for this person covers the scope (:func:`live_grant_scopes`),

and every release is recorded as an access of the grant (``consent_access`` and an ``accessed``
event on the ledger), as a read through the consent data API is: reads of personal data by anyone
but the holder are audited.  A grant revoked a moment ago releases nothing: the access is one
conditional UPDATE of the grant (:meth:`ConsentService.release_at_login`).
"""

from __future__ import annotations

from typing import Any

from ecard.consent.service import ConsentService, data_party, live_grant_scopes
from ecard.oidc import holders
from ecard.oidc.provider import Provider
from ecard.oidc.scopes import CONSENTED_SCOPES, SCOPES


async def entitled_scopes(client_id: str) -> list[str]:
    """The consent scopes whose claims this filing may ever receive (none for most filings)."""
    party = await data_party(client_id)
    if party is None:
        return []
    return [scope for scope in CONSENTED_SCOPES if scope in party.entitlements]


async def consented_claims(op: Provider, client_id: str, person_id: str) -> dict[str, Any]:
    """The claims of every consent scope the rules above allow now, each release recorded."""
    entitled = await entitled_scopes(client_id)
    return await _released(op, client_id, person_id, entitled) if entitled else {}


async def consented_claims_of_ecard(op: Provider, client_id: str, ecard_id: str) -> dict[str, Any]:
    """:func:`consented_claims` of the e-card's person (none while its card is not active); the
    person is looked up only for a filing entitled to some consent scope."""
    entitled = await entitled_scopes(client_id)
    if not entitled:
        return {}
    facts = await holders.facts(ecard_id)
    return await _released(op, client_id, facts.person_id, entitled) if facts else {}


async def _released(
    op: Provider, client_id: str, person_id: str, entitled: list[str]
) -> dict[str, Any]:
    live = await live_grant_scopes(op.platform, client_id, person_id)
    consent = ConsentService(op.platform)
    claims: dict[str, Any] = {}
    for scope in entitled:
        if scope not in live:
            continue
        fields = await consent.release_at_login(client_id, person_id, scope)
        build = SCOPES[scope].from_consent
        if fields is not None and build is not None:
            claims.update(build(fields))
    return claims
