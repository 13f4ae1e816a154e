"""`asyncplugin invoke TARGET --data JSON [--engine E] [--detach | --watch]`: run one task.

With --engine HOST:PORT (or $ASYNCPLUGIN_ENGINE) the task is submitted to a running engine
daemon (`asyncplugin engine serve`), which polls it whether or not this command stays:
--detach prints the task id and returns at once; --watch follows it live; otherwise the command
waits quietly for the end. Without an engine, the command runs an engine in this process on
the task store (--store), for as long as the task runs: only one such command may use a store
at a time.

--data is JSON, @FILE or @- (standard input). For a typed RPC (--method /pkg.Service/Method;
the leading "/" may be left out) the JSON is parsed into the plugin's own message type, found
through the plugin's server reflection; for the generic envelope it travels as a JSON object.
The last line on stdout is the outcome as JSON; `-o json` prints the documents of
`asyncplugin tasks` instead (with --watch, one JSON line per recorded change first).

Ctrl-C leaves without a traceback and prints the task id and the commands to follow or cancel
the task. Exit status: 0 when the task SUCCEEDED (or was submitted, with --detach), 1 when it
ended otherwise, 2 for a mistake on the command line, 130 after Ctrl-C.

TLS to the plugin: --tls-ca (and --tls-cert/--tls-key for mutual TLS, --tls-server-name to
verify another name). A bearer token comes from --token-file or $ASYNCPLUGIN_TOKEN; it is sent on
every call but never written to the task store. Plaintext is refused to a non-loopback target
unless --insecure. With --engine, the daemon calls the plugin with its own credentials; these
options then serve only to read the plugin's types.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from dataclasses import dataclass
from typing import Any

import grpc
from rich.console import Console

from asyncplugin.engine import (
    Engine,
    PollingPolicy,
    SystemClock,
    TaskOptions,
)
from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.protocol import TaskState
from asyncplugin.protocol.methods import GENERIC_METHOD
from asyncplugin.protocol.security import is_loopback_target
from asyncplugin.service.convert import policy_overrides, task_to_proto
from asyncplugin.v1 import task_pb2

from .common import (
    Connection,
    add_channel_options,
    add_policy_options,
    add_store_option,
    connection,
    method_option,
    open_store,
    parse_json_data,
    policy_from_args,
    store_name,
    store_option,
    store_spec,
)
from .endpoint import probe
from .engine_link import EngineLink, add_engine_options, engine_link
from .errors import UsageError
from .follow import Followed, engine_changes, follow
from .interrupt import INTERRUPTED_EXIT, Interrupted, run_interruptible
from .output import add_output_option, print_json
from .output import console as output_console
from .payload_types import GENERIC, PayloadTypes, Reflection, decode_strict, result_type, types_of
from .progress import checks_table
from .sources import DaemonSource
from .task_views import DecodedResult, result_document


def register(subparsers: Any) -> None:
    """Adds the `invoke` subcommand."""
    parser = subparsers.add_parser(
        "invoke",
        help="run one task on a plugin, through a running engine or in this process",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", help="the plugin's address, host:port")
    parser.add_argument(
        "--method",
        default=GENERIC_METHOD,
        help="method path (default %(default)s); typed RPCs are resolved by reflection",
    )
    parser.add_argument(
        "--data", default="{}", help="the payload: JSON, @FILE, or @- for stdin (default: {})"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--watch", action="store_true", help="show live progress")
    mode.add_argument(
        "--detach",
        action="store_true",
        help="submit, print the task id and return (needs --engine)",
    )
    parser.add_argument("--plugin-id", default="", help="sent as RequestContext.plugin_id")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label to find the task by (repeat for several; needs --engine)",
    )
    parser.add_argument(
        "--request-id",
        default="",
        help="a retried submit with the same id creates no second task (needs --engine)",
    )
    add_output_option(parser)
    add_engine_options(parser)
    add_store_option(
        parser,
        help_text="task store of the in-process engine (default $ASYNCPLUGIN_STORE or "
        "./asyncplugin.sqlite3); not with --engine",
    )
    add_policy_options(parser)
    add_channel_options(parser)
    parser.set_defaults(handler=run)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to submit, checked before anything is recorded."""

    method: str
    payload: bytes
    types: PayloadTypes


def run(args: argparse.Namespace) -> int:
    """Handler: 0 when the task SUCCEEDED (or, detached, was submitted), 1 otherwise."""
    link = engine_link(args)
    if link is None:
        for flag, given in (
            ("--detach", args.detach),
            ("--label", args.label),
            ("--request-id", args.request_id),
        ):
            if given:
                raise UsageError(
                    f"{flag} needs a running engine: give --engine HOST:PORT (or "
                    "$ASYNCPLUGIN_ENGINE); start one with: asyncplugin engine serve"
                )
    elif args.store is not None:
        raise UsageError(
            "--store is for the in-process engine; with --engine the daemon uses its own store"
        )
    labels = _labels(args.label)
    data = parse_json_data(args.data)
    policy = policy_from_args(args) if link is None else None  # checked before any call
    plugin = connection(args) if link is None or _may_ask_plugin(args) else None
    plan = _plan(args, data, plugin, engine_mode=link is not None)
    console = output_console()
    if link is None:
        assert plugin is not None
        assert policy is not None
        return _run_in_process(args, plan, plugin, policy, console)
    return _run_on_engine(args, plan, link, labels, console)


def _may_ask_plugin(args: argparse.Namespace) -> bool:
    """With --engine, the plugin is asked for its types only over a channel the rules allow."""
    tls = args.tls_ca is not None or args.tls_cert is not None
    return tls or args.insecure or is_loopback_target(args.target)


def _labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {pair!r} is not KEY=VALUE")
        labels[key] = value
    return labels


def _plan(
    args: argparse.Namespace, data: Any, plugin: Connection | None, *, engine_mode: bool
) -> _Plan:
    """The method path, its payload types and the encoded payload.

    In-process, the plugin must answer (the engine here calls it). With --engine it may not
    answer from here (the daemon may reach it from elsewhere): the generic method then goes
    ahead, a typed one cannot (its JSON cannot be encoded without the type).
    """
    method = args.method
    if "/" in method:
        method = method_option(method)  # a bad path is refused before anything is asked
    reachable = False
    if plugin is not None:
        try:
            probe(
                args.target,
                credentials=plugin.credentials(),
                timeout_s=min(args.connect_timeout, 2.0) if engine_mode else args.connect_timeout,
                options=plugin.channel_options(),
            )
            reachable = True
        except UsageError as err:
            if not engine_mode or str(err).startswith("NOT_A_GRPC_ENDPOINT"):
                raise
    if "/" not in method and reachable and plugin is not None:
        method = _method_by_name(args.target, method, plugin)
    method = method_option(method)
    types = GENERIC
    if reachable and plugin is not None:
        types = _types(args.target, method, plugin)
    elif method != GENERIC_METHOD:
        raise UsageError(
            f"cannot read the payload type of {method}: the plugin at {args.target} does not "
            "answer from here (or plaintext to it needs --insecure), and --data JSON needs it"
        )
    try:
        payload = types.encode(data)
    except ValueError as err:
        raise UsageError(str(err)) from err
    return _Plan(method, payload, types)


def _method_by_name(target: str, name: str, plugin: Connection) -> str:
    """A bare method name ("Invoke") as the one full path the plugin offers with that name."""
    with Reflection(
        target, credentials=plugin.credentials(), options=plugin.channel_options()
    ) as reflection:
        try:
            paths = reflection.paths_named(name)
            offered = paths or _offered(reflection)
        except (grpc.RpcError, KeyError):  # no reflection: the name cannot be resolved
            paths, offered = [], []
    if len(paths) == 1:
        return paths[0]
    found = f"; the plugin offers {', '.join(offered)}" if offered else ""
    raise UsageError(
        f"--method must be a full method path like {GENERIC_METHOD!r}, got {name!r}{found} "
        f"(list them with: asyncplugin describe {target})"
    )


def _types(target: str, method: str, plugin: Connection) -> PayloadTypes:
    """The method's payload types through reflection (GENERIC when the plugin has none);
    a method the plugin does not describe is refused, naming the ones it offers."""
    with Reflection(
        target, credentials=plugin.credentials(), options=plugin.channel_options()
    ) as reflection:
        try:
            found = reflection.method(method)
            offered = [] if found is not None else _offered(reflection)
        except (grpc.RpcError, KeyError):  # no reflection: JSON objects (Struct) it is
            return GENERIC
    if found is not None:
        return types_of(found)
    if not offered or method == GENERIC_METHOD:
        return GENERIC
    raise UsageError(
        f"the plugin at {target} has no method {method}; it offers {', '.join(offered)}"
    )


def _offered(reflection: Reflection) -> list[str]:
    return [
        f"/{service.full_name}/{method.name}"
        for service in reflection.services()
        if not service.full_name.startswith("grpc.")
        for method in service.methods
    ]


# -- through a running engine ------------------------------------------------------------------


def _run_on_engine(
    args: argparse.Namespace,
    plan: _Plan,
    link: EngineLink,
    labels: dict[str, str],
    console: Console,
) -> int:
    source = DaemonSource(link, connect_timeout_s=args.connect_timeout)
    seen = Followed()
    request = engine_pb2.SubmitTaskRequest(
        target=args.target,
        method=plan.method,
        payload=plan.payload,
        policy=_policy(args),
        labels=labels,
        request_id=args.request_id,
        plugin_id=args.plugin_id,
        result_type=result_type(plan.types),
    )

    async def submit_and_follow() -> engine_pb2.Task:
        async with source:
            submitted = (await source.client.submit_request(request)).task
            seen.task = submitted
            if args.detach:
                return submitted
            if args.watch:
                await follow(
                    source.watch(submitted.task_id),
                    json_lines=args.output == "json",
                    console=console,
                    seen=seen,
                )
            else:
                async for change in source.watch(submitted.task_id):
                    seen.add(change)
            return await source.get(submitted.task_id)

    try:
        task = run_interruptible(submit_and_follow())
    except Interrupted:
        _interrupted(seen, engine=link.address)
        return INTERRUPTED_EXIT
    if args.detach:
        if args.output == "json":
            print_json(task)
        else:
            print(task.task_id)
            print(
                f"submitted; follow it: asyncplugin tasks watch {task.task_id} {link.command()}",
                file=sys.stderr,
            )
        return 0
    if args.watch and args.output != "json":
        console.print(checks_table(task))
    return _print_outcome(args, task, plan.types)


def _policy(args: argparse.Namespace) -> engine_pb2.PollingPolicy:
    return policy_overrides(
        initial_interval_s=args.initial_interval,
        multiplier=args.multiplier,
        max_interval_s=args.max_interval,
        min_interval_s=args.min_interval,
        deadline_s=args.deadline,
        max_checks=args.max_checks,
        check_timeout_s=args.check_timeout,
    )


# -- in this process -----------------------------------------------------------------------------


def _run_in_process(
    args: argparse.Namespace,
    plan: _Plan,
    plugin: Connection,
    policy: PollingPolicy,
    console: Console,
) -> int:
    # The token goes to the transport, not into TaskOptions: options are stored with the task.
    options = TaskOptions(
        policy=policy, plugin_id=args.plugin_id, result_type=result_type(plan.types)
    )
    spec = store_spec(args)
    engine = Engine(
        store=open_store(spec, must_exist=False),
        clock=SystemClock(),
        transport=plugin.transport(),
    )
    seen = Followed()

    async def submit_and_follow() -> engine_pb2.Task:
        async with engine:
            task_id = await engine.submit(
                args.target, method=plan.method, payload=plan.payload, options=options
            )
            seen.task = task_to_proto(await engine.get(task_id), view=engine_pb2.TASK_VIEW_BASIC)
            if args.watch:
                await follow(
                    engine_changes(engine, task_id),
                    json_lines=args.output == "json",
                    console=console,
                    seen=seen,
                )
            else:
                await engine.wait(task_id)
            return task_to_proto(await engine.get(task_id), await engine.checks(task_id))

    try:
        task = run_interruptible(submit_and_follow())
    except Interrupted:
        _interrupted(seen, store=spec)
        return INTERRUPTED_EXIT
    if args.watch and args.output != "json":
        console.print(checks_table(task))
    return _print_outcome(args, task, plan.types)


# -- the end -------------------------------------------------------------------------------------


def _interrupted(seen: Followed, *, engine: str | None = None, store: str | None = None) -> None:
    """What Ctrl-C leaves behind, and the commands to pick the task up again."""
    task = seen.task
    if task is None:
        print("interrupted before the task was submitted; nothing was recorded", file=sys.stderr)
        return
    task_id = task.task_id
    if engine is not None:
        lines = [
            f"interrupted: task {task_id} goes on in the engine at {engine}",
            f"  follow it:  asyncplugin tasks watch {task_id} --engine {engine}",
            f"  cancel it:  asyncplugin tasks cancel {task_id} --engine {engine}",
            f"  its result: asyncplugin tasks result {task_id} --engine {engine}",
        ]
    else:
        assert store is not None
        lines = [
            f"interrupted: task {task_id} is recorded in {store_name(store)}, and no engine "
            "polls it now",
            f"  resume it:  asyncplugin engine serve {store_option(store)}",
            f"  follow it:  asyncplugin tasks watch {task_id} --engine HOST:PORT",
            f"  cancel it:  asyncplugin tasks cancel {task_id} --engine HOST:PORT",
        ]
    print("\n".join(lines), file=sys.stderr)


def _decoded(task: engine_pb2.Task, types: PayloadTypes) -> DecodedResult | None:
    if not task.HasField("result"):
        return None
    try:
        value = decode_strict(task.result, types.output_type)
    except ValueError as err:  # not what the method declares: shown as bytes, saying so
        encoded = base64.b64encode(task.result).decode()
        return DecodedResult({"bytes_base64": encoded}, "", f"the result is {err}")
    return DecodedResult(value, types.type_name(result=True))


def _print_outcome(args: argparse.Namespace, task: engine_pb2.Task, types: PayloadTypes) -> int:
    """The last line: the outcome as JSON; exit 0 only when the task SUCCEEDED."""
    succeeded = task.state == task_pb2.TASK_STATE_SUCCEEDED
    if args.output == "json":
        print_json(result_document(task, _decoded(task, types)))
        return 0 if succeeded else 1
    body: dict[str, Any] = {"task_id": task.task_id, "state": TaskState(task.state).name}
    if succeeded:
        decoded = _decoded(task, types)
        body["data"] = decoded.value if decoded is not None else None
    else:
        error = task.error
        body["error"] = {
            "code": error.code,
            "message": error.message,
            "suggestion": error.suggestion,
        }
    print(json.dumps(body))
    return 0 if succeeded else 1
