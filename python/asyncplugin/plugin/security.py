"""How a plugin server proves who it is over TLS, and where it may listen in plaintext.

Shared with the engine daemon, so it lives in `asyncplugin.protocol.server_security` (see there);
this module keeps the SDK's names for it.
"""

from __future__ import annotations

from asyncplugin.protocol.server_security import (
    BindError,
    InsecureBindError,
    ServerSecurity,
    check_bind,
)

__all__ = ["BindError", "InsecureBindError", "ServerSecurity", "check_bind"]
