"""`python -m bench [--quick] [--only NAMES] [--reps N] [--peer-sizes N,...] [--json FILE] ...`.

Runs the benchmarks and prints one table (with a header naming the machine), then the sections'
detail tables; progress goes to stderr.
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

SECTIONS = (
    "throughput",
    "scale",
    "lateness",
    "detection",
    "peers",
    "observability",
    "scaleout",
    "attribution",
)


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1000,10000, got {text!r}") from None
    if any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be >= 1, got {text!r}")
    return sizes


def _write_json(
    path: Path, header: dict[str, str], rows: list[Any], results: dict[str, Any]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"header": header, "rows": [row.as_dict() for row in rows], "results": results}
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run (under a minute)")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument(
        "--reps", type=int, help="repetitions of the interleaved sections [3; 1 with --quick]"
    )
    parser.add_argument(
        "--peer-sizes",
        type=_sizes,
        help="operations on the shared schedule in peers [1000,2000,10000]",
    )
    parser.add_argument(
        "--own-sizes",
        type=_sizes,
        help="operations on each client's own defaults in peers ('' for none) [1000,10000]",
    )
    parser.add_argument(
        "--attribution-size", type=int, help="operations of the attribution runs [2000]"
    )
    parser.add_argument("--json", type=Path, help="also write every figure and raw run to FILE")
    parser.add_argument("--plots", type=Path, help="write the PNG figures into DIR")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    if args.reps is not None and args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    if args.attribution_size is not None and args.attribution_size < 1:
        parser.error(f"--attribution-size must be >= 1, got {args.attribution_size}")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # spawned children inherit it

    from . import (
        _common,
        attribution,
        detection,
        lateness,
        observability,
        peers,
        scale,
        scaleout,
        throughput,
    )

    config = _common.Config(
        quick=args.quick,
        reps=args.reps,
        peer_sizes=args.peer_sizes or None,
        own_sizes=args.own_sizes,
        attribution_size=args.attribution_size,
    )
    runners: dict[str, Callable[[_common.Config], tuple[list[_common.Row], dict[str, Any]]]] = {
        "throughput": throughput.run,
        "scale": scale.run,
        "lateness": lateness.run,
        "detection": detection.run,
        "peers": peers.run,
        "observability": observability.run,
        "scaleout": scaleout.run,
        "attribution": attribution.run,
    }
    header = _common.machine_header()
    started = time.perf_counter()
    rows: list[_common.Row] = []
    results: dict[str, Any] = {}
    for name in SECTIONS:
        if name not in wanted:
            continue
        section_rows, data = runners[name](config)
        rows += section_rows
        results[name] = data
        # Each section's rows as soon as it ends (the full table comes at the end), and the JSON
        # so far: a later section that fails leaves what was measured before it.
        _common.log(f"{name} done:\n" + _common.render_table(section_rows))
        if args.json:
            _write_json(args.json, header, rows, results)
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
    for name in SECTIONS:
        for table in results.get(name, {}).get("tables", []):
            print()
            print(table)
    met = [row.met for row in rows if row.met is not None]
    print(f"\ntargets met: {sum(met)} of {len(met)}")
    if args.json:
        _write_json(args.json, header, rows, results)
    if args.plots:
        from . import plots

        for path in plots.write(results, args.plots):
            _common.log(f"wrote {path}")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
