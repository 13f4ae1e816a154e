"""Instructions per status check of the engine, telemetry off and on: a load-independent figure.

    python -m bench.instructions            # needs valgrind (apt-get install valgrind)
    python -m bench.instructions --store sqlite --settings off   # the engine on a SqliteStore

Section 6 of `make bench` measures CPU time per check, which on a machine shared with other
work moves with the load by more than telemetry costs. This counts the instructions the
engine's process executes per status check instead (valgrind's callgrind: user space, every
thread), which no other process changes: the engine of section 6 (MemoryStore, 4*C RUNNING
tasks, real gRPC to the bare plugin server in its own process) runs under callgrind for N1 and
then N2 checks, and the difference divided by N2 - N1 leaves out start-up and submission. The
sampler's trace ids are made reproducible (`random.seed`), so the 10% setting traces the same
tasks every time.

Instructions are not time: kernel work (system calls, the socket) is not counted, and
allocation-heavy code (span objects) costs more time per instruction than the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ._common import PluginProcess, saturating_policy

CONCURRENCY = 64
SETTINGS = ("off", "metrics", "sampled", "all")
LABELS = {
    "off": "telemetry off",
    "metrics": "metrics only",
    "sampled": "metrics + 10% of tasks traced",
    "all": "metrics + every task traced",
}


def engine(target: str, setting: str, checks: int, store: str = "memory") -> None:
    """Runs section 6's engine with `setting` until `checks` status checks are recorded."""
    random.seed(7)  # the tracer's trace ids, hence which tasks the 10% sampler keeps
    if store == "memory":
        asyncio.run(_engine(target, setting, checks, None))
        return
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as folder:
        asyncio.run(_engine(target, setting, checks, Path(folder) / "tasks.sqlite3"))


async def _engine(target: str, setting: str, checks: int, path: Path | None) -> None:
    from asyncplugin.engine import CallKind, Engine, MemoryStore, SqliteStore, TaskUpdate

    from .observability import SETTINGS as FACTORIES
    from .throughput import METHOD, PAYLOAD

    # valgrind runs the engine some 50 times slower
    policy = saturating_policy(check_timeout_s=600.0)
    done = asyncio.Event()
    count = 0

    def on_change(update: TaskUpdate) -> None:
        nonlocal count
        count += sum(1 for check in update.checks if check.kind is CallKind.CHECK)
        if count >= checks:
            done.set()

    telemetry, _scrape, _spans = FACTORIES[setting]()
    async with Engine(
        store=MemoryStore() if path is None else SqliteStore(path),
        policy=policy,
        on_change=on_change,
        max_concurrent_rpcs=CONCURRENCY,
        max_concurrent_rpcs_per_target=CONCURRENCY,
        telemetry=telemetry,
    ) as running:
        for _ in range(4 * CONCURRENCY):
            await running.submit(target, method=METHOD, payload=PAYLOAD)
        await done.wait()


def _instructions(target: str, setting: str, checks: int, store: str) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-c",
        "from bench.instructions import engine; "
        f"engine({target!r}, {setting!r}, {checks}, {store!r})",
    ]
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(command, capture_output=True, text=True, cwd=root, check=False)
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(maxsplit=1)[-1])
    raise RuntimeError(f"callgrind gave no count for {setting}:\n{done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--checks", type=int, nargs=2, default=(500, 2500), metavar=("N1", "N2"))
    parser.add_argument(
        "--store",
        choices=("memory", "sqlite"),
        default="memory",
        help="the engine's store (sqlite: a file in a fresh temporary folder per run)",
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=SETTINGS,
        default=list(SETTINGS),
        help="telemetry settings to count (default: all; ratios need 'off')",
    )
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    first, second = args.checks
    per_check: dict[str, float] = {}
    with PluginProcess("bare") as bare:
        for setting in args.settings:
            low = _instructions(bare.target, setting, first, args.store)
            high = _instructions(bare.target, setting, second, args.store)
            per_check[setting] = (high - low) / (second - first)
            print(f"{LABELS[setting]:32s} {per_check[setting]:>12,.0f} instructions per check")
    if "off" not in per_check:
        return 0
    off = per_check["off"]
    for setting in [setting for setting in args.settings if setting != "off"]:
        print(f"off/on, {LABELS[setting]:32s} {off / per_check[setting]:.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
