"""The in-process test helper plugin authors use, and the SDK's public surface."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import grpc
import pytest

import asyncplugin.plugin
from asyncplugin.plugin import AsyncPlugin, CallResult, PluginClient, serve_in_process
from asyncplugin.protocol import ProtocolViolation, Request, Response, Task, TaskState
from asyncplugin.v1 import plugin_pb2, task_pb2

Payload = dict[str, Any]


class Counter(AsyncPlugin[Payload, Payload]):
    """Stays RUNNING for `checks` status checks, recording what each call saw."""

    def __init__(self, checks: int) -> None:
        self.checks = checks
        self.seen: list[Request[Payload]] = []

    async def initiate_work(self, request: Request[Payload]) -> Response[Payload]:
        self.seen.append(request)
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"n": 0}))

    async def check_status(self, request: Request[Payload]) -> Any:
        self.seen.append(request)
        assert request.status is not None
        n = (request.status.remote_status_input or {})["n"] + 1
        if n > self.checks:
            return {"checks": n - 1}
        return Response(status=Task(state=TaskState.RUNNING, remote_status_input={"n": n}))


async def test_check_resends_payload_context_and_next_number() -> None:
    """client.check() resends the payload and context with the next check number, as engines do."""
    plugin = Counter(checks=5)
    async with serve_in_process(plugin) as client:
        first = await client.start({"job": "a"})
        second = await client.check(first)
        await client.check(second)
    start, check1, check2 = plugin.seen
    assert [r.context.check_number for r in plugin.seen] == [0, 1, 2]
    assert check1.data == check2.data == {"job": "a"}
    assert check1.context.task_id == start.context.task_id != ""
    assert check2.context.idempotency_key == start.context.idempotency_key != ""
    assert check2.status is not None
    assert check2.status.remote_status_input == {"n": 1}


async def test_run_until_done_calls_hook_between_checks() -> None:
    """run_until_done checks until the answer is final, calling the hook before every check."""
    seen: list[CallResult[Payload]] = []
    async with serve_in_process(Counter(checks=3)) as client:
        result = await client.run_until_done({}, between_checks=seen.append)
    assert result.state is TaskState.SUCCEEDED
    assert result.data == {"checks": 3}
    assert len(seen) == 4


async def test_run_until_done_gives_up_after_max_checks() -> None:
    """A plugin that never finishes makes run_until_done fail instead of looping forever."""
    async with serve_in_process(Counter(checks=1000)) as client:
        with pytest.raises(AssertionError, match="still RUNNING after 3"):
            await client.run_until_done({}, max_checks=3)


async def test_client_rejects_answers_breaking_rules() -> None:
    """The helper validates every answer: a non-SDK server answering RUNNING without
    remote_status_input makes the call raise ProtocolViolation naming the rule."""
    bad = plugin_pb2.InvokeResponse(status=task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING))

    async def answer(request: bytes, context: Any) -> bytes:
        return bad.SerializeToString()

    method: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(answer)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("asyncplugin.v1.PluginService", {"Invoke": method}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = PluginClient(Counter(checks=0), channel)
            with pytest.raises(ProtocolViolation, match="RUNNING_WITHOUT_REMOTE_STATUS_INPUT"):
                await client.start({})
    finally:
        await server.stop(None)


def test_public_names_are_pinned_and_sorted() -> None:
    """asyncplugin.plugin.__all__ is exactly this list, in ruff's RUF022 order."""
    assert asyncplugin.plugin.__all__ == [
        "CANCEL_NOT_HANDLED",
        "DEFAULT_GRACE_S",
        "GENERIC_METHOD",
        "INVALID_PAYLOAD",
        "INVALID_PLUGIN_RESPONSE",
        "MESSAGE_TOO_LARGE",
        "PLUGIN_INTERNAL_ERROR",
        "AsyncPlugin",
        "BindError",
        "CallResult",
        "CompletionClient",
        "CompletionRefused",
        "InsecureBindError",
        "PluginClient",
        "PluginLoadError",
        "PluginServer",
        "PluginTelemetry",
        "Reply",
        "RunAdapter",
        "ServerSecurity",
        "as_plugin",
        "remote_status_input",
        "serve",
        "serve_in_process",
    ]
    for name in asyncplugin.plugin.__all__:
        assert hasattr(asyncplugin.plugin, name)


def test_plugin_package_never_imports_the_engine() -> None:
    """The SDK and the engine meet only in asyncplugin.protocol: no plugin module imports engine
    code. The one exception is generated code, not the engine: the push-completion client
    (`completion.py`) uses the EngineService stubs generated into asyncplugin.engine.v1."""
    package = Path(asyncplugin.plugin.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            engine = [n for n in names if n.startswith("asyncplugin.engine")]
            if path.name == "completion.py":
                assert engine in ([], ["asyncplugin.engine.v1"]), path
            else:
                assert not engine, path
