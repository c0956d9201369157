"""The ``ecard`` command: serve, db, keys, demo, registry, operator."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature

from ecard.crypto.keyring import Keyring, KeyringError
from ecard.settings import Settings, SettingsError, load_settings, served_url
from ecard.store.keyfiles import (
    KeyringMissing,
    key_provider_of,
    keyring_path,
    load_keyring,
    save_keyring,
)

if TYPE_CHECKING:
    from ecard.crypto.provider import KeyProvider


def _settings(args: argparse.Namespace) -> Settings:
    if getattr(args, "config", None):
        os.environ["ECARD_CONFIG"] = str(Path(args.config).resolve())
    return load_settings()


def ensure_keys(settings: Settings) -> Keyring:
    """Development convenience: generate keys on first start; production must run ``keys init``."""
    try:
        return load_keyring(settings.keys_dir)
    except KeyringMissing:
        if settings.env != "dev":
            raise
        ring = Keyring.create([settings.region_code], keys=key_provider_of(settings))
        path = save_keyring(settings.keys_dir, ring)
        print(f"generated development keys into {path}", file=sys.stderr)
        return ring


# --- serve -------------------------------------------------------------------------------------


GRANIAN_LOG_HANDLERS = {
    "console": {
        "formatter": "generic",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    },
    "access": {
        "formatter": "access",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    },
}


def cmd_serve(args: argparse.Namespace) -> int:
    # --host/--port become the settings every worker loads (ecard.asgi reads the environment),
    # so an unset ECARD_PUBLIC_URL follows the address actually served
    if args.host:
        os.environ["ECARD_HOST"] = args.host
    if args.port:
        os.environ["ECARD_PORT"] = str(args.port)
    settings = _settings(args)
    if args.workers > 1 and not settings.redis_url:
        print(
            "refusing --workers > 1 on the in-process store: single-use codes, login sessions and "
            "rate limits must be shared by all workers. Set ECARD_REDIS_URL (and use PostgreSQL).",
            file=sys.stderr,
        )
        return 2
    ensure_keys(settings)
    from ecard.platform import open_platform

    async def prepare() -> None:  # migrate once, before workers start
        platform = await open_platform(settings, migrate=True)
        await platform.close()

    asyncio.run(prepare())
    from granian.constants import Interfaces
    from granian.server import Server

    print(
        f"ecard serving on {served_url(settings.host, settings.port)} as {settings.public_url} "
        f"(workers: {args.workers})",
        file=sys.stderr,
    )
    Server(
        "ecard.asgi:app",
        address=settings.host,
        port=settings.port,
        interface=Interfaces.RSGI,  # ecard.rsgi: the hot routes natively, the rest bridged to ASGI
        workers=args.workers,
        # granian's own warnings and errors (a worker that failed to start, a crash) on stderr;
        # the application logs every request itself (ecard.edge), so no access log here
        log_enabled=True,
        log_level="warning",
        log_access=False,
        log_dictconfig={"handlers": GRANIAN_LOG_HANDLERS},
        # a worker that dies is started again (granian logs "Unexpected exit from worker-N" and
        # the worker's faulthandler its stack); a worker that dies again within 5.5 s of its
        # respawn is a crash loop, and then the server exits rather than spin
        respawn_failed_workers=True,
        respawn_interval=1.0,
        # a worker that has not finished its shutdown (draining the ledger relay, closing pools)
        # 30 s after being asked is killed, so a stuck worker cannot hold a restart forever
        workers_kill_timeout=30,
    ).serve()
    return 0


# --- db ----------------------------------------------------------------------------------------


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from ecard.store import db

    settings = _settings(args)

    async def run() -> None:
        engine = db.make_engine(settings.database_url)
        try:
            await db.migrate(engine)
        finally:  # an open SQLite connection's thread would keep the process from exiting
            await db.close_engine(engine)

    asyncio.run(run())
    print("migrations applied")
    return 0


def cmd_db_maintain(args: argparse.Namespace) -> int:
    from ecard.store.partitions import run_command

    return run_command(_settings(args), dry_run=args.dry_run, drop_detached=args.drop_detached)


# --- keys --------------------------------------------------------------------------------------


def cmd_keys(args: argparse.Namespace) -> int:
    from ecard.crypto.provider import KeyProviderError

    settings = _settings(args)
    try:
        provider = key_provider_of(settings)
        try:
            return _keys(args, settings, provider)
        finally:
            provider.close()
    except KeyProviderError as exc:  # the HSM: unreachable, PIN refused, key missing
        print(f"key provider ({settings.key_provider}): {exc}", file=sys.stderr)
        return 2


def _keys(args: argparse.Namespace, settings: Settings, provider: KeyProvider) -> int:
    if args.keys_cmd == "init":
        regions: list[str] = args.region or [settings.region_code]
        if keyring_path(settings.keys_dir).exists() and not args.force:
            print(
                f"{keyring_path(settings.keys_dir)} exists; use --force to replace it",
                file=sys.stderr,
            )
            return 1
        ring = Keyring.create(regions, keys=provider)
        print(f"wrote {save_keyring(settings.keys_dir, ring)} ({provider.name} provider)")
        for region in regions if args.card_masters else []:
            made = provider.ensure_card_masters(region)
            print(f"card master keys of {region}: {'generated' if made else 'present'}")
        return _print_keys(ring)
    ring = load_keyring(settings.keys_dir)
    if args.keys_cmd == "list":
        return _print_keys(ring)
    if args.keys_cmd == "check":
        return _check_keys(ring, provider)
    try:
        if args.keys_cmd == "rotate":
            key = ring.rotate(args.region, keys=provider)
        elif args.keys_cmd == "add-region":
            key = ring.add_region(args.region, keys=provider)
        elif args.keys_cmd == "retire":
            key = ring.retire(args.kid)
        else:
            key = ring.withdraw(args.kid, keys=provider)
    except KeyringError as exc:
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 1
    save_keyring(settings.keys_dir, ring)
    print(f"{args.keys_cmd}: {key.kid} ({key.region}) is now {key.status}")
    # private halves nothing needs any more (withdrawn, retired past their window) are destroyed
    # only now that the keyring no longer names them as signers
    if pruned := provider.prune(ring):
        save_keyring(settings.keys_dir, ring)
        for old in pruned:
            print(f"destroyed the private key of {old.kid} ({old.status})")
    return _print_keys(ring)


def _check_keys(ring: Keyring, provider: KeyProvider) -> int:
    """Every key that may sign signs, in the provider, and its signature verifies."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    failed = 0
    for key in ring.keys:
        if key.status != "active":
            continue
        signature = provider.private_key(key).sign(b"ecard keys check", ec.ECDSA(hashes.SHA256()))
        try:
            key.public_key().verify(signature, b"ecard keys check", ec.ECDSA(hashes.SHA256()))
            print(f"{key.kid}  {key.role:<6}  {key.region or '-':<6}  signs ({provider.name})")
        except InvalidSignature:
            failed += 1
            print(f"{key.kid}  {key.role:<6}  {key.region or '-':<6}  WRONG KEY", file=sys.stderr)
    return 1 if failed else 0


def _print_keys(ring: Keyring) -> int:
    for key in ring.keys:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(key.created_at))
        print(
            f"{key.kid}  {key.role:<6}  {key.region or '-':<6}  {key.status:<9}  created {created}"
        )
    return 0


# --- operators, demo, import -------------------------------------------------------------------


async def _with_platform(settings: Settings, work):  # type: ignore[no-untyped-def]
    from ecard.platform import open_platform

    ensure_keys(settings)
    platform = await open_platform(settings, migrate=True)
    try:
        return await work(platform)
    finally:
        await platform.close()


def cmd_operator_create(args: argparse.Namespace) -> int:
    from ecard.errors import AppError
    from ecard.registry.service import AccessService

    settings = _settings(args)
    password = (
        sys.stdin.readline().rstrip("\n") if args.password_stdin else getpass.getpass("password: ")
    )
    if len(password) < 12:
        print("the password must be at least 12 characters", file=sys.stderr)
        return 1
    try:
        operator_id = asyncio.run(
            _with_platform(
                settings,
                lambda p: AccessService(p).create_operator(args.username, password, args.role),
            )
        )
    except AppError as exc:
        print(f"{exc.code}: {exc}", file=sys.stderr)
        return 1
    print(f"operator {args.username} ({args.role}) created: {operator_id}")
    return 0


def cmd_demo_init(args: argparse.Namespace) -> int:
    from ecard.demo import create_demo

    settings = _settings(args)
    actors = asyncio.run(_with_platform(settings, lambda p: create_demo(p, settings)))
    Path(args.out).write_text(json.dumps(actors, ensure_ascii=False, indent=2), encoding="utf-8")
    os.chmod(args.out, 0o600)
    print(f"demo actors written to {args.out}")
    return 0


def cmd_demo_run(args: argparse.Namespace) -> int:
    from ecard.demo_run import run_demo

    return 0 if run_demo(Path(args.workdir) if args.workdir else None, args.workers) else 1


# --- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ecard", description="Electronic social security card platform"
    )
    parser.add_argument(
        "--config", help="TOML settings file (else ECARD_CONFIG, else ECARD_* variables)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    database = sub.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_cmd", required=True
    )
    database.add_parser("migrate", help="apply pending migrations").set_defaults(
        func=cmd_db_migrate
    )
    maintain = database.add_parser(
        "maintain",
        help="create the coming months' partitions of the logs, detach and drop those past "
        "their retention (PostgreSQL; docs/retention.md)",
    )
    maintain.add_argument("--dry-run", action="store_true", help="print the steps, change nothing")
    maintain.add_argument(
        "--drop-detached",
        action="store_true",
        help="drop every partition detached earlier now, not after ECARD_PARTITION_DROP_AFTER_DAYS",
    )
    maintain.set_defaults(func=cmd_db_maintain)

    keys = sub.add_parser("keys", help="platform root and issuer keys")
    keys_sub = keys.add_subparsers(dest="keys_cmd", required=True)
    init = keys_sub.add_parser("init", help="create the root key and issuer keys")
    init.add_argument("--region", action="append", help="issuer region code (repeatable)")
    init.add_argument("--force", action="store_true")
    init.add_argument(
        "--card-masters",
        action="store_true",
        help="also generate the regions' card master keys in the HSM if missing (test tokens; a "
        "production key system loads them by key ceremony)",
    )
    keys_sub.add_parser("list")
    keys_sub.add_parser("check", help="every active key signs through the key provider")
    for name, arg in (
        ("rotate", "region"),
        ("add-region", "region"),
        ("retire", "kid"),
        ("withdraw", "kid"),
    ):
        keys_sub.add_parser(
            name,
            # key ids are base64url and may begin with "-": `ecard keys withdraw -- -Abc...`
            epilog="a key id may begin with '-': put -- before it" if arg == "kid" else None,
        ).add_argument(arg)
    keys.set_defaults(func=cmd_keys)

    operator = sub.add_parser("operator", help="operator accounts").add_subparsers(
        dest="op_cmd", required=True
    )
    create = operator.add_parser("create")
    create.add_argument("username")
    create.add_argument(
        "--role", required=True, choices=["admin", "registry_admin", "auditor", "readonly"]
    )
    create.add_argument("--password-stdin", action="store_true")
    create.set_defaults(func=cmd_operator_create)

    demo = sub.add_parser("demo", help="demo data").add_subparsers(dest="demo_cmd", required=True)
    demo_init = demo.add_parser("init", help="create demo actors and write their credentials")
    demo_init.add_argument("--out", default="demo.json")
    demo_init.set_defaults(func=cmd_demo_init)
    demo_run = demo.add_parser(
        "run", help="walk through the whole product against a server it starts"
    )
    demo_run.add_argument(
        "--workdir",
        help="keep the embedded database and keys here (default: a temporary directory)",
    )
    demo_run.add_argument(
        "--workers", type=int, default=1, help="server workers (more than one needs Redis)"
    )
    demo_run.set_defaults(func=cmd_demo_run)

    registry = sub.add_parser("registry", help="cardholder registry").add_subparsers(
        dest="reg_cmd", required=True
    )
    from ecard.registry.importer import register_cli as register_import

    register_import(registry)
    from ecard.registry.deaths import register_cli as register_import_deaths

    register_import_deaths(registry)

    # imported here, not above: the domains' CLIs import this module
    from ecard.domains import DOMAINS

    for domain in DOMAINS:  # each domain's own commands (``Domain.register_cli``)
        if domain.register_cli is not None:
            domain.register_cli(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyringMissing as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
