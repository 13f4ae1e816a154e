"""SyncEngine takes exactly Engine's keyword arguments, typed, so mypy checks every call."""

from __future__ import annotations

import inspect
import typing

import pytest

from asyncplugin.engine import Engine, MemoryStore, SyncEngine


def test_sync_engine_takes_the_engines_arguments() -> None:
    """Same names, kinds, defaults and annotations: an argument added to Engine and forgotten
    here fails this test."""
    engine = inspect.signature(Engine).parameters
    sync = inspect.signature(SyncEngine).parameters
    assert list(sync) == list(engine)
    for name, parameter in engine.items():
        assert sync[name].kind is parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert sync[name].default == parameter.default, name
    hints = typing.get_type_hints(SyncEngine.__init__)
    engine_hints = typing.get_type_hints(Engine.__init__)
    assert {name: hints[name] for name in sync} == {name: engine_hints[name] for name in engine}


def test_sync_engine_passes_its_arguments_on() -> None:
    """The Engine underneath gets what SyncEngine was given."""
    store = MemoryStore()
    with SyncEngine(store=store, max_concurrent_rpcs=3, shutdown_grace_s=0.25) as engine:
        assert engine.engine.store is store
        assert engine.engine._max_concurrent == 3
        assert engine.engine._max_per_target == 2
        assert engine.engine._grace_s == 0.25


def test_sync_engine_refuses_positional_and_unknown_arguments() -> None:
    """Only Engine's keyword arguments are accepted."""
    with pytest.raises(TypeError):
        SyncEngine(MemoryStore())  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        SyncEngine(stores=MemoryStore())  # type: ignore[call-arg]
