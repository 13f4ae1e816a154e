"""`asyncplugin store migrate` and `--store postgresql://...` on invoke and tasks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from asyncplugin.cli import main
from asyncplugin.engine.store.pg_schema import SCHEMA_VERSION
from asyncplugin.engine.store.sqlite_schema import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from tests.cli.conftest import ROOT
from tests.pg_server import free_port

FAST = ["--initial-interval", "0.1", "--min-interval", "0.05", "--max-interval", "0.2"]


def test_migrate_applies_the_schema_once(
    pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The first migrate creates the schema, the second has nothing to do."""
    assert main(["store", "migrate", pg_database]) == 0
    assert f"migrated from version 0 to {SCHEMA_VERSION}" in capsys.readouterr().out
    assert main(["store", "migrate", pg_database]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_migrate_a_sqlite_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A SQLite path works too (its schema is created at its current version)."""
    assert main(["store", "migrate", str(tmp_path / "t.db")]) == 0
    assert f"migrated from version 0 to {SQLITE_SCHEMA_VERSION}" in capsys.readouterr().out


def test_a_url_that_does_not_connect_is_one_line_and_non_zero() -> None:
    """Host and cause in one line on stderr, exit 1, and the password never printed."""
    port = free_port()
    url = f"postgresql://worker:hunter2@127.0.0.1:{port}/jobs"
    for command in (["store", "migrate", url], ["tasks", "list", "--store", url]):
        done = subprocess.run(
            [sys.executable, "-m", "asyncplugin.cli", *command],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert f"127.0.0.1:{port}/jobs" in lines[0]
        assert "Connection refused" in lines[0]
        assert "hunter2" not in done.stderr + done.stdout


def test_a_newer_schema_is_refused_naming_both_versions(
    pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """migrate refuses a database a newer asyncplugin migrated; so do readers."""
    assert main(["store", "migrate", pg_database]) == 0
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute(b"UPDATE asyncplugin_schema SET version = version + 1")
    capsys.readouterr()
    assert main(["store", "migrate", pg_database]) == 1
    assert main(["tasks", "list", "--store", pg_database]) == 1
    err = capsys.readouterr().err
    assert err.count(f"schema version {SCHEMA_VERSION + 1}") == 2
    assert err.count(f"reads up to {SCHEMA_VERSION}") == 2


def test_invoke_and_tasks_on_postgresql(
    slow_job_target: str, pg_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """invoke records into PostgreSQL (one worker, leasing its own task); tasks reads it."""
    code = main(
        [
            "invoke",
            slow_job_target,
            "--data",
            '{"duration_s": 0.3, "hint": false}',
            "--store",
            pg_database,
            *FAST,
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err  # once failed in a loaded full run, with its stderr unseen
    assert '"state": "SUCCEEDED"' in out
    assert main(["tasks", "list", "--store", pg_database]) == 0
    listed = capsys.readouterr().out
    assert "SUCCEEDED" in listed
    assert "PostgreSQL 127.0.0.1" in listed
