"""The registry at a province's size: import it, then time the hot queries at that size next to the
same at ten thousand rows, in one run (docs/CAPACITY.md, "Registry at scale").

    .venv/bin/python scripts/bench/scale_registry.py                      # 5 million vs 10 thousand
    .venv/bin/python scripts/bench/scale_registry.py --rows 200000 --ops 400 --rounds 2
    .venv/bin/python scripts/bench/scale_registry.py stages --rows 200000  # COPY vs unnest()

For each size it creates a PostgreSQL database of its own (``ecard_scale_<rows>`` on the server
of ``--server``; never the test database others use), writes a synthetic registry with
``make_registry_csv.py`` (seeded, streamed), imports it with ``ecard registry import``'s code
(rows per second printed), runs ANALYZE, and then, through the app in process (httpx's ASGI
transport, the real controllers, services and database; the in-process store), times ``--ops``
operations of each hot query in ``--rounds`` rounds, each operation on a person drawn at random
from the file:

- identity check: a department's 实名实人实卡 check (name + identity number + card number);
- e-card issuance: a channel's issuance with its 实人 evidence (the same check, then the writes);
- code issuance: the holder's dynamic code; verification: a verifier's online check of it;
- operator search by identity number (blind index) and by region (first page and total).

It prints p50 and p99 per query and size (with each round's p50, to show the noise), then EXPLAINs
the hot lookups at the large size and reports any table the timed queries read sequentially
(``pg_stat_user_tables``).  The databases are dropped at the end unless ``--keep``; ``--reuse``
takes a database kept earlier instead of importing again (its import rate is then not measured).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1].parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import httpx
import make_registry_csv

SERVER = os.environ.get("ECARD_SCALE_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
PASSWORD = "scale test operator 1"


# --- databases ----------------------------------------------------------------------------------


def database_url(server: str, name: str) -> str:
    return urlparse(server)._replace(path=f"/{name}").geturl()


async def admin(server: str, sql: str) -> None:
    connection = await asyncpg.connect(server)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def persons_in(url: str) -> int:
    try:
        connection = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        return 0
    try:
        return int(await connection.fetchval("SELECT count(*) FROM person"))
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await connection.close()


def settings_for(url: str, keys_dir: Path) -> Any:
    from ecard.settings import load_settings

    return load_settings(
        {
            "ECARD_DATABASE_URL": url,
            "ECARD_KEYS_DIR": str(keys_dir),
            "ECARD_LOG_LEVEL": "WARNING",
            "ECARD_PUBLIC_URL": "http://scale.test",
        }
    )


def ensure_keys(keys_dir: Path) -> None:
    from ecard.crypto.keyring import Keyring
    from ecard.store.keyfiles import save_keyring

    if not (keys_dir / "keyring.json").exists():
        save_keyring(keys_dir, Keyring.create(["330000"]))


def registry_file(workdir: Path, rows: int, seed: int) -> Path:
    path = workdir / f"registry_{rows}_{seed}.csv"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with partial.open("w", encoding="utf-8", newline="") as handle:
            make_registry_csv.write(handle, rows, seed=seed, region="330000")
        partial.rename(path)
    return path


async def import_into(url: str, keys_dir: Path, path: Path, **options: Any) -> Any:
    from ecard.platform import open_platform
    from ecard.registry.importer import import_csv

    platform = await open_platform(settings_for(url, keys_dir), migrate=True)
    try:
        return await import_csv(platform, path, show_progress=sys.stderr.isatty(), **options)
    finally:
        await platform.close()


# --- sampling -----------------------------------------------------------------------------------


def sample(path: Path, count: int, seed: int, within: int) -> list[dict[str, str]]:
    """``count`` rows drawn uniformly from the file's first ``within`` rows (reservoir sampling:
    one pass, bounded memory)."""
    rng = random.Random(seed)
    chosen: list[dict[str, str]] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            if i >= within:
                break
            if i < count:
                chosen.append(row)
            else:
                j = rng.randrange(i + 1)
                if j < count:
                    chosen[j] = row
    rng.shuffle(chosen)
    return chosen


# --- timing -------------------------------------------------------------------------------------


@dataclass
class Timings:
    samples: dict[str, list[float]] = field(default_factory=dict)
    rounds: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def add_round(self, query: str, seconds: list[float], failed: int) -> None:
        self.samples.setdefault(query, []).extend(seconds)
        if seconds:
            self.rounds.setdefault(query, []).append(statistics.median(seconds))
        self.failures[query] = self.failures.get(query, 0) + failed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def timed(calls: list[Call], expect: int) -> tuple[list[float], int, list[httpx.Response]]:
    seconds, failed, answers = [], 0, []
    for call in calls:
        started = time.perf_counter()
        response = await call()
        elapsed = time.perf_counter() - started
        if response.status_code == expect:
            seconds.append(elapsed)
            answers.append(response)
        else:
            failed += 1
            if failed <= 3:
                print(f"    {response.status_code}: {response.text[:200]}", file=sys.stderr)
    return seconds, failed, answers


Call = Callable[[], Awaitable[httpx.Response]]


def post(http: httpx.AsyncClient, path: str, headers: dict[str, str], body: Any) -> Call:
    return lambda: http.post(path, headers=headers, json=body)


def get(http: httpx.AsyncClient, path: str, headers: dict[str, str], query: dict[str, str]) -> Call:
    return lambda: http.get(path, headers=headers, params=query)


def basic(client_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def measure(
    url: str, keys_dir: Path, people: list[dict[str, str]], rounds: int, search_ops: int
) -> tuple[Timings, dict[str, dict[str, int]]]:
    """Time each hot query on ``people`` through the app in process; the sequential reads of each
    table while doing so."""
    from ecard.app import create_app
    from ecard.platform import open_platform
    from ecard.registry.evidence import sign_evidence
    from ecard.registry.service import AccessService
    from tests.helpers import channel_key_pair, lifespan_of

    settings = settings_for(url, keys_dir)
    platform = await open_platform(settings, migrate=True)
    app = create_app(settings, platform=platform)
    timings = Timings()
    try:
        async with (
            lifespan_of(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                base_url="http://scale.test",
                timeout=60,
            ) as http,
        ):
            username = f"scale-{uuid.uuid4().hex[:8]}"
            await AccessService(platform).create_operator(username, PASSWORD, "admin")
            login = await http.post(
                "/operator/v1/login", json={"username": username, "password": PASSWORD}
            )
            operator = {"Authorization": f"Bearer {login.json()['access_token']}"}

            async def client(kind: str, **extra: Any) -> dict[str, Any]:
                response = await http.post(
                    "/operator/v1/clients",
                    headers=operator,
                    json={"kind": kind, "name": f"scale-{kind}-{uuid.uuid4().hex[:8]}", **extra},
                )
                if response.status_code != 201:
                    raise RuntimeError(f"registering a {kind}: {response.text}")
                return dict(response.json())

            verifier = await client("verifier", entitlements=["masked_name", "card_status"])
            before = await table_reads(url)
            per_round = max(1, len(people) // rounds)
            for number in range(rounds):
                group = people[number * per_round : (number + 1) * per_round]
                # a channel and a department per round: their rate limits are per minute
                private_pem, jwk = channel_key_pair()
                channel = {**await client("channel", public_jwk=jwk), "pem": private_pem}
                department = await client("department")
                dept = basic(department["id"], department["client_secret"])
                triples = [
                    {k: p[k] for k in ("name", "identity_number", "card_number")} for p in group
                ]
                seconds, failed, _ = await timed(
                    [post(http, "/department/v1/identity-checks", dept, t) for t in triples], 200
                )
                timings.add_round("identity check", seconds, failed)
                evidence = [
                    sign_evidence(
                        channel["pem"],
                        channel_id=channel["id"],
                        audience=settings.public_url,
                        identity_number=p["identity_number"],
                        method="face_liveness",
                        reference=f"ref-{uuid.uuid4().hex[:12]}",
                    )
                    for p in group
                ]
                chan = basic(channel["id"], channel["client_secret"])
                seconds, failed, issued = await timed(
                    [
                        post(http, "/channel/v1/ecards", chan, {**t, "evidence": e})
                        for t, e in zip(triples, evidence, strict=True)
                    ],
                    201,
                )
                timings.add_round("e-card issuance", seconds, failed)
                tokens = [r.json()["session"]["access_token"] for r in issued]
                seconds, failed, codes = await timed(
                    [
                        post(http, "/holder/v1/codes", {"Authorization": f"Bearer {t}"}, None)
                        for t in tokens
                    ],
                    201,
                )
                timings.add_round("code issuance", seconds, failed)
                verifier_auth = basic(verifier["id"], verifier["client_secret"])
                seconds, failed, _ = await timed(
                    [
                        post(
                            http,
                            "/verifier/v1/verifications",
                            verifier_auth,
                            {"code": c.json()["code"]},
                        )
                        for c in codes
                    ],
                    200,
                )
                timings.add_round("online verification", seconds, failed)
                seconds, failed, _ = await timed(
                    [
                        get(http, "/operator/v1/persons", operator, {"identity_number": t})
                        for t in (p["identity_number"] for p in group)
                    ],
                    200,
                )
                timings.add_round("search by identity number", seconds, failed)
                by_region = {"region": "330000", "limit": "20"}
                seconds, failed, _ = await timed(
                    [get(http, "/operator/v1/persons", operator, by_region)]
                    * max(1, search_ops // rounds),
                    200,
                )
                timings.add_round("search by region (page + total)", seconds, failed)
                print(f"  round {number + 1}/{rounds} done", file=sys.stderr)
            after = await table_reads(url)
    finally:
        await platform.close()
    return timings, reads_between(before, after)


async def table_reads(url: str) -> dict[str, tuple[int, int, int]]:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("SELECT pg_stat_clear_snapshot()")
        rows = await connection.fetch(
            "SELECT relname, coalesce(seq_scan, 0), coalesce(seq_tup_read, 0), "
            "coalesce(idx_scan, 0) FROM pg_stat_user_tables"
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}
    finally:
        await connection.close()


def reads_between(
    before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]
) -> dict[str, dict[str, int]]:
    changed = {}
    for table, (scans, rows, indexed) in after.items():
        b = before.get(table, (0, 0, 0))
        delta = {"seq_scan": scans - b[0], "seq_rows": rows - b[1], "idx_scan": indexed - b[2]}
        if any(delta.values()):
            changed[table] = delta
    return changed


# --- EXPLAIN ------------------------------------------------------------------------------------

HOT_LOOKUPS = {
    # RegistryService._card_by_number: issuance and the identity check
    "card by number, with its holder": (
        (
            "SELECT c.*, p.name, p.id_number_index FROM card c JOIN person p ON p.id = c.person "
            "WHERE c.card_number = $1 LIMIT 1"
        ),
        "card_number",
    ),
    # search_persons(identity_number=...)
    "person by blind index": (
        "SELECT * FROM person WHERE id_number_index = $1 ORDER BY created_at, id LIMIT 50",
        "index",
    ),
    # search_persons(region=...): the page, then its total
    "persons of a region, first page": (
        "SELECT * FROM person WHERE region = $1 ORDER BY created_at, id LIMIT 20",
        "region",
    ),
    "persons of a region, total": ("SELECT count(*) FROM person WHERE region = $1", "region"),
    # issue_ecard: the card's e-card on this channel
    "e-card of a card on a channel": (
        "SELECT id FROM ecard WHERE card = $1 AND channel = $2 AND status = 'active' LIMIT 1",
        "ecard",
    ),
}


async def explain(url: str, person: dict[str, str], keys_dir: Path) -> dict[str, list[str]]:
    from ecard.crypto.fields import blind_index
    from ecard.store.keyfiles import load_keyring

    index = blind_index(load_keyring(keys_dir).secrets.key("index_key"), person["identity_number"])
    connection = await asyncpg.connect(url)
    plans = {}
    try:
        card = await connection.fetchrow(
            "SELECT id FROM card WHERE card_number = $1", person["card_number"]
        )
        arguments = {
            "card_number": (person["card_number"],),
            "index": (index,),
            "region": ("330000",),
            "ecard": (card["id"] if card else "", "-"),
        }
        for name, (sql, kind) in HOT_LOOKUPS.items():
            rows = await connection.fetch(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", *arguments[kind])
            plans[name] = [r[0] for r in rows]
    finally:
        await connection.close()
    return plans


# --- the run ------------------------------------------------------------------------------------


def report(sizes: dict[int, Timings], imports: dict[int, str]) -> None:
    print("\nimport:")
    for rows, line in imports.items():
        print(f"  {rows:>10,} rows: {line}")
    queries = list(next(iter(sizes.values())).samples)
    print("\nlatency in ms, p50 / p99 (each round's p50 in brackets; n = timed operations)")
    header = "query".ljust(34) + "".join(f"{f'{rows:,} persons':>48}" for rows in sizes)
    print(header)
    for query in queries:
        cells = []
        for timings in sizes.values():
            values = timings.samples.get(query, [])
            rounds = ", ".join(f"{r * 1e3:.1f}" for r in timings.rounds.get(query, []))
            failed = timings.failures.get(query, 0)
            cells.append(
                f"{percentile(values, 0.5) * 1e3:.1f} / {percentile(values, 0.99) * 1e3:.1f} "
                f"[{rounds}] n={len(values)}" + (f" failed={failed}" if failed else "")
            )
        print(query.ljust(34) + "".join(f"{c:>48}" for c in cells))


async def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    keys_dir = workdir / "keys"
    ensure_keys(keys_dir)
    sizes: dict[int, Timings] = {}
    imports: dict[int, str] = {}
    databases = []
    started = time.time()
    print(
        f"scale test, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {os.cpu_count()} cores"
    )
    try:
        for rows in sorted({args.small, args.rows}):
            name = f"ecard_scale_{rows}"
            url = database_url(args.server, name)
            path = Path(args.csv) if args.csv and rows == args.rows else None
            path = path or registry_file(workdir, rows, args.seed)
            if args.reuse and await persons_in(url) >= rows:
                imports[rows] = "reused a database kept earlier (import not timed in this run)"
            else:
                await admin(args.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin(args.server, f'CREATE DATABASE "{name}"')
                print(f"importing {rows:,} rows into {name} ...", file=sys.stderr)
                done = await import_into(url, keys_dir, path, workers=args.workers)
                imports[rows] = done.summary()
            databases.append(name)
            connection = await asyncpg.connect(url)
            try:
                await connection.execute("ANALYZE")
            finally:
                await connection.close()
            people = sample(path, args.ops, args.seed, rows)
            print(f"measuring at {rows:,} ...", file=sys.stderr)
            timings, reads = await measure(url, keys_dir, people, args.rounds, args.search_ops)
            sizes[rows] = timings
            if rows == args.rows:
                plans = await explain(url, people[-1], keys_dir)
                big_reads = reads
        report(sizes, imports)
        print(f"\nEXPLAIN ANALYZE at {args.rows:,} persons:")
        for name, plan in plans.items():
            print(f"  {name}:")
            for line in plan:
                print(f"    {line}")
        print(f"\nsequential reads while timing at {args.rows:,} (pg_stat_user_tables):")
        # a large table read whole (small tables are read sequentially by choice: the e-cards and
        # sessions hold only what this run issued)
        scanned = {
            t: d
            for t, d in big_reads.items()
            if d["seq_scan"] and d["seq_rows"] / d["seq_scan"] > 100_000
        }
        for table, delta in sorted(big_reads.items()):
            print(f"  {table:<24} {delta}")
        print(
            "  no large table was read sequentially"
            if not scanned
            else f"  READ SEQUENTIALLY: {', '.join(scanned)}"
        )
        print(f"\nwhole run: {time.time() - started:.0f} s")
    finally:
        if not args.keep:
            for name in databases:
                await admin(args.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


# --- COPY or unnest() ---------------------------------------------------------------------------


#: (how PostgreSQL receives a batch, worker processes that check and encrypt)
VARIANTS = (("copy", 0), ("unnest", 0), ("copy", 2))


async def stages(args: argparse.Namespace) -> int:
    """The ways PostgreSQL can receive a batch (COPY into a temporary table or unnest() of
    arrays), and checking in a thread or in worker processes, compared fairly on a shared
    machine: the file is split in chunks and each chunk goes into every variant's database back
    to back (in turning order), so all see the same load and the same table sizes."""
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    keys_dir = workdir / "keys"
    ensure_keys(keys_dir)
    source = registry_file(workdir, args.rows, args.seed)
    chunks = max(2, args.rows // 20_000)
    names = {v: f"ecard_scale_stage_{v[0]}_{v[1]}" for v in VARIANTS}
    spent = dict.fromkeys(names, 0.0)
    try:
        for name in names.values():
            await admin(args.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin(args.server, f'CREATE DATABASE "{name}"')
        with source.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            for number in range(chunks):
                part = workdir / "stage_chunk.csv"
                with part.open("w", encoding="utf-8", newline="") as out:
                    writer = csv.writer(out, lineterminator="\n")
                    writer.writerow(header)
                    for _ in range(args.rows // chunks):
                        row = next(reader, None)
                        if row is None:
                            break
                        writer.writerow(row)
                turn = number % len(VARIANTS)
                for variant in VARIANTS[turn:] + VARIANTS[:turn]:
                    done = await import_into(
                        database_url(args.server, names[variant]),
                        keys_dir,
                        part,
                        stage=variant[0],
                        workers=variant[1],
                    )
                    spent[variant] += done.seconds
        for (stage, workers), seconds in spent.items():
            print(
                f"{stage:>7}, {workers} worker process(es): {args.rows:,} rows in {seconds:.1f} s "
                f"({args.rows / seconds:,.0f} rows/s)"
            )
    finally:
        for name in names.values():
            await admin(args.server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=("run", "stages"), default="run")
    parser.add_argument("--rows", type=int, default=5_000_000, help="the large size")
    parser.add_argument("--small", type=int, default=10_000, help="the size to compare with")
    parser.add_argument("--ops", type=int, default=2000, help="timed operations per query")
    parser.add_argument("--search-ops", type=int, default=200, help="region searches timed")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="import worker processes")
    parser.add_argument("--csv", help="the large registry file (default: generated)")
    parser.add_argument("--server", default=SERVER, help="a PostgreSQL server URL (admin)")
    parser.add_argument(
        "--workdir",
        default=str(Path(tempfile.gettempdir()) / "ecard-scale"),
        help="generated files and the keyring (default: ecard-scale in the temporary directory)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases")
    parser.add_argument("--reuse", action="store_true", help="reuse kept databases")
    args = parser.parse_args(argv)
    return asyncio.run(stages(args) if args.mode == "stages" else run(args))


if __name__ == "__main__":
    raise SystemExit(main())
