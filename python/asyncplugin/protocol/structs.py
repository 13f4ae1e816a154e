"""Conversion between google.protobuf.Struct and plain Python dicts, and Struct measurements.

`remote_status_input` is a plain dict on both sides of the conversation. Struct numbers are
doubles on the wire (as in JSON), so a number that is a whole value within +-2**53 reads back as
an `int`; other numbers read back as `float`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

_SAFE_INT = 2**53

_ENCODE_MAX_DEPTH = 100
"""Deepest nesting `dict_to_struct` encodes. protobuf parsers stop at 100 nested messages (a
Struct level costs three: Struct, map entry, Value), so nothing deeper could be read anywhere;
the bound also turns a self-referencing dict into a clear ValueError, not a RecursionError."""


def dict_to_struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    """Builds a Struct from a JSON-like mapping (str keys; None, bool, numbers, str, lists, dicts).

    Raises:
        TypeError: a key is not a string or a value is not JSON-like; the message names the path.
        ValueError: dicts and lists nest more than 100 levels deep (or refer to themselves).
    """
    struct = struct_pb2.Struct()
    _fill_struct(struct, value, "$", 1)
    return struct


def fill_struct(struct: struct_pb2.Struct, value: Mapping[str, Any]) -> None:
    """Writes a JSON-like mapping into `struct` in place (a message field: no copy is made),
    marking it set even when the mapping is empty. Raises as `dict_to_struct` does."""
    struct.SetInParent()
    _fill_struct(struct, value, "$", 1)


def _fill_struct(
    struct: struct_pb2.Struct, value: Mapping[str, Any], path: str, depth: int
) -> None:
    if type(value) is not dict and not isinstance(value, Mapping):  # an ABC check costs more
        raise TypeError(f"{path}: expected a dict, got {type(value).__name__}")
    fields = struct.fields
    for key, item in value.items():
        if type(key) is not str and not isinstance(key, str):
            raise TypeError(f"{path}: key {key!r} is not a string")
        # The common leaves first, by exact type (an isinstance chain costs more); the path is
        # formatted only for nested values and errors.
        kind = type(item)
        if kind is str:
            fields[key].string_value = item
        elif kind is float or kind is int:
            fields[key].number_value = item
        else:
            _fill_value(fields[key], item, path, key, depth)


def _fill_value(
    target: struct_pb2.Value, item: Any, parent: str, key: str | int, depth: int
) -> None:
    """Writes one value; `parent` and `key` (a list index) name it in errors."""
    if item is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(item, bool):
        target.bool_value = item
    elif isinstance(item, int | float):
        target.number_value = float(item)
    elif isinstance(item, str):
        target.string_value = item
    elif isinstance(item, Mapping):
        path = _path(parent, key)
        if depth >= _ENCODE_MAX_DEPTH:
            raise _too_deep(path)
        target.struct_value.SetInParent()
        _fill_struct(target.struct_value, item, path, depth + 1)
    elif isinstance(item, list | tuple):
        path = _path(parent, key)
        if depth >= _ENCODE_MAX_DEPTH:
            raise _too_deep(path)
        target.list_value.SetInParent()
        values = target.list_value.values
        for index, element in enumerate(item):
            _fill_value(values.add(), element, path, index, depth + 1)
    else:
        raise TypeError(f"{_path(parent, key)}: {type(item).__name__} is not JSON-like")


def _path(parent: str, key: str | int) -> str:
    return f"{parent}[{key}]" if type(key) is int else f"{parent}.{key}"


def _too_deep(path: str) -> ValueError:
    shown = path if len(path) <= 80 else f"{path[:40]}...{path[-37:]}"
    return ValueError(
        f"{shown}: dicts and lists nest more than {_ENCODE_MAX_DEPTH} levels deep "
        "(protobuf parsers refuse such a Struct)"
    )


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Reads a Struct into a plain dict (whole numbers within +-2**53 become ints)."""
    fields = struct.fields
    # Keys, then lookups: both in C. `fields.items()` is a Python-level ItemsView, twice as slow.
    return {key: _read_value(fields[key]) for key in fields}


def _read_value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and -_SAFE_INT <= number <= _SAFE_INT:
            return int(number)
        return number
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_read_value(item) for item in value.list_value.values]
    if kind == "bool_value":
        return value.bool_value
    return None


def struct_depth(struct: struct_pb2.Struct) -> int:
    """How deeply Structs and ListValues nest: an empty or flat Struct has depth 1."""
    deepest = 1
    stack: list[tuple[struct_pb2.Value, int]] = [(v, 1) for v in struct.fields.values()]
    while stack:
        value, depth = stack.pop()
        kind = value.WhichOneof("kind")
        if kind == "struct_value":
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in value.struct_value.fields.values())
        elif kind == "list_value":
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in value.list_value.values)
    return deepest
