"""Child processes for the fault-injection tests: spawned (exec, never fork), read line by line.

Every child is a fresh interpreter started with `python -m <module>` from the repository root
(forking a process with a live grpc.aio channel hangs the child; see docs/architecture.md,
"Toolchain facts the code relies on"). A reader task collects the child's stdout lines as they
come; stderr goes to a log file for post-mortems. Every wait is bounded by a timeout, and `kill`
sends SIGKILL to this child's own pid only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]


class Child:
    """One spawned child process and the lines it has printed so far.

    `launcher` is put before the interpreter on the command line (for example setpriv).
    """

    def __init__(self, module: str, *args: str, log: Path, launcher: Sequence[str] = ()) -> None:
        self.module = module
        self.args = args
        self.log = log
        self.launcher = tuple(launcher)
        self.lines: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self._process is not None
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has exited (and been reaped), else None."""
        return self._process.returncode if self._process is not None else None

    async def start(self) -> Child:
        """Spawns the child."""
        env = {**os.environ, "GRPC_VERBOSITY": "ERROR", "PYTHONUNBUFFERED": "1"}
        with self.log.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *self.launcher,
                sys.executable,
                "-m",
                self.module,
                *self.args,
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
            )
        self._reader = asyncio.get_running_loop().create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        stream = self._process.stdout
        while line := await stream.readline():
            self.lines.append(line.decode().rstrip("\n"))
            self._changed.set()
        self._changed.set()

    async def wait_for(self, prefix: str, *, timeout_s: float) -> str:
        """The first line starting with `prefix`, waiting up to `timeout_s` for it."""
        async with asyncio.timeout(timeout_s):
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                if self._reader is not None and self._reader.done():
                    raise RuntimeError(
                        f"{self.module} exited before printing {prefix!r}; see {self.log}:\n"
                        + self.log.read_text()[-3000:]
                    )
                self._changed.clear()
                await self._changed.wait()

    def matching(self, prefix: str) -> list[str]:
        """Every line so far that starts with `prefix`."""
        return [line for line in self.lines if line.startswith(prefix)]

    async def kill(self) -> None:
        """SIGKILL to this child, then reap it and read what it printed before dying."""
        if self._process is None or self._process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._process.pid, signal.SIGKILL)
        await self.wait(timeout_s=30)

    async def wait(self, *, timeout_s: float) -> int:
        """Waits for the child to exit (and its output to be read); returns its exit code."""
        assert self._process is not None
        async with asyncio.timeout(timeout_s):
            code = await self._process.wait()
            if self._reader is not None:
                await self._reader
        return code

    async def __aenter__(self) -> Child:
        return await self.start()

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.kill()


async def start_plugin(
    db: Path, log: Path, *, port: int = 0, record_calls: bool = False
) -> tuple[Child, int]:
    """Spawns tests.reliability.jobs_plugin on 127.0.0.1; returns it and its port."""
    flags = ["--calls"] if record_calls else []
    child = await Child(
        "tests.reliability.jobs_plugin", "--db", str(db), "--port", str(port), *flags, log=log
    ).start()
    try:
        line = await child.wait_for("PORT ", timeout_s=30)
    except BaseException:
        await child.kill()
        raise
    return child, int(line.split()[1])
