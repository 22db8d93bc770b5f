"""``await fencing_coord.aio.connect(url)``: the async backend of a URL's scheme.

Schemes are registered in the ``fencing_coord.aio_backends`` entry-point group (a
third-party async backend registers its own the same way), each naming a subclass of
:class:`~fencing_coord.aio.AsyncLockBackend`. URLs and options are exactly those of
:func:`fencing_coord.connect`.
"""

from __future__ import annotations

from typing import Any

from ..config import load_scheme, scrubbed, url_or_env
from ..errors import ConfigurationError
from ..url import BackendURL, parse_url
from .backend import AsyncLockBackend

__all__ = ["AIO_ENTRY_POINT_GROUP", "backend_class", "connect"]

AIO_ENTRY_POINT_GROUP = "fencing_coord.aio_backends"

_BUILTIN: dict[str, tuple[str, str | None]] = {
    "memory": ("fencing_coord.backends.aio_memory:AsyncMemoryBackend", None),
    "etcd": ("fencing_coord.backends.etcd.aio_backend:AsyncEtcdBackend", "etcd"),
    "etcds": ("fencing_coord.backends.etcd.aio_backend:AsyncEtcdBackend", "etcd"),
    "zookeeper": ("fencing_coord.backends.zookeeper.aio_backend:AsyncZooKeeperBackend", "zookeeper"),
    "zk": ("fencing_coord.backends.zookeeper.aio_backend:AsyncZooKeeperBackend", "zookeeper"),
    "zookeepers": ("fencing_coord.backends.zookeeper.aio_backend:AsyncZooKeeperBackend", "zookeeper"),
    "zks": ("fencing_coord.backends.zookeeper.aio_backend:AsyncZooKeeperBackend", "zookeeper"),
}


async def connect(url: str | None = None, **options: Any) -> AsyncLockBackend:
    """Return a connected :class:`AsyncLockBackend` for ``url`` (default
    ``$FENCING_COORD_URL``); usable as ``async with``. Raises as
    :func:`fencing_coord.connect`: ConfigurationError for a bad URL, scheme, extra or
    option, BackendUnavailable when the service cannot be reached within ``timeout``."""
    parsed = parse_url(url_or_env(url))
    cls = backend_class(parsed)
    with scrubbed(parsed):
        return await cls.open(parsed, options)


def backend_class(url: BackendURL) -> type[AsyncLockBackend]:
    """The async backend class of ``url``'s scheme, its client library imported.

    Looking a scheme up reads every installed package's entry points and imports the
    client library, which takes long enough (~0.1 s) to stall an event loop: the answer
    is kept for the process, and a program may call this once before its loop starts."""
    cls = _classes.get(url.scheme)
    if cls is None:
        found = load_scheme(url.scheme, url.redacted(), AIO_ENTRY_POINT_GROUP, _BUILTIN)
        if not (isinstance(found, type) and issubclass(found, AsyncLockBackend)):
            raise ConfigurationError(f"entry point {url.scheme!r} of {AIO_ENTRY_POINT_GROUP} is not an "
                                     "AsyncLockBackend subclass")
        cls = _classes[url.scheme] = found
    return cls


_classes: dict[str, type[AsyncLockBackend]] = {}
