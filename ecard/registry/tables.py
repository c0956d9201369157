"""Tables of the cardholder registry (持卡库) and of the machine and operator callers.

Identity numbers are stored only encrypted (``id_number_enc``, AES-256-GCM bound to the row) and
found through a keyed blind index (``id_number_index``).  Ids are random, never sequential.
"""

from __future__ import annotations

from piccolo.columns import (
    JSON,
    BigInt,
    Boolean,
    Bytea,
    Date,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class Person(Table, tablename="person"):
    id = Varchar(length=32, primary_key=True)
    name = Varchar(length=64)
    gender = Varchar(length=1)  # GB/T 2261.1: 1 male, 2 female, 9 unspecified
    ethnicity = Varchar(length=2, default="01")  # GB 3304 code
    birth_date = Date()
    region = Varchar(length=6, index=True)
    id_number_enc = Bytea()
    id_number_index = Varchar(length=64, unique=True)
    deceased_on = Date(
        null=True, default=None
    )  # set by a death record; every card of the person ends
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class Card(Table, tablename="card"):
    id = Varchar(length=32, primary_key=True)
    person = ForeignKey(references=Person, null=False, index=True)
    card_number = Varchar(length=20, unique=True)
    region = Varchar(length=6, index=True)
    chip_serial = Varchar(length=32)
    identification_code = Varchar(length=32, unique=True)  # 卡识别码, the chip's diversification id
    # what offline records and the chip blacklist name the card by (a digest of the chip's
    # 卡识别码): lets an upload find its revoked cards by index instead of hashing every revoked
    # card
    chip_reference = Varchar(length=32, null=True, default=None, index=True)
    issue_date = Date()
    expiry_date = Date()
    status = Varchar(length=24, index=True)  # ecard.registry.lifecycle.CardStatus
    status_version = Integer(default=1)  # optimistic concurrency for status changes
    #: when a 临时挂失 lapses by itself (epoch seconds); null unless the card is lost_temporary
    loss_lapses_at = BigInt(null=True, default=None, index=True)
    replaces = Varchar(length=32, null=True, default=None)  # the card this one replaced
    replaced_by = Varchar(length=32, null=True, default=None)  # set when this card is replaced
    replacement_reason = Varchar(length=24, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


class CardStatusEvent(Table, tablename="card_status_event"):
    id = Serial(primary_key=True)
    card = ForeignKey(references=Card, null=False, index=True)
    from_status = Varchar(length=24, null=True)
    to_status = Varchar(length=24)
    actor = Varchar(length=64)
    reason = Text()
    at = Timestamptz(default=TimestamptzNow())


class ApiClient(Table, tablename="api_client"):
    """The filing (应用目录备案) of one partner organisation's system: a channel app, verifier,
    relying party (login, data), department or terminal, with the capabilities it is filed for, its
    one workflow status and (in ``partner_credential``) its credentials (``docs/partners.md``).
    Its id is the client id every credential names."""

    id = Varchar(length=40, primary_key=True)
    #: the first capability filed, in the older vocabulary (``ecard.partners.capabilities``)
    kind = Varchar(length=16, index=True)
    name = Varchar(length=128, unique=True)
    #: ecard.partners.workflow.FilingStatus; only ``live`` works
    status = Varchar(length=16, default="submitted", index=True)
    regions = JSON(default="[]")
    #: what it may see or ask for, across capabilities (verifier fields, consent scopes, terminal
    #: entitlements), each checked against its catalogue when filed
    entitlements = JSON(default="[]")
    #: capability name -> its settings (login's live in ``oidc_client``, keyed by the same id)
    capabilities = JSON(default="{}")
    organisation = Varchar(length=128, default="")
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(null=True, default=TimestamptzNow())  # null only before migration


#: The filing is the ApiClient row; this name says so where the partner domain uses it.
Filing = ApiClient


class ECard(Table, tablename="ecard"):
    id = Varchar(length=32, primary_key=True)
    card = ForeignKey(references=Card, null=False, index=True)
    channel = ForeignKey(references=ApiClient, null=False, index=True)
    #: active | unbound (by the holder or the channel) | ended (its card was cancelled or the holder
    #: died); the effective status follows the card.  A replacement moves ``card``, keeping the id.
    status = Varchar(length=16, default="active")
    created_at = Timestamptz(default=TimestamptzNow())
    unbound_at = Timestamptz(null=True, default=None)


class HolderSession(Table, tablename="holder_session"):
    id = Varchar(length=32, primary_key=True)
    ecard = ForeignKey(references=ECard, null=False, index=True)
    access_digest = Varchar(length=64, unique=True)
    refresh_digest = Varchar(length=64, unique=True)
    access_expires = BigInt()
    refresh_expires = BigInt()
    revoked = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())
    #: RFC 7638 thumbprint of the device key the session is bound to (DPoP), null when unbound
    jkt = Varchar(length=64, null=True, default=None)
    #: why ``revoked`` (ecard.registry.sessions.ENDED_REASONS); null while live, and on rows ended
    #: before the reason was kept
    ended_reason = Varchar(length=24, null=True, default=None)
    #: the first session of the refresh chain this row continues (null: this row is the first)
    family = Varchar(length=32, null=True, default=None, index=True)
    #: when the chain began (the holder's "signed in at"), carried over at each refresh
    started_at = Timestamptz(null=True, default=None)
    #: when the chain was last refreshed (never updated by ordinary requests)
    last_used = Timestamptz(null=True, default=None)


class Operator(Table, tablename="operator"):
    id = Varchar(length=32, primary_key=True)
    username = Varchar(length=64, unique=True)
    password_hash = Varchar(length=160)
    role = Varchar(length=24)
    status = Varchar(length=16, default="active")
    created_at = Timestamptz(default=TimestamptzNow())


class OperatorToken(Table, tablename="operator_token"):
    digest = Varchar(length=64, primary_key=True)
    operator = ForeignKey(references=Operator, null=False, index=True)
    expires_at = BigInt()
    revoked = Boolean(default=False)


class AuditEvent(Table, tablename="audit_event"):
    """Who did what to which record, when and why.  Holds ids, never personal data."""

    id = Serial(primary_key=True)
    at = Timestamptz(default=TimestamptzNow(), index=True)
    actor_kind = Varchar(length=16)
    actor_id = Varchar(length=40)
    action = Varchar(length=40, index=True)
    target_kind = Varchar(length=16)
    target_id = Varchar(length=40, index=True)
    reason = Text(default="")
    detail = JSON(default="{}")


class IdempotencyRecord(Table, tablename="idempotency_record"):
    key = Varchar(length=200, primary_key=True)  # caller id + the client's Idempotency-Key
    request_digest = Varchar(length=64)
    status_code = Integer()
    body = Bytea()  # the response, AES-256-GCM under the field key (ecard.idempotency)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_ms = BigInt(default=0, index=True)  # not replayed from then on, and purged


class CardBatch(Table, tablename="card_batch"):
    """A batch of stock cards (库存卡) made for one outlet (网点): ``produced`` until delivered
    there.
    Its cards are listed in :class:`CardBatchItem` (the card table stays as it is)."""

    id = Varchar(length=32, primary_key=True)
    outlet = Varchar(length=64, index=True)
    region = Varchar(length=6, index=True)
    status = Varchar(length=16, default="produced")  # produced | delivered
    card_count = Integer(default=0)
    created_by = Varchar(length=64)
    created_at = Timestamptz(default=TimestamptzNow())
    delivered_by = Varchar(length=64, null=True, default=None)
    delivered_at = Timestamptz(null=True, default=None)


class CardBatchItem(Table, tablename="card_batch_item"):
    """Which batch a stock card came in (a card is in at most one batch)."""

    id = Serial(primary_key=True)
    batch = ForeignKey(references=CardBatch, null=False, index=True)
    card = ForeignKey(references=Card, null=False, unique=True)


class LivenessEvidence(Table, tablename="liveness_evidence"):
    """A channel's 实人 (live-person) check that let an e-card be issued or a password be reset
    (``docs/front-door.md``): which check, when, the channel's own reference and a digest of the
    signed evidence — never the evidence itself, never personal data."""

    id = Varchar(length=32, primary_key=True)
    ecard = ForeignKey(references=ECard, null=False, index=True)
    card = ForeignKey(references=Card, null=False, index=True)
    channel = ForeignKey(references=ApiClient, null=False, index=True)
    method = Varchar(length=32)  # ecard.registry.evidence.METHODS
    checked_at = BigInt()  # the evidence's iat (epoch seconds)
    channel_reference = Varchar(length=128)
    jti = Varchar(length=128, index=True)
    jws_digest = Varchar(length=64, unique=True)  # SHA-256 of the compact JWS, hex
    purpose = Varchar(length=16)  # issuance | password_reset
    created_at = Timestamptz(default=TimestamptzNow())


class HolderCredential(Table, tablename="holder_credential"):
    """A person's 电子社保卡密码 (one per person, valid on every channel): an argon2id hash and the
    wrong-attempt state, kept here so a lock survives restarts."""

    id = Varchar(length=32, primary_key=True)
    person = ForeignKey(references=Person, null=False, unique=True)
    password_hash = Varchar(length=160)
    failures = Integer(default=0)  # wrong attempts since the last right one
    locked_until = BigInt(null=True, default=None)  # epoch seconds; null when not locked
    set_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())


TABLES: list[type[Table]] = [
    Person,
    Card,
    CardStatusEvent,
    ApiClient,
    ECard,
    HolderSession,
    Operator,
    OperatorToken,
    AuditEvent,
    IdempotencyRecord,
    CardBatch,
    CardBatchItem,
    LivenessEvidence,
    HolderCredential,
]
