"""Fuzzes an engine's request through the plugin SDK: decode_request and PluginDispatcher.decode
(payload, RequestContext, Task.from_proto) (tests/reliability/chain.py: consume_request)."""

from __future__ import annotations

from _harness import load, run

if __name__ == "__main__":
    run(load("consume_request"))
