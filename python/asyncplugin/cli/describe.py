"""`asyncplugin describe TARGET`: the services and methods a gRPC server offers, through its
server reflection (as `grpcurl TARGET describe` does), with each method's payload types.

A plugin's method takes its payload at field 1 of the request envelope: `bytes` (the generic
envelope: JSON objects travel as google.protobuf.Struct) or the plugin's own message type, which
`asyncplugin invoke --data JSON` then parses into. The same TLS and token options as `invoke`
reach a server behind TLS or a bearer token.
"""

from __future__ import annotations

import argparse
from typing import Any

import grpc
from google.protobuf import descriptor

from .common import add_channel_options, check_reachable, connection
from .errors import UsageError
from .output import add_output_option, print_json
from .payload_types import Reflection, method_path, payload_name


def register(subparsers: Any) -> None:
    """Adds the `describe` subcommand."""
    parser = subparsers.add_parser(
        "describe",
        help="list a server's services and methods (gRPC reflection)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", help="the server's address, host:port")
    parser.add_argument(
        "--all", action="store_true", help="also list gRPC's own services (health, reflection)"
    )
    add_output_option(parser)
    add_channel_options(parser)
    parser.set_defaults(handler=run)


def _method_dict(method: descriptor.MethodDescriptor) -> dict[str, Any]:
    return {
        "name": method.name,
        "path": method_path(method),
        "input_type": method.input_type.full_name,
        "output_type": method.output_type.full_name,
        "client_streaming": method.client_streaming,
        "server_streaming": method.server_streaming,
        "payload_type": payload_name(method.input_type),
        "result_type": payload_name(method.output_type),
    }


def describe(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every service (name and methods) the server at args.target describes."""
    link = connection(args)
    credentials = link.credentials()
    check_reachable(args.target, credentials, args.connect_timeout, options=link.channel_options())
    with Reflection(args.target, credentials=credentials, options=link.channel_options()) as found:
        try:
            services = found.services()
        except grpc.RpcError as err:
            code = err.code() if isinstance(err, grpc.Call) else None
            if code is grpc.StatusCode.UNIMPLEMENTED:
                raise UsageError(
                    f"{args.target} does not offer server reflection, so its methods cannot be "
                    "listed (serve it with reflection, as `asyncplugin serve` does)"
                ) from None
            detail = err.details() if isinstance(err, grpc.Call) else str(err)
            name = code.name if code is not None else "ERROR"
            raise UsageError(f"reflection at {args.target} failed: {name}: {detail}") from None
    return [
        {
            "name": service.full_name,
            "methods": [_method_dict(method) for method in service.methods],
        }
        for service in services
        if args.all or not service.full_name.startswith("grpc.")
    ]


def run(args: argparse.Namespace) -> int:
    """Handler: prints the services; 0."""
    services = describe(args)
    if args.output == "json":
        print_json({"target": args.target, "services": services})
        return 0
    if not services:
        print(f"{args.target} describes no services (--all lists gRPC's own)")
        return 0
    # Plain lines, not a table: full names must never be cut to fit a terminal.
    for service in services:
        print(service["name"])
        for method in service["methods"]:
            streams = [
                kind
                for kind, flag in (
                    ("client streaming", method["client_streaming"]),
                    ("server streaming", method["server_streaming"]),
                )
                if flag
            ]
            print(f"  {method['path']}" + (f"  ({', '.join(streams)})" if streams else ""))
            print(f"    request:  {method['input_type']}  payload: {method['payload_type']}")
            print(f"    response: {method['output_type']}  result: {method['result_type']}")
    return 0
