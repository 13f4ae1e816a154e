"""The service refuses bad input with the field (or the candidates) named, and records nothing."""

from __future__ import annotations

import itertools
from typing import Any

import grpc
import pytest
from google.longrunning import operations_pb2_grpc, operations_proto_pb2
from google.rpc import error_details_pb2, status_pb2

from asyncplugin.engine.v1 import engine_pb2
from asyncplugin.service import MAX_PAGE_SIZE, EngineServiceError, Limits
from tests.engine.plugins import Job
from tests.service.conftest import Daemon, Serve, StartDaemon


async def _refusal(call: Any) -> EngineServiceError:
    with pytest.raises(EngineServiceError) as refused:
        await call
    return refused.value


def _field_of(err: grpc.aio.AioRpcError) -> str:
    """The field named in the status's google.rpc.BadRequest detail."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                bad = error_details_pb2.BadRequest()
                if detail.Unpack(bad):
                    return str(bad.field_violations[0].field)
    return ""


async def _nothing_recorded(daemon: Daemon) -> None:
    assert not (await daemon.client.list()).tasks


async def test_unknown_and_ambiguous_task_ids(start_daemon: StartDaemon, serve: Serve) -> None:
    plugin = await serve(Job(forever=True))
    daemon = await start_daemon()
    with daemon.clock.busy():
        ids = [(await daemon.client.submit(plugin.target)).task_id for _ in range(17)]
    first = sorted(ids)
    shared = next(a for a, b in itertools.pairwise(first) if a[0] == b[0])[0]
    candidates = sorted(i for i in ids if i.startswith(shared))
    operations = operations_pb2_grpc.OperationsStub(daemon.client.channel)
    for call in (
        daemon.client.get(shared),
        daemon.client.cancel(shared),
        _first(daemon.client.watch(shared)),
    ):
        refused = await _refusal(call)
        assert refused.code is grpc.StatusCode.INVALID_ARGUMENT
        for candidate in candidates[:10]:
            assert candidate in refused.detail
    for call in (
        daemon.client.get("f" * 33),
        daemon.client.cancel("zz"),
        _first(daemon.client.watch("zz")),
    ):
        refused = await _refusal(call)
        assert refused.code is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as op_refused:
        await operations.GetOperation(
            operations_proto_pb2.GetOperationRequest(name=f"tasks/{shared}")
        )
    assert op_refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert candidates[0] in (op_refused.value.details() or "")
    for task_id in ids:  # nothing was cancelled by the refused calls
        assert (await daemon.client.get(task_id)).state != 5


async def _first(watch: Any) -> Any:
    async for change in watch:
        return change
    return None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"target": ""}, "target"),
        ({"target": "no-port"}, "target"),
        ({"target": "127.0.0.1:99999"}, "target"),
        ({"target": "127.0.0.1: 5"}, "target"),
        ({"method": "Invoke"}, "method"),
        ({"method": "/a.B/C/D"}, "method"),
        ({"labels": {"Bad Key": "x"}}, "labels['Bad Key']"),
        ({"labels": {"ok": "x" * 300}}, "labels['ok']"),
        ({"request_id": "has space"}, "request_id"),
        ({"result_type": "not a type"}, "result_type"),
        ({"policy": engine_pb2.PollingPolicy(multiplier=0.1)}, "policy"),
    ],
)
async def test_malformed_submits_name_the_field_and_record_nothing(
    start_daemon: StartDaemon, serve: Serve, changes: dict[str, Any], field: str
) -> None:
    plugin = await serve(Job())
    daemon = await start_daemon()
    request = engine_pb2.SubmitTaskRequest(target=plugin.target, payload=b"x")
    for name, value in changes.items():
        if name == "labels":
            request.labels.update(value)
        elif name == "policy":
            request.policy.CopyFrom(value)
        else:
            setattr(request, name, value)
    stub: Any = daemon.client.stub
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SubmitTask(request)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert _field_of(refused.value) == field
    assert (refused.value.details() or "").startswith(field)
    await _nothing_recorded(daemon)


async def test_a_method_without_its_leading_slash_is_accepted(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    plugin = await serve(Job(checks=1))
    daemon = await start_daemon()
    task = await daemon.client.submit(plugin.target, method="asyncplugin.v1.PluginService/Invoke")
    assert task.method == "/asyncplugin.v1.PluginService/Invoke"


async def test_an_oversized_payload_is_resource_exhausted(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    plugin = await serve(Job())
    daemon = await start_daemon(limits=Limits(max_payload_bytes=1000))
    refused = await _refusal(daemon.client.submit(plugin.target, payload=b"x" * 1001))
    assert refused.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.detail.startswith("payload: 1001 bytes is over the limit of 1000 bytes")
    await _nothing_recorded(daemon)


async def test_page_size_and_page_token_are_checked(
    start_daemon: StartDaemon, serve: Serve
) -> None:
    plugin = await serve(Job(forever=True))
    daemon = await start_daemon()
    with daemon.clock.busy():
        for _ in range(3):
            await daemon.client.submit(plugin.target, labels={"a": "1"})
    over = await _refusal(daemon.client.list(page_size=MAX_PAGE_SIZE + 1))
    assert over.code is grpc.StatusCode.INVALID_ARGUMENT
    assert over.detail.startswith("page_size: 1001 is over the maximum of 1000")
    assert (await _refusal(daemon.client.list(page_size=-1))).detail.startswith("page_size")
    junk = await _refusal(daemon.client.list(page_token="junk!"))
    assert junk.detail.startswith("page_token")
    page = await daemon.client.list(page_size=1, labels={"a": "1"})
    other = await _refusal(daemon.client.list(page_token=page.next_page_token))
    assert "different filters" in other.detail
    states = await _refusal(daemon.client.list(states=[0]))
    assert states.detail.startswith("states")


async def test_watch_with_a_negative_revision(start_daemon: StartDaemon, serve: Serve) -> None:
    plugin = await serve(Job(checks=1))
    daemon = await start_daemon()
    task = await daemon.client.submit(plugin.target)
    refused = await _refusal(_first(daemon.client.watch(task.task_id, after_revision=-1)))
    assert refused.detail.startswith("after_revision")
