"""Compatibility layers: run plugins written for other plugin APIs with only their imports changed.

- `asyncplugin.compat.steamship`: plugins in the style of Steamship's Python SDK
  (`PluginRequest`, `InvocableResponse`, `Task`, `TaskState`, `SteamshipError`).

These modules sit on the plugin SDK (`asyncplugin.plugin`, `asyncplugin.protocol`), never on
the engine.
"""
