"""Durable state of the OpenID provider: filed relying parties and refresh-token families.

Ephemeral state (login sessions, authorization codes, device codes, access tokens, jti markers)
lives in the ephemeral store; nothing here is needed to verify an ID token.
"""

from __future__ import annotations

from piccolo.columns import JSON, BigInt, Boolean, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class OidcClient(Table, tablename="oidc_client"):
    """The login settings of a filing with the ``login`` capability (same id as its ``api_client``
    row): its status and its credentials are the filing's (``ecard.partners``)."""

    id = Varchar(length=40, primary_key=True)
    name = Varchar(length=128, unique=True)  # the filing's name, as shown to holders
    logo_uri = Text(null=True, default=None)
    redirect_uris = JSON(default="[]")
    post_logout_redirect_uris = JSON(default="[]")
    scopes = JSON(default="[]")  # the scopes this client may ask for
    client_type = Varchar(length=16)  # public | confidential
    #: none | client_secret_basic | client_secret_post | private_key_jwt
    auth_method = Varchar(length=32)
    sector = Varchar(length=255)  # pairwise subject sector (host of the redirect URIs)
    filed_by = Varchar(length=40)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class OidcTokenFamily(Table, tablename="oidc_token_family"):
    """Everything issued from one login: revoking the family ends its refresh and access tokens.

    Refresh tokens are MACs over (family, generation), so only the generation counter is stored;
    rotation bumps it, and a valid token of an older generation is a replay."""

    id = Varchar(length=32, primary_key=True)  # also the ``sid`` of its ID tokens
    client = ForeignKey(references=OidcClient, null=False, index=True)
    ecard_id = Varchar(length=32, index=True)
    subject = Varchar(length=64)
    scope = Text()
    auth_time = BigInt()
    expires_at = BigInt()
    generation = Integer(default=0)  # of the one live refresh token; older ones are replays
    revoked = Boolean(default=False)
    revoked_reason = Varchar(length=32, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    #: the consent grant made by the login's approval (RFC 9396), if it asked for data and the
    #: holder granted some; a refresh reports that grant as it stands
    consent_id = Varchar(length=32, null=True, default=None)


TABLES: list[type[Table]] = [OidcClient, OidcTokenFamily]
