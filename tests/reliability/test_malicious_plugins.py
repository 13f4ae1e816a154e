"""Malicious plugins: every bad answer fails its own task with a named error, and only that task.

The answers come from tests/reliability/bad_answers.py (raw bytes, so they can break what no SDK
would let a plugin break). The in-process tests run on the engine tests' FakeClock; the memory
test runs the engine and a raw-bytes plugin as processes of their own and reads the engine's
peak RSS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc import aio

from asyncplugin.engine import CheckOutcome, SqliteStore, TaskOptions, TaskRecord
from asyncplugin.protocol import TaskState, decode_payload, error_to_status
from asyncplugin.v1 import error_pb2, plugin_pb2, task_pb2
from tests.engine.conftest import POLICY, MakeEngine, Serve
from tests.engine.plugins import Answer, Job
from tests.reliability.bad_answers import CATALOGUE
from tests.reliability.procs import Child
from tests.reliability.sizes import LONG


async def _behave(request: plugin_pb2.InvokeRequest) -> Answer:
    payload = decode_payload(request.data, dict)
    if "bad" in payload:
        return CATALOGUE[str(payload["bad"])].build(request)
    if payload.get("forever"):
        return await Job(forever=True)(request)
    return await Job(checks=2, result=b"good")(request)


def _outcome(record: TaskRecord) -> tuple[str, str]:
    error = record.error_proto()
    return error.code, error.metadata.get("rule", "")


async def test_each_bad_answer_fails_only_its_task(make_engine: MakeEngine, serve: Serve) -> None:
    """One engine, one plugin: each of the 25 bad answers yields its named outcome for its own
    task, two RUNNING-forever tasks end by deadline and by max_checks, and 20 well-behaved
    tasks on the same plugin all SUCCEED."""
    plugin = await serve(_behave)
    engine = await make_engine()
    bad = {name: await engine.submit(plugin.target, payload={"bad": name}) for name in CATALOGUE}
    forever = {
        "running_forever_deadline": await engine.submit(
            plugin.target, payload={"forever": True}, options=TaskOptions(deadline_s=300.0)
        ),
        "running_forever_max_checks": await engine.submit(
            plugin.target,
            payload={"forever": True},
            options=TaskOptions(policy=dataclasses.replace(POLICY, max_checks=7)),
        ),
    }
    good = [await engine.submit(plugin.target, payload={"i": i}) for i in range(20)]
    records = {name: await engine.wait(task_id) for name, task_id in {**bad, **forever}.items()}
    good_records = await asyncio.gather(*(engine.wait(task_id) for task_id in good))

    expected = {name: (entry.code, entry.rule) for name, entry in CATALOGUE.items()}
    expected["running_forever_deadline"] = ("DEADLINE_EXCEEDED", "")
    expected["running_forever_max_checks"] = ("MAX_CHECKS_EXCEEDED", "")
    assert {name: _outcome(record) for name, record in records.items()} == expected
    for name, entry in CATALOGUE.items():
        state = TaskState.SUCCEEDED if not entry.code else TaskState.FAILED
        assert records[name].state is state, name
    assert {(r.state, r.result) for r in good_records} == {(TaskState.SUCCEEDED, b"good")}
    assert records["running_forever_max_checks"].check_count == 7
    assert records["running_forever_deadline"].end_time == pytest.approx(
        records["running_forever_deadline"].deadline
    )


async def test_unknown_fields_in_a_running_task_are_neither_stored_nor_echoed(
    make_engine: MakeEngine, serve: Serve
) -> None:
    """A plugin stuffing 1 MiB of unknown fields into every RUNNING Task cannot make the engine
    keep them (in memory or in the store) nor send them back on each status check."""
    plugin = await serve(_behave)
    engine = await make_engine()
    record = await engine.invoke(plugin.target, payload={"bad": "unknown_fields_in_task"})
    assert record.state is TaskState.SUCCEEDED
    checks = [r for r in plugin.calls() if r.is_status_check]
    assert len(checks) == 3
    assert max(r.ByteSize() for r in checks) < 1024
    for request in checks:
        known = task_pb2.Task()
        known.CopyFrom(request.status)
        known.DiscardUnknownFields()
        assert known.ByteSize() == request.status.ByteSize()
    stored = await engine.store.get(record.task_id)
    assert stored is not None
    assert len(stored.status or b"") < 1024


async def test_corrupt_rich_error_status_fails_the_task_with_the_grpc_code(
    make_engine: MakeEngine,
) -> None:
    """A plugin failing the RPC with a google.rpc.Status whose packed Error is corrupt gets its
    task FAILED with the call's own code and message, not an engine error."""
    status = error_to_status(error_pb2.Error(message="quota", code="QUOTA", rpc_code=9))
    status.details[0].value = b"\xff\xff\xff corrupt"

    async def refuse(raw: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        await context.abort(
            grpc.StatusCode.FAILED_PRECONDITION,
            "quota",
            trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),),
        )
        return b""

    server = aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "asyncplugin.v1.PluginService",
                {"Invoke": grpc.unary_unary_rpc_method_handler(refuse)},
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        engine = await make_engine()
        record = await engine.invoke(f"127.0.0.1:{port}")
    finally:
        await server.stop(None)
    error = record.error_proto()
    assert (error.code, error.message, error.rpc_code) == ("QUOTA", "quota", 9)
    [entry] = await engine.checks(record.task_id)
    assert (entry.outcome, entry.grpc_code) == (CheckOutcome.RPC_ERROR, "FAILED_PRECONDITION")


async def _flood(tmp_path: Path, *, good: int, bad_each: int, bloated: int) -> dict[str, int]:
    """Runs an engine process against a raw-bytes plugin process; returns outcome counts and
    the engine's peak RSS (KiB) under "rss_kb"."""
    plugin = Child("tests.reliability.bad_plugin", log=tmp_path / "plugin.log")
    async with plugin:
        port = int((await plugin.wait_for("PORT ", timeout_s=30)).split()[1])
        ends_at = time.time() + 5.0  # every good task answers SUCCEEDED at this one instant
        wanted: list[dict[str, object]] = [
            {"key": f"good-{i}", "payload": {"ends_at": ends_at}} for i in range(good)
        ]
        for name in CATALOGUE:
            count = bloated if name == "unknown_fields_in_task" else bad_each
            wanted += [{"key": f"{name}-{i}", "payload": {"bad": name}} for i in range(count)]
        submit = tmp_path / "submit.json"
        submit.write_text(json.dumps(wanted))
        policy = {"initial_interval_s": 0.2, "min_interval_s": 0.1, "max_interval_s": 10.0}
        engine = Child(
            "tests.reliability.engine_proc",
            "--store",
            str(tmp_path / "tasks.db"),
            "--target",
            f"127.0.0.1:{port}",
            "--submit",
            str(submit),
            "--policy",
            json.dumps(policy),
            "--until-done",
            log=tmp_path / "engine.log",
        )
        async with engine:
            done = await engine.wait_for("DONE", timeout_s=120)
    counts = Counter(
        " ".join(line.split()[2:3] + line.split()[4:6]) for line in engine.matching("F ")
    )
    keys = {str(item["key"]): str(item["payload"]) for item in wanted}
    assert sum(counts.values()) == len(keys)
    store = SqliteStore(tmp_path / "tasks.db")
    await store.open()
    try:
        by_key = {r.idempotency_key: r for r in await store.list(limit=None)}
    finally:
        await store.close()
    for key, record in by_key.items():
        name = key.rsplit("-", 1)[0]
        if name == "good":
            assert record.state is TaskState.SUCCEEDED, key
        else:
            entry = CATALOGUE[name]
            assert _outcome(record) == (entry.code, entry.rule), key
    return {**counts, "rss_kb": int(done.split()[1])}


@pytest.mark.timeout(180)
async def test_thousands_of_tasks_answering_at_once_keep_memory_bounded(tmp_path: Path) -> None:
    """2,000 tasks answer SUCCEEDED at the same instant while 10 tasks per bad answer (250) and
    200 tasks stuffing 1 MiB of unknown fields into every RUNNING answer run beside them: each
    gets its own outcome, and the engine process's peak RSS stays bounded. Typical peaks are
    ~100 MiB, but a loaded machine lets more 1 MiB answers sit in gRPC's buffers at once (307 MiB
    seen once in a full suite run), so the bound here is a sanity ceiling of 512 MiB; that the
    unknown fields are neither kept nor echoed is pinned exactly by
    test_unknown_fields_in_a_running_task_are_neither_stored_nor_echoed."""
    good, bad_each, bloated = (10_000, 10, 200) if LONG else (2000, 10, 200)
    figures = await _flood(tmp_path, good=good, bad_each=bad_each, bloated=bloated)
    print(f"flood: {figures}")
    assert figures["SUCCEEDED - -"] == good + bloated
    assert figures["rss_kb"] < 512 * 1024
