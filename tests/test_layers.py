"""Imports point down only: the layers of docs/architecture.md, checked on the source.

Every hand-written module under python/asyncplugin/ is parsed with `ast` (so an import inside a
function or under `TYPE_CHECKING` counts too, and nothing is imported to find out). The engine
side (engine/, service/) and the plugin side (plugin/, and compat/ on top of it) never import
each other; protocol/ imports neither; nothing below the top imports cli/, conformance/,
testing.py or the package facade; the generated bindings import only generated code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "python" / "asyncplugin"
PACKAGE = "asyncplugin"

GENERATED = "generated bindings"
FACADE = "the package facade (asyncplugin/__init__.py)"

LAYERS: dict[str, str] = {
    "protocol": "protocol",
    "observability": "observability",
    "plugin": "plugin",
    "compat": "compat",
    "engine": "engine",
    "service": "service",
    "conformance": "conformance",
    "cli": "cli",
    "testing": "testing",
    "examples": "examples",
}
"""The first name under `asyncplugin.` -> its layer (docs/architecture.md, "Layers")."""

_ABOVE_BOTH_SIDES = {"conformance", "cli", "testing", FACADE}
FORBIDDEN: dict[str, set[str]] = {
    "protocol": {"observability", "plugin", "compat", "engine", "service", *_ABOVE_BOTH_SIDES},
    "observability": {"plugin", "compat", "engine", "service", *_ABOVE_BOTH_SIDES},
    "plugin": {"compat", "engine", "service", *_ABOVE_BOTH_SIDES},
    "compat": {"engine", "service", *_ABOVE_BOTH_SIDES},
    "engine": {"plugin", "compat", "service", *_ABOVE_BOTH_SIDES},
    "service": {"plugin", "compat", *_ABOVE_BOTH_SIDES},
    "conformance": {"cli", "testing", FACADE},
    "examples": {*LAYERS.values(), FACADE},
    GENERATED: {*LAYERS.values(), FACADE},
    "cli": set(),
    "testing": set(),
    FACADE: set(),
}
"""Layer -> the layers it must never import."""


def module_name(path: Path) -> str:
    """ "asyncplugin.engine.store.sqlite" for python/asyncplugin/engine/store/sqlite.py."""
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """The layer of an `asyncplugin...` module, or None if it is in no layer yet."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        raise ValueError(f"{module} is not in {PACKAGE}")
    if "v1" in parts:
        return GENERATED
    if len(parts) == 1:
        return FACADE
    return LAYERS.get(parts[1])


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from ... import` names (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imported_modules(module: str, source: str, *, is_package: bool = False) -> Iterator[str]:
    """Every `asyncplugin...` module the source imports (a name imported from a package is
    taken as its submodule when one exists: `from asyncplugin import engine`)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            targets = [base]
            if base == PACKAGE:
                targets = [
                    f"{base}.{alias.name}" if _is_submodule(alias.name) else base
                    for alias in node.names
                ]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(f"{PACKAGE}."):
                yield target


def _is_submodule(name: str) -> bool:
    return (PACKAGE_DIR / name).is_dir() or (PACKAGE_DIR / f"{name}.py").is_file()


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """ "importer -> imported (layer -> layer)" for every import that crosses a forbidden line."""
    layer = layer_of(module)
    if layer is None:
        where = "tests/test_layers.py (LAYERS) and docs/architecture.md"
        return [f"{module} is in no layer: place it in {where}"]
    found = []
    for target in imported_modules(module, source, is_package=is_package):
        target_layer = layer_of(target)
        if target_layer is None:
            found.append(f"{module} imports {target}, which is in no layer")
        elif target_layer in FORBIDDEN[layer]:
            found.append(f"{module} -> {target} ({layer} must not import {target_layer})")
    return found


def hand_written_modules() -> list[Path]:
    """Every .py file of the package outside the generated v1/ folders."""
    return sorted(
        path
        for path in PACKAGE_DIR.rglob("*.py")
        if "v1" not in path.relative_to(PACKAGE_DIR).parts
    )


def test_every_hand_written_module_is_in_a_layer() -> None:
    """A new top-level module or package must be placed in a layer on purpose."""
    modules = [module_name(path) for path in hand_written_modules()]
    assert len(modules) > 50  # the walk found the package
    assert [module for module in modules if layer_of(module) is None] == []


def test_imports_point_down_only() -> None:
    """No engine module imports the plugin side or the other way round; protocol/ imports
    neither; only the top (cli, conformance, testing, the facade) uses both sides."""
    found = [
        violation
        for path in hand_written_modules()
        for violation in violations(
            module_name(path), path.read_text(), is_package=path.name == "__init__.py"
        )
    ]
    assert found == []


def test_generated_bindings_import_only_generated_code() -> None:
    """The v1/ packages are written by `make generate` and depend on nothing hand-written."""
    generated = sorted(path for path in PACKAGE_DIR.rglob("v1/*.py"))
    assert generated
    found = [
        violation
        for path in generated
        for violation in violations(
            module_name(path), path.read_text(), is_package=path.name == "__init__.py"
        )
    ]
    assert found == []


def test_the_scan_sees_the_real_edges() -> None:
    """The scan is not vacuous: it finds the imports that are there, relative ones included."""
    engine = (PACKAGE_DIR / "engine" / "engine.py").read_text()
    edges = set(imported_modules("asyncplugin.engine.engine", engine))
    assert "asyncplugin.protocol" in edges
    assert "asyncplugin.engine.store.base" in edges  # from .store.base import TaskStore
    facade = (PACKAGE_DIR / "__init__.py").read_text()
    layers = {layer_of(m) for m in imported_modules(PACKAGE, facade, is_package=True)}
    assert {"engine", "plugin", "protocol"} <= layers


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("asyncplugin.engine.credentials", "from ..plugin.auth import x", "engine -> plugin"),
        ("asyncplugin.engine.steps", "import asyncplugin.plugin.auth", "engine -> plugin"),
        ("asyncplugin.plugin.server", "from asyncplugin import engine", "plugin -> engine"),
        (
            "asyncplugin.plugin.base",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
            "    from asyncplugin.engine.records import TaskRecord",
            "plugin -> engine",
        ),
        ("asyncplugin.protocol.task", "def f():\n    from ..engine import E", "protocol -> engine"),
        ("asyncplugin.protocol.limits", "from asyncplugin.plugin import A", "protocol -> plugin"),
        ("asyncplugin.engine.engine", "from asyncplugin import PluginServer", "engine -> the"),
        ("asyncplugin.service.daemon", "from ..plugin import auth", "service -> plugin"),
        (
            "asyncplugin.compat.steamship",
            "from asyncplugin.engine import Engine",
            "compat -> engine",
        ),
        ("asyncplugin.plugin.base", "from ..compat import steamship", "plugin -> compat"),
    ],
)
def test_a_crossing_import_is_reported(module: str, source: str, expected: str) -> None:
    """The check fails on each kind of crossing, whatever the import's form."""
    layer, target = expected.split(" -> ")
    [found] = violations(module, source)
    assert found.startswith(f"{module} -> asyncplugin")
    assert f"({layer} must not import {target}" in found


def test_allowed_imports_are_not_reported() -> None:
    """Downward imports pass: the sides import protocol/ and the bindings; the top uses both."""
    assert violations("asyncplugin.engine.steps", "from asyncplugin.protocol import limits") == []
    assert violations("asyncplugin.plugin.base", "from ..v1 import plugin_pb2") == []
    assert violations("asyncplugin.cli.invoke", "from asyncplugin.plugin import auth") == []
    assert violations("asyncplugin.service.daemon", "from asyncplugin.engine import Engine") == []
    assert violations("asyncplugin.compat.steamship", "from asyncplugin.plugin import base") == []
