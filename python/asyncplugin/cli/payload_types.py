"""Resolve a method's payload types through gRPC server reflection, so `--data JSON` works for
typed RPCs: the JSON is parsed into the message type the plugin declared at field 1.

For the generic envelope (`bytes data = 1`) and for servers without reflection, payloads are
JSON objects carried as google.protobuf.Struct.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from asyncplugin.protocol import decode_payload, encode_payload


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
