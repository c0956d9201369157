"""Publishing the revocation list on a registry with many non-active cards: what a worker's look
(at most once a second, whenever terminals fetch the lists) costs when nothing changed and when
one card changed, against the full read of every non-active card (what each look used to cost,
and still what a worker's first look and the 10-minute rebuild cost), measured in the same run.

    .venv/bin/python scripts/bench/bench_revocations.py [--cards 20000] [--looks 200]

SQLite in a scratch directory; cards come in through the bulk importer, then all are reported lost.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ecard.codes import trust
from ecard.crypto.keyring import Keyring
from ecard.platform import open_platform
from ecard.registry import schemas
from ecard.registry.importer import COLUMNS, import_csv
from ecard.registry.service import RegistryService
from ecard.registry.tables import Card
from ecard.settings import load_settings
from ecard.store.keyfiles import save_keyring
from tests.helpers import identity_number


def registry_csv(path: Path, cards: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for _ in range(cards):
            writer.writerow(
                {
                    "name": "张小三",
                    "gender": "1",
                    "ethnicity": "01",
                    "identity_number": identity_number(),
                    "region": "330000",
                    "card_number": "C" + uuid.uuid4().hex[:10].upper(),
                    "chip_serial": uuid.uuid4().hex[:16].upper(),
                    "identification_code": uuid.uuid4().hex[:24].upper(),
                    "issue_date": "2024-01-01",
                    "expiry_date": "2034-01-01",
                }
            )


async def timed(make, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """Median seconds of ``repeat`` awaited calls of ``make()``."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await make()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cards", type=int, default=20_000)
    parser.add_argument("--looks", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ecard-bench-revocations-"))
    save_keyring(work / "keys", Keyring.create(["330000"]))
    settings = load_settings(
        {
            "ECARD_DATABASE_URL": f"sqlite:///{work}/ecard.db",
            "ECARD_KEYS_DIR": str(work / "keys"),
            "ECARD_LOG_LEVEL": "WARNING",
        }
    )
    platform = await open_platform(settings, migrate=True)
    try:
        registry_csv(work / "cards.csv", args.cards)
        report = await import_csv(platform, work / "cards.csv", show_progress=False)
        await Card.update({Card.status: "lost"}).where(Card.status == "active")
        key = platform.pseudonym_key
        full = await timed(lambda: trust._registry_revocations(key), 5)
        view = await trust.follow_registry(platform)
        unchanged = await timed(lambda: trust.follow_registry(platform, view), args.looks)
        one_id = (await Card.select(Card.id).first())["id"]
        registry = RegistryService(platform)
        changes = []
        for status in ("active", "lost") * 5:
            await registry.change_card_status(
                one_id, schemas.StatusChange(status=status, reason="bench"), "bench"
            )
            started = time.perf_counter()
            view = await trust.follow_registry(platform, view)
            changes.append(time.perf_counter() - started)
        assert len(view.state.entries) == report.imported, (
            len(view.state.entries),
            report.imported,
        )
    finally:
        await platform.close()
    changed = statistics.median(changes)
    print(f"== revocation publishing, {report.imported} non-active cards (SQLite, one worker) ==")
    print(f"full read of every non-active card (baseline)   {full * 1000:9.2f} ms   1.0x")
    print(
        f"look, nothing changed                           {unchanged * 1000:9.2f} ms   "
        f"{full / unchanged:7.1f}x cheaper"
    )
    print(
        f"look, one card changed: new version published   {changed * 1000:9.2f} ms   "
        f"{full / changed:7.1f}x cheaper"
    )


if __name__ == "__main__":
    asyncio.run(main())
