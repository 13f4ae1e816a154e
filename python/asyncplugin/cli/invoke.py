"""`asyncplugin invoke TARGET --data JSON [--watch]`: run one task through the engine.

The task is recorded in the SQLite store (see `--store`), so `asyncplugin tasks` can show it
later. With --watch, a live table shows the state, checks done, the next check, and the plugin's
progress and message; at the end a table lists every check with the interval chosen and why.

TLS: --tls-ca (and --tls-cert/--tls-key for mutual TLS, --tls-server-name to verify another
name). A bearer token comes from --token-file or $ASYNCPLUGIN_TOKEN; it is sent on every call
but never written to the task store (a task resumed later by another engine needs it again).
Plaintext is refused to a non-loopback target unless --insecure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from rich.console import Console
from rich.live import Live

from asyncplugin.engine import Engine, SystemClock, TaskOptions, TaskRecord
from asyncplugin.protocol import TaskState
from asyncplugin.protocol.methods import GENERIC_METHOD

from .common import (
    Connection,
    add_channel_options,
    add_command,
    add_policy_options,
    add_store_option,
    check_reachable,
    connection,
    method_option,
    open_store,
    parse_json_data,
    policy_from_args,
)
from .errors import UsageError
from .payload_types import PayloadTypes, resolve
from .progress import checks_table, tasks_table


def register(subparsers: Any) -> None:
    """Adds the `invoke` subcommand."""
    parser = add_command(
        subparsers, "invoke", summary="run one task on a plugin through the engine", doc=__doc__
    )
    parser.add_argument("target", help="the plugin's address, host:port")
    parser.add_argument(
        "--method",
        default=GENERIC_METHOD,
        help="full method path (default %(default)s); typed RPCs are resolved by reflection",
    )
    parser.add_argument("--data", default="{}", help="the payload as JSON, or @FILE (default: {})")
    parser.add_argument("--watch", action="store_true", help="show live progress")
    parser.add_argument("--plugin-id", default="", help="sent as RequestContext.plugin_id")
    add_store_option(parser)
    add_policy_options(parser)
    add_channel_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler: returns 0 when the task SUCCEEDED, 1 otherwise."""
    data = parse_json_data(args.data)
    method_option(args.method)
    policy = policy_from_args(args)
    link = connection(args)
    credentials = link.credentials()
    check_reachable(args.target, credentials, args.connect_timeout, options=link.channel_options())
    types = resolve(
        args.target, args.method, credentials=credentials, options=link.channel_options()
    )
    try:
        payload = types.encode(data)
    except ValueError as err:
        raise UsageError(str(err)) from err
    # The token goes to the transport, not into TaskOptions: options are stored with the task.
    options = TaskOptions(policy=policy, plugin_id=args.plugin_id)
    console = Console() if sys.stdout.isatty() else Console(width=120)
    record = asyncio.run(_invoke(args, payload, options, console, link))
    _print_result(console, record, types)
    return 0 if record.state is TaskState.SUCCEEDED else 1


async def _invoke(
    args: argparse.Namespace,
    payload: bytes,
    options: TaskOptions,
    console: Console,
    link: Connection,
) -> TaskRecord:
    clock = SystemClock()
    transport = link.transport()
    engine = Engine(
        store=open_store(args.store, must_exist=False), clock=clock, transport=transport
    )
    async with engine:
        task_id = await engine.submit(
            args.target, method=args.method, payload=payload, options=options
        )
        if not args.watch:
            record = await engine.wait(task_id)
        else:
            record = await _watch(engine, task_id, console)
        checks = await engine.checks(task_id)
    await transport.close()
    if args.watch:
        console.print(checks_table(record, checks))
    return record


async def _watch(engine: Engine, task_id: str, console: Console) -> TaskRecord:
    record = await engine.get(task_id)
    with Live(console=console, refresh_per_second=8, transient=False) as live:

        def render() -> None:
            live.update(tasks_table([record], now=engine.clock.now()))

        render()
        waiter = asyncio.ensure_future(engine.wait(task_id))
        while not waiter.done():
            await asyncio.wait({waiter}, timeout=0.125)
            record = await engine.get(task_id)
            render()
        record = waiter.result()
        render()
    console.print()
    return record


def _print_result(console: Console, record: TaskRecord, types: PayloadTypes) -> None:
    if record.state is TaskState.SUCCEEDED:
        result = types.decode(record.result) if record.result is not None else None
        print(json.dumps({"task_id": record.task_id, "state": "SUCCEEDED", "data": result}))
        return
    error = record.error_proto()
    body = {
        "task_id": record.task_id,
        "state": record.state.name,
        "error": {"code": error.code, "message": error.message, "suggestion": error.suggestion},
    }
    print(json.dumps(body), file=sys.stdout)
