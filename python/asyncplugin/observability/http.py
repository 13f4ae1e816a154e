"""The Prometheus metrics endpoint: GET of one path, served by aiohttp on the server's loop.

`start_metrics_server(host, port, registry)` binds first (so a port in use fails at start with
one line naming it), then serves the registry in the Prometheus text format (OpenMetrics when
the scraper asks for it) at `/metrics`. Nothing else is served: any other path is 404 and any
other method on the path is 405. aiohttp is the one web framework of the project's servers, so
the engine daemon's console can share the same process and loop.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, Final

from asyncplugin.protocol import AsyncPluginError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["DEFAULT_METRICS_PATH", "MetricsServer", "MetricsServerError", "start_metrics_server"]

DEFAULT_METRICS_PATH: Final = "/metrics"

_EXTRA_HINT: Final = "install the metrics extra: pip install 'asyncplugin[metrics]'"


class MetricsServerError(AsyncPluginError):
    """The metrics endpoint could not start (port in use, bad address, extra not installed)."""


class MetricsServer:
    """A running metrics endpoint; `close` stops it.

    Attributes:
        host: the address it listens on.
        port: the bound port (the real one when 0 was asked for).
        path: the one path served.
    """

    def __init__(self, runner: Any, host: str, port: int, path: str) -> None:
        self._runner = runner
        self.host = host
        self.port = port
        self.path = path

    @property
    def url(self) -> str:
        """The endpoint's URL, e.g. "http://127.0.0.1:9464/metrics"."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    async def close(self) -> None:
        """Stops serving and releases the port."""
        await self._runner.cleanup()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port; SO_REUSEADDR (restart through TIME_WAIT) but never
    SO_REUSEPORT, so a port another process listens on is refused."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV
        )
    except (OSError, UnicodeError) as err:
        raise MetricsServerError(f"cannot serve metrics on {address}: {err}") from err
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as err:
        sock.close()
        reason = err.strerror or str(err)
        raise MetricsServerError(f"cannot serve metrics on {address}: {reason}") from err
    return sock


async def start_metrics_server(
    host: str,
    port: int,
    registry: CollectorRegistry,
    *,
    path: str = DEFAULT_METRICS_PATH,
) -> MetricsServer:
    """Serves `registry` at http://host:port/path on the running event loop.

    Args:
        host: the address to listen on ("127.0.0.1" keeps metrics local).
        port: the port; 0 picks a free one (read it from the result's `port`).
        registry: the prometheus-client registry to expose.
        path: the one path served.

    Raises:
        MetricsServerError: the address cannot be bound (for example the port is in use), or
            the `[metrics]` extra is not installed.
    """
    if not path.startswith("/"):
        raise ValueError(f"the metrics path must start with '/', got {path!r}")
    try:
        from aiohttp import web
        from prometheus_client import exposition
    except ImportError as err:
        raise MetricsServerError(
            f"--metrics-port needs aiohttp and prometheus-client: {_EXTRA_HINT}"
        ) from err
    sock = _bind(host, port)

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = exposition.choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type})

    app = web.Application()
    # add_route("GET") and not add_get: add_get would answer HEAD too; only GET is served.
    app.router.add_route("GET", path, metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        sock.close()
        raise
    return MetricsServer(runner, host, sock.getsockname()[1], path)
