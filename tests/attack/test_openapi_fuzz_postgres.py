"""Every test of ``test_openapi_fuzz`` (schemathesis, positive and negative generation, and the
hostile corpus, as every kind of caller) again on PostgreSQL + Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.attack.test_openapi_fuzz import (  # noqa: F401 - the same tests, run on PostgreSQL
    target,
    test_every_operation_is_fuzzed,
    test_hostile_corpus,
    test_operation,
)
from tests.helpers import admin_sql, database_url


@pytest.fixture(scope="module")
def backend(
    postgres_server_url: str, migrated_postgres_template: str, redis_url: str
) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database (from the migrated template) and Redis under a prefix
    of its own."""
    name = f"ecard_fz_{uuid.uuid4().hex[:12]}"
    admin_sql(
        postgres_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{migrated_postgres_template}"'
    )
    try:
        yield {
            "ECARD_DATABASE_URL": database_url(postgres_server_url, name),
            "ECARD_REDIS_URL": redis_url,
            "ECARD_REDIS_PREFIX": f"fz{uuid.uuid4().hex[:8]}:",
        }
    finally:
        admin_sql(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
