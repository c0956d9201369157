"""Token revocation (RFC 7009): a client revokes its own access or refresh token."""

from __future__ import annotations

from ecard.crypto.fields import secret_digest
from ecard.oidc import tokens
from ecard.oidc.provider import Provider
from ecard.oidc.service import RelyingParty
from ecard.oidc.tables import OidcTokenFamily
from ecard.registry.audit import audit


async def revoke(op: Provider, client: RelyingParty, token: str) -> None:
    """The client's own access or refresh token; unknown tokens are not an error (§2.2)."""
    record = await tokens.access_record(op, token)
    if record is not None and record.client_id == client.id:
        await op.store.delete(f"oidc:at:{secret_digest(token)}")
        await audit(
            f"oidc_client:{client.id}", "oidc.token.revoke", "oidc_client", client.id, kind="access"
        )
        return
    parsed = tokens.parse_refresh(op, token)
    if parsed is not None:
        owner = (
            await OidcTokenFamily.select(OidcTokenFamily.client)
            .where(OidcTokenFamily.id == parsed[0])
            .first()
        )
        if owner is not None and owner["client"] == client.id:
            await tokens.revoke_family(op, parsed[0], "revoked_by_client")
            await audit(
                f"oidc_client:{client.id}",
                "oidc.token.revoke",
                "oidc_client",
                client.id,
                kind="refresh",
            )
