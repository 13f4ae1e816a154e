"""One task's check timeline as a picture: geometry for the server-rendered inline SVG.

Each call is a mark on a time axis, coloured by its outcome; each gap between calls carries the
interval the engine chose and the reason it recorded; the plugin's progress is drawn under the
axis at the calls that reported it. Backoff makes gaps grow geometrically, so the axis is ordered
by time but each gap's width grows with the logarithm of its length (a 1 s gap and a 1 h gap
both stay readable); every mark is labelled with its offset from submission, so the picture
never pretends to a linear scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from asyncplugin.engine import CheckRecord, TaskRecord

from .views import call_category, check_progress, is_call, relative

__all__ = ["Gap", "Mark", "Timeline", "build_timeline"]

LEFT_PX: Final = 40.0
RIGHT_PX: Final = 60.0
AXIS_Y: Final = 104.0
PROGRESS_TOP: Final = 156.0
PROGRESS_HEIGHT: Final = 60.0
HEIGHT: Final = 244.0
_LABELLED_GAP_MIN_PX: Final = 170.0
_TIE_PX: Final = 18.0
_CHARS_PER_PX: Final = 1 / 6.2
"""How many characters of 11 px text fit in one pixel (to cut a gap's reason to its width)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark:
    """One call on the axis."""

    x: float
    check_number: int
    kind: str
    outcome: str
    category: str
    offset: str
    show_offset: bool
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Gap:
    """The time between two calls (or from the last call to the next one due)."""

    x1: float
    x2: float
    duration: str
    interval: str
    reason: str
    reason_lines: tuple[str, ...]
    pending: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """A point on the axis that is not a call: the submission, the end, the next check due."""

    x: float
    label: str
    category: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """Everything the SVG template draws."""

    width: float
    height: float
    axis_y: float
    marks: list[Mark]
    gaps: list[Gap]
    events: list[Event]
    progress_points: list[tuple[float, float, str]]
    progress_top: float
    progress_height: float

    @property
    def progress_polyline(self) -> str:
        """The `points` attribute of the progress line."""
        return " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in self.progress_points)


def gap_px(seconds: float, *, labelled: bool) -> float:
    """A gap's width: growing with log2(1 + seconds); wide enough for its label when it has one."""
    if seconds <= 0:
        return _TIE_PX
    width = 24.0 + 70.0 * math.log2(1.0 + seconds)
    return max(width, _LABELLED_GAP_MIN_PX if labelled else _TIE_PX)


def build_timeline(record: TaskRecord, checks: Sequence[CheckRecord], *, now: float) -> Timeline:
    """The timeline of a task from its recorded check history, at `now` (the engine's clock)."""
    start = record.create_time
    calls = [check for check in checks if is_call(check)]
    marks: list[Mark] = []
    gaps: list[Gap] = []
    events = [Event(x=LEFT_PX, label="submitted", category="submitted")]
    x = LEFT_PX
    previous_time = start
    previous: CheckRecord | None = None
    last_offset_x = -math.inf
    for call in calls:
        since = call.started_time - previous_time
        if marks or since > 0:
            labelled = previous is not None and previous.interval_s is not None
            x1, x = x, x + gap_px(since, labelled=labelled)
            gaps.append(_gap(x1, x, since, previous))
        offset = f"+{relative(call.started_time - start)}"
        show_offset = x - last_offset_x >= 46.0
        if show_offset:
            last_offset_x = x
        marks.append(
            Mark(
                x=x,
                check_number=call.check_number,
                kind=str(call.kind),
                outcome=str(call.outcome),
                category=call_category(call),
                offset=offset,
                show_offset=show_offset,
                title=_title(call, offset),
            )
        )
        previous_time = call.started_time
        previous = call
    end_x = x
    if record.is_terminal and record.end_time is not None:
        if record.end_time > previous_time + 1e-3 or not marks:
            end_x = x + gap_px(record.end_time - previous_time, labelled=False)
        events.append(Event(x=end_x, label=record.state.name, category=record.state.name.lower()))
    elif record.next_check_time is not None:
        due_x = x + gap_px(record.next_check_time - previous_time, labelled=True)
        gaps.append(
            Gap(
                x1=x,
                x2=due_x,
                duration=relative(record.next_check_time - previous_time),
                interval=_interval(previous),
                reason=previous.reason if previous is not None else "",
                reason_lines=_wrap(previous.reason if previous is not None else "", due_x - x),
                pending=True,
            )
        )
        label = "next check " + (
            "due now"
            if record.next_check_time <= now
            else f"in {relative(record.next_check_time - now)}"
        )
        events.append(Event(x=due_x, label=label, category="pending"))
        end_x = due_x
    width = end_x + RIGHT_PX + 80.0
    points = [
        (mark.x, PROGRESS_TOP + PROGRESS_HEIGHT * (1 - fraction), f"{fraction:.0%}")
        for mark, call in zip(marks, calls, strict=True)
        if (fraction := check_progress(call)) is not None
    ]
    return Timeline(
        width=max(width, 480.0),
        height=HEIGHT,
        axis_y=AXIS_Y,
        marks=marks,
        gaps=gaps,
        events=events,
        progress_points=points,
        progress_top=PROGRESS_TOP,
        progress_height=PROGRESS_HEIGHT,
    )


def _gap(x1: float, x2: float, seconds: float, previous: CheckRecord | None) -> Gap:
    reason = previous.reason if previous is not None else ""
    return Gap(
        x1=x1,
        x2=x2,
        duration=relative(seconds),
        interval=_interval(previous),
        reason=reason,
        reason_lines=_wrap(reason, x2 - x1),
        pending=False,
    )


def _interval(check: CheckRecord | None) -> str:
    if check is None or check.interval_s is None:
        return ""
    return relative(check.interval_s)


def _wrap(text: str, width_px: float, *, lines: int = 2) -> tuple[str, ...]:
    """`text` wrapped at spaces into at most `lines` lines that fit in `width_px` of 11 px
    text; what does not fit is cut with an ellipsis (the full text is in the gap's tooltip)."""
    fits = max(4, int((width_px - 12) * _CHARS_PER_PX))
    out: list[str] = []
    rest = text.strip()
    while rest and len(out) < lines:
        if len(rest) <= fits:
            out.append(rest)
            rest = ""
            break
        cut = rest.rfind(" ", 0, fits + 1)
        if cut <= 0 or len(out) == lines - 1:
            cut = fits
        out.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        last = out[-1]
        out[-1] = (last if len(last) < fits else last[: fits - 1]) + "\u2026"
    return tuple(out)


def _title(call: CheckRecord, offset: str) -> str:
    took = relative(call.finished_time - call.started_time)
    parts = [f"#{call.check_number} {call.kind} at {offset}, took {took}: {call.outcome}"]
    if call.grpc_code:
        parts.append(f"({call.grpc_code})")
    if call.message:
        parts.append(f"- {call.message}")
    return " ".join(parts)
