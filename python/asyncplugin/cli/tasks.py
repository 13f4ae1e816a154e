"""`asyncplugin tasks list|show|watch|cancel|result`: tasks of a running engine, or of a store.

With --engine HOST:PORT (or $ASYNCPLUGIN_ENGINE) the commands ask the engine daemon; otherwise
they read the task store (--store, $ASYNCPLUGIN_STORE or ./asyncplugin.sqlite3) without
claiming it, so whichever engine drives the store keeps driving it. `cancel` needs a daemon.

Task ids are printed in full, and any unique prefix of one is accepted: a prefix matching no
task is NOT_FOUND, one matching several is INVALID_ARGUMENT naming the candidates.

`-o json` prints stable field names (the protobuf JSON mapping of asyncplugin.engine.v1.Task,
proto field names): one JSON document, or one JSON line per task (`list`) or per recorded
change (`watch`). `tasks result` prints the result decoded into the method's output type
(found through the plugin's reflection; --tls-ca etc. reach a plugin behind TLS), or its raw
bytes with `-o raw`.

`remote_status_input` is the plugin's continuation state and may hold identifiers a user should
not see in passing: `show` prints it only with --show-remote-input. Call metadata is shown by
its keys only.

Exit status: 0 on success (`watch` and `result`: the task SUCCEEDED), 1 when the task FAILED or
was CANCELLED or the engine refused the call, 2 for a mistake on the command line or an id
that matches no task or several, 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.protocol import TaskState
from asyncplugin.v1 import task_pb2

from .common import add_channel_options, add_store_option, connection
from .engine_link import add_engine_options
from .errors import UsageError
from .follow import Followed, follow
from .interrupt import INTERRUPTED_EXIT, Interrupted, run_interruptible
from .output import add_output_option, print_json, print_json_line
from .output import console as output_console
from .progress import checks_table, state_name, tasks_table
from .sources import ListQuery, TaskSource, open_source
from .task_views import decode_result, details_table, result_document, task_document

_AGE = re.compile(
    r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$"
)


def register(subparsers: Any) -> None:
    """Adds the `tasks` subcommand and its actions."""
    parser = subparsers.add_parser(
        "tasks",
        help="list, show, watch, cancel tasks and read their results",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="list tasks, newest first")
    listing.add_argument(
        "--state",
        action="append",
        choices=[s.name for s in TaskState],
        help="only tasks in this state (repeat for several)",
    )
    listing.add_argument("--target", help="only tasks on this plugin address")
    listing.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only tasks with this label (repeat: all must match)",
    )
    listing.add_argument(
        "--newer-than", metavar="AGE", help="only tasks created within AGE (30s, 15m, 2h, 7d)"
    )
    listing.add_argument("--older-than", metavar="AGE", help="only tasks created before AGE ago")
    listing.add_argument("--limit", type=int, default=50, help="at most this many [%(default)s]")
    _source_options(listing)
    add_output_option(listing)
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="show one task, its result and its check history")
    show.add_argument("task_id", help="a task id or a unique prefix of one")
    show.add_argument(
        "--show-remote-input", action="store_true", help="also print remote_status_input"
    )
    _source_options(show, plugin=True)
    add_output_option(show)
    show.set_defaults(handler=run_show)

    watch = actions.add_parser("watch", help="follow a task until it ends")
    watch.add_argument("task_id", help="a task id or a unique prefix of one")
    _source_options(watch)
    add_output_option(watch)
    watch.set_defaults(handler=run_watch)

    cancel = actions.add_parser("cancel", help="cancel a task (needs a running engine)")
    cancel.add_argument("task_id", help="a task id or a unique prefix of one")
    _source_options(cancel)
    add_output_option(cancel)
    cancel.set_defaults(handler=run_cancel)

    result = actions.add_parser("result", help="print a finished task's result")
    result.add_argument("task_id", help="a task id or a unique prefix of one")
    _source_options(result, plugin=True)
    add_output_option(result, raw=True)
    result.set_defaults(handler=run_result)


def _source_options(parser: argparse.ArgumentParser, *, plugin: bool = False) -> None:
    add_engine_options(parser)
    add_store_option(
        parser,
        help_text="read tasks from this store (an SQLite file or a postgresql:// URL) instead "
        "of a daemon; default $ASYNCPLUGIN_STORE or ./asyncplugin.sqlite3",
    )
    if plugin:
        add_channel_options(parser)  # reflection on the plugin; brings --connect-timeout
    else:
        parser.add_argument(
            "--connect-timeout", type=float, default=5.0, metavar="S", help="[%(default)s]"
        )


def parse_age(text: str, option: str) -> float:
    """An age like 90, 30s, 15m, 2h, 7d or 1h30m, in seconds.

    Raises:
        UsageError: anything else (naming the option).
    """
    match = _AGE.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise UsageError(f"{option} {text!r} is not an age like 30s, 15m, 2h, 7d or 1h30m")
    days, hours, minutes, secs = (float(group) if group else 0.0 for group in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + secs


def _labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {pair!r} is not KEY=VALUE")
        labels[key] = value
    return labels


def list_query(args: argparse.Namespace, *, now: float) -> ListQuery:
    """The filters `tasks list` was given."""
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {args.limit}")
    newer = parse_age(args.newer_than, "--newer-than") if args.newer_than else None
    older = parse_age(args.older_than, "--older-than") if args.older_than else None
    return ListQuery(
        states=[TaskState[name] for name in args.state or ()],
        target=args.target or "",
        labels=_labels(args.label),
        created_after=now - newer if newer is not None else None,
        created_before=now - older if older is not None else None,
        limit=args.limit,
    )


def run_list(args: argparse.Namespace) -> int:
    """Handler for `tasks list`."""
    query = list_query(args, now=time.time())
    source = open_source(args)

    async def load() -> list[engine_pb2.Task]:
        async with source:
            return [task async for task in source.list(query)]

    tasks = run_interruptible(load())
    if args.output == "json":
        for task in tasks:
            print_json_line(task)
        return 0
    console = output_console()
    if not tasks:
        console.print(f"no tasks in {source.where}")
        return 0
    console.print(
        tasks_table(tasks, now=time.time(), title=f"tasks in {source.where}", polled=source.polled)
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
    """Handler for `tasks show ID`."""
    source = open_source(args)

    async def load() -> engine_pb2.Task:
        async with source:
            return await source.get(args.task_id)

    task = run_interruptible(load())
    if args.output == "json":
        print_json(task_document(task, show_remote_input=args.show_remote_input))
        return 0
    result = decode_result(
        task, connection(args, target=task.target), timeout_s=args.connect_timeout
    )
    console = output_console()
    console.print(
        details_table(
            task, result=result, show_remote_input=args.show_remote_input, polled=source.polled
        )
    )
    console.print(checks_table(task))
    return 0


def run_watch(args: argparse.Namespace) -> int:
    """Handler for `tasks watch ID`: 0 when the task SUCCEEDED, 1 when it ended otherwise."""
    source = open_source(args)
    seen = Followed()
    console = output_console()

    async def watch() -> Followed:
        async with source:
            return await follow(
                source.watch(args.task_id),
                json_lines=args.output == "json",
                console=console,
                polled=lambda: source.polled,
                seen=seen,
            )

    try:
        run_interruptible(watch())
    except Interrupted:
        task_id = seen.task.task_id if seen.task is not None else args.task_id
        print(
            f"stopped watching task {task_id}; it goes on. Follow it again: asyncplugin tasks "
            f"watch {task_id} {source.follow_hint(task_id)}".rstrip(),
            file=sys.stderr,
        )
        return INTERRUPTED_EXIT
    task = seen.task
    assert task is not None  # a watch yields at least the task as it stands
    if args.output != "json":
        console.print(checks_table(task, seen.checks))
        console.print(f"task {task.task_id} {state_name(task.state)}")
    return 0 if task.state == task_pb2.TASK_STATE_SUCCEEDED else 1


def run_cancel(args: argparse.Namespace) -> int:
    """Handler for `tasks cancel ID`."""
    source = open_source(args)

    async def cancel() -> engine_pb2.Task:
        async with source:
            return await source.cancel(args.task_id)

    task = run_interruptible(cancel())
    if args.output == "json":
        print_json(task)
        return 0
    output_console().print(tasks_table([task], now=time.time()))
    return 0


def run_result(args: argparse.Namespace) -> int:
    """Handler for `tasks result ID`: 0 and the result when the task SUCCEEDED."""
    source = open_source(args)

    async def load() -> engine_pb2.Task:
        async with source:
            return await source.get(args.task_id)

    task = run_interruptible(load())
    if task.state != task_pb2.TASK_STATE_SUCCEEDED:
        return _no_result(args, task, source)
    if args.output == "raw":
        sys.stdout.buffer.write(task.result)
        sys.stdout.buffer.flush()
        return 0
    result = decode_result(
        task, connection(args, target=task.target), timeout_s=args.connect_timeout
    )
    if args.output == "json":
        print_json(result_document(task, result))
    else:
        print(json.dumps(result.value if result is not None else None, indent=2))
    if result is not None and result.note:
        print(f"asyncplugin tasks: note: {result.note}", file=sys.stderr)
    return 0


def _no_result(args: argparse.Namespace, task: engine_pb2.Task, source: TaskSource) -> int:
    state = state_name(task.state)
    if not TaskState(task.state).is_terminal:
        raise UsageError(
            f"task {task.task_id} is {state}: no result yet; follow it with: asyncplugin tasks "
            f"watch {task.task_id} {source.follow_hint(task.task_id)}".rstrip()
        )
    if args.output == "json":
        print_json(result_document(task, None))
    elif task.HasField("error"):
        print(
            f"task {task.task_id} FAILED: {task.error.code or 'ERROR'}: {task.error.message}",
            file=sys.stderr,
        )
    else:
        print(f"task {task.task_id} {state}: it has no result", file=sys.stderr)
    return 1
