"""Existing partners become filings (issue 18) on SQLite and PostgreSQL: a database at the schema
before filings, with rows of both older tables, is migrated by the service's own migrations; every
client keeps its id, its secret and its key, and its status maps to the workflow's."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from piccolo.apps.migrations.commands.forwards import run_forwards
from piccolo.columns import Varchar
from piccolo.table import Table

from ecard.crypto.jwk import public_jwk
from tests.helpers import basic, bearer, identity_number, lifespan_of

#: the last registry migration before filings
BEFORE_FILINGS = "2026-12-03T14:50:00:000000"

DEPARTMENT_SECRET = "eccs_" + "d" * 43
VERIFIER_SECRET = "eccs_" + "v" * 43
RP_SECRET = "ecrp_" + "r" * 43
DATA_RP_SECRET = "eccs_" + "x" * 43


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Raw(Table, tablename="api_client"):
    """For raw statements on the old schema (bound to the test's engine)."""

    id = Varchar(length=40, primary_key=True)


@pytest.fixture(params=["embedded", "postgres"])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    environ = {"ECARD_LOG_JSON": "true", "ECARD_LOG_LEVEL": "WARNING"}
    if request.param == "embedded":
        environ["ECARD_DATABASE_URL"] = f"sqlite:///{tmp_path}/old.db"
    else:
        environ["ECARD_DATABASE_URL"] = request.getfixturevalue("fresh_postgres_url")
        environ["ECARD_REDIS_URL"] = request.getfixturevalue("redis_url")
        environ["ECARD_REDIS_PREFIX"] = f"t{uuid.uuid4().hex[:10]}:"
    return request.param, environ


async def migrate_to_before_filings(url: str, key: ec.EllipticCurvePrivateKey) -> None:
    from ecard.store import db

    engine = db.make_engine(url)
    try:
        db.bind_engine(engine)
        await db.prepare_sqlite(engine)
        for app, upto in (("registry", BEFORE_FILINGS), ("oidc", "all")):
            result = await run_forwards(app_name=app, migration_id=upto)
            assert result.success, result.message
        jwk = json.dumps(public_jwk(key.public_key()))
        Raw._meta.db = engine
        clients = (
            ("de_old", "department", "老部门", digest(DEPARTMENT_SECRET), jwk, "active", []),
            (
                "ve_old",
                "verifier",
                "老核验方",
                digest(VERIFIER_SECRET),
                None,
                "disabled",
                ["masked_name"],
            ),
            (
                "re_old",
                "relying_party",
                "同名站点",
                digest(DATA_RP_SECRET),
                None,
                "active",
                ["card.status"],
            ),
        )
        for client_id, kind, name, secret, key_text, status, entitlements in clients:
            await Raw.raw(
                "INSERT INTO api_client (id, kind, name, secret_digest, public_jwk, status,"
                " regions, entitlements, created_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {},"
                " CURRENT_TIMESTAMP)",
                client_id,
                kind,
                name,
                secret,
                key_text,
                status,
                json.dumps(["*"]),
                json.dumps(entitlements),
            )
        parties = (
            (
                "rp_live",
                "同名站点",
                "old.rp.test",
                "client_secret_basic",
                digest(RP_SECRET),
                None,
                "live",
            ),
            ("rp_pending", "待审网站", "p.rp.test", "private_key_jwt", None, jwk, "pending"),
        )
        for client_id, name, sector, method, secret, key_text, status in parties:
            await Raw.raw(
                "INSERT INTO oidc_client (id, name, redirect_uris, post_logout_redirect_uris,"
                " scopes, client_type, auth_method, secret_digest, public_jwk, sector, status,"
                " filed_by, created_at, updated_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {},"
                " {}, {}, {}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
                client_id,
                name,
                json.dumps([f"https://{sector}/cb"]),
                "[]",
                json.dumps(["openid", "profile"]),
                "confidential",
                method,
                secret,
                key_text,
                sector,
                status,
                "op1",
            )
    finally:
        await db.close_engine(engine)


@asynccontextmanager
async def service(environ: dict[str, str]) -> AsyncIterator[tuple[httpx.AsyncClient, dict]]:
    from ecard.app import create_app
    from ecard.platform import open_platform
    from ecard.registry.service import AccessService
    from ecard.settings import load_settings

    settings = load_settings(environ)
    platform = await open_platform(settings, migrate=True)
    try:
        app = create_app(settings, platform=platform)
        async with (
            lifespan_of(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver.local"
            ) as client,
        ):
            await AccessService(platform).create_operator("mig-admin", "pw-" + "m" * 16, "admin")
            login = await client.post(
                "/operator/v1/login", json={"username": "mig-admin", "password": "pw-" + "m" * 16}
            )
            yield client, bearer(login.json()["access_token"])
    finally:
        await platform.close()


async def test_both_tables_rows_become_filings_keeping_ids_secrets_and_keys(old_database, keys_dir):
    backend, environ = old_database
    environ["ECARD_KEYS_DIR"] = keys_dir
    key = ec.generate_private_key(ec.SECP256R1())
    await migrate_to_before_filings(environ["ECARD_DATABASE_URL"], key)
    async with service(environ) as (client, op):
        apps = "/operator/v1/applications"

        async def filing(client_id: str) -> dict:
            response = await client.get(f"{apps}/{client_id}", headers=op)
            assert response.status_code == 200, response.text
            return response.json()

        department, verifier = await filing("de_old"), await filing("ve_old")
        data_rp = await filing("re_old")
        assert department["status"] == "live" and "department" in department["capabilities"]
        assert verifier["status"] == "suspended"
        assert verifier["capabilities"]["verifier"] == {"fields": ["masked_name"]}
        assert data_rp["capabilities"]["data"]["scopes"] == ["card.status"]
        assert data_rp["name"] == "同名站点"
        live_rp, pending_rp = await filing("rp_live"), await filing("rp_pending")
        assert live_rp["status"] == "live" and "login" in live_rp["capabilities"]
        assert live_rp["name"] == "同名站点 (OIDC rp_live)"  # the clash got a clear suffix
        assert live_rp["capabilities"]["login"]["sector"] == "old.rp.test"
        assert pending_rp["status"] == "submitted"
        steps = (await client.get(f"{apps}/rp_pending/steps", headers=op)).json()
        assert [(s["step"], s["from_status"], s["to_status"]) for s in steps] == [
            ("migrate", "pending", "submitted")
        ]

        # the older paths show them in their own vocabulary
        older = await client.get("/operator/v1/clients/ve_old", headers=op)
        assert older.json()["status"] == "disabled"
        assert (await client.get("/operator/v1/oidc/clients/rp_pending", headers=op)).json()[
            "status"
        ] == "pending"

        # secrets and keys moved, and work as before
        probe = {"name": "张三", "identity_number": identity_number(), "card_number": "A1"}
        checks = "/department/v1/identity-checks"
        ok = await client.post(checks, json=probe, headers=basic("de_old", DEPARTMENT_SECRET))
        assert ok.status_code == 200, ok.text
        from ecard.settings import load_settings

        claims = {
            "iss": "de_old",
            "sub": "de_old",
            "aud": load_settings(environ).public_url.rstrip("/"),
            "exp": int(time.time()) + 60,
            "jti": "migrated-key",
        }
        signed = bearer(jwt.encode(claims, key, "ES256"))
        assert (await client.post(checks, json=probe, headers=signed)).status_code == 200
        wrong = await client.post(checks, json=probe, headers=basic("de_old", VERIFIER_SECRET))
        assert wrong.status_code == 401
        token = await client.post(
            "/oidc/token",
            auth=("rp_live", RP_SECRET),
            data={
                "grant_type": "authorization_code",
                "code": "x",
                "redirect_uri": "https://old.rp.test/cb",
            },
        )
        assert token.status_code == 400 and token.json()["error"] == "invalid_grant", token.text
        refused = await client.post(
            "/oidc/token",
            auth=("rp_live", DATA_RP_SECRET),
            data={"grant_type": "authorization_code", "code": "x"},
        )
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        assert "www-authenticate" in refused.headers
        creds = (await client.get(f"{apps}/rp_pending/credentials", headers=op)).json()
        assert [c["kind"] for c in creds] == ["jwk"] and creds[0]["kid"]
        kinds = sorted(
            c["kind"] for c in (await client.get(f"{apps}/de_old/credentials", headers=op)).json()
        )
        assert kinds == ["jwk", "secret"]
    assert backend in ("embedded", "postgres")
