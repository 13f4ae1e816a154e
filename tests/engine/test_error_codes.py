"""Engine error codes are one enum; the README and the errors module document exactly it."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
import pytest

from asyncplugin.engine import EngineCode
from asyncplugin.engine import errors as errors_module
from asyncplugin.engine.errors import ENGINE_DOMAIN, engine_error

README = Path(__file__).resolve().parents[2] / "README.md"


def _table_after(text: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after `heading` (header and rule rows dropped)."""
    start = text.index(heading)
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]


def test_the_readme_code_table_lists_exactly_the_engine_codes() -> None:
    """Every code in the README's "Engine error codes" table is an EngineCode, and every
    EngineCode is in the table (a cell may list several, as `A` / `B`)."""
    rows = _table_after(README.read_text(encoding="utf-8"), "### Engine error codes")
    documented = [code for row in rows for code in re.findall(r"`([A-Z_]+)`", row[0])]
    assert documented, "the README's engine error code table is empty or missing"
    assert len(documented) == len(set(documented)), "a code is listed twice"
    assert set(documented) == {code.value for code in EngineCode}


def test_the_errors_module_table_gives_each_code_its_rpc_code() -> None:
    """The table in engine/errors.py names every code once, with the gRPC code it carries."""
    doc = errors_module.__doc__
    assert doc is not None
    rows = _table_after(doc, "Engine error codes")
    documented = {row[0]: row[2] for row in rows}
    assert len(documented) == len(rows)
    assert documented == {code.value: code.rpc_code.name for code in EngineCode}


@pytest.mark.parametrize("code", list(EngineCode))
def test_an_engine_envelope_carries_the_codes_rpc_code(code: EngineCode) -> None:
    """engine_error writes the code, its gRPC code and the engine's domain."""
    error = engine_error(code, "it failed")
    assert error.code == code.value
    assert error.rpc_code == code.rpc_code.value[0]
    assert error.domain == ENGINE_DOMAIN


def test_a_grpc_code_no_engine_code_describes_is_written_by_name() -> None:
    """A failed call's own gRPC code (no engine code for it) is written as its name."""
    error = engine_error(grpc.StatusCode.PERMISSION_DENIED, "denied")
    assert error.code == "PERMISSION_DENIED"
    assert error.rpc_code == grpc.StatusCode.PERMISSION_DENIED.value[0]


def test_an_unknown_code_is_refused() -> None:
    """A code that is not an engine code cannot be made one."""
    with pytest.raises(ValueError, match="is not a valid EngineCode"):
        EngineCode("NOT_A_CODE")
