"""``RedisStore``: the store behind a FencedResource, kept in Redis (pattern B: the
highest token and the values side by side, updated by one check-and-set).

Every fenced operation is one Lua script (``EVALSHA``): it reads the resource's highest
token, applies the admission rule and, when admitted, raises the token and writes (or
reads) the value, with no other command in between. Tokens are stored as 20 decimal
digits and compared exactly, for any 64-bit token.

Durability: the gate is only as good as the highest token it remembers. A Redis that
loses ``.../token`` (restart without persistence, failover to a replica that was
behind) forgets which holders are stale and admits their writes. So the store checks
the server like the lock backend does (``durability``, see
:mod:`~fencing_coord.backends.redis.durability`): ``fsync`` (default) needs
``appendonly yes`` with ``appendfsync always``; ``replicas`` makes each fenced
operation ``WAIT`` for that many replicas; ``best-effort`` checks nothing.

The store lives next to the Redis backend (not in ``fencing_coord.stores``): they share
the URL grammar, the TLS options, the script loading and the one place where redis-py's
errors are mapped. ``fencing_coord.stores.RedisStore`` imports it on first use.
"""

from __future__ import annotations

import logging
from typing import Any

from fencing_coord.errors import BackendUnavailable, ConfigurationError, InvalidArgumentType
from fencing_coord.stores.base import FencedOutcome, Store
from fencing_coord.url import OptionReader, parse_url
from fencing_coord.validation import check_name

from .backend import RedisBackend
from .connection import RedisConnection, RedisSettings, readable_file
from .durability import Durability, DurabilityPolicy, check_server
from .layout import ResourceKeys
from .scripts import FENCED

__all__ = ["RedisStore"]

_log = logging.getLogger(__name__)


class RedisStore(Store):
    """Fenced resources in Redis. Safe across threads, processes and hosts (Redis runs
    each script alone).

    ``RedisStore(backend)`` shares a :class:`RedisBackend`'s connection, namespace and
    durability; ``RedisStore(url)`` connects its own (``redis://`` or ``rediss://``, with
    the options ``namespace``, ``timeout``, ``durability``, ``replicas``, ``ca``,
    ``cert``, ``key``) and closes it in :meth:`close`. Raises
    :class:`ConfigurationError` for a bad URL or a server that could lose its tokens,
    :class:`BackendUnavailable` when Redis cannot be reached. A fenced operation whose
    answer is lost is not sent again: BackendUnavailable then says it may or may not
    have been carried out.
    """

    def __init__(self, backend_or_url: RedisBackend | str, *, namespace: str | None = None) -> None:
        if namespace is not None:
            check_name(namespace, "namespace")
        if isinstance(backend_or_url, RedisBackend):
            self._conn, self._owned = backend_or_url._conn, False
            self.durability = backend_or_url.durability
            self.namespace = namespace or backend_or_url.namespace
        elif isinstance(backend_or_url, str):
            url = parse_url(backend_or_url)
            if url.scheme not in RedisBackend.schemes:
                raise ConfigurationError(f"RedisStore needs a redis:// or rediss:// URL, not {url.scheme}://")
            reader = OptionReader(url, {})
            url_namespace = reader.get("namespace", "default", lambda v: check_name(v, "namespace"))
            timeout = reader.seconds("timeout", 5.0)
            ca, cert, key = (reader.get(name, None, readable_file) for name in ("ca", "cert", "key"))
            durability = reader.get("durability", None, lambda value: value)
            replicas = reader.get("replicas", None, lambda value: value)
            reader.finish()
            try:
                self.durability = DurabilityPolicy.parse(durability, replicas)
            except (ValueError, TypeError) as exc:
                raise ConfigurationError(f"{url.redacted()}: {exc}") from exc
            self._conn = RedisConnection(RedisSettings.of(url, timeout, ca, cert, key)).open()
            self._owned = True
            self.namespace = namespace or url_namespace
            try:
                check_server(self._conn, self.durability)
            except BaseException:
                self._conn.close()
                raise
        else:
            kind = type(backend_or_url).__name__
            raise InvalidArgumentType(f"RedisStore needs a RedisBackend or a redis:// URL, not {kind}")

    def close(self) -> None:
        """Close the connection this store opened (not a backend's). Idempotent."""
        if self._owned:
            self._conn.close()

    def fenced_write(self, resource: str, key: str, value: bytes, token: int, strict: bool) -> FencedOutcome:
        return self._fenced(resource, key, token, strict, [b"w", value])

    def fenced_read(self, resource: str, key: str, token: int, strict: bool) -> FencedOutcome:
        return self._fenced(resource, key, token, strict, [b"r"])

    def _fenced(self, resource: str, key: str, token: int, strict: bool, operation: list[bytes]) -> FencedOutcome:
        keys = ResourceKeys.of(self.namespace, resource)
        call = (FENCED, [keys.token, keys.data(key)], [f"{token:020d}", 1 if strict else 0, *operation])
        policy = self.durability
        if policy.mode is not Durability.REPLICAS:
            result = self._conn.run(*call, idempotent=False)
        else:
            result, acknowledged = self._conn.pipeline("fenced operation", [call],
                                                       lambda pipe: pipe.wait(policy.replicas, self._conn.wait_ms),
                                                       idempotent=False)
            if result[0] == 1 and int(acknowledged) < policy.replicas:
                raise BackendUnavailable(
                    f"{self._conn.label}: token {token} was admitted on {resource!r} by the primary, but only"
                    f" {acknowledged} of {policy.replicas} replica(s) acknowledged it within"
                    f" {self._conn.wait_ms} ms: a failover now could lose it (durability=replicas)"
                )
        highest = None if result[1] is None else _token(result[1], keys.token)
        if result[0] != 1:
            return FencedOutcome(False, highest)
        value = result[2] if len(result) > 2 else None
        return FencedOutcome(True, highest, None if value is None else bytes(value))

    def plain_write(self, resource: str, key: str, value: bytes) -> None:
        data = ResourceKeys.of(self.namespace, resource).data(key)
        self._conn.call("SET", lambda client: client.set(data, value))

    def plain_read(self, resource: str, key: str) -> bytes | None:
        data = ResourceKeys.of(self.namespace, resource).data(key)
        value: Any = self._conn.call("GET", lambda client: client.get(data))
        return None if value is None else bytes(value)

    def highest_token(self, resource: str) -> int | None:
        token_key = ResourceKeys.of(self.namespace, resource).token
        raw: Any = self._conn.call("GET", lambda client: client.get(token_key))
        return None if raw is None else _token(raw, token_key)


def _token(raw: Any, where: str) -> int:
    text = bytes(raw).decode(errors="replace") if isinstance(raw, bytes | bytearray) else str(raw)
    if len(text) != 20 or not text.isdigit():
        raise ConfigurationError(f"{where} holds {text[:40]!r}, not a fencing-coord token: another program wrote it")
    return int(text)
