"""An engine process for the store-fault tests: a real write failure on a real file.

    python -m tests.reliability.store_proc --store tasks.db --target 127.0.0.1:N --tasks 5 \
        [--fsize-limit BYTES]

With --fsize-limit the process may not write any file past BYTES (RLIMIT_FSIZE, SIGXFSZ
ignored): the kernel fails SQLite's write with EFBIG, as a full disk fails it with ENOSPC. The
test runs it on a read-only file in the other case. It starts an engine on the store (resuming
what is there), submits --tasks tasks and waits for every unfinished task, printing:

    START_ERROR <text>    the engine did not start: StoreError (its message); nothing was sent
    READY <resumed>       started; <resumed> unfinished tasks reloaded
    S <task_id>           a task submitted (committed)
    SUBMIT_ERROR <text>   submit raised StoreError (its message)
    WAIT_ERROR <text>     wait raised StoreError
    STORE_ERROR <text>    engine.store_error at the end, if any
    DONE
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import sys

from asyncplugin.engine import Engine, PollingPolicy, SqliteStore, StoreError
from asyncplugin.protocol import TaskState


def _say(line: str) -> None:
    sys.stdout.write(line.replace("\n", " ") + "\n")
    sys.stdout.flush()


async def main() -> None:
    """Runs the engine until every task ended or the store failed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--fsize-limit", type=int, default=0)
    args = parser.parse_args()
    if args.fsize_limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, args.fsize_limit))
    policy = PollingPolicy(initial_interval_s=0.05, min_interval_s=0.05, max_interval_s=0.2)
    engine = Engine(store=SqliteStore(args.store), policy=policy, shutdown_grace_s=0.0)
    try:
        await engine.start()
    except StoreError as err:
        _say(f"START_ERROR {err}")
        _say("DONE")
        return
    async with engine:
        unfinished = await engine.list(state=(TaskState.WAITING, TaskState.RUNNING), limit=None)
        _say(f"READY {len(unfinished)}")
        ids = [record.task_id for record in unfinished]
        try:
            for _ in range(args.tasks):
                ids.append(await engine.submit(args.target, payload={"pad": "x" * 2000}))
                _say(f"S {ids[-1]}")
        except StoreError as err:
            _say(f"SUBMIT_ERROR {err}")
        try:
            async with asyncio.timeout(60):
                await asyncio.gather(*(engine.wait(task_id) for task_id in ids))
        except StoreError as err:
            _say(f"WAIT_ERROR {err}")
        if engine.store_error is not None:
            _say(f"STORE_ERROR {engine.store_error}")
    _say("DONE")


if __name__ == "__main__":
    asyncio.run(main())
