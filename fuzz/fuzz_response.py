"""Fuzzes a plugin's answer through the engine: decode_response, read_answer, Task.from_proto,
PluginError.from_proto, struct_to_dict, and the status-check request built from a RUNNING answer
through the SDK's decode (tests/reliability/chain.py: consume_response)."""

from __future__ import annotations

from _harness import load, run

if __name__ == "__main__":
    run(load("consume_response"))
