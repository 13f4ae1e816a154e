"""Observations: what a reference conformance plugin saw an engine send, one JSON line per call.

Each line is the canonical proto3 JSON of one `asyncplugin.conformance.v1.Observation`, so any
language can read the file. `request_from_observation` rebuilds the part of the request the
scenario interpreter reads, which lets the engine judge recompute what the plugin answered.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO

from google.protobuf import json_format
from google.protobuf import message as pb_message

from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.v1 import plugin_pb2, task_pb2

__all__ = [
    "ObservationLog",
    "observation_to_json",
    "observe",
    "read_observations",
    "receive_seconds",
    "request_from_observation",
]


def observe(
    request: plugin_pb2.InvokeRequest, *, receive_time: float
) -> conformance_pb2.Observation:
    """The Observation of one received request (the scenario name read from its payload)."""
    observation = conformance_pb2.Observation(
        task_id=request.context.task_id,
        check_number=request.context.check_number,
        is_status_check=request.is_status_check,
        cancel_requested=request.cancel_requested,
        idempotency_key=request.context.idempotency_key,
    )
    if request.status.HasField("remote_status_input"):
        observation.remote_status_input.CopyFrom(request.status.remote_status_input)
    if request.context.HasField("deadline"):
        observation.deadline.CopyFrom(request.context.deadline)
    observation.receive_time.FromNanoseconds(round(receive_time * 1e9))
    scenario = conformance_pb2.Scenario()
    try:
        scenario.ParseFromString(request.data)
    except pb_message.DecodeError:
        scenario.Clear()
    observation.scenario = scenario.name
    return observation


def receive_seconds(observation: conformance_pb2.Observation) -> float:
    """The observation's receive_time in epoch seconds."""
    return observation.receive_time.ToNanoseconds() / 1e9


def request_from_observation(
    observation: conformance_pb2.Observation, scenario: conformance_pb2.Scenario | None = None
) -> plugin_pb2.InvokeRequest:
    """The request as far as the observation tells: what the scenario interpreter reads."""
    request = plugin_pb2.InvokeRequest(
        context=plugin_pb2.RequestContext(
            task_id=observation.task_id,
            idempotency_key=observation.idempotency_key,
            check_number=observation.check_number,
        ),
        is_status_check=observation.is_status_check,
        cancel_requested=observation.cancel_requested,
    )
    if scenario is not None:
        request.data = scenario.SerializeToString(deterministic=True)
    if observation.HasField("deadline"):
        request.context.deadline.CopyFrom(observation.deadline)
    if observation.HasField("remote_status_input"):
        request.status.CopyFrom(task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING))
        request.status.remote_status_input.CopyFrom(observation.remote_status_input)
    return request


def observation_to_json(observation: conformance_pb2.Observation) -> str:
    """One line of canonical proto3 JSON (fields at their defaults included, for readers)."""
    fields = json_format.MessageToDict(observation, always_print_fields_with_no_presence=True)
    return json.dumps(fields, sort_keys=True, ensure_ascii=False)


class ObservationLog:
    """Keeps every Observation in memory and, if given a path, appends each as a JSON line.

    Lines are flushed one by one, so a judge can read the file while the plugin still serves,
    and nothing is lost if the plugin is killed. The file is appended to, never truncated.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.observations: list[conformance_pb2.Observation] = []
        self._file: IO[str] | None = (
            self.path.open("a", encoding="utf-8") if self.path is not None else None
        )

    def record(self, observation: conformance_pb2.Observation) -> None:
        """Keeps one observation (and writes its line)."""
        self.observations.append(observation)
        if self._file is not None:
            self._file.write(observation_to_json(observation) + "\n")
            self._file.flush()

    def close(self) -> None:
        """Closes the file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> ObservationLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def read_observations(
    lines: Iterable[str], *, source: str = "<lines>"
) -> list[conformance_pb2.Observation]:
    """Parses JSON lines of Observations (blank lines are skipped).

    Raises:
        ValueError: a line is not an Observation, naming the source and the line number.
    """
    out = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append(json_format.Parse(line, conformance_pb2.Observation()))
        except json_format.ParseError as err:
            raise ValueError(f"{source}:{number}: not an Observation: {err}") from err
    return out
