"""A short tour of one async conversation at the protocol level (no servers).

Run with `make demo` until the engine lands; it builds each message an engine and a plugin
exchange, validates it with the shared protocol rules, and prints it as canonical JSON.
"""

from __future__ import annotations

from google.protobuf import json_format
from google.protobuf.message import Message

from asyncplugin.protocol import (
    Task,
    TaskState,
    check_request,
    check_response,
    dict_to_struct,
    encode_payload,
)
from asyncplugin.v1 import plugin_pb2


def show(title: str, message: Message) -> None:
    print(f"--- {title}")
    print(json_format.MessageToJson(message, indent=2))


def main() -> None:
    payload = encode_payload({"audio_url": "https://example.com/talk.wav"})
    start = plugin_pb2.InvokeRequest(
        data=payload, context=plugin_pb2.RequestContext(task_id="t-1", idempotency_key="k-1")
    )
    check_request(start)
    show("engine -> plugin: new work", start)

    running = Task(state=TaskState.RUNNING, remote_status_input={"remote_job_id": "j-42"})
    answer = plugin_pb2.InvokeResponse(status=running.to_proto())
    check_response(answer)
    show("plugin -> engine: RUNNING, check back", answer)

    check = plugin_pb2.InvokeRequest(
        data=payload,
        context=plugin_pb2.RequestContext(task_id="t-1", idempotency_key="k-1", check_number=1),
        status=answer.status,
        is_status_check=True,
    )
    check_request(check)
    show("engine -> plugin: status check 1 (remote_status_input echoed)", check)

    done = plugin_pb2.InvokeResponse(
        data=dict_to_struct({"text": "hello world"}).SerializeToString()
    )
    check_response(done)
    show("plugin -> engine: data (SUCCEEDED)", done)


if __name__ == "__main__":
    main()
