"""The golden wire vectors: each envelope message, built once here and checked in under testdata/.

Run `python tests/golden_cases.py` to (re)write testdata/golden/*.binpb and *.json and
testdata/invalid/*.binpb. Tests never rewrite them: they decode the checked-in files and
re-encode them byte for byte, so a change in the wire format shows up as a failing test.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.message import Message

from asyncplugin.protocol import dict_to_struct
from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2

ROOT = Path(__file__).resolve().parent.parent
GOLDEN_DIR = ROOT / "testdata" / "golden"
INVALID_DIR = ROOT / "testdata" / "invalid"

_T0 = "2026-11-27T10:00:00Z"
_DEADLINE = "2026-11-27T11:00:00Z"


def _context(check_number: int) -> plugin_pb2.RequestContext:
    ctx = plugin_pb2.RequestContext(
        plugin_id="transcriber",
        plugin_instance_id="transcriber-eu",
        task_id="t-0001",
        idempotency_key="idem-7f3a",
        check_number=check_number,
        engine="asyncplugin-python/0.1.0",
    )
    ctx.deadline.FromJsonString(_DEADLINE)
    return ctx


def _payload() -> bytes:
    return dict_to_struct(
        {"audio_url": "https://example.com/talk.wav", "language": "en-GB"}
    ).SerializeToString(deterministic=True)


def _running_task() -> task_pb2.Task:
    task = task_pb2.Task(
        task_id="t-0001",
        state=task_pb2.TASK_STATE_RUNNING,
        status_message="Transcribing",
        remote_status_message="queued behind 3 jobs",
        check_count=2,
        max_retries=5,
    )
    task.remote_status_input.CopyFrom(dict_to_struct({"remote_job_id": "j-42", "attempt": 1}))
    task.remote_status_output.CopyFrom(dict_to_struct({"queue_position": 3, "eta_s": 12.5}))
    task.progress.CopyFrom(task_pb2.Progress(fraction=0.4, done=4, total=10, stage="transcribing"))
    task.check_after.FromSeconds(30)
    task.create_time.FromJsonString(_T0)
    task.update_time.FromJsonString("2026-11-27T10:00:07Z")
    task.start_time.FromJsonString(_T0)
    task.next_check_time.FromJsonString("2026-11-27T10:00:37Z")
    return task


def _error() -> error_pb2.Error:
    return error_pb2.Error(
        message="The audio file could not be decoded.",
        internal_message="ffmpeg exited 1: invalid data found when processing input",
        suggestion="Upload a WAV or MP3 file.",
        code="UNSUPPORTED_AUDIO_FORMAT",
        rpc_code=3,
        domain="transcriber.example.com",
        metadata={"format": "ogg", "max_seconds": "600"},
        wrapped_error=error_pb2.Error(
            message="Remote job failed.",
            code="REMOTE_JOB_FAILED",
            wrapped_message="HTTPError: 422 Unprocessable Entity",
        ),
    )


def request_initiate() -> Message:
    return plugin_pb2.InvokeRequest(data=_payload(), context=_context(0))


def request_status_check() -> Message:
    return plugin_pb2.InvokeRequest(
        data=_payload(), context=_context(3), status=_running_task(), is_status_check=True
    )


def request_cancel() -> Message:
    return plugin_pb2.InvokeRequest(
        data=_payload(),
        context=_context(4),
        status=_running_task(),
        is_status_check=True,
        cancel_requested=True,
    )


def response_succeeded() -> Message:
    data = dict_to_struct({"text": "hello world", "word_count": 2})
    return plugin_pb2.InvokeResponse(data=data.SerializeToString(deterministic=True))


def response_succeeded_empty_data() -> Message:
    return plugin_pb2.InvokeResponse(
        data=b"", status=task_pb2.Task(state=task_pb2.TASK_STATE_SUCCEEDED)
    )


def response_running() -> Message:
    task = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING, status_message="Transcribing")
    task.remote_status_input.CopyFrom(dict_to_struct({"remote_job_id": "j-42", "attempt": 1}))
    task.progress.CopyFrom(task_pb2.Progress(fraction=0.4, stage="transcribing"))
    task.check_after.FromSeconds(30)
    return plugin_pb2.InvokeResponse(status=task)


def response_running_empty_input() -> Message:
    task = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING)
    task.remote_status_input.SetInParent()
    return plugin_pb2.InvokeResponse(status=task)


def response_failed() -> Message:
    task = task_pb2.Task(
        state=task_pb2.TASK_STATE_FAILED,
        status_message="The audio file could not be decoded.",
        status_suggestion="Upload a WAV or MP3 file.",
        status_code="UNSUPPORTED_AUDIO_FORMAT",
        error=_error(),
    )
    return plugin_pb2.InvokeResponse(status=task)


def response_cancelled() -> Message:
    return plugin_pb2.InvokeResponse(
        status=task_pb2.Task(state=task_pb2.TASK_STATE_CANCELLED, status_message="Stopped")
    )


def task_full() -> Message:
    task = _running_task()
    task.retries = 1
    return task


def error_full() -> Message:
    return _error()


GOLDEN: dict[str, Callable[[], Message]] = {
    fn.__name__: fn
    for fn in (
        request_initiate,
        request_status_check,
        request_cancel,
        response_succeeded,
        response_succeeded_empty_data,
        response_running,
        response_running_empty_input,
        response_failed,
        response_cancelled,
        task_full,
        error_full,
    )
}
"""Name -> builder. The name's prefix says the message type (see MESSAGE_TYPES)."""

MESSAGE_TYPES: dict[str, type[Message]] = {
    "request": plugin_pb2.InvokeRequest,
    "response": plugin_pb2.InvokeResponse,
    "task": task_pb2.Task,
    "error": error_pb2.Error,
}


def message_type(name: str) -> type[Message]:
    """The message class of a vector, from its name's prefix."""
    return MESSAGE_TYPES[name.split("_", 1)[0]]


def _invalid_running_without_input() -> Message:
    return plugin_pb2.InvokeResponse(status=task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING))


def _invalid_unspecified_state() -> Message:
    return plugin_pb2.InvokeResponse(status=task_pb2.Task(status_message="forgot the state"))


def _invalid_unknown_state() -> Message:
    return plugin_pb2.InvokeResponse(status=task_pb2.Task(state=99))  # type: ignore[arg-type]


def _invalid_empty() -> Message:
    return plugin_pb2.InvokeResponse()


def _invalid_failed_without_error() -> Message:
    return plugin_pb2.InvokeResponse(status=task_pb2.Task(state=task_pb2.TASK_STATE_FAILED))


def _invalid_data_with_running() -> Message:
    task = task_pb2.Task(state=task_pb2.TASK_STATE_RUNNING)
    task.remote_status_input.SetInParent()
    return plugin_pb2.InvokeResponse(data=b"\x0a\x00", status=task)


def _invalid_error_metadata() -> Message:
    error = error_pb2.Error(message="m", metadata={f"k{i:02d}": "v" for i in range(65)})
    return plugin_pb2.InvokeResponse(
        status=task_pb2.Task(state=task_pb2.TASK_STATE_FAILED, error=error)
    )


def _invalid_waiting() -> Message:
    return plugin_pb2.InvokeResponse(status=task_pb2.Task(state=task_pb2.TASK_STATE_WAITING))


INVALID: dict[str, tuple[Callable[[], Message], str]] = {
    "response_running_without_remote_status_input": (
        _invalid_running_without_input,
        "RUNNING_WITHOUT_REMOTE_STATUS_INPUT",
    ),
    "response_state_unspecified": (_invalid_unspecified_state, "STATE_UNSPECIFIED"),
    "response_state_unknown": (_invalid_unknown_state, "STATE_UNKNOWN"),
    "response_no_data_or_status": (_invalid_empty, "NO_DATA_OR_STATUS"),
    "response_failed_without_error": (_invalid_failed_without_error, "FAILED_WITHOUT_ERROR"),
    "response_data_with_running": (_invalid_data_with_running, "DATA_WITH_UNFINISHED_STATE"),
    "response_waiting": (_invalid_waiting, "STATE_NOT_ALLOWED_IN_ANSWER"),
    "response_error_metadata_too_large": (_invalid_error_metadata, "ERROR_METADATA_TOO_LARGE"),
}
"""Name -> (builder, the rule an InvokeResponse decoded from it breaks first)."""


def to_canonical_json(message: Message) -> str:
    """Canonical proto3 JSON (lowerCamelCase names, enum names), keys sorted, 2-space indent."""
    return json.dumps(json_format.MessageToDict(message), indent=2, sort_keys=True) + "\n"


def write_all() -> None:
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    INVALID_DIR.mkdir(parents=True, exist_ok=True)
    for name, build in GOLDEN.items():
        message = build()
        (GOLDEN_DIR / f"{name}.binpb").write_bytes(message.SerializeToString(deterministic=True))
        (GOLDEN_DIR / f"{name}.json").write_text(to_canonical_json(message))
    manifest = {}
    for name, (build, rule) in INVALID.items():
        (INVALID_DIR / f"{name}.binpb").write_bytes(build().SerializeToString(deterministic=True))
        manifest[name] = {"message": "asyncplugin.v1.InvokeResponse", "rule": rule}
    (INVALID_DIR / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    )


if __name__ == "__main__":
    write_all()
    print(f"wrote {len(GOLDEN)} golden and {len(INVALID)} invalid vectors", file=sys.stderr)
