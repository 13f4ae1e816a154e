"""A plugin that fails: it shows the error envelope a PluginError puts on the wire.

Input: {"mode": "quota"} (default) raises a PluginError with a message, suggestion, code,
metadata and a wrapped cause (itself a PluginError wrapping a ConnectionError), so the task
ends FAILED with the full envelope. {"mode": "crash"} raises a plain exception instead, which
the SDK turns into a safe FAILED answer with code PLUGIN_INTERNAL_ERROR.

    asyncplugin serve server.failing:Failing --port 50051
"""

from __future__ import annotations

from typing import Any

import grpc

from asyncplugin import PluginError, Request
from asyncplugin.plugin import AsyncPlugin

Payload = dict[str, Any]


class Failing(AsyncPlugin[Payload, Payload]):
    """Fails every call, with a PluginError or (mode "crash") an unexpected exception."""

    async def run(self, request: Request[Payload]) -> Payload:
        """Always raises."""
        if request.data.get("mode") == "crash":
            raise RuntimeError("secret-token-123 leaked into an exception message")
        try:
            _call_remote_api()
        except PluginError as err:
            raise PluginError(
                message="The report could not be generated: the daily quota is used up.",
                suggestion="Try again after midnight UTC, or ask for a larger quota.",
                code="REMOTE_QUOTA_EXCEEDED",
                rpc_code=grpc.StatusCode.RESOURCE_EXHAUSTED,
                domain="failing.example.com",
                metadata={"quota_per_day": "100"},
                internal_message="reports API answered 429 to POST /v2/reports",
                error=err,
            ) from err
        raise AssertionError("unreachable")


def _call_remote_api() -> None:
    """Stands in for a third-party client library that fails."""
    try:
        raise ConnectionRefusedError("429 Too Many Requests")
    except ConnectionRefusedError as err:
        raise PluginError(
            message="The reports API refused the request.", code="HTTP_429", error=err
        ) from err
