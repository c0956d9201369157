"""Every partner becomes one filing (issue 18), keeping its client id and its credentials.

- each ``api_client`` row keeps its id; its status ``active`` becomes ``live``, any other
  (``disabled``) ``suspended``; its ``kind`` and entitlements become its one capability;
- each ``oidc_client`` row becomes an ``api_client`` row (a filing with the ``login`` capability)
  under the same id; a name already taken by an ``api_client`` gets the suffix
  `` (OIDC <id>)``; pending → submitted, the other statuses keep their names;
- every stored secret digest and public JWK moves to ``partner_credential`` (no end date), so a
  deployed partner's id, secret and key work as before;
- one ``filing_step`` row (step ``migrate``) per filing records the old and the new status;
- then the old copies go: ``api_client.secret_digest`` / ``public_jwk`` and
  ``oidc_client.status`` / ``secret_digest`` / ``public_jwk`` are dropped.

Runs on SQLite (3.35 or later, for DROP COLUMN) and PostgreSQL.  An ``oidc_client`` id that is
also an ``api_client`` id (ids are random, with different prefixes) stops the migration."""

import base64
import hashlib
import json
import secrets
import time
from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Varchar
from piccolo.engine.finder import engine_finder
from piccolo.table import Table

ID = "2026-12-03T16:32:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "api_client and oidc_client rows become filings; credentials move"

ACTOR = "system:migration"
KIND_CAPABILITY = {
    "channel": "channel",
    "verifier": "verifier",
    "relying_party": "data",
    "department": "department",
    "terminal": "terminal",
}
OIDC_STATUS = {"pending": "submitted"}


class ApiClient(Table, tablename="api_client", schema=None):
    id = Varchar(length=40, primary_key=True)


def _decoded(value: Any) -> Any:
    for _ in range(2):  # a JSON column may hold a JSON text of the JSON text
        if not isinstance(value, str):
            break
        value = json.loads(value)
    return value


def _thumbprint(jwk: dict[str, str]) -> str | None:
    if jwk.get("kty") != "EC":
        return None
    canonical = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True
    )
    return (
        base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    )


async def _credential(application: str, digest: Any, jwk: Any) -> None:
    now = int(time.time())
    if digest:
        await ApiClient.raw(
            "INSERT INTO partner_credential (id, application, kind, secret_digest, created_at,"
            " created_by) VALUES ({}, {}, 'secret', {}, {}, {})",
            secrets.token_hex(16),
            application,
            digest,
            now,
            ACTOR,
        )
    key = _decoded(jwk) if jwk else None
    if isinstance(key, dict) and key:
        await ApiClient.raw(
            "INSERT INTO partner_credential (id, application, kind, public_jwk, kid, created_at,"
            " created_by) VALUES ({}, {}, 'jwk', {}, {}, {}, {})",
            secrets.token_hex(16),
            application,
            json.dumps(key),
            _thumbprint(key),
            now,
            ACTOR,
        )


async def _step(application: str, from_status: str, to_status: str, **detail: Any) -> None:
    await ApiClient.raw(
        "INSERT INTO filing_step (application, step, from_status, to_status, actor, reason, detail)"
        " VALUES ({}, 'migrate', {}, {}, {}, {}, {})",
        application,
        from_status,
        to_status,
        ACTOR,
        "one filing per partner (issue 18)",
        json.dumps(detail),
    )


async def move() -> None:
    engine = engine_finder()
    if engine is None:
        raise RuntimeError("no database engine configured")
    ApiClient._meta.db = engine  # this run's database, not the one this module was imported for
    clients = await ApiClient.raw(
        "SELECT id, kind, name, status, entitlements, secret_digest, public_jwk FROM api_client"
    )
    names = {row["name"] for row in clients}
    ids = {row["id"] for row in clients}
    for row in clients:
        status = "live" if row["status"] == "active" else "suspended"
        capability = KIND_CAPABILITY.get(row["kind"], row["kind"])
        entitlements = list(_decoded(row["entitlements"]) or [])
        settings: dict[str, Any] = {
            "verifier": {"fields": entitlements},
            "data": {"scopes": entitlements, "purposes": []},
            "terminal": {"entitlements": entitlements},
        }.get(capability, {})
        await ApiClient.raw(
            "UPDATE api_client SET status = {}, capabilities = {} WHERE id = {}",
            status,
            json.dumps({capability: settings}),
            row["id"],
        )
        await _credential(row["id"], row["secret_digest"], row["public_jwk"])
        await _step(row["id"], row["status"], status)
    relying_parties = await ApiClient.raw(
        "SELECT id, name, status, secret_digest, public_jwk, created_at, updated_at"
        " FROM oidc_client"
    )
    for row in relying_parties:
        if row["id"] in ids:
            raise RuntimeError(f"oidc_client {row['id']} is also an api_client id: resolve by hand")
        name = row["name"]
        if name in names:
            suffix = f" (OIDC {row['id']})"
            name = name[: 128 - len(suffix)] + suffix
        names.add(name)
        status = OIDC_STATUS.get(row["status"], row["status"])
        await ApiClient.raw(
            "INSERT INTO api_client (id, kind, name, status, regions, entitlements, capabilities,"
            " organisation, created_at, updated_at)"
            " VALUES ({}, 'login', {}, {}, {}, '[]', {}, '', {}, {})",
            row["id"],
            name,
            status,
            json.dumps(["*"]),
            json.dumps({"login": {}}),
            row["created_at"],
            row["updated_at"],
        )
        if name != row["name"]:
            await ApiClient.raw("UPDATE oidc_client SET name = {} WHERE id = {}", name, row["id"])
        await _credential(row["id"], row["secret_digest"], row["public_jwk"])
        await _step(
            row["id"],
            row["status"],
            status,
            renamed_from=row["name"] if name != row["name"] else None,
        )
    await engine.run_ddl("UPDATE api_client SET updated_at = created_at WHERE updated_at IS NULL")
    await engine.run_ddl("DROP INDEX IF EXISTS oidc_client_status")
    for table, column in (
        ("api_client", "secret_digest"),
        ("api_client", "public_jwk"),
        ("oidc_client", "status"),
        ("oidc_client", "secret_digest"),
        ("oidc_client", "public_jwk"),
    ):
        await engine.run_ddl(f"ALTER TABLE {table} DROP COLUMN {column}")


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="partners", description=DESCRIPTION)
    manager.add_raw(move)
    return manager
