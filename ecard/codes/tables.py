"""Tables of the code service: card pseudonyms, the verification record, the revocation log.

No personal data: a pseudonym is a keyed hash, a verification names ids and a reason code.
"""

from __future__ import annotations

from piccolo.columns import BigInt, ForeignKey, Integer, Serial, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from ecard.registry.tables import ApiClient, Card


class CodePseudonym(Table, tablename="code_pseudonym"):
    """Pseudonym (hex) -> card, written the first time a card's code is issued, so an online
    verifier can find the card a code speaks for without the pseudonym being reversible."""

    pseudonym = Varchar(length=32, primary_key=True)
    card = ForeignKey(references=Card, null=False, unique=True)


class CodeVerification(Table, tablename="code_verification"):
    """One online verification: who asked, when, about which card (its pseudonym, as the code
    names it: recording it needs no lookup), with what result."""

    id = Serial(primary_key=True)
    at = Timestamptz(default=TimestamptzNow())
    verifier = ForeignKey(references=ApiClient, null=False, index=True)
    #: the card, where the verification read it from the registry (its status unknown to the
    #: shared store, or a verifier entitled to more than the code shows); null otherwise
    card = ForeignKey(references=Card, null=True, default=None, index=True)
    pseudonym = Varchar(length=32, null=True, default=None, index=True)  # once the signature held
    code_id = Varchar(length=32, null=True, default=None)
    region = Varchar(length=6, null=True, default=None)
    result = Varchar(length=32)  # "valid" or a reason code


class RevocationChange(Table, tablename="revocation_change"):
    """The revocation list as a log: each published version adds (``reason`` ``"revoked"``) or
    removes (``reason`` null) cards.  The set at version N is the fold of every change up to N.
    Why a card is revoked is the registry's; the log (like the public list) never says it, and
    ``revoked_at`` stays 0 (rows written before format 2 were scrubbed by a migration)."""

    id = Serial(primary_key=True)
    version = Integer(index=True)
    region = Varchar(length=6)
    pseudonym = Varchar(length=32)
    reason = Varchar(length=16, null=True, default=None)
    revoked_at = BigInt(default=0)


class RevocationHead(Table, tablename="revocation_head"):
    """The one row naming the latest published revocation version; publishing moves it with a
    compare-and-set on ``version``, so two workers can never publish the same version twice."""

    id = Integer(primary_key=True)
    version = Integer()
    digest = Varchar(length=64)
    published_at = BigInt()


class RevocationVersion(Table, tablename="revocation_version"):
    """When each version was published: its list is signed (deterministically) with this time
    and served so ever after, byte for byte; an old version is never stamped afresh."""

    version = Integer(primary_key=True)
    published_at = BigInt()
    digest = Varchar(length=64)


TABLES: list[type[Table]] = [
    CodePseudonym,
    CodeVerification,
    RevocationChange,
    RevocationHead,
    RevocationVersion,
]
