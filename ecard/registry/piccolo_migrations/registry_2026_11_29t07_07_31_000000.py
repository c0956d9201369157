"""Give the cards registered before ``card.chip_reference`` existed their reference."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.engine.finder import engine_finder
from piccolo.table import Table

from ecard.terminal.card_model import chip_reference

ID = "2026-11-29T07:07:31:000000"
VERSION = "1.38.0"
DESCRIPTION = "backfill card.chip_reference"

BATCH = 1_000


class Card(Table, tablename="card"):
    """The columns this migration reads and writes, as they are at this point of the history."""

    id = Varchar(length=32, primary_key=True)
    region = Varchar(length=6)
    identification_code = Varchar(length=32)
    chip_reference = Varchar(length=32, null=True, default=None)


async def backfill() -> None:
    Card._meta.db = engine_finder()  # the engine migrating now, not the one bound at import
    after = ""
    while True:
        rows = await (
            Card.select(Card.id, Card.region, Card.identification_code)
            .where((Card.id > after) & Card.chip_reference.is_null())
            .order_by(Card.id)
            .limit(BATCH)
        )
        if not rows:
            return
        for row in rows:
            reference = chip_reference(row["region"], row["identification_code"])
            if reference is not None:
                await Card.update({Card.chip_reference: reference}).where(Card.id == row["id"])
        after = rows[-1]["id"]


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="registry", description=DESCRIPTION)
    manager.add_raw(backfill)
    return manager
