"""Refused calls are logged without flooding: the first in full, the rest as one count."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest

from asyncplugin.plugin.auth import RefusalLog
from tests.security.conftest import StartServer, bearer

_LOGGER = "asyncplugin.auth"


class _Clock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == _LOGGER]


def test_the_first_refusal_is_logged_and_the_rest_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Within the interval only the first refusal is a line; the next refusal after the interval
    writes the summary (count, span, reasons), then itself in full."""
    caplog.set_level(logging.INFO, logger=_LOGGER)
    clock = _Clock()
    refusals = RefusalLog(interval_s=60.0, clock=clock)
    refusals.refused("/p.S/M", "a wrong token")
    for second, reason in enumerate(["a wrong token", "no authorization metadata"] * 2, start=1):
        clock.now = 1000.0 + second
        refusals.refused("/p.S/M", reason)
    assert _lines(caplog) == ["refused a call to /p.S/M: a wrong token"]
    assert refusals.pending == 4
    clock.now = 1060.0
    refusals.refused("/p.S/Other", "no authorization metadata")
    assert _lines(caplog) == [
        "refused a call to /p.S/M: a wrong token",
        "refused 4 more calls in 4 s (a wrong token: 2, no authorization metadata: 2)",
        "refused a call to /p.S/Other: no authorization metadata",
    ]
    assert refusals.pending == 0


def test_a_flood_costs_two_lines(caplog: pytest.LogCaptureFixture) -> None:
    """5,000 refusals within one interval: one line, and one summary when flushed."""
    caplog.set_level(logging.INFO, logger=_LOGGER)
    clock = _Clock()
    refusals = RefusalLog(interval_s=60.0, clock=clock)
    for number in range(5000):
        clock.now = 1000.0 + number * 0.01
        refusals.refused("/p.S/M", "a wrong token")
    assert len(_lines(caplog)) == 1
    refusals.flush()
    refusals.flush()  # nothing more to say
    assert _lines(caplog)[1:] == ["refused 4999 more calls in 50 s (a wrong token: 4999)"]


def test_refusals_spread_out_are_each_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A refusal a full interval after the last logged one is logged in full again."""
    caplog.set_level(logging.INFO, logger=_LOGGER)
    clock = _Clock()
    refusals = RefusalLog(interval_s=10.0, clock=clock)
    for number in range(3):
        clock.now = 1000.0 + 10.0 * number
        refusals.refused("/p.S/M", "a wrong token")
    assert _lines(caplog) == ["refused a call to /p.S/M: a wrong token"] * 3


def test_the_interval_must_be_positive() -> None:
    """A zero or negative interval is refused, naming the value."""
    with pytest.raises(ValueError, match="interval_s must be > 0, got 0"):
        RefusalLog(interval_s=0)


async def test_in_a_loop_a_timer_writes_the_summary_when_the_interval_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With an event loop running, the summary does not wait for another refusal: a timer is
    set for the end of the interval (its callback is run here rather than waited for)."""
    caplog.set_level(logging.INFO, logger=_LOGGER)
    clock = _Clock()
    refusals = RefusalLog(interval_s=60.0, clock=clock)
    refusals.refused("/p.S/M", "a wrong token")
    clock.now += 15.0
    refusals.refused("/p.S/M", "a wrong token")
    timer = refusals._timer
    assert timer is not None
    assert timer.when() - asyncio.get_running_loop().time() == pytest.approx(45.0, abs=1.0)
    timer._run()  # what the loop would do at the end of the interval
    assert _lines(caplog)[-1] == "refused 1 more call in 15 s (a wrong token: 1)"
    refusals.flush()
    assert len(_lines(caplog)) == 2


async def test_a_server_logs_a_flood_of_refused_calls_in_two_lines(
    start_server: StartServer, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    """50 calls with a wrong token: all refused, one line while serving and the count when the
    server stops; no line holds a token."""
    caplog.set_level(logging.INFO, logger=_LOGGER)
    server = await start_server(auth_tokens=[token])
    wrong = "wrong-" + token
    async with grpc.aio.insecure_channel(server.address) as channel:
        call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/asyncplugin.v1.PluginService/Invoke"
        )
        for _ in range(50):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(b"", timeout=5, metadata=bearer(wrong))
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert _lines(caplog) == [
        "refused a call to /asyncplugin.v1.PluginService/Invoke: a wrong token"
    ]
    await server.stop(None)
    lines = _lines(caplog)
    assert len(lines) == 2
    assert lines[1].startswith("refused 49 more calls in ")
    assert lines[1].endswith(" s (a wrong token: 49)")
    assert not any(token in line for line in lines)
