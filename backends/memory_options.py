"""What a ``memory://`` URL and its options mean, for both front ends (the blocking
:class:`~.memory.MemoryBackend` and the asyncio :class:`~.aio_memory.AsyncMemoryBackend`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fencing_coord.errors import ConfigurationError
from fencing_coord.url import BackendURL, OptionReader

__all__ = ["Clock", "memory_settings"]

Clock = Callable[[], float]


def memory_settings(url: BackendURL, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The table name and the keyword arguments a ``memory://`` URL and options mean."""
    reader = OptionReader(url, options)
    common = reader.common()
    clock = reader.get("clock", None, _check_clock)
    reader.finish()
    if len(url.hosts) > 1 or (url.hosts and url.hosts[0][1] is not None) or url.path:
        raise ConfigurationError(
            f"{url.redacted()}: memory:// takes one table name and no port or path, e.g. memory://demo"
        )
    name = url.hosts[0][0] if url.hosts else ""
    return name, {"ttl": common.ttl, "namespace": common.namespace, "identity": common.identity, "clock": clock}


def _check_clock(value: Any) -> Clock:
    if not callable(value):
        raise TypeError(f"clock must be a zero-argument callable returning seconds, not {type(value).__name__}")
    try:
        reading = value()
    except Exception as exc:
        raise ValueError(f"calling clock() failed: {exc!r}") from exc
    if isinstance(reading, bool) or not isinstance(reading, int | float):
        raise TypeError(f"clock() must return seconds as a number, not {type(reading).__name__}")
    return value  # type: ignore[no-any-return]
