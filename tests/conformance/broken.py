"""Python conformance plugins that break one requirement each, for the kit's negative tests."""

from __future__ import annotations

from asyncplugin.conformance.reference_plugin import ConformancePlugin, ScenarioResult
from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.plugin import Reply
from asyncplugin.protocol import Request, Response, Task


class NoRotation(ConformancePlugin):
    """Never rotates the token nor verifies the echo (like the Node plugin's --break no-echo)."""

    async def run(self, request: Request[conformance_pb2.Scenario]) -> Reply[ScenarioResult]:
        scenario = conformance_pb2.Scenario()
        scenario.CopyFrom(request.data)
        rotating = scenario.rotate_remote_status_input
        scenario.rotate_remote_status_input = False
        reply = await super().run(
            Request(
                data=scenario,
                context=request.context,
                status=request.status,
                is_status_check=request.is_status_check,
                cancel_requested=request.cancel_requested,
            )
        )
        if rotating and isinstance(reply, Response) and reply.status is not None:
            stash = dict(reply.status.remote_status_input or {})
            stash["token"] = f"{request.context.task_id}:0"
            return Response(data=reply.data, status=_with_stash(reply.status, stash))
        return reply


class RunningWithoutStash(ConformancePlugin):
    """Returns RUNNING without remote_status_input: the SDK refuses to send it."""

    async def run(self, request: Request[conformance_pb2.Scenario]) -> Reply[ScenarioResult]:
        reply = await super().run(request)
        if isinstance(reply, Response) and reply.status is not None:
            return Response(data=reply.data, status=_with_stash(reply.status, None))
        return reply


def _with_stash(task: Task, stash: dict[str, object] | None) -> Task:
    from dataclasses import replace

    return replace(task, remote_status_input=stash)
