"""Faults under a steady mixed load, on this machine only, bounded in time (about 5 minutes).

    .venv/bin/python scripts/faults.py                  # all three faults, writes docs/FAULTS.md
    .venv/bin/python scripts/faults.py --only chain --no-doc  # one fault, print only

``ecard serve --workers 2`` runs on PostgreSQL + Redis + an anvil chain node (state file, so the
node comes back with the same chain), driven by the mixed load of scripts/bench/load_mixed.py
(codes fetched and presented to two verifiers at once, codes presented again later, codes held
back, OIDC scan-logins, consent request/approve/read, terminal record uploads, operator reads).
While it runs:

(a) Redis is shut down (``redis-cli shutdown nosave``: its contents are lost) for 20 s, then
    started again empty;
(b) PostgreSQL is restarted (``pg_ctlcluster ... main restart``);
(c) the chain node is stopped for 60 s and started again on its state file.

For each fault it reports what clients got (by status and error code; every 503 must carry
Retry-After; any other 5xx, or a wrong answer, is a failure), how long until every request
succeeded again, and, after the load, whether everything clients were told succeeded is in the
database: every approved grant, the ledger entries of every approval and read (sealed and
anchored on the chain, the whole log audited), and every uploaded offline record.  Codes: each
fresh code is presented by two verifiers at once, and codes accepted before the Redis restart
are presented again after it; any code accepted twice counts as a double acceptance.

Redis and PostgreSQL are always left running at the end, even on errors: other work on this
machine uses them.  ``--redis-port``/``--redis-start``/``--pg-restart`` point the faults at other
instances (e.g. private ones for a dry run).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))
sys.path.insert(0, str(ROOT))

import load_mixed as lm

PG_VERSION = (
    " ".join(sorted(os.listdir("/etc/postgresql"))) if os.path.isdir("/etc/postgresql") else "15"
)
DEFAULT_PG_RESTART = f"pg_ctlcluster --skip-systemctl-redirect {PG_VERSION} main restart"
DEFAULT_PG_START = f"pg_ctlcluster --skip-systemctl-redirect {PG_VERSION} main start"
REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port {port} --save "" --appendonly no'
)


def _seconds_or_dash(value: float | None) -> str:
    return "-" if value is None else f"{value} s"


def sh(command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run one of this script's own command lines (service control); the caller reads the
    status."""
    return subprocess.run(  # noqa: S602 - fixed command lines, no outside input
        command, shell=True, capture_output=True, text=True, timeout=timeout, check=False
    )


def redis_up(port: int) -> bool:
    return sh(f"redis-cli -p {port} ping", 5).stdout.strip() == "PONG"


def pg_up(database_url: str) -> bool:
    async def probe() -> None:
        import asyncpg

        connection = await asyncpg.connect(**lm._admin_dsn(database_url), timeout=3)
        await connection.close()

    try:
        asyncio.run(probe())
        return True
    except Exception:  # noqa: BLE001 - a readiness probe: any failure means "not up yet"
        return False


def wait_until(check: Any, timeout: float, step: float = 0.2) -> float | None:
    started = time.time()
    while time.time() - started < timeout:
        if check():
            return time.time()
        time.sleep(step)
    return None


class Faults:
    def __init__(self, args: argparse.Namespace, env: lm.Environment) -> None:
        self.args, self.env = args, env
        self.events: list[dict[str, Any]] = []

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def redis(self) -> dict[str, Any]:
        port = self.args.redis_port
        self.log(f"(a) Redis: shutdown nosave for {self.args.redis_outage:.0f} s")
        down = time.time()
        sh(f"redis-cli -p {port} shutdown nosave", 10)
        wait_until(lambda: not redis_up(port), 10)
        time.sleep(max(0.0, down + self.args.redis_outage - time.time()))
        started = sh(self.args.redis_start.format(port=port), 20)
        up = wait_until(lambda: redis_up(port), 20)
        self.log(
            f"(a) Redis is back ({started.returncode}); ready "
            f"{None if up is None else round(up - down, 1)} s after the stop"
        )
        return {
            "fault": "redis",
            "title": f"Redis stopped for {self.args.redis_outage:.0f} s (contents lost)",
            "down": down,
            "up": up or time.time(),
        }

    def postgres(self) -> dict[str, Any]:
        self.log("(b) PostgreSQL: restart")
        down = time.time()
        result = sh(self.args.pg_restart, 120)
        up = wait_until(lambda: pg_up(self.args.database_url), 60)
        self.log(
            f"(b) PostgreSQL restarted (rc {result.returncode}) in "
            f"{None if up is None else round(up - down, 1)} s"
        )
        return {
            "fault": "postgres",
            "title": "PostgreSQL restarted",
            "down": down,
            "up": up or time.time(),
            "detail": result.stderr.strip()[-300:],
        }

    def chain(self) -> dict[str, Any]:
        assert self.env.chain is not None
        self.log(f"(c) chain node: stopped for {self.args.chain_outage:.0f} s")
        down = time.time()
        self.env.chain.stop()
        time.sleep(max(0.0, down + self.args.chain_outage - time.time()))
        self.env.chain.start()
        up = time.time()
        self.log("(c) chain node started again on its state file")
        return {
            "fault": "chain",
            "title": f"chain node (anvil) stopped for {self.args.chain_outage:.0f} s",
            "down": down,
            "up": up,
        }


def window_report(samples: list[tuple], fault: dict[str, Any], after: float) -> dict[str, Any]:
    """What clients got from the fault's start to ``after`` seconds past its end, and recovery."""
    down, up = fault["down"], fault["up"]
    during = [s for s in samples if down <= s[0] < up]
    later = sorted((s for s in samples if up <= s[0] < up + after), key=lambda s: s[0])
    outcome = lambda s: "ok" if 0 < s[3] < 400 else f"{s[3]} {s[4]}"
    failing_after = [s for s in later if not 0 < s[3] < 400]
    last_failure = max((s[0] for s in failing_after), default=None)
    first_failure = min((s[0] for s in during if not 0 < s[3] < 400), default=None)
    by_op_during: dict[str, Counter] = {}
    for s in during:
        by_op_during.setdefault(s[1], Counter())[outcome(s)] += 1
    statuses = Counter(outcome(s) for s in during) + Counter(outcome(s) for s in failing_after)
    last_ok: dict[str, float] = {}
    for s in during:
        if 0 < s[3] < 400:
            last_ok[s[1]] = round(s[0] - down, 2)
    return {
        "fault": fault["fault"],
        "title": fault["title"],
        "outage_seconds": round(up - down, 1),
        "requests_during": len(during),
        "outcomes_during_and_recovery": dict(statuses.most_common()),
        "by_operation_during": {
            op: dict(c.most_common()) for op, c in sorted(by_op_during.items())
        },
        "last_success_after_stop_seconds": last_ok,
        "503_with_retry_after": sum(
            1 for s in during + failing_after if s[3] == 503 and "no-retry-after" not in s[4]
        ),
        "503_without_retry_after": sum(
            1 for s in during + failing_after if s[3] == 503 and "no-retry-after" in s[4]
        ),
        "other_5xx": sum(1 for s in during + failing_after if s[3] >= 500 and s[3] != 503),
        "no_answer": sum(1 for s in during + failing_after if s[3] == 0),
        "recovery_seconds": 0.0 if last_failure is None else round(last_failure - up, 1),
        "first_failure_after_stop_seconds": None
        if first_failure is None
        else round(first_failure - down, 1),
    }


async def accounting(env: lm.Environment, facts: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Wait for the relay, sealer and anchor worker to catch up, then compare what clients were
    told succeeded with what the database (and the chain, through the audit) holds."""
    import asyncpg
    import httpx

    dsn = lm._admin_dsn(env.env["ECARD_DATABASE_URL"])
    grants = sorted(set(facts["grants"]))
    reads = Counter(facts["reads"])
    records = sorted(set(facts["terminal_records"]))
    connection = await asyncpg.connect(**dsn)
    try:
        deadline = time.time() + timeout
        while True:
            unrelayed = await connection.fetchval(
                "SELECT count(*) FROM consent_event WHERE seq IS NULL"
            )
            top = await connection.fetchval("SELECT max(seq) FROM ledger_entry")
            sealed = await connection.fetchval("SELECT max(tree_size) FROM ledger_block") or 0
            unanchored = await connection.fetchval(
                "SELECT count(*) FROM ledger_anchor WHERE status <> 'confirmed'"
            )
            blocks = await connection.fetchval("SELECT count(*) FROM ledger_block")
            anchors = await connection.fetchval("SELECT count(*) FROM ledger_anchor")
            caught_up = (
                unrelayed == 0
                and (top is None or sealed > top)
                and unanchored == 0
                and anchors == blocks
            )
            if caught_up or time.time() > deadline:
                break
            await asyncio.sleep(1)
        rows = await connection.fetch(
            "SELECT id, status FROM consent WHERE id = any($1::text[])", grants
        )
        status = {r["id"]: r["status"] for r in rows}
        missing_grants = [g for g in grants if status.get(g) != "granted"]
        events = await connection.fetch(
            "SELECT e.consent, e.event, e.seq, (le.seq IS NOT NULL) AS in_log FROM consent_event e "
            "LEFT JOIN ledger_entry le ON le.seq = e.seq WHERE e.consent = any($1::text[])",
            grants,
        )
        granted_in_log = {r["consent"] for r in events if r["event"] == "granted" and r["in_log"]}
        accessed_in_log = Counter(
            r["consent"] for r in events if r["event"] == "accessed" and r["in_log"]
        )
        missing_grant_entries = [g for g in grants if g not in granted_in_log]
        missing_access_entries = sum(
            max(0, n - accessed_in_log.get(g, 0)) for g, n in reads.items()
        )
        unsealed = await connection.fetchval(
            "SELECT count(*) FROM ledger_entry WHERE seq >= $1", sealed
        )
        stored = await connection.fetch(
            "SELECT record_key FROM terminal_record WHERE record_key = any($1::text[])", records
        )
        missing_records = len(records) - len(stored)
        chain_rows = await connection.fetch(
            "SELECT status, count(*) AS n FROM ledger_anchor GROUP BY status"
        )
    finally:
        await connection.close()
    async with httpx.AsyncClient(base_url=env.base_url, timeout=120) as http:
        token = lm.operator_token(env.base_url, env.actors)
        audit = (
            await http.get("/ledger/v1/audit", headers={"Authorization": f"Bearer {token}"})
        ).json()
    return {
        "caught_up": caught_up,
        "grants_told_approved": len(grants),
        "grants_missing": len(missing_grants),
        "reads_told_served": sum(reads.values()),
        "access_entries_missing": missing_access_entries,
        "grant_entries_missing_from_ledger": len(missing_grant_entries),
        "ledger_entries": top + 1 if top is not None else 0,
        "ledger_entries_unsealed": unsealed,
        "blocks": blocks,
        "anchors": {r["status"]: r["n"] for r in chain_rows},
        "blocks_without_anchor_row": blocks - anchors,
        "terminal_records_told_stored": len(records),
        "terminal_records_missing": missing_records,
        "audit": audit,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        choices=["redis", "postgres", "chain"],
        action="append",
        help="run only these faults",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--warmup", type=float, default=15)
    parser.add_argument(
        "--settle", type=float, default=25, help="load seconds after each fault before the next"
    )
    parser.add_argument("--redis-outage", type=float, default=20)
    parser.add_argument("--chain-outage", type=float, default=60)
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--redis-db", type=int, default=12)
    parser.add_argument(
        "--redis-start", default=REDIS_START, help="command that starts Redis ({port} is replaced)"
    )
    parser.add_argument("--pg-restart", default=DEFAULT_PG_RESTART)
    parser.add_argument(
        "--pg-start", default=DEFAULT_PG_START, help="run at the end if PostgreSQL is down"
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: none)")
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/FAULTS.md")
    args = parser.parse_args()
    args.redis_url = f"redis://127.0.0.1:{args.redis_port}/{args.redis_db}"
    args.no_chain = False
    return args


def restore(args: argparse.Namespace) -> list[str]:
    """Redis and PostgreSQL running again, whatever happened."""
    notes = []
    if not redis_up(args.redis_port):
        sh(args.redis_start.format(port=args.redis_port), 20)
        notes.append(f"Redis was down at the end; started: {redis_up(args.redis_port)}")
    if not pg_up(args.database_url):
        sh(args.pg_start, 120)
        notes.append(
            "PostgreSQL was down at the end; started: "
            f"{wait_until(lambda: pg_up(args.database_url), 60) is not None}"
        )
    return notes


def main() -> int:
    args = parse_args()
    import signal

    def stop(signum: int, frame: Any) -> None:  # run the finally clauses (restore) on SIGTERM too
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    faults_to_run = args.only or ["redis", "postgres", "chain"]
    if lm.anvil_binary() is None:
        sys.exit("no anvil: run scripts/install_chain_tools.sh")
    outage = {"redis": args.redis_outage + 5, "postgres": 10, "chain": args.chain_outage + 2}
    total = args.warmup + sum(outage[f] + args.settle for f in faults_to_run) + 10
    result: dict[str, Any] = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    restore_notes: list[str] = []
    try:
        with lm.environment(
            args, holders=args.clients * args.concurrency, terminals=args.clients, tag="faults"
        ) as env:
            env.start_server(args.workers)
            faults = Faults(args, env)
            load = lm.LoadRun(env, args.clients, args.concurrency, total, 10_000_000)
            load.start()
            faults.log(
                f"load started: {args.clients}x{args.concurrency} virtual users for "
                f"{total:.0f} s; warm-up {args.warmup:.0f} s"
            )
            time.sleep(args.warmup)
            done = []
            for name in faults_to_run:
                done.append(getattr(faults, name)())
                time.sleep(args.settle)
            results = load.join()
            faults.log("load finished; accounting")
            samples = sorted((s for r in results for s in r["samples"]), key=lambda s: s[0])
            facts: dict[str, Any] = {
                "grants": [],
                "reads": [],
                "terminal_records": [],
                "represented": [],
                "held": [],
            }
            counters = Counter()
            for r in results:
                for key, values in facts.items():
                    values.extend(r["facts"].get(key, []))
                for key in ("double_acceptances", "code_pairs", "no_retry_after"):
                    counters[key] += r["facts"].get(key, 0)
            wrong = [w for r in results for w in r["wrong"]]
            reports = [window_report(samples, f, args.settle) for f in done]
            for fault, report in zip(done, reports, strict=True):
                if fault["fault"] == "redis":
                    before = [
                        x
                        for x in facts["represented"]
                        if x[0] < fault["down"] and x[1] > fault["up"]
                    ]
                    held = [x for x in facts["held"] if x[0] < fault["down"] and x[1] > fault["up"]]
                    report["codes_accepted_before_presented_after"] = dict(
                        Counter(x[2] for x in before)
                    )
                    report["codes_fetched_before_first_presented_after"] = dict(
                        Counter(x[2] for x in held)
                    )
            pg_rc = [f.get("detail") for f in done if f["fault"] == "postgres"]
            account = asyncio.run(accounting(env, facts, timeout=120))
            result.update(
                {
                    "config": {
                        "workers": args.workers,
                        "virtual_users": args.clients * args.concurrency,
                        "database": "PostgreSQL",
                        "store": "Redis",
                        "chain": "anvil (state file)",
                        "warmup_s": args.warmup,
                        "settle_s": args.settle,
                    },
                    "faults": reports,
                    "codes": {
                        "pairs_presented": counters["code_pairs"],
                        "double_acceptances": counters["double_acceptances"],
                        "represented": len(facts["represented"]),
                        "represented_outcomes": dict(Counter(x[2] for x in facts["represented"])),
                    },
                    "wrong_answers": wrong[:50],
                    "wrong_answer_count": len(wrong),
                    "other_5xx_total": sum(1 for s in samples if s[3] >= 500 and s[3] != 503),
                    "503_without_retry_after_total": counters["no_retry_after"],
                    "accounting": account,
                    "server_error_log": env.server_errors(),
                    "pg_restart_output": pg_rc,
                    "totals": {
                        "requests": len(samples),
                        "ok": sum(1 for s in samples if 0 < s[3] < 400),
                    },
                }
            )
    finally:
        restore_notes = restore(args)
        if restore_notes:
            print("restored: " + "; ".join(restore_notes), flush=True)
    result["restore_notes"] = restore_notes
    data_lost = (
        result["accounting"]["grants_missing"]
        + result["accounting"]["access_entries_missing"]
        + result["accounting"]["grant_entries_missing_from_ledger"]
        + result["accounting"]["terminal_records_missing"]
        + result["accounting"]["ledger_entries_unsealed"]
        + result["accounting"]["blocks_without_anchor_row"]
        + sum(v for k, v in result["accounting"]["anchors"].items() if k != "confirmed")
    )
    result["data_lost"] = data_lost
    result["passed"] = (
        data_lost == 0
        and result["codes"]["double_acceptances"] == 0
        and result["wrong_answer_count"] == 0
        and result["other_5xx_total"] == 0
        and result["503_without_retry_after_total"] == 0
        and bool(result["accounting"]["audit"].get("ok"))
    )
    if args.out:  # before rendering, so the figures survive a rendering bug
        args.out.write_text(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    text = render(result)
    print(text)
    if not args.no_doc:
        (ROOT / "docs" / "FAULTS.md").write_text(text + "\n", encoding="utf-8")
    return 0 if result["passed"] else 1


def render(result: dict[str, Any]) -> str:
    cfg, acc, codes = result["config"], result["accounting"], result["codes"]
    lines = [
        "# Faults under load",
        "",
        (
            f"Generated by `scripts/faults.py` on {result['when']} (2 cores shared with other "
            "work: timings are noisy)."
        ),
        (
            f"`ecard serve --workers {cfg['workers']}` on PostgreSQL + Redis + an anvil chain "
            "node with a state file,"
        ),
        (
            f"under the mixed load of `scripts/bench/load_mixed.py` ({cfg['virtual_users']} "
            "virtual users: code fetch and"
        ),
        (
            "verification by two verifiers at once, codes presented again later, OIDC scan-login, "
            "consent request/approve/read,"
        ),
        (
            f"terminal record uploads, operator reads); {cfg['warmup_s']:.0f} s of load before "
            "the first fault and"
        ),
        (
            f"{cfg['settle_s']:.0f} s after each. Clients wait 0.5 s after a 503 or a transport "
            "failure before their next request."
        ),
        "",
        (
            f"**Result: {'PASSED' if result['passed'] else 'FAILED'}** - data lost: "
            f"{result['data_lost']}, "
            f"double acceptances: {codes['double_acceptances']}, wrong answers: "
            f"{result['wrong_answer_count']}, "
            f"5xx other than 503: {result['other_5xx_total']}, 503 without Retry-After: "
            f"{result['503_without_retry_after_total']}."
        ),
        "",
        "## What clients got",
        "",
        (
            "| fault | outage | requests during | 503 + Retry-After | 503 without | other 5xx | "
            "no answer (timeout/transport) | first refusal after the stop | recovery after "
            "restore |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in result["faults"]:
        lines.append(
            f"| {f['title']} | {f['outage_seconds']} s | {f['requests_during']} | "
            f"{f['503_with_retry_after']} | "
            f"{f['503_without_retry_after']} | {f['other_5xx']} | {f['no_answer']} | "
            f"{_seconds_or_dash(f['first_failure_after_stop_seconds'])} | "
            f"{f['recovery_seconds']} s |"
        )
    lines += [
        "",
        (
            "Outage: from the stop command to the dependency answering again (polled every 0.2 "
            "s). Recovery: seconds"
        ),
        (
            "from then until the last failed request (0: the first requests after it already "
            "succeeded)."
        ),
        "",
    ]
    for f in result["faults"]:
        lines += [
            f"### {f['title']}",
            "",
            "Outcomes during the outage and the recovery window: "
            + ", ".join(f"{k}: {v}" for k, v in f["outcomes_during_and_recovery"].items()),
            "",
            "| operation | during the outage | last success after the stop |",
            "| --- | --- | ---: |",
        ]
        for op, outcomes in f["by_operation_during"].items():
            last = f["last_success_after_stop_seconds"].get(op)
            lines.append(
                f"| {op} | "
                + ", ".join(f"{k}: {v}" for k, v in outcomes.items())
                + f" | {'-' if last is None else str(last) + ' s'} |"
            )
        if "codes_accepted_before_presented_after" in f:
            lines += [
                "",
                (
                    "Codes accepted before Redis stopped and presented again after it came back "
                    "(empty): "
                )
                + (json.dumps(f["codes_accepted_before_presented_after"]) or "{}")
                + "; codes fetched before and first presented after: "
                + json.dumps(f["codes_fetched_before_first_presented_after"])
                + ".",
            ]
        lines.append("")
    lines += [
        "## Single use of codes",
        "",
        (
            f"{codes['pairs_presented']} fresh codes were each presented by two verifiers at the "
            "same "
            "time, and "
            f"{codes['represented']} codes accepted earlier were presented again (outcomes: "
            f"{json.dumps(codes['represented_outcomes'])}). "
            f"Double acceptances: **{codes['double_acceptances']}**."
        ),
        "",
        "## Data accounted for afterwards",
        "",
        "| what clients were told succeeded | count | missing |",
        "| --- | ---: | ---: |",
        (
            f"| grants approved (consent row `granted`) | {acc['grants_told_approved']} | "
            f"{acc['grants_missing']} |"
        ),
        (
            f"| their `granted` ledger entries | {acc['grants_told_approved']} | "
            f"{acc['grant_entries_missing_from_ledger']} |"
        ),
        (
            f"| data reads served (an `accessed` ledger entry each) | {acc['reads_told_served']} "
            f"| {acc['access_entries_missing']} |"
        ),
        (
            "| offline records uploaded (terminal_record rows) | "
            f"{acc['terminal_records_told_stored']} | {acc['terminal_records_missing']} |"
        ),
        "",
        f"Ledger: {acc['ledger_entries']} entries, {acc['ledger_entries_unsealed']} unsealed; "
        f"{acc['blocks']} blocks, "
        f"anchors by status {json.dumps(acc['anchors'])}, blocks without an anchor job: "
        f"{acc['blocks_without_anchor_row']}; "
        f"caught up: {acc['caught_up']}. Full audit (`GET /ledger/v1/audit`, every entry, block "
        "and chain anchor): "
        f"ok = {acc['audit'].get('ok')}"
        + (
            f", {json.dumps(acc['audit'].get('audit', {}), ensure_ascii=False)[:600]}"
            if acc["audit"]
            else ""
        ),
        "",
        (
            "The chain node keeps its state in a file (`anvil --state`), so after the restart it "
            "is the same chain with the"
        ),
        (
            "same contract and earlier anchors; anchoring jobs queued while it was down are sent "
            "when it returns."
        ),
        "",
        "## How to read this",
        "",
        (
            "- **Redis** holds the single-use code markers, login sessions, authorization codes, "
            "terminal request nonces and"
        ),
        (
            "  rate-limit buckets. While it is away every operation that needs one of them "
            "answers `503 store_unavailable`"
        ),
        (
            "  with `Retry-After` (online verification, the OIDC flow, terminal requests); what "
            "needs only the database keeps"
        ),
        (
            "  working (code fetch: signing only; consent; operator reads). A success shortly "
            "after the stop is a request that"
        ),
        "  finished before Redis went (see the last column).",
        (
            "- Redis comes back **empty**: the store's start marker moves forward and every code "
            "issued before it is refused"
        ),
        (
            "  (`already_used`), whether it was used before the restart or not (fail closed); "
            "apps fetch a new code, as"
        ),
        (
            "  they do every refresh interval anyway. OIDC login sessions in flight are lost (the "
            "page shows a new QR)."
        ),
        (
            "- **PostgreSQL** restart: requests on a connection that was cut, or that cannot "
            "connect, get"
        ),
        (
            "  `503 database_unavailable` with `Retry-After`; a commit whose answer was lost is "
            "reported as 503, never as"
        ),
        (
            "  success (the accounting checks what clients were told succeeded; an unknown "
            "outcome may have committed, and"
        ),
        "  a retry with the same `Idempotency-Key` is safe where creating twice matters).",
        (
            "- **Chain node** down: no client sees it. Sealed blocks queue their anchoring jobs "
            "in the database and are"
        ),
        (
            "  anchored, in order, once the node is back; the audit then checks every anchor "
            "against the chain."
        ),
    ]
    if result["wrong_answers"]:
        lines += ["", "## Wrong answers (first 20)", ""] + [
            f"- {w}" for w in result["wrong_answers"][:20]
        ]
    if result["server_error_log"]:
        lines += [
            "",
            "## Errors in the server log (first 10)",
            "",
            (
                "Background tasks (outbox relay, sealer, anchor worker) log a failed pass and "
                "retry it on the next tick;"
            ),
            "a request never got a 500 unless the table above says so.",
            "",
        ] + [f"- `{l[:300]}`" for l in result["server_error_log"][:10]]
    if result.get("restore_notes"):
        lines += ["", "Restored at the end: " + "; ".join(result["restore_notes"])]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
