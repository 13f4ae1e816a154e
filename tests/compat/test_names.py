"""The Steamship names, one by one: what each maps to in the SDK."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import asyncplugin.compat.steamship as steamship
from asyncplugin import PluginError, Request, RequestContext
from asyncplugin import Response as SdkResponse
from asyncplugin import Task as SdkTask
from asyncplugin import TaskState as SdkTaskState
from asyncplugin.compat.steamship import (
    AttrDict,
    InvocableResponse,
    PluginRequest,
    PluginService,
    Response,
    SteamshipError,
    Task,
    TaskState,
    parse_state,
)
from asyncplugin.plugin.normalize import InvalidReturn


def test_exports_are_pinned() -> None:
    """The module's public names are exactly these."""
    assert steamship.__all__ == [
        "DEFAULT_ERROR_MESSAGE",
        "AttrDict",
        "InvocableResponse",
        "PluginRequest",
        "PluginRequestContext",
        "PluginService",
        "Response",
        "SteamshipError",
        "Task",
        "TaskState",
        "parse_state",
    ]
    for name in steamship.__all__:
        assert hasattr(steamship, name)


def test_task_states_in_both_spellings_are_the_sdk_members() -> None:
    """TaskState.running is TaskState.RUNNING is the SDK's RUNNING, for every state."""
    for state in SdkTaskState:
        assert getattr(TaskState, state.name) is state
        assert getattr(TaskState, state.name.lower()) is state


@pytest.mark.parametrize("text", ["running", "RUNNING", "Running"])
def test_string_states_parse_in_any_case(text: str) -> None:
    """A state's name as a string, in any case, is that state."""
    assert parse_state(text) is SdkTaskState.RUNNING
    assert Task(state=text, remote_status_input={}).state is SdkTaskState.RUNNING


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("runing", "STATE_UNKNOWN"),
        ("", "STATE_UNKNOWN"),
        (2, "STATE_UNKNOWN"),
        (None, "STATE_UNSPECIFIED"),
    ],
)
def test_bad_states_are_invalid_answers_naming_the_value(value: Any, rule: str) -> None:
    """A value that is not a state raises InvalidReturn (the SDK's INVALID_PLUGIN_RESPONSE)
    with the rule and, for a given value, the value itself."""
    with pytest.raises(InvalidReturn) as caught:
        Task(state=value)
    assert caught.value.problem == rule
    if value is not None:
        assert repr(value) in caught.value.detail


def test_task_is_the_sdk_task_with_none_as_empty() -> None:
    """Task is an SDK Task; None for a text field is "" and for a count is 0 (the protocol has
    no null strings); Steamship-only fields are refused by name."""
    task = Task(state="failed", status_message=None, status_code=None, retries=None)
    assert isinstance(task, SdkTask)
    assert (task.status_message, task.status_code, task.retries) == ("", "", 0)
    assert dataclasses.replace(task, status_message="x").status_message == "x"
    with pytest.raises(TypeError, match="user_id"):
        Task(state="running", user_id="u-1")


def test_steamship_error_positional_and_named() -> None:
    """SteamshipError("message") positionally, or every field by name; None means ""."""
    cause = ValueError("bad audio")
    err = SteamshipError("It failed.", "detail", "Try again.", "AUDIO", cause)
    assert isinstance(err, PluginError)
    assert (err.message, err.internal_message, err.suggestion, err.code) == (
        "It failed.",
        "detail",
        "Try again.",
        "AUDIO",
    )
    assert err.error is cause
    assert err.internalMessage == "detail"
    assert err.to_dict()["error"] == "bad audio"
    assert SteamshipError().message == "Undefined remote error"
    assert SteamshipError(message=None, code=None).code == ""
    envelope = SteamshipError(message="Some error", error=cause).to_proto()
    assert envelope.wrapped_message == "ValueError: bad audio"


def test_invocable_response_is_the_sdk_response() -> None:
    """data=, json= and status= map straight onto the SDK's Response; Response is the same."""
    assert Response is InvocableResponse
    assert isinstance(InvocableResponse(data={"a": 1}), SdkResponse)
    assert InvocableResponse(json={"a": 1}).data == {"a": 1}
    running = Task(state="running", remote_status_input={})
    assert InvocableResponse(status=running).status is running
    assert InvocableResponse(running).status is running  # positional, as in Steamship
    with pytest.raises(TypeError, match="not both"):
        InvocableResponse(data={}, json={})
    with pytest.raises(TypeError, match="string"):
        InvocableResponse(string="text")  # type: ignore[call-arg]


def test_invocable_response_error_is_a_failed_task() -> None:
    """error= makes a FAILED Task carrying the envelope; a non-Steamship exception is wrapped
    with its text; a given status keeps its other fields."""
    err = SteamshipError(message="No.", suggestion="Ask nicely.", code="REFUSED")
    failed = InvocableResponse(error=err).status
    assert failed is not None
    assert failed.state is SdkTaskState.FAILED
    assert failed.error is err
    assert (failed.status_message, failed.status_suggestion, failed.status_code) == (
        "No.",
        "Ask nicely.",
        "REFUSED",
    )
    wrapped = InvocableResponse(error=KeyError("job")).status
    assert wrapped is not None
    assert wrapped.error is not None
    assert wrapped.error.message == "'job'"
    assert isinstance(wrapped.error.error, KeyError)
    kept = InvocableResponse(
        status=Task(state="running", remote_status_message="half", remote_status_input={}),
        error=err,
    ).status
    assert kept is not None
    assert (kept.state, kept.remote_status_message) == (SdkTaskState.FAILED, "half")


def test_attr_dict_reads_keys_as_attributes() -> None:
    """request.data.data on a dict; nested dicts and dicts in lists too; missing keys are None;
    dict methods and _names stay what they are."""
    value = steamship.attr_dict({"data": "x", "file": {"blocks": [{"text": "t"}]}, "items": 3})
    assert isinstance(value, dict)
    assert isinstance(value, AttrDict)
    assert value.data == "x"
    assert value.file.blocks[0].text == "t"
    assert value.missing is None
    assert callable(value.items)
    assert value["items"] == 3
    with pytest.raises(AttributeError):
        value._private  # noqa: B018
    assert value == {"data": "x", "file": {"blocks": [{"text": "t"}]}, "items": 3}


def test_plugin_request_from_request_wraps_dict_payloads_only() -> None:
    """PluginRequest.from_request keeps every field and gives a dict payload attribute access."""
    status = SdkTask(state=SdkTaskState.RUNNING, remote_status_input={"job": "j"})
    request = Request(
        data={"data": "hello"},
        context=RequestContext(task_id="t-1", check_number=2),
        status=status,
        is_status_check=True,
        cancel_requested=True,
    )
    converted = PluginRequest.from_request(request)
    assert isinstance(converted, Request)
    assert converted.data.data == "hello"
    assert converted.context == request.context
    assert converted.status is status
    assert converted.is_status_check
    assert converted.cancel_requested
    assert converted.remote_status_input == {"job": "j"}
    message = RequestContext()
    typed = PluginRequest.from_request(Request(data=message, context=message))
    assert typed.data is message


def test_plugin_service_declares_types_and_stays_abstract() -> None:
    """PluginService[In, Out] sets the payload types; run is abstract."""

    class Base(PluginService[dict[str, Any], dict[str, Any]]):
        pass

    assert (Base.input_type, Base.output_type) == (dict, dict)
    assert Base.__abstractmethods__ == frozenset({"run"})

    class Concrete(Base):
        def run(self, request: PluginRequest[dict[str, Any]]) -> dict[str, Any]:
            return {}

    made = Concrete(config={"api_key": "k"})
    assert made.config.api_key == "k"
    assert made.client is None
