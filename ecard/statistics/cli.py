"""``ecard statistics …``: ``aggregate`` (the background pass on demand, or a backfill over
``--since``/``--until``), ``report`` (the signed monthly report of a province), ``verify-report``
(check one against the platform root key) and ``grant`` (a department's fields).

Declared in ``ecard.statistics.domain``; ``ecard.cli`` calls ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path

CLI_ACTOR = "system:cli"


def parse_instant(text: str) -> int:
    """``YYYY-MM-DD`` (00:00 CST that day) or an ISO 8601 date-time with an offset."""
    from ecard.statistics import dimensions as dims

    try:
        if len(text) == 10:
            return dims.day_start(dims.parse_day(text).isoformat())
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: YYYY-MM-DD or ISO 8601 with offset") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give the offset (e.g. +08:00)")
    return int(moment.timestamp())


def cmd_aggregate(args: argparse.Namespace) -> int:
    from ecard.cli import _settings, _with_platform
    from ecard.statistics import aggregate

    settings = _settings(args)
    if (args.since is None) != (args.until is None):
        print("give both --since and --until, or neither", file=sys.stderr)
        return 2
    if args.since is not None:
        hours = aggregate.hours_between(args.since, args.until)
        if not hours or len(hours) > aggregate.MAX_HOURS:
            print(f"--since before --until, at most {aggregate.MAX_HOURS} hours", file=sys.stderr)
            return 2
        result = asyncio.run(
            _with_platform(settings, lambda p: aggregate.aggregate_hours(p, hours))
        )
    else:
        result = asyncio.run(_with_platform(settings, aggregate.run_pass))
    print(
        f"{result.hours} hours and {result.days} days aggregated: "
        f"{result.uses} uses, {result.facts} facts"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ecard.cli import _settings, _with_platform
    from ecard.errors import AppError
    from ecard.statistics.service import StatisticsService

    settings = _settings(args)
    province = args.province or settings.region_code[:2] + "0000"
    try:
        token = asyncio.run(
            _with_platform(
                settings, lambda p: StatisticsService(p).signed_report(province, args.month)
            )
        )
    except AppError as error:
        print(f"{error.code}: {error}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(token + "\n", encoding="ascii")
        print(f"report of {province} for {args.month} written to {args.out}")
    else:
        print(token)
    return 0


def cmd_verify_report(args: argparse.Namespace) -> int:
    """Exit 0 and print a summary when the report is signed by this platform's root key and keeps
    the release rules; else exit 1 with the reason."""
    from ecard.cli import _settings, ensure_keys
    from ecard.offline.reasons import OfflineError
    from ecard.statistics.report import ReportRefused, check_report, open_report

    settings = _settings(args)
    root = ensure_keys(settings).root.public_key()
    try:
        token = Path(args.file).read_text(encoding="ascii").strip()
        report = open_report(token, root)
        check_report(report, province=args.province)
    except (OSError, UnicodeDecodeError) as error:
        print(f"cannot read {args.file}: {error}", file=sys.stderr)
        return 1
    except (OfflineError, ReportRefused) as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    cells = sum(len(t.cells) for t in report.tables)
    print(f"valid: report of {report.province} for {report.month}, k={report.k}, {cells} cells")
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    from ecard.cli import _settings, _with_platform
    from ecard.errors import AppError
    from ecard.statistics.service import StatisticsService

    settings = _settings(args)
    fields = [f for f in args.fields.split(",") if f]
    try:
        view = asyncio.run(
            _with_platform(
                settings, lambda p: StatisticsService(p).grant(args.department, fields, CLI_ACTOR)
            )
        )
    except AppError as error:
        print(f"{error.code}: {error}", file=sys.stderr)
        return 1
    print(f"{view.department}: fields {','.join(view.fields) or '(none)'}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    statistics = subparsers.add_parser(
        "statistics", help="usage statistics (docs/statistics.md)"
    ).add_subparsers(dest="statistics_cmd", required=True)
    run = statistics.add_parser(
        "aggregate", help="turn use records into hourly and daily facts (idempotent; backfill)"
    )
    run.add_argument("--since", type=parse_instant, help="YYYY-MM-DD (CST) or ISO 8601")
    run.add_argument("--until", type=parse_instant, help="exclusive; YYYY-MM-DD or ISO 8601")
    run.set_defaults(func=cmd_aggregate)
    report = statistics.add_parser(
        "report", help="the signed monthly report of a province for the national tier"
    )
    report.add_argument("--month", required=True, help="YYYY-MM")
    report.add_argument("--province", help="e.g. 330000 (default: this deployment's)")
    report.add_argument("--out", help="write the signed report (a compact JWS) to this file")
    report.set_defaults(func=cmd_report)
    verify = statistics.add_parser(
        "verify-report", help="check a signed monthly report against the platform root key"
    )
    verify.add_argument("file")
    verify.add_argument("--province", help="the province the report must be of")
    verify.set_defaults(func=cmd_verify_report)
    grant = statistics.add_parser(
        "grant", help="grant a department filing statistics of some 一卡通 fields"
    )
    grant.add_argument("department", help="the department filing's client id")
    grant.add_argument("--fields", required=True, help="e.g. hrss,livelihood ('' revokes)")
    grant.set_defaults(func=cmd_grant)
