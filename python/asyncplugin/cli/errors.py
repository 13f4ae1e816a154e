"""The command line's own error type."""

from __future__ import annotations

from asyncplugin.protocol import AsyncPluginError


class UsageError(AsyncPluginError):
    """A command-line mistake the user can fix; printed as one line, exit status 2."""
