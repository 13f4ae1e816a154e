"""A plugin written with the SDK that completes its own tasks through CompleteTask, against a
daemon on the system clock: each task is recorded SUCCEEDED long before the engine's next
scheduled check (the plugin hinted 30 s), and no status check is ever sent."""

from __future__ import annotations

import asyncio
from typing import Any

from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from asyncplugin import Request, Response, Task, TaskState
from asyncplugin.engine import Engine, MemoryStore
from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.plugin import AsyncPlugin, CompletionClient, PluginServer
from asyncplugin.service import CompletionKey, CompletionTokens, EngineClient, EngineServer
from asyncplugin.service.convert import seconds
from asyncplugin.v1 import task_pb2

Payload = dict[str, Any]


class Webhooked(AsyncPlugin[Payload, Payload]):
    """Starts a 'remote job' whose completion arrives by webhook 50 ms later."""

    def __init__(self) -> None:
        self.completions = CompletionClient()
        self.jobs: set[asyncio.Task[None]] = set()
        self.status_checks = 0

    async def initiate_work(self, request: Request[Payload]) -> Response[Payload]:
        context = request.context
        job = asyncio.ensure_future(
            self._webhook(context.engine_address, context.completion_token, request.data)
        )
        self.jobs.add(job)
        return Response(
            status=Task(state=TaskState.RUNNING, remote_status_input={}, check_after_s=30.0)
        )

    async def check_status(self, request: Request[Payload]) -> Response[Payload]:
        self.status_checks += 1
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={}))

    async def _webhook(self, address: str, token: str, data: Payload) -> None:
        await asyncio.sleep(0.05)  # the remote system calls back when its job is done
        await self.completions.complete(address, token, data={"doubled": data["n"] * 2})


async def test_sdk_plugin_completes_its_tasks_before_the_next_check() -> None:
    plugin = Webhooked()
    completion = CompletionTokens([CompletionKey("k1", b"x" * 32)])
    engine = Engine(store=MemoryStore(), completion=completion, shutdown_grace_s=0)
    server = EngineServer(engine, completion=completion)
    async with PluginServer(plugin) as plugin_server:
        await server.start()
        try:
            async with EngineClient(server.address) as client:
                tasks = [
                    await client.submit(plugin_server.address, payload={"n": n}) for n in range(5)
                ]
                done = [await client.wait(task.task_id) for task in tasks]
                stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
                services = await _services(stub)
        finally:
            await server.stop(0)
            await plugin.completions.close()
    assert plugin.status_checks == 0
    for task in done:
        assert task.state == task_pb2.TASK_STATE_SUCCEEDED
        initiation, completed = task.checks
        assert initiation.kind == engine_pb2.CALL_KIND_INITIATE
        assert seconds(initiation.interval) == 30.0
        assert completed.kind == engine_pb2.CALL_KIND_COMPLETE
        assert seconds(task.end_time) < seconds(initiation.next_check_time)
    assert {"asyncplugin.engine.v1.EngineService", "google.longrunning.Operations"} <= services


async def _services(stub: Any) -> set[str]:
    """The services the daemon lists through server reflection."""

    async def requests() -> Any:
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for response in stub.ServerReflectionInfo(requests()):
        return {service.name for service in response.list_services_response.service}
    return set()
