"""`asyncplugin demo`: a full asynchronous conversation through the engine, in under a minute.

Starts the example async plugin (server/slow_job.py, a simulated third-party job API) as its
own process, runs the engine on the embedded SQLite store with short intervals that still
visibly grow, submits a handful of tasks (some succeed after several checks, one fails with an
error envelope, one is cancelled, one follows the plugin's check-after hint), shows live
progress, then every task's outcome and one task's check history. Exits 0 only if every task
ended as expected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from asyncplugin.engine import Engine, PollingPolicy, SqliteStore, TaskRecord
from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.protocol import TaskState
from asyncplugin.service.convert import task_to_proto

from .errors import UsageError
from .progress import checks_table, state_text, tasks_table

DEMO_POLICY = PollingPolicy(
    initial_interval_s=0.4,
    multiplier=1.6,
    max_interval_s=4.0,
    min_interval_s=0.2,
    jitter=0.2,
    deadline_s=45.0,
    check_timeout_s=5.0,
)
"""Short intervals that still visibly grow: 0.4, 0.64, 1.02, 1.64, 2.62, 4 s (+-20%)."""


def cli_command() -> str:
    """How to type the `asyncplugin` command from the current directory: "asyncplugin" when the
    virtual environment it lives in is active (or it is not in one), else its path, such as
    ".venv/bin/asyncplugin" (`make demo` runs it without activating .venv)."""
    in_venv = sys.prefix != sys.base_prefix
    if not in_venv or os.environ.get("VIRTUAL_ENV") == sys.prefix:
        return "asyncplugin"
    path = Path(sys.prefix) / "bin" / "asyncplugin"
    if not path.exists():
        return "asyncplugin"
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@dataclass(frozen=True, slots=True)
class DemoTask:
    """One task of the demo and the outcome it must reach."""

    label: str
    payload: dict[str, Any]
    expect: TaskState
    expect_code: str = ""
    cancel_after_s: float | None = None


DEMO_TASKS = (
    DemoTask("short job (3 s)", {"duration_s": 3, "hint": False}, TaskState.SUCCEEDED),
    DemoTask("medium job (6 s)", {"duration_s": 6, "hint": False}, TaskState.SUCCEEDED),
    DemoTask("long job (10 s)", {"duration_s": 10, "hint": False}, TaskState.SUCCEEDED),
    DemoTask("job with hint (5 s)", {"duration_s": 5}, TaskState.SUCCEEDED),
    DemoTask(
        "failing job", {"duration_s": 2, "fail": True, "hint": False}, TaskState.FAILED,
        expect_code="REMOTE_JOB_FAILED",
    ),
    DemoTask(
        "cancelled job", {"duration_s": 60, "hint": False}, TaskState.CANCELLED,
        cancel_after_s=4.0,
    ),
)  # fmt: skip


def register(subparsers: Any) -> None:
    """Adds the `demo` subcommand."""
    parser = subparsers.add_parser("demo", help="run the demo conversation (make demo)")
    parser.add_argument(
        "--plugin",
        default="server.slow_job:SlowJob",
        help="the example plugin to serve, MODULE:CLASS (default %(default)s)",
    )
    parser.add_argument("--store", help="SQLite file (default: a new one in a temp folder)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler: 0 when every demo task ended as expected."""
    console = Console() if sys.stdout.isatty() else Console(width=120)
    store_path = Path(args.store or Path(tempfile.mkdtemp(prefix="asyncplugin-demo-")) / "demo.db")
    with _plugin_server(args.plugin) as target:
        console.print(f"[bold]plugin[/] {args.plugin} serving on {target} (its own process)")
        console.print(f"[bold]engine[/] SQLite store {store_path}")
        records, history = asyncio.run(_run_tasks(console, target, store_path))
    return _report(console, records, history, store_path)


@contextlib.contextmanager
def _plugin_server(plugin: str) -> Iterator[str]:
    command = [sys.executable, "-m", "asyncplugin.cli", "serve", plugin, "--port", "0"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("serving "):
            error = process.stderr.read() if process.stderr else ""
            last = (error.strip().splitlines() or ["(no output)"])[-1]
            raise UsageError(f"could not start the example plugin {plugin}: {last}")
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _run_tasks(
    console: Console, target: str, store_path: Path
) -> tuple[list[TaskRecord], dict[str, Any]]:
    async with Engine(store=SqliteStore(store_path), policy=DEMO_POLICY) as engine:
        started = engine.clock.now()
        ids = [await engine.submit(target, payload=task.payload) for task in DEMO_TASKS]
        labels = dict(zip(ids, (task.label for task in DEMO_TASKS), strict=True))
        pending_cancels = {
            task_id: started + task.cancel_after_s
            for task_id, task in zip(ids, DEMO_TASKS, strict=True)
            if task.cancel_after_s is not None
        }
        with Live(console=console, refresh_per_second=8) as live:
            while True:
                now = engine.clock.now()
                for task_id, when in list(pending_cancels.items()):
                    if now >= when:
                        await engine.cancel(task_id)
                        del pending_cancels[task_id]
                records = [await engine.get(task_id) for task_id in ids]
                rows = [
                    task_to_proto(record, view=engine_pb2.TASK_VIEW_BASIC) for record in records
                ]
                live.update(tasks_table(rows, now=now, names=labels, title="asyncplugin demo"))
                if all(record.is_terminal for record in records):
                    break
                await asyncio.sleep(0.125)
        console.print()
        history = {task_id: await engine.checks(task_id) for task_id in ids}
    return records, {"labels": labels, "checks": history}


def _report(
    console: Console, records: list[TaskRecord], history: dict[str, Any], store_path: Path
) -> int:
    summary = Table(title="outcomes")
    for column in ("task", "state", "expected", "checks", "took", "ok"):
        summary.add_column(column)
    failures = 0
    for record, task in zip(records, DEMO_TASKS, strict=True):
        ok = record.state is task.expect and (
            not task.expect_code or record.error_code == task.expect_code
        )
        failures += not ok
        took = (record.end_time or time.time()) - record.create_time
        expected = task.expect.name + (f" ({task.expect_code})" if task.expect_code else "")
        summary.add_row(
            task.label,
            state_text(record.state),
            expected,
            str(record.check_count),
            f"{took:.1f}s",
            "[green]yes[/]" if ok else "[red]NO[/]",
        )
    console.print(summary)
    longest = records[2]
    longest_checks = history["checks"][longest.task_id]
    console.print(checks_table(task_to_proto(longest, longest_checks)))
    intervals = [c.interval_s for c in longest_checks if c.interval_s is not None]
    if len(intervals) < 4 or intervals[-1] <= intervals[0]:
        console.print(f"[red]the long job's check intervals did not grow: {intervals}[/]")
        failures += 1
    failed = records[4]
    if failed.error is not None:
        envelope = failed.error_proto()
        console.print(
            f"[bold]error envelope of '{DEMO_TASKS[4].label}'[/]: code={envelope.code} "
            f"message={envelope.message!r} suggestion={envelope.suggestion!r} "
            f"wrapped={envelope.wrapped_message or envelope.wrapped_error.message!r}"
        )
    cli = cli_command()
    console.print(
        f"inspect later: {cli} tasks list --store {store_path}; "
        f"{cli} tasks show {longest.task_id} --store {store_path}"
    )
    if failures:
        console.print(f"[red]{failures} task(s) did not end as expected[/]")
        return 1
    console.print("[green]every task ended as expected[/]")
    return 0
