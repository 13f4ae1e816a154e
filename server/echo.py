"""A synchronous plugin: a plain `def run` that answers at once (run in a thread by the SDK).

Input: any JSON object. Output: {"echo": <the input>}.

    asyncplugin serve server.echo:Echo --port 50051
"""

from __future__ import annotations

from typing import Any

from asyncplugin import Request
from asyncplugin.plugin import AsyncPlugin

Payload = dict[str, Any]


class Echo(AsyncPlugin[Payload, Payload]):
    """Answers every call at once with its own input."""

    def run(self, request: Request[Payload]) -> Payload:
        """Returns the payload back: the raw output means SUCCEEDED."""
        return {"echo": request.data}
