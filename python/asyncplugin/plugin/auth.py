"""Who may call a plugin: bearer tokens checked on every call.

The mechanism is shared with the engine daemon, so it lives in
`asyncplugin.protocol.server_auth` (see there); this module keeps the SDK's names for it.
"""

from __future__ import annotations

from asyncplugin.protocol.server_auth import (
    AUTH_EXEMPT_PREFIXES,
    REFUSAL_LOG_INTERVAL_S,
    BearerTokenInterceptor,
    RefusalLog,
)

__all__ = [
    "AUTH_EXEMPT_PREFIXES",
    "REFUSAL_LOG_INTERVAL_S",
    "BearerTokenInterceptor",
    "RefusalLog",
]
