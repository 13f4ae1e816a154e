"""Payload types through gRPC server reflection, for the command line.

The types of one method (`PayloadTypes`, `resolve`) live in `asyncplugin.engine.reflection`,
shared with the web console; this module adds what `describe` and `invoke` need besides: every
service a server offers (`Reflection`), a method's types from its descriptor, and how its
payload travels.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pool, message_factory
from google.protobuf.message import Message
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from asyncplugin.engine.reflection import GENERIC, PayloadTypes, decode_strict, resolve

__all__ = [
    "GENERIC",
    "PayloadTypes",
    "Reflection",
    "decode_strict",
    "method_path",
    "payload_class",
    "payload_name",
    "resolve",
    "result_type",
    "types_of",
]


def result_type(types: PayloadTypes) -> str:
    """The full name of the method's output message type ("" for a JSON object), as
    SubmitTaskRequest.result_type wants it."""
    return types.output_type.DESCRIPTOR.full_name if types.output_type is not None else ""


class Reflection:
    """The services a server describes through gRPC server reflection (a blocking channel).

    Use as a context manager; every lookup raises grpc.RpcError when the server has no
    reflection service.
    """

    def __init__(
        self,
        target: str,
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self._channel = (
            grpc.secure_channel(target, credentials, options=list(options))
            if credentials is not None
            else grpc.insecure_channel(target, options=list(options))
        )
        self._database = ProtoReflectionDescriptorDatabase(self._channel)
        self._pool = descriptor_pool.DescriptorPool(self._database)

    def __enter__(self) -> Reflection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel."""
        self._channel.close()

    def ready(self, timeout_s: float) -> bool:
        """True once the channel is connected (False after `timeout_s`)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            return False
        return True

    def service_names(self) -> list[str]:
        """The full names of the services the server offers, sorted."""
        return sorted(self._database.get_services())

    def services(self) -> list[descriptor.ServiceDescriptor]:
        """Every service's descriptor, sorted by name."""
        return [self._pool.FindServiceByName(name) for name in self.service_names()]

    def method(self, path: str) -> descriptor.MethodDescriptor | None:
        """The method at "/package.Service/Method", or None if the server has no such one."""
        service, _, name = path.strip("/").rpartition("/")
        try:
            found: descriptor.MethodDescriptor | None = self._pool.FindServiceByName(
                service
            ).methods_by_name.get(name)
        except KeyError:
            return None
        return found

    def paths_named(self, name: str) -> list[str]:
        """The full paths of every method called `name`, in any service."""
        return [
            method_path(method)
            for service in self.services()
            for method in service.methods
            if method.name == name
        ]


def method_path(method: descriptor.MethodDescriptor) -> str:
    """ "/package.Service/Method"."""
    return f"/{method.containing_service.full_name}/{method.name}"


def payload_class(envelope: descriptor.Descriptor) -> type[Message] | None:
    """The message type at field 1 of an envelope (None for `bytes` or a Struct)."""
    field = envelope.fields_by_number.get(1)
    if field is None or field.message_type is None:
        return None
    if field.message_type.full_name == "google.protobuf.Struct":
        return None
    return message_factory.GetMessageClass(field.message_type)


def payload_name(envelope: descriptor.Descriptor) -> str:
    """What a method's field 1 carries: a message name, "JSON object" for the generic
    envelope's bytes (or a Struct), "-" when the method does not follow the convention."""
    field = envelope.fields_by_number.get(1)
    if field is None:
        return "-"
    if field.type == descriptor.FieldDescriptor.TYPE_BYTES:
        return "JSON object"
    if field.message_type is None:
        return "-"
    if field.message_type.full_name == "google.protobuf.Struct":
        return "JSON object"
    return str(field.message_type.full_name)


def types_of(method: descriptor.MethodDescriptor) -> PayloadTypes:
    """The payload types of a method's request and response envelopes."""
    return PayloadTypes(
        input_type=payload_class(method.input_type), output_type=payload_class(method.output_type)
    )
