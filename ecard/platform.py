"""The running service's shared parts, built once per process and handed to every service."""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from functools import cached_property

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine

from ecard.crypto.fields import FieldCipher
from ecard.settings import Settings
from ecard.store import db
from ecard.store.ephemeral import EphemeralStore, open_store
from ecard.store.keyfiles import KeyringSource, key_provider_of


@dataclass
class Platform:
    settings: Settings
    engine: Engine
    store: EphemeralStore
    keys: KeyringSource
    started_at: float = field(default_factory=time.time)

    @cached_property
    def field_cipher(self) -> FieldCipher:
        return FieldCipher(self.keys.ring.secrets.key("field_key"))

    @property
    def index_key(self) -> bytes:
        return self.keys.ring.secrets.key("index_key")

    @property
    def pseudonym_key(self) -> bytes:
        return self.keys.ring.secrets.key("pseudonym_key")

    @cached_property
    def holder_token_key(self) -> bytes:
        """MAC key of holder access tokens, derived from the pseudonym key (which never rotates)
        by HKDF with its own label, so no new secret has to be generated and distributed."""
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"ecard-holder-access:v1"
        ).derive(self.pseudonym_key)

    async def close(self) -> None:
        await self.store.close()
        await db.close_engine(self.engine)


async def open_platform(settings: Settings, *, migrate: bool | None = None) -> Platform:
    """Connect everything; embedded (SQLite) deployments migrate on start-up by default."""
    engine = db.make_engine(settings.database_url)
    db.bind_engine(engine)
    if migrate if migrate is not None else settings.is_sqlite:
        with contextlib.redirect_stdout(io.StringIO()):  # piccolo prints progress; logs stay JSON
            await db.migrate(engine)
    else:
        await db.prepare_sqlite(engine)
    if isinstance(engine, PostgresEngine):
        await engine.start_connection_pool(min_size=1, max_size=10)
    store = open_store(settings.redis_url, settings.redis_prefix)
    await store.store_started_at()  # mark when the store's contents begin (single-use codes)
    return Platform(
        settings=settings,
        engine=engine,
        store=store,
        keys=KeyringSource(settings.keys_dir, key_provider_of(settings)),
    )
