"""What the conformance judges read and write: exchanges with a plugin, and named failures."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from google.protobuf import json_format
from google.protobuf import message as pb_message

from asyncplugin.v1 import error_pb2, plugin_pb2

__all__ = ["Exchange", "Failure", "FailureLog", "call_label", "message_diff", "to_json"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """One named way a plugin (or an engine) broke what the protocol requires.

    Attributes:
        name: an UPPER_SNAKE name: a protocol rule from plugin.proto, or a kit requirement.
        message: what happened, naming the call.
        citation: where the requirement is written down (file, message/field or rule).
    """

    name: str
    message: str
    citation: str = ""

    def __str__(self) -> str:
        text = f"{self.name}: {self.message}"
        return f"{text} ({self.citation})" if self.citation else text


@dataclass(slots=True)
class FailureLog:
    """Collects failures, folding later ones of the same name into the first ("and 2 more").

    Args:
        citations: the citation of each failure name, used when `add` is given none.
    """

    citations: Mapping[str, str] = field(default_factory=dict)
    items: list[Failure] = field(default_factory=list)
    extra: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, message: str, citation: str | None = None) -> None:
        """Adds a failure (or counts it, if one of this name is already in)."""
        if any(item.name == name for item in self.items):
            self.extra[name] = self.extra.get(name, 0) + 1
            return
        cite = citation if citation is not None else self.citations.get(name, "")
        self.items.append(Failure(name=name, message=message, citation=cite))

    def extend(self, failures: Iterable[Failure]) -> None:
        """Adds every failure."""
        for item in failures:
            self.add(item.name, item.message, item.citation)

    def result(self) -> list[Failure]:
        """The failures, in the order first seen."""
        out = []
        for item in self.items:
            more = self.extra.get(item.name, 0)
            if more:
                item = Failure(
                    name=item.name,
                    message=f"{item.message} (and {more} more like it)",
                    citation=item.citation,
                )
            out.append(item)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """One call to the plugin: the request sent and the raw answer, or the gRPC error.

    Attributes:
        request: the InvokeRequest sent.
        response: the answer's bytes; None when the call failed.
        grpc_code: the gRPC status code's name of a failed call ("" when answered).
        error_message: the failed call's error message.
        started: when the call was sent (epoch seconds).
        finished: when it ended.
    """

    request: plugin_pb2.InvokeRequest
    response: bytes | None
    grpc_code: str = ""
    error_message: str = ""
    started: float = 0.0
    finished: float = 0.0

    @property
    def task_id(self) -> str:
        """The request's context.task_id."""
        return self.request.context.task_id

    @property
    def check_number(self) -> int:
        """The request's context.check_number."""
        return self.request.context.check_number

    @property
    def retries(self) -> int:
        """The request's status.retries (0 on an initiating call)."""
        return self.request.status.retries

    @property
    def label(self) -> str:
        """The call in words: "the initiating call", "check 2", "retry 1 of check 2"..."""
        return call_label(self.request)

    def answer(self) -> plugin_pb2.InvokeResponse | None:
        """The decoded answer; None when the call failed or the bytes do not decode."""
        if self.response is None:
            return None
        try:
            return plugin_pb2.InvokeResponse.FromString(self.response)
        except (pb_message.DecodeError, RecursionError):
            return None


def call_label(request: plugin_pb2.InvokeRequest) -> str:
    """A call in words, for failure messages."""
    number = request.context.check_number
    if request.cancel_requested:
        return f"the cancel request (check {number})"
    if not request.is_status_check:
        return "the initiating call" if number == 0 else f"the initiating call (check {number})"
    retries = request.status.retries
    return f"retry {retries} of check {number}" if retries else f"check {number}"


def message_diff(want: pb_message.Message, got: pb_message.Message, path: str) -> list[str]:
    """Field-by-field differences between two messages of one type, as readable sentences."""
    out: list[str] = []
    for descriptor in want.DESCRIPTOR.fields:
        name = descriptor.name
        where = f"{path}.{name}"
        want_value, got_value = getattr(want, name), getattr(got, name)
        if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
            if dict(want_value) != dict(got_value):
                out.append(f"{where} is {dict(got_value)!r}; expected {dict(want_value)!r}")
        elif descriptor.is_repeated:
            if list(want_value) != list(got_value):
                out.append(f"{where} is {list(got_value)!r}; expected {list(want_value)!r}")
        elif descriptor.message_type is not None:
            has_want, has_got = want.HasField(name), got.HasField(name)
            if has_want != has_got:
                state = "set" if has_got else "absent"
                out.append(f"{where} is {state}; expected it {'set' if has_want else 'absent'}")
            elif has_want and want_value != got_value:
                if isinstance(want_value, error_pb2.Error):
                    out.extend(message_diff(want_value, got_value, where))
                else:
                    out.append(f"{where} is {to_json(got_value)}; expected {to_json(want_value)}")
        elif want_value != got_value or (
            descriptor.has_presence and want.HasField(name) != got.HasField(name)
        ):
            out.append(f"{where} is {got_value!r}; expected {want_value!r}")
    return out


def to_json(message: pb_message.Message) -> str:
    """A message as one line of canonical proto3 JSON, keys sorted."""
    return json.dumps(json_format.MessageToDict(message), sort_keys=True, ensure_ascii=False)
