"""The ``login`` capability: a filing's scan-to-login settings in ``oidc_client`` (same id), and the
:class:`ecard.oidc.service.RelyingParty` the OpenID provider works with, whose status and
credentials are the filing's.  Imports the OpenID provider's module only inside functions (that
module imports this one)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ecard.errors import AppError
from ecard.oidc.tables import OidcClient
from ecard.partners import credentials, schemas

if TYPE_CHECKING:
    from ecard.oidc.service import RelyingParty


_COLUMNS = (
    "SELECT o.id, a.name, a.status, o.logo_uri, o.redirect_uris, o.post_logout_redirect_uris,"
    " o.scopes, o.client_type, o.auth_method, o.sector"
    " FROM oidc_client o JOIN api_client a ON a.id = o.id WHERE o.id = {}"
)


def check_login(name: str, login: schemas.LoginSettings, jwk: dict[str, str] | None) -> str:
    """Every rule of a login filing that can be checked on paper (``check_filing``); its sector."""
    from ecard.oidc import schemas as oidc_schemas
    from ecard.oidc.service import check_filing

    return check_filing(
        oidc_schemas.ClientFiling(
            name=name,
            redirect_uris=login.redirect_uris,
            scopes=login.scopes,
            client_type=login.client_type,
            token_endpoint_auth_method=login.token_endpoint_auth_method,
            logo_uri=login.logo_uri,
            post_logout_redirect_uris=login.post_logout_redirect_uris,
            jwk=jwk,
        )
    )


async def insert_login(
    application_id: str, name: str, login: schemas.LoginSettings, sector: str, actor: str
) -> None:
    await OidcClient.insert(
        OidcClient(
            id=application_id,
            name=name,
            logo_uri=login.logo_uri,
            redirect_uris=json.dumps(login.redirect_uris),
            post_logout_redirect_uris=json.dumps(login.post_logout_redirect_uris),
            scopes=json.dumps(sorted(set(login.scopes))),
            client_type=login.client_type,
            auth_method=login.token_endpoint_auth_method,
            sector=sector,
            filed_by=actor.partition(":")[2][:40],
        )
    ).run()


async def login_settings(application_id: str) -> dict[str, Any]:
    row = await OidcClient.select().where(OidcClient.id == application_id).first()
    if row is None:
        return {}
    return {
        "redirect_uris": credentials.json_value(row["redirect_uris"]),
        "post_logout_redirect_uris": credentials.json_value(row["post_logout_redirect_uris"]),
        "scopes": credentials.json_value(row["scopes"]),
        "client_type": row["client_type"],
        "token_endpoint_auth_method": row["auth_method"],
        "logo_uri": row["logo_uri"],
        "sector": row["sector"],
    }


async def filed_relying_party(client_id: str) -> RelyingParty:
    """The relying party as filed now (read from the database); ``oidc_client_not_found``."""
    from ecard.oidc.service import RelyingParty

    rows = await OidcClient.raw(_COLUMNS, client_id) if client_id else []
    if not rows:
        raise AppError("oidc_client_not_found")
    party = RelyingParty.of(rows[0])
    credentials.derived.put(client_id, party)
    return party


async def relying_party(client_id: str) -> RelyingParty:
    """The relying party as this worker saw it at most ``FILING_CACHE_SECONDS`` ago."""
    party = credentials.derived.get(client_id)
    return party if party is not None else await filed_relying_party(client_id)
