"""Tables of the application catalogue beside the filing itself (``api_client``,
:class:`ecard.registry.tables.ApiClient`): its credentials and the history of its workflow."""

from __future__ import annotations

from piccolo.columns import JSON, BigInt, ForeignKey, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from ecard.registry.tables import ApiClient


class PartnerCredential(Table, tablename="partner_credential"):
    """One credential of a filing: a client secret (only its SHA-256 digest) or a public JWK (for
    ``private_key_jwt``, signed terminal requests and signed evidence).  Usable while not ended and
    before ``not_after`` (set when a newer credential of its kind replaced it, with an overlap)."""

    id = Varchar(length=32, primary_key=True)
    application = ForeignKey(references=ApiClient, null=False, index=True)
    kind = Varchar(length=8)  # secret | jwk
    secret_digest = Varchar(length=64, null=True, default=None)
    public_jwk = JSON(null=True, default=None)
    kid = Varchar(length=64, null=True, default=None)  # RFC 7638 thumbprint of a JWK
    created_at = BigInt()  # epoch seconds
    created_by = Varchar(length=64, default="")
    not_after = BigInt(null=True, default=None)  # end of the overlap after a rotation
    ended_at = BigInt(null=True, default=None)  # ended at once by an operator
    ended_by = Varchar(length=64, null=True, default=None)


class FilingStep(Table, tablename="filing_step"):
    """Who took which workflow step of which filing, when and why (one row per step)."""

    id = Serial(primary_key=True)
    application = ForeignKey(references=ApiClient, null=False, index=True)
    step = Varchar(length=16)  # ecard.partners.workflow.Step, or "submit" / "migrate"
    from_status = Varchar(length=16, null=True, default=None)
    to_status = Varchar(length=16)
    actor = Varchar(length=64)
    reason = Text(default="")
    detail = JSON(default="{}")
    at = Timestamptz(default=TimestamptzNow())


TABLES: list[type[Table]] = [PartnerCredential, FilingStep]
