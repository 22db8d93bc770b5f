"""prometheus_client adapter: :class:`PrometheusSink` (``pip install fencing-coord[prometheus]``).

    from prometheus_client import start_http_server
    from fencing_coord.metrics.prometheus import PrometheusSink
    from fencing_coord.observability import Metrics, set_metrics

    set_metrics(Metrics(PrometheusSink()))
    start_http_server(9464)

Series are named by :attr:`~fencing_coord.observability.Instrument.prometheus_name`
(``lock_acquire_latency_seconds``, ``fencing_reject_total``, ``token_gap``), with an
optional ``namespace`` prefix. ``token_gap`` has negative buckets (stale tokens), so
prometheus_client exposes no ``token_gap_sum`` for it: use its buckets and count.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, InvalidArgumentType
from ..observability import INSTRUMENTS, Instrument, Kind

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["PrometheusSink"]

_log = logging.getLogger(__name__)


class PrometheusSink:
    """Registers one prometheus_client metric per instrument in ``registry`` (default:
    prometheus_client's global ``REGISTRY``) and feeds them.

    Raises :class:`ConfigurationError` when prometheus_client is not installed or the
    names are already registered there (one sink per registry and namespace).
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, namespace: str = "") -> None:
        try:
            from prometheus_client import REGISTRY, Counter, Histogram
        except ImportError as exc:
            raise ConfigurationError(
                "PrometheusSink needs prometheus_client: pip install 'fencing-coord[prometheus]'"
            ) from exc
        if not isinstance(namespace, str):
            raise InvalidArgumentType(f"namespace must be a str, not {type(namespace).__name__}")
        self.registry = REGISTRY if registry is None else registry
        self._counters: dict[Instrument, Counter] = {}
        self._histograms: dict[Instrument, Histogram] = {}
        # Children by label values, kept here: labels() takes a lock and builds a key each call.
        self._counter_children: dict[tuple[Instrument, tuple[str, ...]], Counter] = {}
        self._histogram_children: dict[tuple[Instrument, tuple[str, ...]], Histogram] = {}
        self._mutex = threading.Lock()
        try:
            for instrument in INSTRUMENTS:
                name, help_text, labels = instrument.prometheus_name, instrument.description, instrument.labels
                if instrument.kind is Kind.COUNTER:
                    self._counters[instrument] = Counter(name, help_text, labels, namespace=namespace,
                                                         registry=self.registry)
                else:
                    self._histograms[instrument] = Histogram(name, help_text, labels, namespace=namespace,
                                                             registry=self.registry, buckets=instrument.buckets)
        except ValueError as exc:  # "Duplicated timeseries in CollectorRegistry"
            self.close()
            raise ConfigurationError(f"cannot register fencing-coord's metrics: {exc}") from exc

    def __repr__(self) -> str:
        return f"PrometheusSink({self.registry!r})"

    def add(self, instrument: Instrument, amount: float, labels: tuple[str, ...]) -> None:
        key = (instrument, labels)
        child = self._counter_children.get(key)
        if child is None:
            with self._mutex:
                child = self._counter_children.setdefault(key, self._counters[instrument].labels(*labels))
        child.inc(amount)

    def observe(self, instrument: Instrument, value: float, labels: tuple[str, ...]) -> None:
        key = (instrument, labels)
        child = self._histogram_children.get(key)
        if child is None:
            with self._mutex:
                child = self._histogram_children.setdefault(key, self._histograms[instrument].labels(*labels))
        child.observe(value)

    def close(self) -> None:
        """Unregister the metrics from the registry."""
        for metric in [*self._counters.values(), *self._histograms.values()]:
            self.registry.unregister(metric)
        self._counters.clear()
        self._histograms.clear()
