"""`asyncplugin conformance`: prove that a plugin or an engine speaks asyncplugin correctly.

asyncplugin conformance plugin HOST:PORT [--junit FILE] [--method M] [--only NAME]
    drive every conformance case through the reference engine against a conformance plugin
    (any language) and print a pass/fail table; exit 1 if any case fails.

asyncplugin conformance serve [--port N] [--record FILE]
    serve the Python reference conformance plugin, recording one Observation (JSON line) per
    call, for an engine under test to call;
asyncplugin conformance scenarios
    print the scenario payloads that engine should submit (one JSON object per line);
asyncplugin conformance judge-engine FILE
    judge the engine from the recorded observations; exit 1 if it broke a rule.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import sys
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from rich.console import Console

from asyncplugin.conformance.cases import CASES, ENGINE_SCENARIOS, Case
from asyncplugin.conformance.engine_judge import (
    DEFAULT_MIN_INTERVAL_S,
    DEFAULT_SHRINK_FACTOR,
    judge_engine,
)
from asyncplugin.conformance.kit import DEFAULT_CASE_TIMEOUT_S, run_kit
from asyncplugin.conformance.observations import ObservationLog, read_observations
from asyncplugin.conformance.reference_plugin import ReferenceServer
from asyncplugin.conformance.report import (
    print_engine_report,
    print_plugin_report,
    write_junit,
)
from asyncplugin.protocol.methods import GENERIC_METHOD

from .common import (
    Connection,
    add_channel_options,
    add_command,
    check_reachable,
    connection,
    method_option,
)
from .errors import UsageError


def register(subparsers: Any) -> None:
    """Adds the `conformance` subcommand and its own subcommands."""
    parser = add_command(
        subparsers,
        "conformance",
        summary="check that a plugin or an engine follows the protocol",
        doc=__doc__,
    )
    commands = parser.add_subparsers(dest="conformance_command", required=True, metavar="WHAT")

    plugin = commands.add_parser(
        "plugin",
        help="run every conformance case against a conformance plugin",
        description="Drive every conformance case (conformance.proto scenarios) through the "
        "reference engine against the plugin at TARGET, print a pass/fail table, and exit 1 if "
        "any case fails.",
    )
    plugin.add_argument("target", help="the conformance plugin's address, host:port")
    plugin.add_argument(
        "--method", default=GENERIC_METHOD, help="the envelope method it serves [%(default)s]"
    )
    plugin.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this case (repeatable); names: " + ", ".join(c.name for c in CASES),
    )
    plugin.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML here")
    plugin.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_CASE_TIMEOUT_S,
        metavar="S",
        help="how long to wait for each case [%(default)s]",
    )
    add_channel_options(plugin)
    plugin.set_defaults(handler=run_plugin)

    serve = commands.add_parser(
        "serve",
        help="serve the reference conformance plugin, recording what an engine sends",
        description="Serve the Python reference conformance plugin until SIGTERM/SIGINT. Every "
        "call is recorded as an Observation (one JSON line, appended to --record). The first "
        "line on stdout is 'serving conformance on HOST:PORT'.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on [%(default)s]")
    serve.add_argument("--port", type=int, default=50051, help="0 picks a free one [%(default)s]")
    serve.add_argument("--record", type=Path, metavar="FILE", help="append observations here")
    serve.set_defaults(handler=run_serve)

    scenarios = commands.add_parser(
        "scenarios",
        help="print the scenarios an engine under test submits to the reference plugin",
        description="One JSON object per line: name, what to do with it, the Scenario as proto3 "
        "JSON, and its binary encoding in base64 (the bytes to send as InvokeRequest.data).",
    )
    scenarios.set_defaults(handler=run_scenarios)

    judge = commands.add_parser(
        "judge-engine",
        help="judge an engine from the observations the reference plugin recorded",
        description="Judge the engine that called the reference conformance plugin from the "
        "observations it recorded; exit 1 if the engine broke a rule.",
    )
    judge.add_argument("observations", type=Path, metavar="FILE", help="JSON lines from --record")
    judge.add_argument(
        "--min-interval",
        type=float,
        default=DEFAULT_MIN_INTERVAL_S,
        metavar="S",
        help="the floor between two status checks of one task [%(default)s]",
    )
    judge.add_argument(
        "--shrink-factor",
        type=float,
        default=DEFAULT_SHRINK_FACTOR,
        metavar="X",
        help="how far an interval may fall below the median before it [%(default)s]",
    )
    judge.set_defaults(handler=run_judge_engine)


def _console() -> Console:
    return Console() if sys.stdout.isatty() else Console(width=160)


def _select(only: list[str] | None) -> list[Case]:
    if not only:
        return list(CASES)
    known = {case.name: case for case in CASES}
    unknown = [name for name in only if name not in known]
    if unknown:
        raise UsageError(f"--only: no case named {', '.join(unknown)}; cases: {', '.join(known)}")
    return [case for case in CASES if case.name in only]


def run_plugin(args: argparse.Namespace) -> int:
    """Handler of `conformance plugin`: 0 when every case passed, 1 otherwise."""
    cases = _select(args.only)
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout}")
    method_option(args.method)
    link = connection(args)
    check_reachable(
        args.target,
        link.credentials(),
        args.connect_timeout,
        options=link.channel_options(),
    )
    report = asyncio.run(_run_kit(args, cases, link))
    print_plugin_report(_console(), report)
    if args.junit is not None:
        try:
            write_junit(report, args.junit)
        except OSError as err:
            raise UsageError(f"--junit {args.junit}: {err.strerror}") from err
    return 0 if report.passed else 1


async def _run_kit(args: argparse.Namespace, cases: Any, link: Connection) -> Any:
    transport = link.transport()
    try:
        return await run_kit(
            args.target,
            method=args.method,
            cases=cases,
            case_timeout_s=args.timeout,
            transport=transport,
        )
    finally:
        await transport.close()


def run_serve(args: argparse.Namespace) -> int:
    """Handler of `conformance serve`: serves until SIGTERM/SIGINT, then returns 0."""
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be within 0..65535, got {args.port}")
    try:
        log = ObservationLog(args.record)
    except OSError as err:
        raise UsageError(f"--record {args.record}: {err.strerror}") from err
    with log:
        asyncio.run(_serve(args.host, args.port, log))
    return 0


async def _serve(host: str, port: int, log: ObservationLog) -> None:
    server = ReferenceServer(log=log, host=host, port=port)
    try:
        await server.start()
    except OSError as err:
        raise UsageError(str(err)) from err
    print(f"serving conformance on {server.address}", flush=True)
    if log.path is not None:
        print(f"recording observations to {log.path}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await server.stop(1.0)


def run_scenarios(args: argparse.Namespace) -> int:
    """Handler of `conformance scenarios`: prints one JSON object per engine scenario."""
    for item in ENGINE_SCENARIOS:
        payload = item.scenario.SerializeToString(deterministic=True)
        line = {
            "name": item.name,
            "how": item.how,
            "scenario": json_format.MessageToDict(item.scenario),
            "data_base64": base64.b64encode(payload).decode("ascii"),
        }
        print(json.dumps(line, sort_keys=True))
    return 0


def run_judge_engine(args: argparse.Namespace) -> int:
    """Handler of `conformance judge-engine`: 0 when the engine broke no rule, 1 otherwise."""
    try:
        text = args.observations.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read {args.observations}: {err.strerror}") from err
    try:
        observations = read_observations(text.splitlines(), source=str(args.observations))
    except ValueError as err:
        raise UsageError(str(err)) from err
    verdict = judge_engine(
        observations, min_interval_s=args.min_interval, shrink_factor=args.shrink_factor
    )
    print_engine_report(_console(), verdict)
    return 0 if verdict.passed else 1
