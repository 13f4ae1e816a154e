"""Payload codecs: how the bytes of an envelope's `data` field map to Python values.

A payload type is either a generated protobuf message class (the typed form) or `dict`, which
travels as a google.protobuf.Struct (the untyped, JSON-like form).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import message as pb_message
from google.protobuf import struct_pb2

from .structs import dict_to_struct, struct_to_dict

PayloadType = type[pb_message.Message] | type[dict]  # type: ignore[type-arg]


def encode_payload(value: Any) -> bytes:
    """Encodes a payload: a protobuf message as itself, a mapping as a Struct, bytes as-is.

    Raises:
        TypeError: the value is none of these, naming its type.
    """
    if isinstance(value, pb_message.Message):
        return value.SerializeToString(deterministic=True)
    if isinstance(value, Mapping):
        return dict_to_struct(value).SerializeToString(deterministic=True)
    if isinstance(value, bytes):
        return value
    raise TypeError(
        f"payload of type {type(value).__name__} cannot be encoded; "
        "use a protobuf message, a dict, or bytes"
    )


def decode_payload(data: bytes, kind: PayloadType) -> Any:
    """Decodes payload bytes into `kind` (a message class, or `dict` for a Struct).

    Raises:
        ValueError: the bytes are not a valid encoding of `kind`, naming the type.
    """
    target: type[pb_message.Message] = struct_pb2.Struct if kind is dict else kind  # type: ignore[assignment]
    message = target()
    try:
        message.ParseFromString(data)
    except (pb_message.DecodeError, RecursionError) as err:
        raise ValueError(f"payload is not a valid {target.DESCRIPTOR.full_name}: {err}") from err
    if kind is dict:
        return struct_to_dict(message)  # type: ignore[arg-type]
    return message


def payload_type_name(kind: PayloadType) -> str:
    """The protobuf full name of a payload type ("google.protobuf.Struct" for dict)."""
    if kind is dict:
        return struct_pb2.Struct.DESCRIPTOR.full_name
    return kind.DESCRIPTOR.full_name  # type: ignore[union-attr]
