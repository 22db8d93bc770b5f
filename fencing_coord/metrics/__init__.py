"""Adapters from the core's metrics hook (:mod:`fencing_coord.observability`) to metrics
libraries, each behind an extra and imported only when named:

- :mod:`fencing_coord.metrics.prometheus`: prometheus_client (``fencing-coord[prometheus]``);
- :mod:`fencing_coord.metrics.otel`: the OpenTelemetry metrics API (``fencing-coord[otel]``).
"""

from __future__ import annotations

__all__: list[str] = []
