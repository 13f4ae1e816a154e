"""Example protocols shipped with asyncplugin (generated bindings live in v1/)."""
