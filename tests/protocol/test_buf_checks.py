"""`make lint`'s buf checks catch a breaking or badly styled edit of the spec."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = Path(sys.executable).parent / "buf"

pytestmark = pytest.mark.skipif(not BUF.exists(), reason="buf-bin is not installed in this venv")


def _copy_spec(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    return tmp_path


def _buf(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUF), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_committed_spec_passes_lint_and_breaking() -> None:
    """The spec as committed passes buf lint and buf breaking against the baseline."""
    assert _buf(ROOT, "lint").returncode == 0
    result = _buf(ROOT, "breaking", "--against", "proto/baseline.binpb")
    assert result.returncode == 0, result.stdout + result.stderr


def test_renumbered_field_is_a_breaking_change(tmp_path: Path) -> None:
    """Renumbering Task.task_id fails `buf breaking` against the committed baseline."""
    work = _copy_spec(tmp_path)
    task_proto = work / "proto" / "asyncplugin" / "v1" / "task.proto"
    text = task_proto.read_text()
    assert "string task_id = 1;" in text
    task_proto.write_text(text.replace("string task_id = 1;", "string task_id = 99;"))
    result = _buf(work, "breaking", "--against", str(ROOT / "proto" / "baseline.binpb"))
    assert result.returncode != 0
    assert "task_id" in result.stdout + result.stderr


def test_unprefixed_enum_value_fails_lint(tmp_path: Path) -> None:
    """An enum value without the enum's prefix fails `buf lint` (STANDARD rules)."""
    work = _copy_spec(tmp_path)
    task_proto = work / "proto" / "asyncplugin" / "v1" / "task.proto"
    text = task_proto.read_text()
    task_proto.write_text(text.replace("TASK_STATE_CANCELLED = 5;", "CANCELLED = 5;"))
    result = _buf(work, "lint")
    assert result.returncode != 0
    assert "CANCELLED" in result.stdout + result.stderr
