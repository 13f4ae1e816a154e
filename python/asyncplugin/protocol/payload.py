"""Payload codecs: how the bytes of an envelope's `data` field map to Python values.

A payload type is one of:
  - a generated protobuf message class (the typed form);
  - `dict`, which travels as a google.protobuf.Struct (the untyped, JSON-like form);
  - a pydantic v2 model class (extra `asyncplugin[pydantic]`): it travels as a Struct holding
    the model's JSON form (`model_dump(mode="json")`) and is validated when decoded.

pydantic is never imported here: a class can only be a pydantic model if pydantic has already
been imported by whoever defined it, so the module is looked up in `sys.modules`. Plugins that do
not use pydantic never load it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, get_origin

from google.protobuf import message as pb_message
from google.protobuf import struct_pb2

from .structs import dict_to_struct, struct_to_dict

PayloadType = type[Any]
"""A payload type: a protobuf message class, `dict`, or a pydantic v2 model class."""


class PayloadValidationError(ValueError):
    """A payload decoded as JSON but does not validate as the pydantic model it must be.

    Attributes:
        field: the dotted path of the first offending field, starting at "data" (for example
            "data.audio_url" or "data.items.0.name").
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


def _pydantic() -> Any:
    """The pydantic module if something has imported it, else None (never imports it)."""
    return sys.modules.get("pydantic")


def is_pydantic_model(kind: Any) -> bool:
    """True if `kind` is a pydantic v2 model class (BaseModel subclass)."""
    pydantic = _pydantic()
    base = getattr(pydantic, "BaseModel", None)
    return base is not None and isinstance(kind, type) and issubclass(kind, base)


def _is_pydantic_instance(value: Any) -> bool:
    pydantic = _pydantic()
    base = getattr(pydantic, "BaseModel", None)
    return base is not None and isinstance(value, base)


def payload_kind(annotation: Any) -> PayloadType | None:
    """The payload type an annotation stands for, or None (a TypeVar, Any, or anything else).

    `dict` and `dict[str, Any]` mean a Struct payload; a protobuf message class and a pydantic
    model class mean themselves.
    """
    if annotation is dict or get_origin(annotation) is dict:
        return dict
    if isinstance(annotation, type) and issubclass(annotation, pb_message.Message):
        return annotation
    if is_pydantic_model(annotation):
        return annotation  # type: ignore[no-any-return]
    return None


def encode_payload(value: Any) -> bytes:
    """Encodes a payload: a protobuf message as itself, a mapping or a pydantic model as a
    Struct, bytes as-is.

    Raises:
        TypeError: the value is none of these, naming its type.
    """
    if isinstance(value, pb_message.Message):
        return value.SerializeToString(deterministic=True)
    if isinstance(value, Mapping):
        return dict_to_struct(value).SerializeToString(deterministic=True)
    if _is_pydantic_instance(value):
        dumped = value.model_dump(mode="json")
        return dict_to_struct(dumped).SerializeToString(deterministic=True)
    if isinstance(value, bytes):
        return value
    raise TypeError(
        f"payload of type {type(value).__name__} cannot be encoded; "
        "use a protobuf message, a dict, a pydantic model, or bytes"
    )


def decode_payload(data: bytes, kind: PayloadType) -> Any:
    """Decodes payload bytes into `kind` (a message class, `dict`, or a pydantic model class).

    Raises:
        PayloadValidationError: (pydantic models) the JSON does not validate; names the field.
        ValueError: the bytes are not a valid encoding of `kind`, naming the type.
    """
    model = kind is not dict and is_pydantic_model(kind)
    message = parse_payload(data, kind, model=model)
    if kind is dict:
        return struct_to_dict(message)  # type: ignore[arg-type]
    if model:
        return _validate(kind, struct_to_dict(message))  # type: ignore[arg-type]
    return message


def parse_payload(
    data: bytes, kind: PayloadType, *, model: bool | None = None
) -> pb_message.Message:
    """Parses payload bytes into the wire message `kind` travels as (a Struct for `dict` and
    pydantic models), without converting it further; `model` says if `kind` is a pydantic
    model (None: find out).

    Raises:
        ValueError: the bytes are not a valid encoding of that message, naming its type.
    """
    if model is None:
        model = kind is not dict and is_pydantic_model(kind)
    target: type[pb_message.Message] = struct_pb2.Struct if kind is dict or model else kind
    message = target()
    try:
        message.ParseFromString(data)
    except (pb_message.DecodeError, RecursionError) as err:
        raise ValueError(f"payload is not a valid {target.DESCRIPTOR.full_name}: {err}") from err
    return message


def _validate(model: Any, value: dict[str, Any]) -> Any:
    """`model.model_validate(value)`, with a failure turned into a PayloadValidationError."""
    validation_error = _pydantic().ValidationError
    try:
        return model.model_validate(value)
    except validation_error as err:
        problems = err.errors(include_url=False, include_input=False)
        fields = [".".join(["data", *(str(part) for part in p["loc"])]) for p in problems]
        details = "; ".join(f"{f}: {p['msg']}" for f, p in zip(fields, problems, strict=True))
        raise PayloadValidationError(
            f"data does not validate as {payload_type_name(model)}: {details}",
            field=fields[0] if fields else "data",
        ) from None


def payload_type_name(kind: PayloadType) -> str:
    """The name of a payload type: the protobuf full name ("google.protobuf.Struct" for dict),
    or "module.Class (pydantic model)" for a pydantic model."""
    if kind is dict:
        return struct_pb2.Struct.DESCRIPTOR.full_name
    if is_pydantic_model(kind):
        return f"{kind.__module__}.{kind.__qualname__} (pydantic model)"
    return kind.DESCRIPTOR.full_name  # type: ignore[no-any-return]
