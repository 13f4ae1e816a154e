"""Direct probes: calls the reference engine never sends, to check a plugin's own verification.

The echo-verification probe sends two status checks of a rotating scenario by hand: one echoing
the previous answer's token (it must be accepted) and one echoing a stale token (it must be
answered FAILED with code REMOTE_STATUS_INPUT_NOT_ECHOED). An engine echoes correctly, so only a
probe can show that the plugin really verifies the echo.
"""

from __future__ import annotations

import time
import uuid

from asyncplugin.conformance.interpreter import expected_token
from asyncplugin.conformance.v1 import conformance_pb2
from asyncplugin.engine import Transport, TransportError
from asyncplugin.engine.transport import Metadata
from asyncplugin.protocol import TaskState
from asyncplugin.v1 import plugin_pb2, task_pb2

from .answers import answer_rule_failures, answer_state, running_answer_failures
from .findings import Exchange, Failure, FailureLog
from .requirements import CITATIONS, NOT_ECHOED

__all__ = ["PROBE_CHECK", "judge_probe", "probe_request", "run_probe"]

PROBE_CHECK = 2
"""The check number the probe's status checks carry (their echo should be check 1's token)."""


def probe_request(
    scenario: conformance_pb2.Scenario, task_id: str, *, echoed_check: int
) -> plugin_pb2.InvokeRequest:
    """Status check PROBE_CHECK of `scenario`, echoing the token of check `echoed_check`."""
    status = task_pb2.Task(
        task_id=task_id, state=task_pb2.TASK_STATE_RUNNING, check_count=PROBE_CHECK - 1
    )
    status.remote_status_input.update(
        {"scenario": scenario.name, "token": expected_token(task_id, echoed_check)}
    )
    return plugin_pb2.InvokeRequest(
        data=scenario.SerializeToString(deterministic=True),
        context=plugin_pb2.RequestContext(
            plugin_id="conformance",
            task_id=task_id,
            idempotency_key=f"key-{task_id}",
            check_number=PROBE_CHECK,
            engine="asyncplugin-conformance-probe",
        ),
        status=status,
        is_status_check=True,
    )


async def _send(
    transport: Transport,
    target: str,
    method: str,
    request: plugin_pb2.InvokeRequest,
    *,
    timeout_s: float,
    metadata: Metadata,
) -> Exchange:
    started = time.time()
    try:
        answer = await transport.call(
            target, method, request.SerializeToString(), timeout_s=timeout_s, metadata=metadata
        )
    except TransportError as err:
        return Exchange(
            request=request,
            response=None,
            grpc_code=err.code_name,
            error_message=err.error.message,
            started=started,
            finished=time.time(),
        )
    return Exchange(request=request, response=answer, started=started, finished=time.time())


async def run_probe(
    transport: Transport,
    target: str,
    method: str,
    scenario: conformance_pb2.Scenario,
    *,
    timeout_s: float,
    metadata: Metadata = (),
) -> tuple[list[Failure], str]:
    """Sends the echo-verification probe; returns its failures and a one-line summary."""
    task_id = f"conformance-probe-{uuid.uuid4().hex}"
    good = await _send(
        transport,
        target,
        method,
        probe_request(scenario, task_id, echoed_check=PROBE_CHECK - 1),
        timeout_s=timeout_s,
        metadata=metadata,
    )
    stale = await _send(
        transport,
        target,
        method,
        probe_request(scenario, task_id, echoed_check=0),
        timeout_s=timeout_s,
        metadata=metadata,
    )
    summary = f"the right echo was answered {_said(good)}; a stale echo was answered {_said(stale)}"
    return judge_probe(scenario, good, stale), summary


def _said(exchange: Exchange) -> str:
    answer = exchange.answer()
    if answer is None:
        return exchange.grpc_code or "unreadably"
    state = answer_state(answer)
    if state is TaskState.FAILED:
        return f"FAILED {answer.status.error.code}"
    return state.name if state is not None else "unreadably"


def _token(exchange: Exchange) -> str:
    token = exchange.request.status.remote_status_input.fields.get("token")
    return token.string_value if token is not None else ""


def judge_probe(
    scenario: conformance_pb2.Scenario, good: Exchange, stale: Exchange
) -> list[Failure]:
    """Judges the echo-verification probe of a rotating scenario.

    `good` echoes the previous answer's token: it must be answered RUNNING with the next token
    (or with data, if the scenario is done by then). `stale` echoes an older token: it must be
    answered FAILED with code REMOTE_STATUS_INPUT_NOT_ECHOED.
    """
    found = FailureLog(citations=CITATIONS)
    found.extend(answer_rule_failures((good, stale)))
    for exchange in (good, stale):
        if exchange.response is None:
            found.add(
                "TRANSPORT_ERROR",
                f"{exchange.label} failed with gRPC {exchange.grpc_code}: {exchange.error_message}",
            )
    good_answer = good.answer()
    if good_answer is not None:
        state = answer_state(good_answer)
        if state is TaskState.FAILED:
            error = good_answer.status.error
            found.add(
                "ECHO_VERIFICATION",
                f"{good.label} echoing the right token {_token(good)!r} was answered FAILED "
                f"({error.code}: {error.message})",
            )
        elif state is TaskState.RUNNING:
            found.extend(running_answer_failures(scenario, good, good_answer.status))
    stale_answer = stale.answer()
    if stale_answer is not None:
        state = answer_state(stale_answer)
        code = stale_answer.status.error.code
        if state is not TaskState.FAILED or code != NOT_ECHOED:
            got = f"FAILED ({code or 'no code'})" if state is TaskState.FAILED else _said(stale)
            found.add(
                "ECHO_VERIFICATION",
                f"{stale.label} echoing the stale token {_token(stale)!r} was answered {got}; "
                f"expected FAILED with code {NOT_ECHOED} (the plugin must verify the echo)",
            )
    return found.result()
