"""A completion racing a status check leaves exactly one terminal record, on every interleaving.

The plugin's status checks wait on a gate the test opens, so a check can be held in flight
while a completion arrives; the test then lets the check answer RUNNING, the same result, a
different result, or FAILED, in a random order against the completion. Hundreds of rounds on the
fake clock take well under a second of wall time.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from asyncplugin.engine import CallKind, CheckOutcome, Engine, TaskStateError
from asyncplugin.protocol import TaskState
from asyncplugin.v1 import error_pb2, plugin_pb2
from tests.engine.conftest import MakeEngine, Serve
from tests.engine.plugins import Answer, done, failed, running

ROUNDS = 300
_TERMINAL_OUTCOMES = {CheckOutcome.SUCCEEDED, CheckOutcome.FAILED, CheckOutcome.CANCELLED}


class Gated:
    """Initiation answers RUNNING; each status check waits for the test to say what to answer."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.answer: asyncio.Future[Answer] | None = None

    async def __call__(self, request: plugin_pb2.InvokeRequest) -> Answer:
        if not request.is_status_check:
            return running({"job": request.context.task_id})
        self.answer = asyncio.get_running_loop().create_future()
        self.entered.set()
        return await self.answer


async def _settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def _one_round(engine: Engine, plugin: Gated, target: str, rng: random.Random) -> str:
    plugin.entered.clear()
    task_id = await engine.submit(target)
    async for update in engine.watch(task_id):
        if update.record.state is TaskState.RUNNING:
            break
    scenario = rng.choice(["before-check", "during-check"])
    answer_kind = rng.choice(["running", "same", "different", "failed"])
    completion = asyncio.ensure_future(engine.complete(task_id, data=b"pushed"))
    if scenario == "during-check":
        completion.cancel()
        await asyncio.gather(completion, return_exceptions=True)
        await plugin.entered.wait()  # the status check is in flight now
        completion = asyncio.ensure_future(engine.complete(task_id, data=b"pushed"))
        await _settle(rng.randrange(0, 30))
        assert plugin.answer is not None
        plugin.answer.set_result(
            {
                "running": running({"job": "still"}),
                "same": done(b"pushed"),
                "different": done(b"polled"),
                "failed": failed(error_pb2.Error(message="remote failure", code="REMOTE")),
            }[answer_kind]
        )
    refused_late = scenario == "during-check" and answer_kind in ("different", "failed")
    if refused_late:
        with pytest.raises(TaskStateError, match=r"is (SUCCEEDED|FAILED): it already ended"):
            await completion
    else:
        record, repeated = await completion
        assert record.state is TaskState.SUCCEEDED
        assert record.result == b"pushed"
        assert repeated == (scenario == "during-check" and answer_kind == "same")
    final = await engine.wait(task_id)
    history = await engine.checks(task_id)
    ends = [c for c in history if c.outcome in _TERMINAL_OUTCOMES and c.kind is not CallKind.CANCEL]
    assert len(ends) == 1, history
    assert history[-1] is ends[0] or history[-1] == ends[0]
    expected = {
        ("before-check", "running"): TaskState.SUCCEEDED,
        ("during-check", "running"): TaskState.SUCCEEDED,
        ("during-check", "same"): TaskState.SUCCEEDED,
        ("during-check", "different"): TaskState.SUCCEEDED,
        ("during-check", "failed"): TaskState.FAILED,
    }.get((scenario, answer_kind), TaskState.SUCCEEDED)
    assert final.state is expected
    if scenario == "during-check" and answer_kind == "different":
        assert final.result == b"polled"  # the check's end was first, and it stands
    if scenario == "before-check" and plugin.answer is not None and not plugin.answer.done():
        plugin.answer.set_result(running({}))
    return scenario + "/" + answer_kind


@pytest.mark.timeout(120)
async def test_completion_racing_a_status_check_records_one_end(
    make_engine: MakeEngine, serve: Serve
) -> None:
    plugin = Gated()
    server = await serve(plugin)
    engine = await make_engine()
    rng = random.Random(20260101)
    seen = [await _one_round(engine, plugin, server.target, rng) for _ in range(ROUNDS)]
    # Every interleaving was exercised.
    assert {"before-check/running", "during-check/running", "during-check/same"} <= set(seen)
    assert {"during-check/different", "during-check/failed"} <= set(seen)


async def test_completion_of_an_unknown_task(make_engine: MakeEngine) -> None:
    engine = await make_engine()
    with pytest.raises(KeyError, match="no task"):
        await engine.complete("0" * 32, data=b"")
