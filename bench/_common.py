"""What every benchmark shares: result rows, the machine header, child processes, measurements."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import multiprocessing as mp
import multiprocessing.connection
import os
import platform
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from importlib import metadata
from types import TracebackType
from typing import Any, TypeVar

__all__ = [
    "SPAWN",
    "Config",
    "PluginProcess",
    "Row",
    "Target",
    "cpu_s",
    "in_child",
    "machine_header",
    "median",
    "percentile",
    "rss_bytes",
    "run_loop",
    "saturating_policy",
]

SPAWN = mp.get_context("spawn")
"""Workers are spawned, never forked: forking beside a live grpc.aio channel hangs the child."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """What to run: `--quick` (a smoke run) and the sizes a full run may be given.

    Attributes:
        quick: small sizes, one repetition: checks that everything runs, figures are noise.
        reps: repetitions of the sections that interleave them (None: 3, or 1 with quick).
        peer_sizes: operations on the shared schedule in `peers` (None: the section's own).
        own_sizes: operations on each client's own defaults in `peers` (None: its own).
        attribution_size: operations of the `attribution` runs (None: its own).
    """

    quick: bool = False
    reps: int | None = None
    peer_sizes: tuple[int, ...] | None = None
    own_sizes: tuple[int, ...] | None = None
    attribution_size: int | None = None

    def repetitions(self) -> int:
        if self.reps is not None:
            return self.reps
        return 1 if self.quick else 3


def rotated(items: Sequence[T], rep: int) -> list[T]:
    """`items` rotated by `rep`: repetition r starts with item r (interleaved, order rotated)."""
    if not items:
        return []
    shift = rep % len(items)
    return list(items[shift:]) + list(items[:shift])


@dataclass(frozen=True, slots=True)
class Target:
    """A target from issue 6: `op threshold` applied to the row's value or to its ratio."""

    text: str
    on: str  # "value" or "ratio"
    op: str  # ">=", ">", "<=" or "<"
    threshold: float

    def met(self, value: float, ratio: float | None) -> bool | None:
        """True/False when the figure can be judged, None when it is missing."""
        subject = value if self.on == "value" else ratio
        if subject is None or math.isnan(subject):
            return None
        if self.op == ">=":
            return subject >= self.threshold
        if self.op == ">":
            return subject > self.threshold
        if self.op == "<=":
            return subject <= self.threshold
        return subject < self.threshold


@dataclass(slots=True)
class Row:
    """One line of the table: a figure, its baseline from the same run, the ratio, the target.

    `ratio` is always phrased so the column reads naturally: for throughput it is
    value / baseline, for costs where less is better it says how many times less (baseline /
    value) when `ratio_is_less` is set.
    """

    section: str
    figure: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    ratio_is_less: bool = False
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline_value is None or not self.value or not self.baseline_value:
            return None
        if self.ratio_is_less:
            return self.baseline_value / self.value
        return self.value / self.baseline_value

    @property
    def met(self) -> bool | None:
        return self.target.met(self.value, self.ratio) if self.target else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_value": self.baseline_value,
            "ratio": self.ratio,
            "ratio_is_less": self.ratio_is_less,
            "target": self.target.text if self.target else "",
            "met": self.met,
            "note": self.note,
        }


def fmt(value: float | None, unit: str) -> str:
    """A figure with its unit, short and aligned-friendly."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "MB":
        return f"{value:,.0f} MB"
    if unit == "ms":
        return f"{value:.2f} ms" if value < 10 else f"{value:,.0f} ms"
    if unit == "s":
        return f"{value:.3f} s" if value < 1 else f"{value:.2f} s"
    if unit == "us":
        return f"{value:,.0f} us"
    if unit == "n":
        return f"{value:.1f}"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:g} {unit}".strip()


def render_table(rows: Sequence[Row]) -> str:
    """The one table: figure, value, baseline (same run), ratio, target, met/missed."""
    head = ("#", "figure", "value", "baseline (same run)", "baseline", "ratio", "target", "result")
    lines: list[tuple[str, ...]] = [head]
    for row in rows:
        ratio = row.ratio
        if ratio is None:
            ratio_text = "-"
        elif not row.ratio_is_less:
            ratio_text = f"{ratio:.2f}x"
        else:
            ratio_text = f"{ratio:.2f}x less" if ratio >= 1 else f"{1 / ratio:.2f}x more"
        met = row.met
        result = "-" if met is None else ("met" if met else "MISSED")
        lines.append(
            (
                row.section,
                row.figure,
                fmt(row.value, row.unit),
                row.baseline or "-",
                fmt(row.baseline_value, row.unit) if row.baseline else "-",
                ratio_text,
                row.target.text if row.target else "-",
                result,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    right = {2, 4, 5}
    out = []
    for n, line in enumerate(lines):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_header() -> dict[str, str]:
    """The machine and versions the figures were measured on."""
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with (
        contextlib.suppress(OSError, ValueError, IndexError),
        open("/proc/meminfo", encoding="utf-8") as info,
    ):
        memory = f"{int(info.readline().split()[1]) / 2**20:.0f} GiB"
    load = "?"
    with contextlib.suppress(OSError):
        load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "grpcio": _version("grpcio"),
        "protobuf": _version("protobuf"),
        "uvloop": _version("uvloop"),
        "google-api-core": _version("google-api-core"),
        "load average at start": load,
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rss_bytes() -> int:
    """This process's resident set size now (/proc/self/statm)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak resident set size (ru_maxrss; fresh in a spawned child)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_s() -> float:
    """CPU seconds (user + system, all threads) used by this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_s(pid: int) -> float:
    """CPU seconds used so far by another process (user + system, from /proc)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def run_loop(main: Coroutine[Any, Any, T], loop: str = "asyncio") -> T:
    """Runs a coroutine on a fresh event loop: plain asyncio or uvloop."""
    if loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def _child_entry(
    conn: multiprocessing.connection.Connection,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    try:
        value = fn(*args, **kwargs)
    except BaseException:
        conn.send((False, traceback.format_exc()))
    else:
        conn.send((True, value))
    finally:
        conn.close()


def in_child(fn: Callable[..., T], *args: Any, timeout_s: float = 300.0, **kwargs: Any) -> T:
    """Runs `fn(*args, **kwargs)` in a fresh spawned process and returns its (pickled) result."""
    receiver, sender = SPAWN.Pipe(duplex=False)
    process = SPAWN.Process(target=_child_entry, args=(sender, fn, args, kwargs), daemon=True)
    process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            raise TimeoutError(f"{fn.__qualname__} took longer than {timeout_s:.0f} s")
        try:
            ok, value = receiver.recv()
        except EOFError:
            process.join(5)
            raise RuntimeError(
                f"{fn.__qualname__} died without a result (exit code {process.exitcode})"
            ) from None
    finally:
        receiver.close()
        process.join(15)
        if process.is_alive():
            process.kill()
            process.join()
    if not ok:
        raise RuntimeError(f"{fn.__qualname__} failed in its process:\n{value}")
    return value  # type: ignore[no-any-return]


class PluginProcess:
    """A plugin server (see `bench.plugins`) in its own spawned process on 127.0.0.1:0."""

    def __init__(self, kind: str, *, loop: str = "asyncio") -> None:
        self.kind = kind
        self.loop = loop
        self.port = 0
        self.pid = 0
        self._conn: multiprocessing.connection.Connection | None = None
        self._process: Any = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        return process_cpu_s(self.pid)

    def __enter__(self) -> PluginProcess:
        from . import plugins

        conn, child = SPAWN.Pipe()
        process = SPAWN.Process(
            target=plugins.serve_main, args=(self.kind, self.loop, child), daemon=True
        )
        process.start()
        child.close()
        if not conn.poll(60):
            process.kill()
            raise TimeoutError(f"the {self.kind} plugin server did not start")
        self.port = conn.recv()
        self.pid = process.pid or 0
        self._conn, self._process = conn, process
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.send("stop")
            self._conn.close()
        if self._process is not None:
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def saturating_policy(check_timeout_s: float | None = None) -> Any:
    """A `PollingPolicy` that makes every RUNNING task due again at once (1 us intervals, no
    jitter, no check or time limit): with 4*C such tasks and C calls in flight a due task always
    waits for a slot, so the engine runs at saturation. `check_timeout_s` replaces the default
    per-check timeout (for an engine that is slowed down or stopped on purpose)."""
    from asyncplugin.engine import PollingPolicy

    policy = PollingPolicy(
        initial_interval_s=1e-6,
        min_interval_s=1e-6,
        max_interval_s=1e-6,
        jitter=0.0,
        max_checks=None,
        deadline_s=None,
    )
    if check_timeout_s is not None:
        policy = dataclasses.replace(policy, check_timeout_s=check_timeout_s)
    return policy
