"""The engine as a service: what runs an `asyncplugin.engine.Engine` for others to use.

`console`: a web console over a running engine (tasks live, one task's check timeline, plugins).
"""

from __future__ import annotations
