"""Indexes of the holder's timeline (``ecard.timeline``): each of its sources is read newest first
by the key that names the holder's cards, so each page is a short index range scan:

- ``terminal_record (reference, accepted_at, id)``: offline acceptances by card or HCE
  certificate reference (no index on ``reference`` existed);
- ``code_verification (pseudonym, at, id)``: one card's verifications newest first (the index on
  ``pseudonym`` alone makes the database sort every verification of the card for each page);
- ``audit_event (actor_id, at, id)``: a holder's answers to scan-to-login (no index on the actor).

In the terminal app because its migrations run last (``ecard.domains.DOMAINS``): the three
tables exist by then on a new database.  Plain ``CREATE INDEX`` (piccolo runs a migration in a
transaction, where PostgreSQL refuses ``CONCURRENTLY``): on a large deployment, build them
beforehand with ``CREATE INDEX CONCURRENTLY`` under the same names and this step finds them."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.finder import engine_finder

ID = "2026-12-03T14:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes of the holder's timeline"

INDEXES = (
    ("terminal_record_reference_timeline", "terminal_record", "reference, accepted_at, id"),
    ("code_verification_pseudonym_timeline", "code_verification", "pseudonym, at, id"),
    ("audit_event_actor_timeline", "audit_event", "actor_id, at, id"),
)


async def create_indexes() -> None:
    engine = engine_finder()
    for name, table, columns in INDEXES:
        await engine.run_ddl(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})")


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="terminal", description=DESCRIPTION)
    manager.add_raw(create_indexes)
    return manager
