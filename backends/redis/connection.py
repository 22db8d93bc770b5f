"""Reaching Redis: the URL, the redis-py client, and the edge where its errors are mapped.

``redis://[user:password@]host[:port][/db]`` and ``rediss://...`` (TLS). A password
alone (``redis://:secret@host``) authenticates with ``requirepass``; a user and password
with an ACL user. ``db`` is the database number (default 0). ``rediss://`` takes
``ca=`` (PEM file of the CA that signed the server's certificate; default: the system's
CAs), and ``cert=`` with ``key=`` (a client certificate), as ``etcds://`` does.

Only :class:`RedisConnection` touches redis-py: every redis-py error is mapped here to
:mod:`fencing_coord.errors` and chained. redis-py's own retries are off; requests that
are safe to send again (every queue script is) are retried here until ``timeout``,
others (the store's writes) are not, and say so when their outcome is unknown.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fencing_coord.errors import BackendUnavailable, ConfigurationError, FencingCoordError
from fencing_coord.url import BackendURL

from .scripts import SCRIPTS, Script

__all__ = ["DEFAULT_PORT", "RedisConnection", "RedisSettings", "readable_file"]

_log = logging.getLogger(__name__)

DEFAULT_PORT = 6379
T = TypeVar("T")

# Answers after which the same request may succeed a moment later.
_TRANSIENT = ("LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "OOM")


def readable_file(value: Any) -> str:
    """An option parser: the path of a readable file."""
    if not isinstance(value, str) or not value:
        raise TypeError("expected the path of a PEM file")
    try:
        with open(value, "rb"):
            return value
    except OSError as exc:
        raise ValueError(f"cannot read {value!r}: {exc.strerror}") from exc


@dataclass(frozen=True)
class RedisSettings:
    """Where and how to connect, from the URL and the ``ca``/``cert``/``key`` options."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool
    ca: str | None
    cert: str | None
    key: str | None
    timeout: float
    label: str

    @staticmethod
    def of(url: BackendURL, timeout: float, ca: str | None, cert: str | None, key: str | None) -> RedisSettings:
        label = url.redacted() or f"{url.scheme}://"
        if len(url.hosts) > 1:
            raise ConfigurationError(f"{label}: give one Redis server (host[:port]); Sentinel and Cluster are not"
                                     " supported")
        if url.path and not (url.path.isdigit() and int(url.path) < 2**31):
            raise ConfigurationError(f"{label}: the path is the database number, e.g. redis://host:6379/0,"
                                     f" not /{url.path}; use ?namespace= to separate applications")
        tls = url.scheme == "rediss"
        if not tls and (ca or cert or key):
            raise ConfigurationError(f"{label}: ca=, cert= and key= need TLS; use rediss://")
        if (cert is None) != (key is None):
            raise ConfigurationError(f"{label}: give both cert= and key= for a client certificate, or neither")
        [(host, port)] = url.host_list(DEFAULT_PORT)
        return RedisSettings(host, port, int(url.path or 0), url.username, url.password, tls, ca, cert, key,
                             timeout, label)

    def client(self, *, socket_timeout: float | None = None) -> redis.Redis:
        """A new redis-py client (its own connection pool); nothing is sent yet."""
        options: dict[str, Any] = {}
        if self.tls:
            options.update(ssl=True, ssl_ca_certs=self.ca, ssl_certfile=self.cert, ssl_keyfile=self.key,
                           ssl_cert_reqs="required")
        return redis.Redis(
            host=self.host, port=self.port, db=self.db, username=self.username, password=self.password,
            socket_timeout=socket_timeout or self.timeout, socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0), health_check_interval=0, **options,
        )


@contextmanager
def mapped(label: str, what: str, *, applied_unknown: bool = False) -> Iterator[None]:
    """Map redis-py errors raised inside to ours, chained. ``applied_unknown``: say in a
    BackendUnavailable that the request may have been carried out."""
    try:
        yield
    except (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError) as exc:
        raise ConfigurationError(f"{label}: Redis refused our credentials: {exc}") from exc
    except redis.exceptions.ConnectionError as exc:
        if isinstance(exc.__context__, ssl.SSLCertVerificationError):
            raise ConfigurationError(f"{label}: the server's TLS certificate is not trusted (check ca=): "
                                     f"{exc.__context__.verify_message}") from exc
        maybe = " (it may or may not have been carried out)" if applied_unknown else ""
        raise BackendUnavailable(f"{label}: {what} failed, Redis did not answer{maybe}: {exc}") from exc
    except redis.exceptions.TimeoutError as exc:
        maybe = " (it may or may not have been carried out)" if applied_unknown else ""
        raise BackendUnavailable(f"{label}: {what} failed, Redis did not answer{maybe}: {exc}") from exc
    except redis.exceptions.ResponseError as exc:
        text = str(exc)
        if text.startswith(("WRONGPASS", "NOAUTH", "NOPERM")):
            raise ConfigurationError(f"{label}: Redis refused {what}: {text}") from exc
        if text.startswith(_TRANSIENT):
            raise BackendUnavailable(f"{label}: Redis cannot serve {what} now: {text}") from exc
        if "WRONGTYPE" in text or "fencing-coord:" in text or "not an integer" in text:
            raise ConfigurationError(
                f"{label}: {what}: a key under /fencing-coord/ holds data fencing-coord did not write: {text}"
            ) from exc
        raise ConfigurationError(f"{label}: Redis refused {what}: {text}") from exc
    except redis.exceptions.RedisError as exc:
        raise BackendUnavailable(f"{label}: {what} failed: {exc!r}") from exc


class RedisConnection:
    """A redis-py client with our scripts loaded, our retry policy and our errors.

    Thread-safe (redis-py's pool gives each call its own connection)."""

    def __init__(self, settings: RedisSettings) -> None:
        self.settings = settings
        self.label = settings.label
        self.timeout = settings.timeout
        self.client = settings.client()
        self._closed = threading.Event()

    def open(self) -> RedisConnection:
        """Check the server answers and load the scripts; BackendUnavailable if it
        cannot be reached within ``timeout``, ConfigurationError if it refuses us."""
        self.call("connect", self._load_scripts)
        return self

    def _load_scripts(self, client: redis.Redis) -> None:
        pipe = client.pipeline(transaction=False)
        for script in SCRIPTS:
            pipe.script_load(script.source)
        pipe.execute()

    @property
    def wait_ms(self) -> int:
        """How long a WAIT may block, ms: half the timeout, so that its answer arrives
        before the socket gives up."""
        return max(1, round(self.timeout * 500))

    def close(self) -> None:
        self._closed.set()
        self.client.close()

    # -- calls -------------------------------------------------------------------------

    def call(self, what: str, request: Callable[[redis.Redis], T], *, idempotent: bool = True) -> T:
        """``request(client)``, errors mapped; an idempotent request is sent again after
        a failure to reach Redis until ``timeout`` seconds have passed."""
        deadline = time.monotonic() + self.timeout
        pause = 0.02
        while True:
            try:
                with mapped(self.label, what, applied_unknown=not idempotent):
                    return request(self.client)
            except BackendUnavailable:
                if not idempotent or time.monotonic() + pause >= deadline or self._closed.is_set():
                    raise
                _log.debug("%s: %s failed; trying again", self.label, what, exc_info=True)
            self._closed.wait(pause)  # a back-off, not a synchronisation: nothing to await
            pause = min(pause * 2, 0.5)

    def run(self, script: Script, keys: Sequence[str], argv: Sequence[Any], *, idempotent: bool = True) -> Any:
        """EVALSHA ``script`` (loading it again after NOSCRIPT)."""
        return self.call(script.name, lambda client: evalsha(client, script, keys, argv), idempotent=idempotent)

    def pipeline(self, what: str, calls: Sequence[tuple[Script, Sequence[str], Sequence[Any]]],
                 extra: Callable[[Any], object] | None = None, *, idempotent: bool = True) -> list[Any]:
        """Run several scripts in one round trip (one connection), in order; ``extra(pipe)``
        may queue one more command after them (WAIT). Returns every result; a script's
        own error is raised, mapped. Sent again after a failure only if ``idempotent``
        (after NOSCRIPT always: nothing ran)."""

        def request(client: redis.Redis) -> list[Any]:
            for _ in range(2):
                pipe = client.pipeline(transaction=False)
                for script, keys, argv in calls:
                    command(pipe, "EVALSHA", *script.args(keys, argv))
                if extra is not None:
                    extra(pipe)
                results: list[Any] = pipe.execute(raise_on_error=False)
                if not any(isinstance(r, redis.exceptions.NoScriptError) for r in results):
                    for result in results:
                        if isinstance(result, Exception):
                            raise result
                    return results
                self._load_scripts(client)
            raise FencingCoordError(f"{self.label}: Redis keeps forgetting our scripts (SCRIPT FLUSH in a loop?)")

        return self.call(what, request, idempotent=idempotent)


def evalsha(client: redis.Redis, script: Script, keys: Sequence[str], argv: Sequence[Any]) -> Any:
    """EVALSHA, and on NOSCRIPT: SCRIPT LOAD and EVALSHA once more."""
    try:
        return command(client, "EVALSHA", *script.args(keys, argv))
    except redis.exceptions.NoScriptError:
        client.script_load(script.source)
        return command(client, "EVALSHA", *script.args(keys, argv))


def command(target: Any, *args: Any) -> Any:
    """``target.execute_command(*args)`` on a client or pipeline (untyped in redis-py)."""
    return target.execute_command(*args)
