"""`python -m bench [--quick] [--only NAMES] [--json FILE] [--plots DIR]`: run and print the table.

The table goes to stdout (with a header naming the machine); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SECTIONS = ("throughput", "scale", "lateness", "detection", "peers", "observability", "scaleout")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run (under a minute)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument("--json", type=Path, help="also write every figure and raw run to FILE")
    parser.add_argument("--plots", type=Path, help="write the PNG figures into DIR")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # spawned children inherit it

    from . import _common, detection, lateness, observability, peers, scale, scaleout, throughput

    runners: dict[str, Callable[[bool], tuple[list[_common.Row], dict[str, Any]]]] = {
        "throughput": throughput.run,
        "scale": scale.run,
        "lateness": lateness.run,
        "detection": detection.run,
        "peers": peers.run,
        "observability": observability.run,
        "scaleout": scaleout.run,
    }
    header = _common.machine_header()
    started = time.perf_counter()
    rows: list[_common.Row] = []
    results: dict[str, Any] = {}
    for name in SECTIONS:
        if name not in wanted:
            continue
        section_rows, data = runners[name](args.quick)
        rows += section_rows
        results[name] = data
    rows += _floor_rows(results)
    elapsed = time.perf_counter() - started
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        header["load average at end"] = " ".join(loadavg.read().split()[:3])
    header["suite time"] = f"{elapsed:.0f} s" + (" (--quick)" if args.quick else "")

    print("asyncplugin benchmarks (python -m bench" + (" --quick)" if args.quick else ")"))
    for key, value in header.items():
        print(f"  {key}: {value}")
    print()
    print(_common.render_table(rows))
    notes = [f"  [{row.section}] {row.figure.strip()}: {row.note}" for row in rows if row.note]
    if notes:
        print("\nnotes:")
        print("\n".join(notes))
    met = [row.met for row in rows if row.met is not None]
    print(f"\ntargets met: {sum(met)} of {len(met)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"header": header, "rows": [row.as_dict() for row in rows], "results": results}
        args.json.write_text(json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8")
    if args.plots:
        from . import plots

        for path in plots.write(results, args.plots):
            _common.log(f"wrote {path}")
    sys.stdout.flush()
    return 0


def _floor_rows(results: dict[str, Any]) -> list[Any]:
    """The CPU a raw grpc.aio client needs for the engine's calls in the peer run: the floor."""
    from ._common import Row

    if "throughput" not in results or "peers" not in results:
        return []
    raw_us = results["throughput"]["cpu"]["raw"]["client_cpu_us"]
    rows = []
    for key, run in results["peers"].items():
        if not key.isdigit() or int(key) < 10_000:
            continue
        n = int(key)
        calls = run["engine"]["checks"] + n
        rows.append(
            Row(
                "5",
                f"  floor: raw grpc.aio client CPU for the engine's {calls:,.0f} calls",
                calls * raw_us / 1e6,
                "s",
                "google-api-core PollingFuture",
                run["api_core"]["cpu_s"],
                ratio_is_less=True,
                note="best CPU ratio any asyncio gRPC poller could reach (section 1's raw client "
                "CPU per call, measured at 64 in flight)",
            )
        )
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
