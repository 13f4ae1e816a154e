"""The plugin servers the benchmarks call, each served in its own spawned process.

- "bare": the generated `PluginServiceServicer`, hand-written the way a plugin author would without
  the SDK: always RUNNING, echoing the task's `remote_status_input` back.
- "sdk": the same behaviour as an `AsyncPlugin` served by `PluginServer` (with its health and
  reflection services, validation of every request and answer).
- "sdk-telemetry": "sdk" with `PluginTelemetry`: every call traced (spans dropped by the
  exporter) and measured (bench.observability).
- "jobs": an SDK plugin whose jobs really take time: the payload's `duration_s` (wall clock). The
  job's end time travels in `remote_status_input`, so the server keeps no state per job. No
  check-after hint: each client's own polling schedule alone sets the pace.
- "bare-jobs": the same jobs on the bare generated servicer (the peer benchmark's server: the
  server is not what is measured there, and the cheaper it is, the less it takes from the core
  the measured client shares the machine with).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing.connection
import time
from typing import Any

import grpc
from google.protobuf import struct_pb2

from asyncplugin import Request, Response, Task, TaskState
from asyncplugin.plugin import AsyncPlugin, PluginServer
from asyncplugin.v1 import plugin_pb2, plugin_pb2_grpc, task_pb2

from ._common import run_loop

SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.so_reuseport", 0),
    # Over ~1,000 calls in flight a grpc server answers some CANCELLED unless this is raised
    # (docs/architecture.md, "Toolchain facts"); the peer benchmark has up to 10,000 polling
    # threads.
    ("grpc.server.max_pending_requests", 100_000),
]

Payload = dict[str, Any]


class BareServicer(plugin_pb2_grpc.PluginServiceServicer):
    """PluginService on the generated servicer alone: always RUNNING."""

    async def Invoke(
        self, request: plugin_pb2.InvokeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> plugin_pb2.InvokeResponse:
        answer = plugin_pb2.InvokeResponse()
        answer.status.state = task_pb2.TASK_STATE_RUNNING
        if request.is_status_check:
            answer.status.remote_status_input.CopyFrom(request.status.remote_status_input)
        else:
            answer.status.remote_status_input.update({"job_id": request.context.idempotency_key})
        return answer


class BareJobs(plugin_pb2_grpc.PluginServiceServicer):
    """Jobs ending `duration_s` after they start, on the generated servicer alone."""

    async def Invoke(
        self, request: plugin_pb2.InvokeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> plugin_pb2.InvokeResponse:
        answer = plugin_pb2.InvokeResponse()
        if request.is_status_check:
            job = request.status.remote_status_input
            if time.time() >= job.fields["ends_at"].number_value:
                answer.data = _DONE
                return answer
            answer.status.remote_status_input.CopyFrom(job)
        else:
            duration_s = (
                struct_pb2.Struct.FromString(request.data).fields["duration_s"].number_value
            )
            answer.status.remote_status_input.update(
                {"job_id": request.context.idempotency_key, "ends_at": time.time() + duration_s}
            )
        answer.status.state = task_pb2.TASK_STATE_RUNNING
        return answer


_DONE = struct_pb2.Struct(fields={"done": struct_pb2.Value(bool_value=True)}).SerializeToString()


class AlwaysRunning(AsyncPlugin[Payload, Payload]):
    """The bare servicer's behaviour through the SDK: RUNNING, echoing remote_status_input."""

    async def initiate_work(self, request: Request[Payload]) -> Response[Payload]:
        job = {"job_id": request.context.idempotency_key}
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input=job))

    async def check_status(self, request: Request[Payload]) -> Response[Payload]:
        assert request.status is not None
        stash = request.status.remote_status_input
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input=stash))


class TimedJobs(AsyncPlugin[Payload, Payload]):
    """Jobs that end `duration_s` of wall time after they start; stateless on the server."""

    async def initiate_work(self, request: Request[Payload]) -> Response[Payload]:
        ends_at = time.time() + float(request.data.get("duration_s", 5.0))
        job = {"job_id": request.context.idempotency_key, "ends_at": ends_at}
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input=job))

    async def check_status(self, request: Request[Payload]) -> Response[Payload] | Payload:
        assert request.status is not None
        job = request.status.remote_status_input
        assert job is not None
        if time.time() >= float(job["ends_at"]):
            return {"job_id": job["job_id"]}
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input=job))


async def _serve(kind: str, conn: multiprocessing.connection.Connection) -> None:
    loop = asyncio.get_running_loop()
    if kind in ("bare", "bare-jobs"):
        server = grpc.aio.server(options=SERVER_OPTIONS)
        servicer = BareServicer() if kind == "bare" else BareJobs()
        plugin_pb2_grpc.add_PluginServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        conn.send(port)
        await loop.run_in_executor(None, _wait_for_stop, conn)
        await server.stop(None)
        return
    plugin: AsyncPlugin[Any, Any] = TimedJobs() if kind == "jobs" else AlwaysRunning()
    telemetry = None
    if kind == "sdk-telemetry":
        from .observability import plugin_telemetry

        telemetry = plugin_telemetry()
    sdk = PluginServer(plugin, port=0, grpc_options=SERVER_OPTIONS, telemetry=telemetry)
    conn.send(await sdk.start())
    await loop.run_in_executor(None, _wait_for_stop, conn)
    await sdk.stop(None)


def _wait_for_stop(conn: multiprocessing.connection.Connection) -> None:
    with contextlib.suppress(EOFError, OSError):  # the parent went away: stop as well
        conn.recv()


def serve_main(kind: str, loop: str, conn: multiprocessing.connection.Connection) -> None:
    """Entry point of a server process: serve `kind` until told to stop (or the parent exits)."""
    if kind not in ("bare", "bare-jobs", "sdk", "sdk-telemetry", "jobs"):
        raise ValueError(f"unknown plugin kind {kind!r}")
    run_loop(_serve(kind, conn), loop)
