"""Starting `asyncplugin engine serve` as its own process, as an operator would."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.procs import Child

FAST_POLICY = (
    "--initial-interval",
    "0.2",
    "--multiplier",
    "1.5",
    "--max-interval",
    "0.5",
    "--min-interval",
    "0.1",
    "--check-timeout",
    "5",
)


async def start_daemon_process(
    store: Path | str, log: Path, *extra: str, port: int = 0
) -> tuple[Child, str]:
    """Spawns the daemon on 127.0.0.1; returns it and the address it announced."""
    child = Child(
        "asyncplugin.cli",
        "engine",
        "serve",
        "--store",
        str(store),
        "--port",
        str(port),
        *FAST_POLICY,
        *extra,
        log=log,
    )
    await child.start()
    try:
        line = await child.wait_for("engine serving on ", timeout_s=30)
    except BaseException:
        await child.kill()
        raise
    return child, line.split()[3]
