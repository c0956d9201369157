"""Tables of the terminal service: terminals and their institutions, offline acceptance records,
the anomalies found when they were uploaded, and the e-card device certificates provisioned.

No personal data: records name cards and codes by pseudonymous references only.
"""

from __future__ import annotations

from piccolo.columns import BigInt, ForeignKey, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from ecard.registry.tables import ApiClient, Card, ECard


class Terminal(Table, tablename="terminal"):
    """An acceptance device of an institution; ``id`` is its ApiClient id (kind ``terminal``),
    whose ``public_jwk`` verifies every request and record it signs and whose ``status`` disables
    it."""

    id = Varchar(length=40, primary_key=True)
    client = ForeignKey(references=ApiClient, null=False, unique=True)
    institution = Varchar(length=128)
    terminal_kind = Varchar(length=32)  # hospital, pharmacy, service_hall, transport, gate ...
    address = Varchar(length=256)
    region = Varchar(length=6, index=True)
    created_at = Timestamptz(default=TimestamptzNow())


class TerminalRecord(Table, tablename="terminal_record"):
    """One uploaded, verified acceptance record; ``record_key`` (terminal id + counter) makes
    uploads idempotent across retries and racing workers."""

    id = Serial(primary_key=True)
    record_key = Varchar(length=96, unique=True)
    terminal = Varchar(length=64, index=True)
    counter = BigInt()
    reference = Varchar(length=128)
    accepted_at = BigInt()
    kind = Varchar(length=8)
    result = Varchar(length=16)
    reason = Varchar(length=64, default="")
    signature = Varchar(length=128)  # hex r||s
    uploaded_at = Timestamptz(default=TimestamptzNow())


class TerminalAnomaly(Table, tablename="terminal_anomaly"):
    """An uploaded record that was not simply new: a duplicate, conflict, rollback, wrong key, or
    an acceptance of a revoked card or an expired code."""

    id = Serial(primary_key=True)
    terminal = Varchar(length=64, index=True)
    anomaly = Varchar(length=32, index=True)
    counter = BigInt()
    reference = Varchar(length=128)
    accepted_at = BigInt()
    record = Text()  # the signed record as uploaded (JSON), for the investigation
    found_at = Timestamptz(default=TimestamptzNow())


class HceCertificate(Table, tablename="hce_certificate"):
    """A device certificate provisioned to an e-card; its id is the e-card's reference
    in records."""

    id = Varchar(length=32, primary_key=True)
    ecard = ForeignKey(references=ECard, null=False, index=True)
    card = ForeignKey(references=Card, null=False, index=True)
    device_key_thumbprint = Varchar(length=64)
    not_before = BigInt()
    not_after = BigInt()
    created_at = Timestamptz(default=TimestamptzNow())
    #: when the certificate died before its time (its card replaced, cancelled or its holder
    #: deceased; epoch seconds): acceptances after it are anomalies, the device must re-provision
    revoked_at = BigInt(null=True, default=None)


TABLES: list[type[Table]] = [Terminal, TerminalRecord, TerminalAnomaly, HceCertificate]
