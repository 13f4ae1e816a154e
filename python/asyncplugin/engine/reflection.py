"""Resolve a method's payload types through gRPC server reflection: a typed RPC's payload and
result are the message types the plugin declared at field 1 of its request and response.

`asyncplugin invoke --data JSON` parses the JSON into the input type; `asyncplugin tasks` and
the web console decode recorded payloads and results into JSON. For the generic envelope
(`bytes data = 1`) and for servers without reflection, payloads are JSON objects carried as
google.protobuf.Struct.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pool, json_format, message_factory, struct_pb2
from google.protobuf.message import DecodeError, Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from asyncplugin.protocol import decode_payload, encode_payload, struct_to_dict

__all__ = ["GENERIC", "PayloadTypes", "decode_strict", "resolve"]


@dataclass(frozen=True, slots=True)
class PayloadTypes:
    """How to encode a method's input and decode its output (None: JSON object as Struct)."""

    input_type: type[Message] | None
    output_type: type[Message] | None

    def encode(self, value: Any) -> bytes:
        """Encodes a JSON value as the input type; raises ValueError naming the type."""
        if self.input_type is None:
            if not isinstance(value, dict):
                raise ValueError("--data must be a JSON object for this method")
            return encode_payload(value)
        try:
            return json_format.ParseDict(value, self.input_type()).SerializeToString()
        except json_format.ParseError as err:
            name = self.input_type.DESCRIPTOR.full_name
            detail = " ".join(str(err).split())
            raise ValueError(f"--data is not a valid {name}: {detail}") from err

    def decode(self, data: bytes) -> Any:
        """Decodes result bytes into JSON-like Python values."""
        if self.output_type is None:
            try:
                return decode_payload(data, dict)
            except ValueError:
                return {"bytes_base64": base64.b64encode(data).decode()}
        return json_format.MessageToDict(self.output_type.FromString(data))

    def decode_payload(self, data: bytes) -> Any:
        """Decodes recorded payload bytes into JSON-like values, strictly (see `decode_strict`)."""
        return decode_strict(data, self.input_type)

    def decode_result(self, data: bytes) -> Any:
        """Decodes recorded result bytes into JSON-like values, strictly (see `decode_strict`)."""
        return decode_strict(data, self.output_type)

    def type_name(self, *, result: bool) -> str:
        """The full name of the payload's (or, with `result`, the result's) message type."""
        kind = self.output_type if result else self.input_type
        return (kind or struct_pb2.Struct).DESCRIPTOR.full_name


def decode_strict(data: bytes, kind: type[Message] | None) -> Any:
    """Decodes bytes as `kind` (None: a Struct) into JSON-like values, refusing bytes that are
    not one: protobuf parsing accepts much garbage as unknown fields, which decoding would drop
    silently, so bytes that carry any field the type does not declare are refused too.

    Raises:
        ValueError: the bytes are not a `kind`, naming the type and why.
    """
    message = (kind or struct_pb2.Struct)()
    name = message.DESCRIPTOR.full_name
    try:
        message.ParseFromString(data)
    except (DecodeError, RecursionError) as err:
        raise ValueError(f"not a valid {name}: {err}") from err
    size = message.ByteSize()
    message.DiscardUnknownFields()
    if message.ByteSize() != size:
        raise ValueError(f"not a {name}: it holds fields that {name} does not declare")
    if kind is None:
        return struct_to_dict(message)  # type: ignore[arg-type]
    return json_format.MessageToDict(message)


GENERIC = PayloadTypes(input_type=None, output_type=None)


def resolve(
    target: str,
    method: str,
    *,
    timeout_s: float = 5.0,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> PayloadTypes:
    """Asks the server at `target` (reflection) for the payload types of `method`.

    Falls back to JSON objects (Struct) when the server has no reflection or the method's field 1
    is `bytes` (the generic envelope).
    """
    service, _, name = method.strip("/").rpartition("/")
    channel = (
        grpc.secure_channel(target, credentials, options=list(options))
        if credentials is not None
        else grpc.insecure_channel(target, options=list(options))
    )
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout_s)
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        # FindMethodByName does not consult the reflection database; the service lookup does.
        found = pool.FindServiceByName(service).methods_by_name[name]
    except (grpc.FutureTimeoutError, grpc.RpcError, KeyError):
        return GENERIC
    finally:
        channel.close()
    return PayloadTypes(
        input_type=_payload_class(found.input_type), output_type=_payload_class(found.output_type)
    )


def _payload_class(envelope: descriptor.Descriptor) -> type[Message] | None:
    field = envelope.fields_by_number.get(1)
    if field is None or field.message_type is None:
        return None
    if field.message_type.full_name == "google.protobuf.Struct":
        return None
    return message_factory.GetMessageClass(field.message_type)
