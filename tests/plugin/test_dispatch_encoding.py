"""The dispatcher replaces an answer over the size limit, with or without telemetry (which
sees the answer really sent)."""

from __future__ import annotations

import contextvars
from typing import Any

from asyncplugin.plugin import AsyncPlugin
from asyncplugin.plugin.dispatch import PluginDispatcher
from asyncplugin.plugin.normalize import MESSAGE_TOO_LARGE
from asyncplugin.plugin.telemetry import PluginTelemetry, response_answer
from asyncplugin.protocol import Request, encode_payload
from asyncplugin.v1 import plugin_pb2, task_pb2


class _Blob(AsyncPlugin[dict[str, Any], dict[str, Any]]):
    async def initiate_work(self, request: Request[dict[str, Any]]) -> dict[str, Any]:
        return {"blob": "x" * int(request.data["size"])}


class _Seen(PluginTelemetry):
    def __init__(self) -> None:
        super().__init__()
        self.answers: list[plugin_pb2.InvokeResponse] = []

    def answered(
        self, response: plugin_pb2.InvokeResponse, token: contextvars.Token[str | None]
    ) -> None:
        self.answers.append(response)
        super().answered(response, token)


async def _call(dispatcher: PluginDispatcher, size: int) -> plugin_pb2.InvokeResponse:
    request = plugin_pb2.InvokeRequest(
        data=encode_payload({"size": size}), context=plugin_pb2.RequestContext(task_id="t")
    )
    data = await dispatcher.handle(request.SerializeToString(), None)  # type: ignore[arg-type]
    assert len(data) <= 2048
    return plugin_pb2.InvokeResponse.FromString(data)


async def test_an_answer_over_the_limit_is_replaced_with_or_without_telemetry() -> None:
    telemetry = _Seen()
    for seen in (None, telemetry):
        dispatcher = PluginDispatcher(_Blob(), max_message_bytes=2048, telemetry=seen)
        response = await _call(dispatcher, 4000)
        assert response.status.state == task_pb2.TASK_STATE_FAILED
        assert response.status.error.code == MESSAGE_TOO_LARGE
        assert int(response.status.error.metadata["size_bytes"]) > 2048
        assert response.status.error.metadata["limit_bytes"] == "2048"
        fits = await _call(dispatcher, 100)
        assert fits.HasField("data")
    assert [response_answer(answer) for answer in telemetry.answers] == ["FAILED", "SUCCEEDED"]
    assert telemetry.answers[0].status.error.code == MESSAGE_TOO_LARGE
