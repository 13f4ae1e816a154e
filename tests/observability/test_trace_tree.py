"""docs/trace_tree.py, the script behind the trace picture in docs/observability.md, still runs
and draws one trace: the submit span at the root, each engine call under it (from both engines
of the restart), each plugin server span under its call."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "trace_tree.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trace_tree", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_trace_tree_script_draws_one_trace() -> None:
    """The rendered tree has one trace, rooted at the submit span, with the calls of both
    engines as its children and a plugin server span under each call."""
    script = _load()
    text = script.render(await script.run())
    lines = text.splitlines()
    assert len([line for line in lines if line.startswith("trace ")]) == 1
    assert lines[1].startswith("submit asyncplugin.v1.PluginService/Invoke  [engine-1, PRODUCER]")
    calls = [line for line in lines if "CLIENT]" in line]
    assert [re.search(r"(INITIATE|CHECK) #\d", c).group(0) for c in calls] == [  # type: ignore[union-attr]
        "INITIATE #0", "CHECK #1", "CHECK #1", "CHECK #2", "CHECK #3"
    ]  # fmt: skip
    assert all(c.startswith(("├─ ", "└─ ")) for c in calls)  # children of the root
    assert "[engine-2, CLIENT] CHECK #3 -> SUCCEEDED" in text
    assert "TRANSPORT_RETRY" in calls[1]
    servers = [line for line in lines if "[plugin, SERVER]" in line]
    assert len(servers) == len(calls)
    assert all(s.startswith(("│  └─ ", "   └─ ")) for s in servers)  # one level further down
