"""Counters and histograms kept as plain numbers expose what prometheus-client's own would."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from asyncplugin.observability import DURATION_BUCKETS_S
from asyncplugin.observability.counting import (
    CounterSeries,
    GaugeValue,
    HistogramSeries,
    SeriesCollector,
)
from tests.observability.conftest import samples, total

OBSERVATIONS = [
    ("a", "CHECK", 0.0),
    ("a", "CHECK", 0.0001),  # exactly a bound: counted in that bucket (le is <=)
    ("a", "CHECK", 0.00011),
    ("b", "INITIATE", 7.0),
    ("a", "CHECK", 1000.0),  # above every bound: +Inf only
    ("a", "CANCEL", 0.3),
]


def _without_created(text: bytes) -> list[str]:
    return [line for line in text.decode().splitlines() if "_created" not in line]


@pytest.mark.parametrize("generate", [generate_latest, generate_openmetrics])
def test_the_exposition_is_prometheus_clients_own(generate: object) -> None:
    """The same observations through prometheus-client's Counter and Histogram and through the
    plain series give the same text and OpenMetrics exposition (the `_created` timestamps
    aside, which differ by when each was made)."""
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    counter = Counter("x_calls", "Calls.", ["plugin", "kind"], registry=theirs)
    histogram = Histogram(
        "x_duration_seconds", "Durations.", ["kind"], buckets=DURATION_BUCKETS_S, registry=theirs
    )
    calls = CounterSeries("x_calls", "Calls.", ["plugin", "kind"])
    durations = HistogramSeries("x_duration_seconds", "Durations.", ["kind"], DURATION_BUCKETS_S)
    ours.register(SeriesCollector([calls, durations]))
    for plugin, kind, value in OBSERVATIONS:
        counter.labels(plugin, kind).inc()
        calls[plugin, kind] += 1
        histogram.labels(kind).observe(value)
        durations.observe(durations[kind,], value)
    assert callable(generate)
    assert _without_created(generate(ours)) == _without_created(generate(theirs))
    created = [line for line in generate(ours).decode().splitlines() if "_created{" in line]
    assert len(created) == 3 + 3  # one per counter series and one per histogram series


def test_counts_buckets_and_sums() -> None:
    """What a scrape reads: counts per labels, cumulative buckets, count and sum."""
    registry = CollectorRegistry()
    calls = CounterSeries("x_calls_total", "Calls.", ["kind"])
    durations = HistogramSeries("x_duration_seconds", "Durations.", ["kind"], [0.1, 1.0])
    in_flight = GaugeValue("x_in_flight", "In flight.")
    calls.touch(("CANCEL",))
    registry.register(SeriesCollector([calls, durations, in_flight]))
    for _, kind, value in OBSERVATIONS:
        calls[kind,] += 1
        durations.observe(durations[kind,], value)
    in_flight.value += 2
    parsed = samples(generate_latest(registry).decode())
    assert total(parsed, "x_calls_total", kind="CHECK") == 4
    assert total(parsed, "x_calls_total", kind="CANCEL") == 1
    assert total(parsed, "x_calls_total") == 6
    assert total(parsed, "x_duration_seconds_bucket", kind="CHECK", le="0.1") == 3
    assert total(parsed, "x_duration_seconds_bucket", kind="CHECK", le="1.0") == 3
    assert total(parsed, "x_duration_seconds_bucket", kind="CHECK", le="+Inf") == 4
    assert total(parsed, "x_duration_seconds_count", kind="CHECK") == 4
    assert total(parsed, "x_duration_seconds_sum", kind="CHECK") == pytest.approx(1000.00021)
    assert total(parsed, "x_in_flight") == 2


def test_a_touched_series_is_exposed_at_zero() -> None:
    registry = CollectorRegistry()
    calls = CounterSeries("x_calls", "Calls.", ["method", "result"])
    calls.touch(("CompleteTask", "refused"))
    registry.register(SeriesCollector([calls]))
    parsed = samples(generate_latest(registry).decode())
    assert (
        parsed[("x_calls_total", frozenset({("method", "CompleteTask"), ("result", "refused")}))]
        == 0
    )


def test_names_clash_with_other_metrics_of_the_registry() -> None:
    """The collector describes its families, so the registry refuses a second metric of the
    same name, as it would for prometheus-client's own."""
    registry = CollectorRegistry()
    registry.register(SeriesCollector([CounterSeries("x_calls", "Calls.", ["kind"])]))
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("x_calls", "Again.", registry=registry)


def test_buckets_must_be_given_in_order() -> None:
    with pytest.raises(ValueError, match="increasing order"):
        HistogramSeries("x_seconds", "X.", [], [1.0, 0.5])
    with pytest.raises(ValueError, match="increasing order"):
        HistogramSeries("x_seconds", "X.", [], [])


def test_a_scrape_from_another_thread_while_counting_never_fails() -> None:
    """prometheus-client's own HTTP server scrapes from a thread of its own: a scrape while the
    loop's thread adds series and counts reads a consistent family list and never raises."""
    registry = CollectorRegistry()
    calls = CounterSeries("x_calls", "Calls.", ["plugin"])
    durations = HistogramSeries("x_duration_seconds", "Durations.", ["plugin"], [0.1, 1.0])
    registry.register(SeriesCollector([calls, durations]))
    stop = threading.Event()
    errors: list[BaseException] = []

    def scrape() -> None:
        try:
            while not stop.is_set():
                generate_latest(registry)
        except BaseException as err:  # reported by the assertion below
            errors.append(err)

    scraper = threading.Thread(target=scrape)
    scraper.start()
    try:
        for i in range(30_000):
            plugin = f"p{i % 500}"  # new series keep appearing while scrapes run
            calls[plugin,] += 1
            durations.observe(durations[plugin,], i / 10_000)
    finally:
        stop.set()
        scraper.join(10)
    assert errors == []
    parsed = samples(generate_latest(registry).decode())
    assert total(parsed, "x_calls_total") == 30_000
    assert total(parsed, "x_duration_seconds_count") == 30_000
