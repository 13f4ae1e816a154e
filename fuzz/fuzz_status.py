"""Fuzzes a plugin's grpc-status-details-bin trailer: google.rpc.Status parsing, status_to_error
and the engine's classify_rpc_error (tests/reliability/chain.py: consume_trailer)."""

from __future__ import annotations

from _harness import load, run

if __name__ == "__main__":
    run(load("consume_trailer"))
