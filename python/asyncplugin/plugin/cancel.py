"""The SDK's answer to a cancel request that the plugin's `run` treated as a status check.

A cancel request is a status check with `cancel_requested` set (and `is_status_check` true). The
default `run` routes it to `cancel_work`; a `run` override that routes on `is_status_check`
alone goes on checking the remote work and answers RUNNING, or data if the work happens to be
done. The engine records the task CANCELLED whatever the answer, so such an answer would only
mislead whoever reads the history ("RUNNING" after a cancel). The SDK therefore sends
CANCELLED with code CANCEL_NOT_HANDLED and a message saying the remote work was not stopped,
and logs a warning for the plugin's author. FAILED and CANCELLED answers pass through.
"""

from __future__ import annotations

from typing import Any

from asyncplugin.protocol import Response, Task, TaskState

CANCEL_NOT_HANDLED = "CANCEL_NOT_HANDLED"
"""Status code of the CANCELLED answer sent for a plugin whose `run` ignored a cancel request."""

_GOES_ON = frozenset({TaskState.RUNNING, TaskState.SUCCEEDED})


def ignored_cancel(result: Any) -> bool:
    """True if `result`, a handler's answer to a cancel request, goes on as if nothing was
    asked: RUNNING, or data. Invalid answers (None, a bare Task) are left to be reported."""
    if isinstance(result, Response):
        if result.status is None:
            return result.data is not None
        return result.status.state in _GOES_ON
    return result is not None and not isinstance(result, Task)


def cancel_not_handled() -> Response[Any]:
    """The CANCELLED answer sent instead of one that ignored the cancel request."""
    return Response(
        status=Task(
            state=TaskState.CANCELLED,
            status_message="The task is cancelled, but the plugin did not stop the remote work "
            "(it answered the cancel request as a status check).",
            status_code=CANCEL_NOT_HANDLED,
        )
    )
