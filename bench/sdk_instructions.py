"""Instructions per call of the SDK dispatcher's `handle`, A/B between source trees.

    python -m bench.sdk_instructions [--trees DIR,DIR] [--calls N1 N2]   # needs valgrind

A load-independent figure for the SDK server's own per-call work: each tree's `python/` serves
`AlwaysRunning` (bench/plugins.py) through a `PluginDispatcher` in a fresh interpreter under
valgrind's callgrind, which calls `handle` directly (no gRPC: the plugin never suspends, so the
coroutine runs to its end in one `send`) on the benchmark's status check (`sample_request`), N1
and then N2 times after a warm-up; the difference divided by N2 - N1 leaves out start-up.
`PYTHONHASHSEED` is fixed so that two runs of one tree count the same. Instructions are not time:
inside a busy server the same work costs more (cold caches between gRPC's own work), and kernel
work is not counted; `python -m bench.sdk_cost` measures the whole server's CPU per call.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 200


def run(calls: int) -> None:
    """Inside callgrind: `calls` calls of `handle` after the warm-up."""
    import asyncplugin
    from asyncplugin.plugin.dispatch import PluginDispatcher

    tree = os.environ.get("PYTHONPATH", "")
    if not str(asyncplugin.__file__).startswith(tree):  # an installed copy would be measured
        raise RuntimeError(f"asyncplugin comes from {asyncplugin.__file__}, not {tree}")

    from .plugins import AlwaysRunning
    from .throughput import sample_request

    data = sample_request()
    handle = PluginDispatcher(AlwaysRunning(), max_message_bytes=4 << 20).handle

    def once() -> None:
        coro = handle(data, None)  # type: ignore[arg-type]
        try:
            coro.send(None)
        except StopIteration:
            return
        raise RuntimeError("the dispatcher suspended: the count would not be one call's")

    for _ in range(WARMUP + calls):
        once()


def _instructions(tree: Path, calls: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-c",
        f"from bench.sdk_instructions import run; run({calls})",
    ]
    env = {**os.environ, "PYTHONPATH": str(tree / "python"), "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(maxsplit=1)[-1])
    raise RuntimeError(f"callgrind gave no count for {tree}:\n{done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sdk_instructions", description=__doc__)
    parser.add_argument("--trees", default=str(ROOT))
    parser.add_argument("--calls", type=int, nargs=2, default=(100, 600), metavar=("N1", "N2"))
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    first, second = args.calls
    for tree in (Path(t) for t in args.trees.split(",")):
        low, high = _instructions(tree, first), _instructions(tree, second)
        per_call = (high - low) / (second - first)
        print(f"{tree}: {per_call:,.0f} instructions per dispatcher.handle call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
