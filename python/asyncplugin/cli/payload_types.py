"""The CLI's name for `asyncplugin.engine.reflection`: payload types resolved through gRPC server
reflection (shared with the web console, so it lives below the CLI)."""

from __future__ import annotations

from asyncplugin.engine.reflection import GENERIC, PayloadTypes, resolve

__all__ = ["GENERIC", "PayloadTypes", "resolve"]
