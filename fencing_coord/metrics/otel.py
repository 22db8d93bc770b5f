"""OpenTelemetry adapter: :class:`OpenTelemetrySink` (``pip install fencing-coord[otel]``).

    from fencing_coord.metrics.otel import OpenTelemetrySink
    from fencing_coord.observability import Metrics, set_metrics

    set_metrics(Metrics(OpenTelemetrySink()))   # the global MeterProvider, or pass one

Instruments are created on the meter ``fencing_coord`` with the names, units and
descriptions of :mod:`fencing_coord.observability` (``lock_acquire_latency``, unit
``s``; ``fencing_reject``, a counter), so OpenTelemetry's Prometheus exporter exposes the
same series as :mod:`fencing_coord.metrics.prometheus`. Labels become attributes.

One difference: OpenTelemetry histograms take non-negative values only (the SDK drops
the others), so ``token_gap`` is recorded as the gap's magnitude with an attribute
``sign``: ``negative`` (stale), ``zero`` or ``positive``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import ConfigurationError
from ..observability import INSTRUMENTS, Instrument, Kind

if TYPE_CHECKING:
    from opentelemetry.metrics import Counter, Histogram, MeterProvider

__all__ = ["METER_NAME", "OpenTelemetrySink"]

_log = logging.getLogger(__name__)

#: The instrumentation scope of every instrument.
METER_NAME = "fencing_coord"

Attributes = dict[str, str]


class OpenTelemetrySink:
    """Creates the instruments on ``meter_provider`` (default: the global one) and
    records into them. Raises :class:`ConfigurationError` when opentelemetry-api is not
    installed."""

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        try:
            from opentelemetry import metrics
        except ImportError as exc:
            raise ConfigurationError(
                "OpenTelemetrySink needs opentelemetry-api: pip install 'fencing-coord[otel]'"
            ) from exc
        provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
        meter = provider.get_meter(METER_NAME, __version__)
        self._counters: dict[Instrument, Counter] = {}
        self._histograms: dict[Instrument, Histogram] = {}
        for instrument in INSTRUMENTS:
            if instrument.kind is Kind.COUNTER:
                self._counters[instrument] = meter.create_counter(instrument.name, instrument.unit,
                                                                  instrument.description)
            else:
                buckets = [b for b in instrument.buckets if b >= 0]
                self._histograms[instrument] = meter.create_histogram(
                    instrument.name, instrument.unit, instrument.description,
                    explicit_bucket_boundaries_advisory=buckets)
        # Attribute dicts by label values: built once per series, not per measurement.
        self._attributes: dict[tuple[Instrument, tuple[str, ...], str], Attributes] = {}

    def __repr__(self) -> str:
        return "OpenTelemetrySink()"

    def add(self, instrument: Instrument, amount: float, labels: tuple[str, ...]) -> None:
        self._counters[instrument].add(amount, self._attrs(instrument, labels, ""))

    def observe(self, instrument: Instrument, value: float, labels: tuple[str, ...]) -> None:
        sign = ""
        if instrument.signed:
            sign = "negative" if value < 0 else "zero" if value == 0 else "positive"
            value = abs(value)
        self._histograms[instrument].record(value, self._attrs(instrument, labels, sign))

    def _attrs(self, instrument: Instrument, labels: tuple[str, ...], sign: str) -> Attributes:
        key = (instrument, labels, sign)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = dict(zip(instrument.labels, labels, strict=True))
            if sign:
                attributes["sign"] = sign
            # Racing threads may both build it: the same dict either way.
            self._attributes[key] = attributes
        return attributes
