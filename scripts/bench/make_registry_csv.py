"""Synthetic cardholder registry CSV for import and scale tests (``ecard registry import``).

    .venv/bin/python scripts/bench/make_registry_csv.py --rows 5000000 --out /tmp/registry.csv
    .venv/bin/python scripts/bench/make_registry_csv.py --rows 1000 --seed 7 --bad-every 100

Deterministic for a seed (the same seed and options give the same bytes) and streaming (constant
memory, rows written as they are made).  Every row is valid unless ``--bad-every`` asks for bad
ones: GB 11643 identity numbers with their check digit, unique across the file (a bijection of the
row number, so 5 million rows need no set), birth dates of people aged 1 to 90, about one in ten
born in another province (the address code says where), gender from the number's 17th digit,
ethnicity codes weighted roughly like the census, plausible Chinese names from common surnames,
province-level region codes from ``ecard/registry/regions.csv``, unique card numbers and 32-digit
card identification codes (卡识别码) that begin with the region.  The data is synthetic: no row is
a real person.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parents[2]
REGIONS_CSV = ROOT / "ecard" / "registry" / "regions.csv"

COLUMNS = (
    "name",
    "gender",
    "ethnicity",
    "identity_number",
    "region",
    "card_number",
    "chip_serial",
    "identification_code",
    "issue_date",
    "expiry_date",
)

# the most common surnames, weighted roughly by their share of the population (percent)
SURNAMES = (
    ("王", 7.1), ("李", 7.0), ("张", 6.8), ("刘", 5.4), ("陈", 4.5), ("杨", 3.1), ("黄", 2.2),
    ("赵", 2.0), ("吴", 1.9), ("周", 1.8), ("徐", 1.5), ("孙", 1.4), ("马", 1.3), ("朱", 1.2),
    ("胡", 1.1), ("郭", 1.1), ("何", 1.0), ("高", 1.0), ("林", 1.0), ("罗", 0.9), ("郑", 0.9),
    ("梁", 0.8), ("谢", 0.7), ("宋", 0.6), ("唐", 0.6), ("许", 0.6), ("韩", 0.6), ("冯", 0.5),
    ("邓", 0.5), ("曹", 0.5), ("彭", 0.5), ("曾", 0.5), ("肖", 0.5), ("田", 0.4), ("董", 0.4),
    ("袁", 0.4), ("潘", 0.4), ("于", 0.4), ("蒋", 0.4), ("蔡", 0.4), ("余", 0.4), ("杜", 0.4),
    ("叶", 0.4), ("程", 0.3), ("苏", 0.3), ("魏", 0.3), ("吕", 0.3), ("丁", 0.3), ("任", 0.3),
    ("沈", 0.3), ("姚", 0.3), ("卢", 0.3), ("姜", 0.3), ("崔", 0.3), ("钟", 0.3), ("谭", 0.3),
    ("陆", 0.3), ("汪", 0.3), ("范", 0.2), ("金", 0.2), ("石", 0.2), ("廖", 0.2), ("贾", 0.2),
    ("夏", 0.2), ("韦", 0.2), ("付", 0.2), ("方", 0.2), ("白", 0.2), ("邹", 0.2), ("孟", 0.2),
    ("熊", 0.2), ("秦", 0.2), ("邱", 0.2), ("江", 0.2), ("尹", 0.2), ("薛", 0.2), ("闫", 0.2),
    ("段", 0.2), ("雷", 0.2), ("侯", 0.2), ("龙", 0.2), ("史", 0.2), ("陶", 0.2), ("黎", 0.2),
    ("贺", 0.2), ("顾", 0.2), ("毛", 0.2), ("郝", 0.2), ("龚", 0.2), ("邵", 0.2), ("欧阳", 0.05),
    ("司马", 0.01), ("诸葛", 0.01), ("上官", 0.01),
)  # fmt: skip
GIVEN_MALE = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆帅旭宁龙林阳洋建国志文博"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞燕玲桂丹萍红琳洁梅莉婷雪倩颖慧琴晶欣怡佳雯璐瑶琪思涵"
# GB 3304 codes: 汉 about 91 %, then the larger minorities
ETHNICITIES = (
    ("01", 91.1), ("08", 1.3), ("03", 0.8), ("04", 0.8), ("05", 0.7), ("02", 0.5), ("06", 0.2),
    ("07", 0.3), ("09", 0.2), ("10", 0.2), ("11", 0.8), ("12", 0.2), ("15", 0.3), ("18", 0.2),
)  # fmt: skip

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
#: address codes per province: prefecture 01..10 x county 01..10
ADDRESSES = 100
DAYS = 90 * 365  # birth dates over 90 years
SEQUENCES = 1000  # GB 11643 order codes
CARD_SPACE = 10**8  # card number digits after the letter


def check_digit(first17: str) -> str:
    return _CHECK[sum(int(c) * w for c, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def regions() -> list[str]:
    with REGIONS_CSV.open(encoding="utf-8") as handle:
        return [row["code"] for row in csv.DictReader(handle)]


def _coprime(rng: random.Random, modulus: int) -> int:
    """A multiplier that permutes ``range(modulus)`` (i -> i * m mod modulus is a bijection)."""
    while True:
        candidate = rng.randrange(modulus // 3, modulus)
        if math.gcd(candidate, modulus) == 1:
            return candidate


def rows(
    count: int, *, seed: int, region: str, bad_every: int = 0, today: dt.date | None = None
) -> Iterator[list[str]]:
    """``count`` rows, as lists of strings in :data:`COLUMNS` order."""
    codes = regions()
    if region not in codes:
        raise ValueError(f"{region} is not a region code of {REGIONS_CSV.name}")
    space = ADDRESSES * DAYS * SEQUENCES
    if count > min(space, CARD_SPACE):
        raise ValueError(f"at most {min(space, CARD_SPACE)} rows")
    rng = random.Random(seed)
    person_step, card_step, chip_step = (
        _coprime(rng, space),
        _coprime(rng, CARD_SPACE),
        _coprime(rng, 16**26),
    )
    person_offset, card_offset = rng.randrange(space), rng.randrange(CARD_SPACE)
    surnames, surname_weights = zip(*SURNAMES, strict=True)
    ethnicities, ethnicity_weights = zip(*ETHNICITIES, strict=True)
    end = today or dt.date(2026, 12, 1)
    first_birth = end - dt.timedelta(days=DAYS + 365)
    for i in range(count):
        unique = (person_offset + i * person_step) % space
        address, rest = divmod(unique, DAYS * SEQUENCES)
        day, sequence = divmod(rest, SEQUENCES)
        home = region if rng.random() < 0.9 else rng.choice(codes)
        area = f"{home[:2]}{address // 10 + 1:02d}{address % 10 + 1:02d}"
        birth = first_birth + dt.timedelta(days=day)
        first17 = f"{area}{birth:%Y%m%d}{sequence:03d}"
        number = first17 + check_digit(first17)
        male = sequence % 2 == 1
        given = GIVEN_MALE if male else GIVEN_FEMALE
        name = rng.choices(surnames, surname_weights)[0] + "".join(
            rng.choice(given) for _ in range(rng.choice((1, 2, 2)))
        )
        # a card lasts ten years: every card in the file is current
        issued = max(birth, end - dt.timedelta(days=rng.randrange(30, 3500)))
        card = (card_offset + i * card_step) % CARD_SPACE
        chip = ((i + 1) * chip_step) % 16**26
        row = [
            name,
            "1" if male else "2",
            rng.choices(ethnicities, ethnicity_weights)[0],
            number,
            region,
            f"{'ABCDEFGHJK'[card % 10]}{card:08d}",
            f"{chip & 0xFFFFFFFFFFFFFFFF:016X}",
            f"{region}{chip:026X}",
            issued.isoformat(),
            issued.replace(year=issued.year + 10, day=min(issued.day, 28)).isoformat(),
        ]
        if bad_every and i % bad_every == bad_every - 1:
            _spoil(row, i // bad_every)
        yield row


def _spoil(row: list[str], which: int) -> None:
    """Make one row bad in one of several ways (rotating), as real registry extracts are."""
    kind = which % 4
    if kind == 0:  # a wrong check digit
        row[3] = row[3][:17] + ("0" if row[3][17] != "0" else "1")
    elif kind == 1:  # an unknown region
        row[4] = "990000"
    elif kind == 2:  # an unknown gender
        row[1] = "3"
    else:  # expiry before issue
        row[8], row[9] = row[9], row[8]


def write(out: TextIO, count: int, **options: object) -> int:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    written = 0
    for row in rows(count, **options):  # type: ignore[arg-type]
        writer.writerow(row)
        written += 1
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000, help="data rows (default 10,000)")
    parser.add_argument("--seed", type=int, default=1, help="the same seed gives the same file")
    parser.add_argument("--region", default="330000", help="the province (default 330000)")
    parser.add_argument(
        "--bad-every", type=int, default=0, help="make every Nth row bad (default: none)"
    )
    parser.add_argument("--out", help="file to write (default: standard output)")
    args = parser.parse_args(argv)
    if args.rows < 0 or args.bad_every < 0:
        parser.error("--rows and --bad-every cannot be negative")
    options = {"seed": args.seed, "region": args.region, "bad_every": args.bad_every}
    try:
        if args.out:
            with open(args.out, "w", encoding="utf-8", newline="") as handle:
                write(handle, args.rows, **options)
        else:
            write(sys.stdout, args.rows, **options)
    except ValueError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
