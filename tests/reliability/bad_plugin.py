"""A raw-bytes plugin process for the memory figures: it answers from the bad-answer catalogue.

    python -m tests.reliability.bad_plugin [--port N]

A plain grpc.aio server (no SDK, which would refuse to send these answers) serving
PluginService/Invoke with identity serializers. The payload (a Struct) picks the answer, see
tests.reliability.bad_answers. Prints "PORT <n>" once it serves.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
from grpc import aio

from asyncplugin.protocol import decode_payload
from asyncplugin.v1 import plugin_pb2
from tests.reliability.bad_answers import CATALOGUE, job


async def answer(raw: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
    """Answers one call as its payload says."""
    request = plugin_pb2.InvokeRequest.FromString(raw)
    payload = decode_payload(request.data, dict)
    if "bad" in payload:
        return CATALOGUE[str(payload["bad"])].build(request)
    return job(request, float(payload["ends_at"]))


async def main() -> None:
    """Serves on 127.0.0.1 until killed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = aio.server(
        options=[("grpc.so_reuseport", 0), ("grpc.max_send_message_length", 64 << 20)]
    )
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(answer)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("asyncplugin.v1.PluginService", {"Invoke": handler})]
    )
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    print(f"PORT {port}", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main())
