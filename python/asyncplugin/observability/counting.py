"""Counters and histograms kept as plain numbers, exposed to Prometheus when it scrapes.

prometheus-client's `Counter` and `Histogram` take a lock and walk the buckets in Python on
every update (about 1 us a histogram observation), and each labelled child is looked up through
`labels()`. The engine updates several per status check, on its one event loop thread, so
here an update is a dict entry incremented (`counts[labels] += 1`), and a histogram
observation one `bisect` and two list items: a few hundred nanoseconds. The numbers become
metric families only at scrape time, through a `Collector` registered like any other: the
exposition (names, `_total`, `_bucket`/`_count`/`_sum`, `_created`, bucket bounds) is the same
as prometheus-client's own metrics would give.

Updates are meant to happen on one thread (the server's event loop). A scrape may come from
another thread (prometheus-client's own HTTP server): it copies each family under the GIL, so it
never fails, but it may see a histogram observation's bucket counted before its sum.

Imported only when metrics are asked for (prometheus-client is the `[metrics]` extra).
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    Sample,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["CounterSeries", "GaugeValue", "HistogramSeries", "SeriesCollector"]

Labels = tuple[str, ...]


class CounterSeries(dict[Labels, float]):
    """A counter family: label values -> count; `series[labels] += 1` counts one.

    A missing entry reads as 0 and notes when it was first counted (the `_created` sample).
    Label values may be str enum members (exposed as their values, `str()`), which saves the
    caller reading `.value`, a property, on every update.
    """

    __slots__ = ("created", "documentation", "labelnames", "name")

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        super().__init__()
        self.name = name.removesuffix("_total")
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.created: dict[Labels, float] = {}

    def __missing__(self, labels: Labels) -> float:
        self.created.setdefault(labels, time.time())
        return 0

    def touch(self, labels: Labels) -> None:
        """Makes the series exist at 0 (so it is exposed before anything is counted)."""
        self[labels] += 0

    def family(self, *, created: bool) -> Metric:
        """The counter family as Prometheus sees it now."""
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        stamps = self.created
        for labels, value in list(self.items()):  # in creation order, as prometheus-client
            stamp = stamps.get(labels) if created else None
            # str(): a label value may be a str enum member (its value).
            family.add_metric([str(label) for label in labels], value, created=stamp)
        return family


class HistogramSeries(dict[Labels, list[float]]):
    """A histogram family: label values -> `[sum, count in bucket 0, ..., count in +Inf]`.

    `observe(series[labels], value)` records one observation; `series[labels]` makes the row on
    first use, so a caller with fixed labels can keep the row and skip the look-up.
    """

    __slots__ = ("bounds", "created", "documentation", "labelnames", "name")

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__()
        bounds = [float(bound) for bound in buckets]
        if bounds != sorted(bounds) or not bounds:
            raise ValueError(f"{name}: buckets must be given, in increasing order")
        if bounds[-1] == math.inf:
            bounds.pop()
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds: tuple[float, ...] = tuple(bounds)
        self.created: dict[Labels, float] = {}

    def __missing__(self, labels: Labels) -> list[float]:
        row = self[labels] = [0.0] * (len(self.bounds) + 2)
        self.created[labels] = time.time()
        return row

    def observe(self, row: list[float], value: float) -> None:
        """Records `value` in a row of this family (`series[labels]`)."""
        row[bisect.bisect_left(self.bounds, value) + 1] += 1
        row[0] += value

    def family(self, *, created: bool) -> Metric:
        """The histogram family as Prometheus sees it now (cumulative buckets, +Inf last)."""
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        les = [*(_go_float(bound) for bound in self.bounds), "+Inf"]
        for labels, row in [(labels, list(row)) for labels, row in list(self.items())]:
            cumulative = 0.0
            buckets = []
            for le, count in zip(les, row[1:], strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(labels, buckets, row[0])
            stamp = self.created.get(labels)
            if created and stamp is not None:
                named = dict(zip(self.labelnames, labels, strict=True))
                family.samples.append(Sample(f"{self.name}_created", named, stamp))
        return family


class GaugeValue:
    """A gauge without labels kept as a plain number: `gauge.value += 1`."""

    __slots__ = ("documentation", "name", "value")

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self.value: float = 0

    def family(self, *, created: bool) -> Metric:
        """The gauge as Prometheus sees it now (`created` does not apply to gauges)."""
        return GaugeMetricFamily(self.name, self.documentation, value=self.value)


def _go_float(value: float) -> str:
    """A bucket bound as prometheus-client writes its `le` label."""
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


Series = CounterSeries | HistogramSeries | GaugeValue


class SeriesCollector(Collector):
    """Exposes counter, histogram and gauge series to a registry, built at scrape time."""

    def __init__(self, series: Iterable[Series]) -> None:
        self._series: Final = tuple(series)

    def describe(self) -> Iterator[Metric]:
        return (s.family(created=False) for s in self._series)

    def collect(self) -> Iterator[Metric]:
        created = bool(getattr(_prometheus_metrics, "_use_created", True))
        return iter([s.family(created=created) for s in self._series])
