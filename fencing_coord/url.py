"""Backend URLs and their options: :func:`parse_url`, :class:`BackendURL`, :class:`OptionReader`.

``scheme://[user[:password]@]host[:port][,host[:port]...][/path][?option=value&...]``

Query options are strings; keyword arguments to :func:`fencing_coord.connect` override
them. Every backend reads the common options through :meth:`OptionReader.common`; each
backend's class docstring lists its own.

=========== ========================================== ==========
option      meaning                                    default
=========== ========================================== ==========
ttl         lease/session lifetime, seconds            10
namespace   key prefix isolating one application       ``default``
timeout     seconds to wait for the service per call   5
identity    holder identity shown to other clients     host:pid:random
=========== ========================================== ==========
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote

from .errors import ConfigurationError
from .validation import check_name, check_positive_seconds

__all__ = ["BackendURL", "CommonOptions", "OptionReader", "parse_url"]


@dataclass(frozen=True)
class BackendURL:
    """A parsed backend URL. ``hosts`` keeps the order given; ``port`` is None when
    the URL has none. ``path`` is the part after the hosts, without the leading ``/``."""

    scheme: str
    hosts: tuple[tuple[str, int | None], ...]
    path: str = ""
    username: str | None = None
    password: str | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    raw: str = ""

    def host_list(self, default_port: int) -> list[tuple[str, int]]:
        """The hosts with ``default_port`` filled in; at least ``127.0.0.1``."""
        hosts = [(h, p if p is not None else default_port) for h, p in self.hosts]
        return hosts or [("127.0.0.1", default_port)]

    def redacted(self) -> str:
        """The URL with any password replaced by ``***`` (for messages and logs)."""
        if self.password is None:
            return self.raw
        scheme, rest = self.raw.split("://", 1)
        netloc, sep, tail = rest.partition("/")
        creds, _, hosts = netloc.rpartition("@")
        user = creds.partition(":")[0]
        return f"{scheme}://{user}:***@{hosts}{sep}{tail}"


def parse_url(url: str) -> BackendURL:
    """Parse ``url`` into a :class:`BackendURL`; :class:`ConfigurationError` if malformed."""
    if not isinstance(url, str):
        raise ConfigurationError(f"a backend URL must be a str, not {type(url).__name__}")
    if "://" not in url:
        raise ConfigurationError(
            f"{url!r} is not a backend URL; expected scheme://host[:port], "
            "e.g. etcd://127.0.0.1:2379, zookeeper://127.0.0.1:2181/app or memory://demo"
        )
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    if not scheme.replace("+", "").replace("-", "").isalnum():
        raise ConfigurationError(f"{url!r}: {scheme!r} is not a valid URL scheme")
    if "#" in rest:
        raise ConfigurationError(f"{url!r}: a backend URL takes no #fragment")
    # urlsplit rejects comma-separated host lists with ports, so split by hand.
    rest, _, query = rest.partition("?")
    netloc, _, tail = rest.partition("/")
    username = password = None
    if "@" in netloc:
        creds, netloc = netloc.rsplit("@", 1)
        user, _, pw = creds.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if _ else None
    hosts: list[tuple[str, int | None]] = []
    for item in filter(None, (h.strip() for h in netloc.split(","))):
        hosts.append(_parse_host(item, url))
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ConfigurationError(f"{url!r}: malformed query string {query!r}") from exc
    options: dict[str, str] = {}
    for key, value in pairs:
        if key in options:
            raise ConfigurationError(f"{url!r}: option {key!r} is given twice")
        options[key] = value
    return BackendURL(scheme, tuple(hosts), unquote(tail), username, password, options, url)


def _parse_host(item: str, url: str) -> tuple[str, int | None]:
    if item.startswith("["):
        host, _, after = item[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else ""
        if after and not after.startswith(":"):
            raise ConfigurationError(f"{url!r}: bad IPv6 host {item!r}")
    elif item.count(":") == 1:
        host, port_text = item.split(":")
    elif ":" in item:
        raise ConfigurationError(f"{url!r}: put IPv6 addresses in brackets, e.g. [::1]:2379")
    else:
        host, port_text = item, ""
    if not host:
        raise ConfigurationError(f"{url!r}: empty host in {item!r}")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigurationError(f"{url!r}: port {port_text!r} of {host!r} is not a number from 1 to 65535")
    return host, int(port_text)


T = TypeVar("T")


@dataclass(frozen=True)
class CommonOptions:
    """The options every backend takes, validated (see the module docstring)."""

    ttl: float
    namespace: str
    timeout: float
    identity: str


def _default_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class OptionReader:
    """Reads options for a backend: keyword options win over query strings, every
    value is validated, and options nobody read are reported by :meth:`finish`."""

    def __init__(self, url: BackendURL, options: Mapping[str, Any]) -> None:
        self.url = url
        self._values: dict[str, Any] = {**url.query, **options}
        self._read: set[str] = set()

    def get(self, name: str, default: T, parse: Callable[[Any], T]) -> T:
        """Return option ``name`` parsed by ``parse`` (ValueError/TypeError from it
        become :class:`ConfigurationError`), or ``default`` when absent."""
        self._read.add(name)
        if name not in self._values or self._values[name] is None:
            return default
        raw = self._values[name]
        try:
            return parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"{self.url.redacted() or self.url.scheme}: option {name}={raw!r}: {exc}") from exc

    def seconds(self, name: str, default: float) -> float:
        """A positive, finite number of seconds."""
        return self.get(name, default, lambda v: check_positive_seconds(_number(v), name))

    def string(self, name: str, default: str) -> str:
        return self.get(name, default, _string)

    def common(self, *, ttl: float = 10.0, timeout: float = 5.0) -> CommonOptions:
        """Read ``ttl``, ``namespace``, ``timeout`` and ``identity``."""
        namespace = self.get("namespace", "default", lambda v: check_name(_string(v), "namespace"))
        identity = self.get("identity", "", _string) or _default_identity()
        return CommonOptions(self.seconds("ttl", ttl), namespace, self.seconds("timeout", timeout), identity)

    def finish(self) -> None:
        """Raise :class:`ConfigurationError` for any option no one asked for."""
        unknown = sorted(set(self._values) - self._read)
        if unknown:
            known = ", ".join(sorted(self._read))
            raise ConfigurationError(
                f"{self.url.scheme}:// does not take option(s) {', '.join(unknown)}; it takes: {known}"
            )


def _number(value: Any) -> float:
    if isinstance(value, str):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, not {type(value).__name__}")
    return float(value)


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a str, not {type(value).__name__}")
    return value
