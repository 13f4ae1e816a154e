"""The figures of docs/performance.md (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write(results: dict[str, Any], folder: Path) -> list[Path]:
    """Writes every plot whose data is in `results`; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    written = [_intervals(folder / "check_intervals.png")]
    if "throughput" in results:
        written.append(_throughput(results["throughput"], folder / "throughput_concurrency.png"))
    if "lateness" in results:
        written.append(_lateness(results["lateness"], folder / "lateness_rate.png"))
    return written


def _intervals(path: Path) -> Path:
    import matplotlib.pyplot as plt

    from .detection import check_times

    duration_s = 20 * 60.0
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    styles = {
        "engine": ("engine default (1 s x1.6 to 60 s, +-20%)", "tab:blue", "o"),
        "api_core": ("google-api-core defaults (1 s x1.5 to 20 s, full jitter)", "tab:orange", "s"),
        "fixed_1s": ("fixed 1 s (Steamship Task.wait)", "tab:gray", ""),
    }
    for kind, (label, color, marker) in styles.items():
        times = check_times(kind, duration_s)
        pairs = [(b / 60, b - a) for a, b in zip([0.0, *times[:-1]], times, strict=True) if b > a]
        ax.plot(
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            label=f"{label}: {len(times)} checks",
            color=color,
            marker=marker or None,
            markersize=3.5,
            linestyle="none" if kind == "api_core" else "-",
            linewidth=1.2,
        )
    ax.set_yscale("log")
    ax.set_xlabel("time since the task started (min)")
    ax.set_ylabel("interval before the check (s)")
    ax.set_title("Check intervals of one 20-minute task")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _throughput(data: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    labels = {"raw": "raw grpc.aio client", "memory": "engine + MemoryStore"}
    for kind, points in data["curve"].items():
        xs = sorted(int(x) for x in points)
        ax.plot(
            xs,
            [points[x] if x in points else points[str(x)] for x in xs],
            marker="o",
            label=labels.get(kind, kind),
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("calls in flight (max_concurrent_rpcs for the engine)")
    ax.set_ylabel("status checks per second")
    ax.set_title("Status-check throughput vs concurrency (bare servicer, loopback)")
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _lateness(data: dict[str, Any], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for loop, results in data["series"].items():
        rates = [r["rate"] for r in results if r["fired"]]
        p99 = [r["p99_ms"] for r in results if r["fired"]]
        ax.plot(rates, p99, marker="o", label=f"engine on {loop} (gc.freeze after start)")
    ax.axhline(50, color="tab:red", linestyle="--", linewidth=1, label="50 ms: sustainable")
    ax.axhline(5, color="tab:green", linestyle=":", linewidth=1, label="5 ms: target at 2,000/s")
    ax.set_yscale("log")
    ax.set_xlabel("status checks due per second (100k tasks pending)")
    ax.set_ylabel("lateness p99 (ms)")
    ax.set_title("Scheduler lateness vs check rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
