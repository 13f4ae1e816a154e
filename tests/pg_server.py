"""A throwaway PostgreSQL server for the tests and benchmarks, from the machine's own binaries.

    server = PgServer.start(Path(tmp))      # initdb + pg_ctl start on 127.0.0.1:<free port>
    url = server.url("postgres")            # postgresql://postgres@127.0.0.1:PORT/postgres
    server.restart()                        # a fault test: the database goes away and back
    server.stop()                           # pg_ctl stop -m immediate, folder removed

The binaries come from the Debian/Ubuntu `postgresql` package (/usr/lib/postgresql/<v>/bin). If
none is installed, `find_bindir` installs the package with apt-get when it runs as root, and
otherwise fails with the command that fixes it: the tests never skip because PostgreSQL is
missing. initdb refuses to run as root, so as root the server runs as the `postgres` user
(created if missing) through `runuser`. The cluster trades durability for speed (fsync off): it
lives for one test run.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_BINDIRS = "/usr/lib/postgresql/*/bin"
_FAST = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
_CRASH_SAFE = "-c synchronous_commit=off"  # fsync on: like SQLite's WAL + synchronous=NORMAL


class PgServerError(RuntimeError):
    """PostgreSQL could not be found, installed or started (the message says how to fix it)."""


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def find_bindir(*, install: bool = True) -> Path:
    """The newest installed PostgreSQL bin folder; installs Debian's package if there is none."""
    found = sorted(glob.glob(_BINDIRS), key=_version_key)
    found = [path for path in found if Path(path, "initdb").exists()]
    if found:
        return Path(found[-1])
    fix = "apt-get install -y --no-install-recommends postgresql (as root)"
    if not install or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PgServerError(
            f"PostgreSQL server binaries are missing (no {_BINDIRS}/initdb); install them with "
            f"`{fix}`, or point DATABASE_URL at an existing server"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "postgresql"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PgServerError(
                f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr.strip()[-500:]}; "
                f"install PostgreSQL with `{fix}` or set DATABASE_URL"
            )
    return find_bindir(install=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PgServer:
    """One running throwaway cluster (see the module docstring)."""

    folder: Path
    bindir: Path
    port: int
    user: str
    crash_safe: bool = False

    @classmethod
    def start(cls, folder: Path | None = None, *, crash_safe: bool = False) -> PgServer:
        """initdb in `folder` (default: a new private folder in the temp dir), then start the
        server on a free loopback port: fsync off for tests, or `crash_safe` (fsync on, commits
        not waiting for their flush) for benchmarks."""
        bindir = find_bindir()
        as_root = os.geteuid() == 0
        user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
        if as_root:
            _ensure_postgres_user()
        if folder is None:
            folder = Path(tempfile.mkdtemp(prefix="asyncplugin-pg-"))
        folder.mkdir(parents=True, exist_ok=True)
        if as_root:
            shutil.chown(folder, user="postgres")  # its parents must let postgres through
        server = cls(
            folder=folder, bindir=bindir, port=free_port(), user=user, crash_safe=crash_safe
        )
        server._run(
            "initdb",
            "-D",
            str(folder / "data"),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        server._pg_ctl_start()
        return server

    @property
    def pid(self) -> int:
        """The postmaster's process id (its backends are its children)."""
        return int((self.folder / "data" / "postmaster.pid").read_text().split()[0])

    def cpu_s(self) -> float:
        """CPU seconds used so far by the postmaster and its live children (the backends and
        background workers), from /proc."""
        root = self.pid
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # exited meanwhile
            if int(entry) == root:  # its own, and that of the children it reaped
                total += sum(int(value) for value in fields[11:15])
            elif int(fields[1]) == root:
                total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def url(self, database: str = "postgres") -> str:
        """The server's URL for `database`, as user postgres (trust authentication)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _options(self) -> str:
        settings = _CRASH_SAFE if self.crash_safe else _FAST
        return (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 {settings} "
            "-c max_connections=200 -c shared_buffers=128MB -c track_io_timing=off"
        )

    def _pg_ctl_start(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.folder / "data"),
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
            "-o",
            self._options(),
        )

    def stop(self, *, remove: bool = True) -> None:
        """Stops the server at once (-m immediate); removes its folder unless told not to."""
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)

    def restart(self, *, down_s: float = 0.0) -> None:
        """Stops the server (every connection drops), waits `down_s`, starts it on the same
        port and data: what a database failover or a restart looks like to its clients."""
        import time

        self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")
        time.sleep(down_s)
        self._pg_ctl_start()

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(
            command, cwd=self.folder, capture_output=True, text=True, check=False, timeout=120
        )
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-1500:] if log.exists() else ""
            raise PgServerError(
                f"`{tool} {' '.join(args)}` failed ({done.returncode}): "
                f"{(done.stdout + done.stderr).strip()[-1500:]}\n{tail}"
            )


def _ensure_postgres_user() -> None:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "postgres",
            ],
            check=True,
        )
