"""What every HTTP benchmark in scripts/bench/ measures, the same way (issue 21).

- **Server CPU per operation** is the headline: the user + system CPU time of the server process
  and all its descendants (granian's workers, node's threads) from ``/proc/<pid>/stat``, read
  before and after a batch, divided by the operations in it.  Unlike requests/s it does not depend
  on how much of the shared cores the load generator takes.  Throughput is reported beside it.
- **Rounds, not one run**: each figure is the median of N rounds with its spread (min–max and
  the interquartile range); the sides being compared alternate (ecard, peer, ecard, peer …) in
  one run, so a noisy neighbour hits both.
- **Steady state**: :func:`warm_up` runs batches until the CPU per operation of the last few
  batches agrees within a tolerance, and keeps the curve for the report (V8 and CPython's
  specialising interpreter both get faster over the first thousands of requests).
- **Idle baselines**: raw ES256 sign and verify (``cryptography``) are timed several times
  *before* any load (:func:`raw_es256`), reported with their spread; never "best of" after it.
- **A busy machine is detected** (:func:`machine_state`: the idle share of all cores from
  ``/proc/stat`` over a short window, and the load average) and every result says so: figures
  from a busy machine are not comparable to anything.

Results go out as JSON (:func:`write_result`), which ``performance_report.py`` turns into the
headline and target tables of docs/PERFORMANCE.md.  Linux only (``/proc``).

Run alone, it tells whether this machine is idle enough to measure, and times the baselines:

    .venv/bin/python scripts/bench/measure.py [--repeats 7] [--seconds 1.0]
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

#: an idle machine: at least this share of all cores idle while nothing of ours runs …
IDLE_SHARE = 0.85
#: … and a 1-minute load average below this fraction of the cores
IDLE_LOAD_PER_CORE = 0.5


# --- the machine ------------------------------------------------------------------------------
def _cpu_times() -> tuple[int, int]:
    """(idle + iowait, total) jiffies of all cores, from the first line of /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return values[3] + values[4], sum(values[:8])


@dataclass
class MachineState:
    """How idle the machine was just before a benchmark (nothing of the benchmark running)."""

    cores: int
    load_average: float
    idle_share: float  # of all cores, over ``window`` seconds
    window: float
    cpu: str

    @property
    def idle(self) -> bool:
        return self.idle_share >= IDLE_SHARE and self.load_average < IDLE_LOAD_PER_CORE * self.cores

    def describe(self) -> str:
        return (
            f"{self.cores} cores ({self.cpu}); {self.idle_share:.0%} idle over {self.window:.0f} s "
            f"before the run, load average {self.load_average:.2f}: "
            + ("idle" if self.idle else "NOT IDLE (figures not comparable)")
        )


def machine_state(window: float = 2.0) -> MachineState:
    """Sample the idle share of all cores over ``window`` seconds and the 1-minute load."""
    idle0, total0 = _cpu_times()
    time.sleep(window)
    idle1, total1 = _cpu_times()
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return MachineState(
        cores=os.cpu_count() or 1,
        load_average=os.getloadavg()[0],
        idle_share=(idle1 - idle0) / max(1, total1 - total0),
        window=window,
        cpu=cpu,
    )


def warn_if_busy(state: MachineState) -> None:
    """A loud warning on stderr and stdout when the machine is not idle."""
    print(f"machine: {state.describe()}", flush=True)
    if state.idle:
        return
    banner = (
        "\n" + "!" * 78 + "\n"
        "!!  THE MACHINE IS BUSY: "
        f"{1 - state.idle_share:.0%} of its {state.cores} cores were in use before the run "
        f"(load {state.load_average:.1f}).\n"
        "!!  Every figure below is NOT COMPARABLE: re-run on an idle machine to publish.\n"
        + "!" * 78
        + "\n"
    )
    print(banner, file=sys.stderr, flush=True)
    if not sys.stdout.isatty():
        print(banner, flush=True)


# --- server CPU -------------------------------------------------------------------------------
def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now (every thread's children, from /proc)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants, live or reaped."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for current in process_tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        # utime + stime, and cutime + cstime: the children it has reaped (a worker that exited
        # mid-batch leaves the tree but its CPU stays counted, in its parent)
        total += sum(int(f) for f in fields[11:15]) / tick
    return total


@dataclass
class Sample:
    """One batch of one operation against one server."""

    operations: int
    seconds: float  # wall clock
    cpu: float  # server CPU seconds (the process tree)

    @property
    def per_second(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0

    @property
    def cpu_us(self) -> float:
        """Server CPU per operation, µs."""
        return self.cpu / self.operations * 1e6 if self.operations else 0.0


class CpuMeter:
    """``with CpuMeter(pid) as meter: ...; meter.sample(n)``: the server's CPU and the wall clock
    over the block.  Clock ticks are 10 ms: a batch should take a second or more."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._cpu = self._wall = 0.0
        self.cpu = self.wall = 0.0

    def __enter__(self) -> Self:
        self._cpu, self._wall = cpu_seconds(self.pid), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = cpu_seconds(self.pid) - self._cpu

    def sample(self, operations: int) -> Sample:
        return Sample(operations, self.wall, self.cpu)


# --- spread -----------------------------------------------------------------------------------
@dataclass
class Spread:
    """The median of some values with their spread: min–max and the interquartile range."""

    median: float
    low: float
    high: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        if not values:
            raise ValueError("no values")
        ordered = sorted(values)
        q1, q3 = (
            (statistics.quantiles(ordered, n=4)[0], statistics.quantiles(ordered, n=4)[2])
            if len(ordered) >= 2
            else (ordered[0], ordered[0])
        )
        return cls(statistics.median(ordered), ordered[0], ordered[-1], q1, q3, len(ordered))

    def text(self, digits: int = 0, unit: str = "") -> str:
        """``690 µs (620–730, n=5)``."""
        f = f"{{:,.{digits}f}}"
        return (
            f"{f.format(self.median)}{unit} ({f.format(self.low)}–{f.format(self.high)}, "
            f"n={self.n})"
        )


@dataclass
class Series:
    """The rounds of one operation on one side."""

    operation: str
    side: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def cpu_us(self) -> Spread:
        return Spread.of([s.cpu_us for s in self.samples])

    @property
    def per_second(self) -> Spread:
        return Spread.of([s.per_second for s in self.samples])

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "side": self.side,
            "cpu_us": asdict(self.cpu_us),
            "per_second": asdict(self.per_second),
            "samples": [asdict(s) for s in self.samples],
        }


def alternate(
    sides: list[str], rounds: int, measure: Callable[[str, int], Sample], operation: str
) -> dict[str, Series]:
    """``rounds`` rounds, each measuring every side in turn (a, b, a, b …); ``measure(side,
    round)``.  Prints one line per round."""
    series = {side: Series(operation, side) for side in sides}
    for number in range(1, rounds + 1):
        parts = []
        for side in sides:
            sample = measure(side, number)
            series[side].samples.append(sample)
            parts.append(f"{side} {sample.cpu_us:,.0f} µs CPU/op, {sample.per_second:,.0f}/s")
        print(f"  {operation} round {number}: " + "; ".join(parts), flush=True)
    return series


# --- warm-up ----------------------------------------------------------------------------------
@dataclass
class WarmUp:
    """CPU per operation batch after batch until the last ``window`` batches lie within
    ±``tolerance`` of their median (at least ``min_batches``, at most ``max_batches``)."""

    side: str
    batch: int
    tolerance: float = 0.10
    window: int = 3
    min_batches: int = 4
    max_batches: int = 30
    curve: list[float] = field(default_factory=list)  # µs CPU/op per batch
    stable: bool = False

    def add(self, sample: Sample) -> bool:
        """Record one batch; True when warming is over (stable, or ``max_batches`` reached)."""
        self.curve.append(sample.cpu_us)
        print(
            f"  warming {self.side}: batch {len(self.curve)}: {sample.cpu_us:,.0f} µs CPU/op, "
            f"{sample.per_second:,.0f}/s",
            flush=True,
        )
        if len(self.curve) >= max(self.min_batches, self.window):
            last = self.curve[-self.window :]
            middle = statistics.median(last)
            self.stable = all(abs(v - middle) <= self.tolerance * middle for v in last)
        return self.stable or len(self.curve) >= self.max_batches

    def text(self) -> str:
        shown = ", ".join(f"{v:,.0f}" for v in self.curve)
        state = "stable" if self.stable else "NOT stable (gave up)"
        return (
            f"{self.side} warm-up, {self.batch} ops per batch, server CPU µs/op: {shown} "
            f"({state} within ±{self.tolerance:.0%})"
        )


def warm_up(warm: WarmUp, batch: Callable[[], Sample]) -> WarmUp:
    """Run ``batch`` until ``warm`` says the side is warm."""
    while not warm.add(batch()):
        pass
    return warm


# --- raw crypto baselines ---------------------------------------------------------------------
def _rate(operation: Callable[[], object], seconds: float) -> float:
    """Operations per second of this thread's CPU time (``time.thread_time``), for ``seconds`` of
    it: the same clock as the servers' CPU per operation, so a neighbour's load stretches neither
    (it still shares caches and frequency: measure on an idle machine)."""
    operation()
    count, start = 0, time.thread_time()
    deadline = start + seconds
    while True:
        for _ in range(50):
            operation()
        count += 50
        now = time.thread_time()
        if now >= deadline:
            return count / (now - start)


def raw_es256(repeats: int = 7, seconds: float = 1.0) -> dict[str, Spread]:
    """Raw ``cryptography`` ES256 sign and verify on one core, ``repeats`` × ``seconds`` of CPU
    each, as CPU µs per operation: ``{"sign": Spread, "verify": Spread}``.  Call it before any
    load."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    message = b"ecard/code\x00" + bytes(115)
    algorithm = ec.ECDSA(hashes.SHA256())
    der = key.sign(message, algorithm)
    public = key.public_key()
    sign: list[float] = []
    verify: list[float] = []
    for _ in range(repeats):  # interleaved, so a neighbour's burst hits both
        sign.append(1e6 / _rate(lambda: key.sign(message, algorithm), seconds))
        verify.append(1e6 / _rate(lambda: public.verify(der, message, algorithm), seconds))
    return {"sign": Spread.of(sign), "verify": Spread.of(verify)}


def baselines_text(raw: dict[str, Spread]) -> list[str]:
    return [
        f"{'raw ES256 ' + name if name in ('sign', 'verify') else name:<16} "
        f"{spread.text(1, ' µs')} = {1e6 / spread.median:,.0f}/s on one core"
        for name, spread in raw.items()
    ]


def load_baselines(path: Path | None, repeats: int = 7, seconds: float = 1.0) -> dict[str, Spread]:
    """Baselines from ``path`` (written by performance_report.py before any load) or, without
    one, measured now (call this before starting any server)."""
    if path is not None:
        data = json.loads(path.read_text())
        return {name: Spread(**data[name]) for name in ("sign", "verify")}
    return raw_es256(repeats, seconds)


# --- targets ----------------------------------------------------------------------------------
@dataclass
class Target:
    """A target of issue 21: ``ours / reference`` must be at most (or at least) ``limit``."""

    name: str
    ours: float
    reference: float
    limit: float
    at_most: bool  # True: ratio <= limit is met
    meaning: str  # what the ratio is, e.g. "× raw ES256 sign"

    @property
    def ratio(self) -> float:
        return self.ours / self.reference if self.reference else float("inf")

    @property
    def met(self) -> bool:
        return self.ratio <= self.limit if self.at_most else self.ratio >= self.limit

    def text(self) -> str:
        sign = "≤" if self.at_most else "≥"
        return f"{self.name}: {self.ratio:.2f}{self.meaning} (target {sign} {self.limit:g}) " + (
            "met" if self.met else "NOT MET"
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "met": self.met}


# --- wrk --------------------------------------------------------------------------------------
def wrk(
    url: str,
    seconds: float,
    connections: int,
    pid: int,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
) -> Sample:
    """Load ``url`` with wrk (one thread) and measure the server process tree ``pid``: requests
    completed, wall seconds, server CPU.  Any non-2xx/3xx answer is an error."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd += [*(["-s", str(script)] if script else []), url]
    with CpuMeter(pid) as meter:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} error responses\n{out}")
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if not done:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return Sample(int(done.group(1)), meter.wall, meter.cpu)


# --- results ----------------------------------------------------------------------------------
@dataclass
class Result:
    """What a benchmark hands to performance_report.py."""

    benchmark: str
    machine: MachineState
    setup: str
    baselines: dict[str, Spread] = field(default_factory=dict)
    series: list[Series] = field(default_factory=list)
    warm_ups: list[WarmUp] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "machine": {**asdict(self.machine), "idle": self.machine.idle},
            "setup": self.setup,
            "baselines": {k: asdict(v) for k, v in self.baselines.items()},
            "series": [s.as_dict() for s in self.series],
            "warm_ups": [asdict(w) for w in self.warm_ups],
            "targets": [t.as_dict() for t in self.targets],
            "notes": self.notes,
        }

    def print_summary(self) -> None:
        print(f"\n== {self.benchmark}: server CPU per operation (median of rounds, min–max) ==")
        print(f"{self.setup}")
        if not self.machine.idle:
            print("MACHINE BUSY: these figures are not comparable")
        for line in baselines_text(self.baselines):
            print(f"  {line}")
        for s in self.series:
            print(
                f"  {s.operation:<44} {s.side:<14} {s.cpu_us.text(0, ' µs'):<30} "
                f"{s.per_second.text(0, '/s')}"
            )
        for w in self.warm_ups:
            print(f"  {w.text()}")
        for t in self.targets:
            print(f"  target  {t.text()}")
        for note in self.notes:
            print(f"  note: {note}")


def write_result(result: Result, path: Path | None) -> None:
    result.print_summary()
    if path is not None:
        path.write_text(json.dumps(result.as_dict(), indent=1, ensure_ascii=False))


__all__ = [
    "CpuMeter",
    "MachineState",
    "Result",
    "Sample",
    "Series",
    "Spread",
    "Target",
    "WarmUp",
    "alternate",
    "cpu_seconds",
    "load_baselines",
    "machine_state",
    "raw_es256",
    "warm_up",
    "warn_if_busy",
    "write_result",
    "wrk",
]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(
        description="Is this machine idle enough to measure? And the raw ES256 baselines."
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    state = machine_state()
    warn_if_busy(state)
    for line in baselines_text(raw_es256(args.repeats, args.seconds)):
        print(line)
    sys.exit(0 if state.idle else 3)


if __name__ == "__main__":
    main()
