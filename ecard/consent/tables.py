"""Tables of consent (精准授权) and of the registry data it can release.

A consent row is the request and, once answered, the grant.  Its salt (for the ledger commitment)
lives only here.  ``consent_event`` is the outbox: written in the same transaction as the change it
records, then relayed to the ledger in signed batches, which fill in ``seq`` and ``receipt``.
"""

from __future__ import annotations

from piccolo.columns import JSON, BigInt, Bytea, Date, ForeignKey, Integer, Serial, Varchar
from piccolo.table import Table

from ecard.registry.tables import ApiClient, Person


class InsuranceEnrollment(Table, tablename="insurance_enrollment"):
    """参保: one row per insurance type a person is enrolled in."""

    id = Serial(primary_key=True)
    person = ForeignKey(references=Person, null=False, index=True)
    insurance_type = Varchar(length=24)  # pension | medical | unemployment | injury | maternity
    status = Varchar(length=16)  # contributing | suspended | terminated
    region = Varchar(length=6)
    since = Date()


class EmploymentRecord(Table, tablename="employment_record"):
    id = Serial(primary_key=True)
    person = ForeignKey(references=Person, null=False, index=True)
    status = Varchar(length=16)  # employed | unemployed | retired | self_employed
    employer = Varchar(length=128)
    since = Date()


class BenefitPayment(Table, tablename="benefit_payment"):
    """待遇发放: one payment of a benefit for a period (yuan fen, so sums are exact)."""

    id = Serial(primary_key=True)
    person = ForeignKey(references=Person, null=False, index=True)
    benefit_type = Varchar(length=24)  # pension | unemployment | medical_reimbursement ...
    period = Varchar(length=7)  # YYYY-MM
    amount_fen = BigInt()
    paid_on = Date()


class Consent(Table, tablename="consent"):
    id = Varchar(length=32, primary_key=True)
    relying_party = ForeignKey(references=ApiClient, null=False, index=True)
    #: null when the identity number named no person: the request is kept (so the relying party
    #: cannot tell cardholders from others) but reaches nobody and lapses.
    person = ForeignKey(references=Person, null=True, index=True)
    requested_scopes = JSON(default="[]")
    granted_scopes = JSON(default="[]")
    purpose = Varchar(length=500)
    purpose_code = Varchar(length=32)
    recipient = Varchar(length=128)
    duration_seconds = Integer()
    status = Varchar(length=16, index=True)  # pending | granted | denied | revoked | expired
    created_ms = BigInt()
    request_expires_ms = BigInt()
    answered_ms = BigInt(null=True, default=None)
    starts_ms = BigInt(null=True, default=None)
    expires_ms = BigInt(null=True, default=None, index=True)
    ended_ms = BigInt(null=True, default=None)  # revoked, expired or lapsed
    access_count = Integer(default=0)
    salt = Bytea()
    commitment = Bytea()


class ConsentAccess(Table, tablename="consent_access"):
    """One served read of data under a grant (who read which scopes, when: no data)."""

    id = Varchar(length=32, primary_key=True)
    consent = ForeignKey(references=Consent, null=False, index=True)
    scopes = JSON(default="[]")
    at_ms = BigInt()
    event = BigInt(null=True, default=None)  # the consent_event id of its ledger entry


class ConsentEvent(Table, tablename="consent_event"):
    """The outbox of ledger entries; ``seq`` and ``receipt`` are set when the relay appends it."""

    id = Serial(primary_key=True)
    consent = ForeignKey(references=Consent, null=False, index=True)
    event = Varchar(length=16)
    time_ms = BigInt()
    relying_party = Varchar(length=40)
    commitment = Bytea()
    seq = BigInt(null=True, default=None, index=True)
    receipt = Bytea(null=True, default=None)


class ChainDeployment(Table, tablename="ledger_chain_deployment"):
    """Where the anchoring contract lives on a chain (deployed on first use)."""

    chain_id = BigInt(primary_key=True)
    address = Varchar(length=42)
    deploy_block = BigInt()


TABLES: list[type[Table]] = [
    InsuranceEnrollment,
    EmploymentRecord,
    BenefitPayment,
    Consent,
    ConsentAccess,
    ConsentEvent,
    ChainDeployment,
]
