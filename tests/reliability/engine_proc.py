"""An engine process for the fault-injection tests, to be killed with SIGKILL at any point.

    python -m tests.reliability.engine_proc --store tasks.db --target 127.0.0.1:N \
        --submit keys.json [--policy JSON] [--retry JSON] [--until-done] [--lease JSON]

`--store` is a SQLite file or a postgresql:// URL (then this process is one of several workers
sharing the database; `--lease` gives its LeaseTerms as JSON). Warnings (a write refused by the
lease fence, a reconnect) go to stderr.

The submit file is a JSON list of {"key": idempotency key, "payload": {...}}; each becomes one
task with that idempotency key. The process prints one line per event, flushed at once, so the
test knows what was recorded before the kill:

    READY <resumed>                   started; <resumed> unfinished tasks reloaded from the store
    S <task_id> <key>                 a task submitted (its row is committed)
    SUBMITTED                         every task of the submit file is recorded
    F <task_id> <state> <sha256/16> <code> <rule>
                                      a task ended (printed by on_change, after the commit):
                                      its result's digest, its error code and rule ("-" if none)
    DONE <peak_rss_kb>                with --until-done: no task in the store is unfinished
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import resource
import sys
from pathlib import Path
from typing import Any

from asyncplugin.engine import (
    Engine,
    PollingPolicy,
    TaskOptions,
    TaskUpdate,
    TransportRetryPolicy,
)
from asyncplugin.engine.store import LeaseTerms, open_store
from asyncplugin.protocol import TaskState


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _on_change(update: TaskUpdate) -> None:
    record = update.record
    if record.is_terminal:
        digest = hashlib.sha256(record.result or b"").hexdigest()[:16]
        error = record.error_proto()
        code, rule = error.code or "-", error.metadata.get("rule") or "-"
        _say(f"F {record.task_id} {record.state.name} {digest} {code} {rule}")


def _read_json(path: str) -> list[dict[str, Any]]:
    """The submit file (read before the engine starts, so blocking is harmless)."""
    data: list[dict[str, Any]] = json.loads(Path(path).read_text())
    return data


def peak_rss_kb() -> int:
    """This process's peak resident set size, in KiB (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


async def main() -> None:
    """Runs the engine on the store until killed (or, with --until-done, until all ended)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--submit", required=True)
    parser.add_argument("--policy", default="{}")
    parser.add_argument("--retry", default="{}")
    parser.add_argument("--max-concurrent", type=int, default=64)
    parser.add_argument("--until-done", action="store_true")
    parser.add_argument("--lease", default="{}", help="LeaseTerms as JSON (PostgreSQL only)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    wanted = _read_json(args.submit)
    engine = Engine(
        store=open_store(args.store, terms=LeaseTerms(**json.loads(args.lease))),
        policy=PollingPolicy(**json.loads(args.policy)),
        retry_policy=TransportRetryPolicy(**json.loads(args.retry)),
        max_concurrent_rpcs=args.max_concurrent,
        on_change=_on_change,
        shutdown_grace_s=0.0,
    )
    async with engine:
        unfinished = await engine.list(state=(TaskState.WAITING, TaskState.RUNNING), limit=None)
        _say(f"READY {len(unfinished)}")
        for item in wanted:
            options = TaskOptions(idempotency_key=item["key"])
            task_id = await engine.submit(args.target, payload=item["payload"], options=options)
            _say(f"S {task_id} {item['key']}")
        _say("SUBMITTED")
        if not args.until_done:
            await asyncio.Event().wait()
        pending = await engine.list(state=(TaskState.WAITING, TaskState.RUNNING), limit=None)
        await asyncio.gather(*(engine.wait(record.task_id) for record in pending))
        _say(f"DONE {peak_rss_kb()}")


if __name__ == "__main__":
    asyncio.run(main())
