"""The asynchronous plugin example from Steamship's documentation, with only its imports changed.

No base class, `run` routing on `is_status_check`, `request.data.data`, a RUNNING Task with
`remote_status_input`, `TaskState.running` in lower case, and `raise SteamshipError(...)` (the
"errors:" part of that example, placed where the remote job reports a failure). `InputType`,
`OutputType`, `api_client` and `some_output_object` are what the example leaves to the reader:
here a fake remote API (tests replace `api_client` with a fresh one).
"""

from __future__ import annotations

from typing import Union

from asyncplugin.compat.steamship import PluginRequest, Response, SteamshipError, Task, TaskState
from tests.compat.fake_remote_api import FakeApi

InputType = dict
OutputType = dict
some_output_object = {"transcript": "hello world", "words": 2}
api_client = FakeApi()


# ---- the plugin, as written for Steamship ------------------------------------------------------
class SomePlugin:  # no base class required by the docs' example
    def run(self, request: PluginRequest[InputType]) -> Union[OutputType, Response[OutputType]]:
        if request.is_status_check:
            return self.check_status(request)
        else:
            return self.initiate_work(request)

    def initiate_work(self, request):
        remote_job_id = api_client.do_something(request.data.data)
        return Response(
            status=Task(
                state=TaskState.RUNNING, remote_status_input={"remote_job_id": remote_job_id}
            )
        )

    def check_status(self, request):
        remote_job_id = request.remote_status_input.get("remote_job_id")
        if api_client.has_failed(remote_job_id):
            raise SteamshipError(
                message="Some error message", error=api_client.error_of(remote_job_id)
            )
        if api_client.is_complete(remote_job_id):
            return Response(data=some_output_object)
        return Response(
            status=Task(
                state=TaskState.running, remote_status_input={"remote_job_id": remote_job_id}
            )
        )
