"""`asyncplugin tasks list|show ID`: read tasks and their check history from the store.

`remote_status_input` is the plugin's continuation state and may hold identifiers a user should
not see in passing: `show` prints it only with --show-remote-input. Secrets are never printed:
a stored bearer token shows as "(stored, redacted)" and call metadata by its keys only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from asyncplugin.engine import CheckRecord, TaskRecord
from asyncplugin.protocol import TaskState

from .common import add_store_option, open_store, store_name
from .errors import UsageError
from .progress import checks_table, state_text, tasks_table, timestamp


def register(subparsers: Any) -> None:
    """Adds the `tasks` subcommand with `list` and `show`."""
    parser = subparsers.add_parser("tasks", help="list or show tasks in the store")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="list tasks, newest first")
    listing.add_argument(
        "--state", choices=[s.name for s in TaskState], help="only tasks in this state"
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (%(default)s)")
    add_store_option(listing)
    listing.set_defaults(handler=run_list)
    show = actions.add_parser("show", help="show one task and its check history")
    show.add_argument("task_id")
    show.add_argument(
        "--show-remote-input", action="store_true", help="also print remote_status_input"
    )
    add_store_option(show)
    show.set_defaults(handler=run_show)


def run_list(args: argparse.Namespace) -> int:
    """Handler for `tasks list`."""
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    store = open_store(args.store, must_exist=True)

    async def load() -> list[TaskRecord]:
        await store.open()
        try:
            states = [TaskState[args.state]] if args.state else None
            return await store.list(states=states, limit=args.limit)
        finally:
            await store.close()

    records = asyncio.run(load())
    console = Console()
    if not records:
        console.print("no tasks")
        return 0
    console.print(tasks_table(records, now=time.time(), title=f"tasks in {store_name(args.store)}"))
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Handler for `tasks show ID`."""
    store = open_store(args.store, must_exist=True)

    async def load() -> tuple[TaskRecord | None, list[CheckRecord]]:
        await store.open()
        try:
            return await store.get(args.task_id), await store.checks(args.task_id)
        finally:
            await store.close()

    record, checks = asyncio.run(load())
    if record is None:
        raise UsageError(f"no task {args.task_id!r} in {store_name(args.store)}")
    console = Console()
    console.print(_details(record, show_remote_input=args.show_remote_input))
    console.print(checks_table(record, checks))
    return 0


def _details(record: TaskRecord, *, show_remote_input: bool) -> Table:
    table = Table(show_header=False, title=f"task {record.task_id}")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("state", state_text(record.state))
    table.add_row("target", f"{record.target} {record.method}")
    table.add_row("created", timestamp(record.create_time))
    table.add_row("updated", timestamp(record.update_time))
    table.add_row("ended", timestamp(record.end_time))
    table.add_row("deadline", timestamp(record.deadline))
    table.add_row("checks", str(record.check_count))
    table.add_row("next check", timestamp(record.next_check_time))
    table.add_row("idempotency key", record.idempotency_key)
    for label, value in _option_rows(record):
        table.add_row(label, value)
    task = record.task
    if task is not None:
        table.add_row("status message", task.status_message)
        if task.progress is not None:
            table.add_row("progress", repr(task.progress))
        if show_remote_input:
            table.add_row("remote_status_input", json.dumps(task.remote_status_input))
        elif task.remote_status_input is not None:
            table.add_row("remote_status_input", "(hidden; --show-remote-input)")
    if record.error is not None:
        table.add_row("error", json_format.MessageToJson(record.error_proto(), indent=1))
    if record.result is not None:
        table.add_row("result", f"{len(record.result)} bytes")
    return table


def _option_rows(record: TaskRecord) -> list[tuple[str, str]]:
    """The task's identities and call metadata, with every metadata value redacted (metadata
    may carry credentials under any key, so no value is shown)."""
    options = record.options
    rows: list[tuple[str, str]] = []
    if options.plugin_id or options.plugin_instance_id:
        rows.append(("plugin", f"{options.plugin_id or '-'} / {options.plugin_instance_id or '-'}"))
    if options.metadata:
        keys = ", ".join(f"{key}=<redacted>" for key, _ in options.metadata)
        rows.append(("call metadata", keys))
    return rows
