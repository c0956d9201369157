"""Tables of the service zone.  Code lists are stored as ``,a,b,`` text so that one ``LIKE``
finds a code on SQLite and PostgreSQL alike; ``search_text`` is the normalized text free-text
search reads.  Rows of other provinces (``source`` ``peer``) are written only from their signed
feeds; rows of this deployment's provinces (``local``) only by its operators.

No personal data: applications and institutions are organisations.
"""

from __future__ import annotations

from piccolo.columns import BigInt, DoublePrecision, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class DirectoryApplication(Table, tablename="directory_application"):
    """The public listing of a filing; ``client_id`` is the filing's ``api_client`` id at its
    province, and ``id`` is ``<province>-<client_id>``."""

    id = Varchar(length=56, primary_key=True)
    province = Varchar(length=6, index=True)
    client_id = Varchar(length=48, index=True)
    source = Varchar(length=8, default="local")  # local | peer
    status = Varchar(length=12, default="listed")  # listed | withdrawn
    name_zh = Varchar(length=128)
    name_en = Varchar(length=128)
    operator_zh = Varchar(length=128)
    operator_en = Varchar(length=128)
    scenarios = Text(default=",")
    media = Text(default=",")
    regions = Text(default=",")
    entry_url = Varchar(length=512, null=True, default=None)
    description_zh = Text(default="")
    description_en = Text(default="")
    search_text = Text(default="")
    #: for local rows, whether the last feed published it (its filing live): a change bumps version
    published = Integer(default=0)
    version = BigInt(default=0, index=True)  # the directory version that last changed it
    updated_at = Timestamptz(default=TimestamptzNow())


class DirectoryInstitution(Table, tablename="directory_institution"):
    """A place where the card is used; ``id`` is ``<province>-<key>``.  ``declared`` holds the
    media it says it accepts; ``media`` and ``terminals`` what was last published (local rows:
    ``declared`` ∩ its live terminals' media, recomputed before each feed) or received (peers)."""

    id = Varchar(length=56, primary_key=True)
    province = Varchar(length=6, index=True)
    source = Varchar(length=8, default="local")
    status = Varchar(length=12, default="listed")
    uscc = Varchar(length=18, index=True)
    name_zh = Varchar(length=128)
    name_en = Varchar(length=128)
    kind = Varchar(length=32)
    address_zh = Varchar(length=256)
    address_en = Varchar(length=256, default="")
    region = Varchar(length=6, index=True)
    lat = DoublePrecision(index=True)
    lon = DoublePrecision()
    hours = Text(default="[]")  # JSON list of OpeningHours
    scenarios = Text(default=",")
    declared = Text(default=",")
    media = Text(default=",")
    terminals = Integer(default=0)
    search_text = Text(default="")
    version = BigInt(default=0, index=True)
    updated_at = Timestamptz(default=TimestamptzNow())


class DirectoryTerminal(Table, tablename="directory_terminal"):
    """A registered terminal (``terminal.id``, its ``api_client`` id) installed at a local
    institution, and the media it accepts there (``,chip_card,qr_code,``)."""

    id = Varchar(length=100, primary_key=True)  # <institution>/<terminal>
    institution = Varchar(length=56, index=True)
    terminal = Varchar(length=40, index=True)
    media = Text(default=",")


class DirectoryHead(Table, tablename="directory_head"):
    """One row: this deployment's directory version; every local change takes the next one in
    its own transaction (the row lock orders commits, so a delta never misses a change)."""

    id = Integer(primary_key=True)
    version = BigInt(default=0)


class DirectoryPeerState(Table, tablename="directory_peer_state"):
    """How far this deployment follows a peer's feed (by feed URL), held against rollback."""

    url = Varchar(length=512, primary_key=True)
    publisher = Varchar(length=6, default="")
    version = BigInt(default=0)
    fetched_at = BigInt(default=0)  # epoch seconds of the last feed applied
    checked_at = BigInt(default=0)  # epoch seconds of the last attempt
    last_error = Varchar(length=256, default="")


TABLES: list[type[Table]] = [
    DirectoryApplication,
    DirectoryInstitution,
    DirectoryTerminal,
    DirectoryHead,
    DirectoryPeerState,
]
