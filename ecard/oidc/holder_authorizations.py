"""The holder's one list of what they allowed: the sites they are logged in to (live token
families of any of their e-cards) and the live data grants they gave, each revocable here.

Revoking a login revokes its token family (refresh and access tokens at once, as a logout does);
revoking a grant is :meth:`ConsentService.revoke` (recorded on the ledger).
"""

from __future__ import annotations

import time

from ecard.auth import HolderPrincipal
from ecard.consent.schemas import ConsentView
from ecard.consent.service import ConsentService
from ecard.errors import AppError
from ecard.oidc import schemas, tokens
from ecard.oidc.provider import Provider
from ecard.oidc.tables import OidcTokenFamily
from ecard.registry.audit import audit

#: the live logins of a person, through whichever of their e-cards (hand-written join)
_LOGINS_SQL = (
    "SELECT f.id, f.client, f.scope, f.auth_time, f.expires_at, o.name"
    " FROM oidc_token_family f JOIN ecard e ON e.id = f.ecard_id JOIN card c ON c.id = e.card"
    " JOIN oidc_client o ON o.id = f.client"
    " WHERE c.person = {} AND f.revoked = {} AND f.expires_at > {}"
)


async def list_authorizations(
    op: Provider, holder: HolderPrincipal
) -> list[schemas.HolderAuthorization]:
    """Logins then grants, each newest first."""
    return [*await _logins(op, holder), *await _grants(op, holder)]


async def _logins(
    op: Provider, holder: HolderPrincipal, family_id: str | None = None
) -> list[schemas.HolderAuthorization]:
    person_id = await ConsentService(op.platform).holder_person(holder)
    sql, args = _LOGINS_SQL, [person_id, False, int(time.time())]
    if family_id is not None:
        sql, args = sql + " AND f.id = {}", [*args, family_id]
    rows = await OidcTokenFamily.raw(sql + " ORDER BY f.auth_time DESC", *args)
    return [
        schemas.HolderAuthorization(
            kind="login",
            id=row["id"],
            party_id=row["client"],
            party_name=row["name"],
            scopes=row["scope"].split(),
            since=int(row["auth_time"]),
            expires_at=int(row["expires_at"]),
        )
        for row in rows
    ]


async def _grants(op: Provider, holder: HolderPrincipal) -> list[schemas.HolderAuthorization]:
    views = await ConsentService(op.platform).holder_grants(holder, "granted")
    return [_grant_view(view) for view in views]


def _grant_view(view: ConsentView) -> schemas.HolderAuthorization:
    return schemas.HolderAuthorization(
        kind="grant",
        id=view.id,
        party_id=view.relying_party.id,
        party_name=view.relying_party.name,
        scopes=[s.id for s in view.granted_scopes],
        since=int((view.starts_at or view.created_at).timestamp()),
        expires_at=int(view.expires_at.timestamp()) if view.expires_at else 0,
        purpose_code=view.purpose_code,
        purpose=view.purpose,
    )


async def revoke_authorization(
    op: Provider, holder: HolderPrincipal, kind: str, authorization_id: str
) -> schemas.HolderAuthorization:
    """Revoke one of the holder's logins or grants; ``authorization_not_found`` for anything that
    is not a live login or a grant of this holder (nothing about others' leaks)."""
    if kind == "grant":
        return _grant_view(await ConsentService(op.platform).revoke(holder, authorization_id))
    if kind != "login" or len(authorization_id) > 64:
        raise AppError("authorization_not_found")
    found = await _logins(op, holder, authorization_id)
    if not found:
        raise AppError("authorization_not_found")
    await tokens.revoke_family(op, authorization_id, "revoked_by_holder")
    await audit(holder.actor, "oidc.login.revoke", "oidc_client", found[0].party_id)
    return found[0]
