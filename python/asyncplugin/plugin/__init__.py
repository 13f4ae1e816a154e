"""The Python plugin SDK: write a plugin class, serve it over gRPC, test it in-process.

    class Transcriber(AsyncPlugin[TranscribeInput, Transcript]):
        rpc_method = "/asyncplugin.examples.v1.TranscriberService/Transcribe"

        async def initiate_work(self, request):
            job_id = await api.start(request.data.audio_url)
            return Response(status=Task(state=TaskState.RUNNING,
                                        remote_status_input={"remote_job_id": job_id}))

        async def check_status(self, request):
            ...

Any class with a `run(request)` method can be served too: `as_plugin(SomeClass)` checks it (no
`run`, abstract methods) and wraps it. This package never imports the engine; the two sides meet
in `asyncplugin.protocol` (and, for push completion, `CompletionClient` uses only the generated
EngineService stubs).
"""

from __future__ import annotations

from asyncplugin.protocol.methods import GENERIC_METHOD

from .base import AsyncPlugin, Reply, remote_status_input
from .cancel import CANCEL_NOT_HANDLED
from .completion import CompletionClient, CompletionRefused
from .dispatch import INVALID_PAYLOAD
from .inprocess import CallResult, PluginClient, serve_in_process
from .loading import PluginLoadError, RunAdapter, as_plugin
from .normalize import INVALID_PLUGIN_RESPONSE, MESSAGE_TOO_LARGE, PLUGIN_INTERNAL_ERROR
from .security import BindError, InsecureBindError, ServerSecurity
from .server import DEFAULT_GRACE_S, PluginServer, serve
from .telemetry import PluginTelemetry

__all__ = [
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
