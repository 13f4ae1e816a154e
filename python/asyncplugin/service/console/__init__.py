"""A web console for a running engine: tasks live, one task's check timeline, plugins, cancel.

`start_console(engine, host=..., port=...)` serves it on the engine's own event loop (aiohttp,
server-side Jinja2 templates; every asset ships in the package, so it works offline and needs
no build step). Pages: /tasks (filters, paging, live over server-sent events), /tasks/ID (the
check timeline as an inline SVG, the error envelope, payload and result decoded, cancel),
/plugins (per target: tasks by state, call rate, failures by code, latency, gRPC health).

Security follows the engine's gRPC API: without TLS only loopback; with TLS, bearer tokens
through a login form (an HttpOnly, SameSite=Strict session cookie, revoked at logout; wrong
tokens throttled per client address, `LoginThrottle`); CSRF tokens on every POST;
a Content-Security-Policy without inline scripts; `remote_status_input` only on request.
Needs the `console` extra: `pip install 'asyncplugin[console]'`.
"""

from __future__ import annotations

from .app import Console, build_app
from .probes import PluginProbes
from .security import ConsoleConfigError, ConsoleSecurity
from .server import ConsoleServer, start_console
from .throttle import LoginThrottle

__all__ = [
    "Console",
    "ConsoleConfigError",
    "ConsoleSecurity",
    "ConsoleServer",
    "LoginThrottle",
    "PluginProbes",
    "build_app",
    "start_console",
]
