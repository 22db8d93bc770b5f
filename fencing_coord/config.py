"""Backend selection from configuration: :func:`connect`.

A URL that does not fit is a :class:`ConfigurationError`, never a default: an empty
entry in the host list, an empty port after ``:``, an unclosed ``[``. ``etcd://`` and
``zookeeper://`` need at least one host (:meth:`BackendURL.host_list`); ``memory://``
takes a table name in the host's place and may omit it (the default table). Percent-
encode reserved characters in a password (``@ : / ? # %``).

The scheme picks the backend through the ``fencing_coord.backends`` entry-point group
(a third-party package registers its own scheme the same way ours do). The URL grammar
and the common options are in :mod:`fencing_coord.url`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .errors import ConfigurationError, FencingCoordError
from .interface import LockBackend
from .url import BackendURL, CommonOptions, OptionReader, parse_url

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from importlib.metadata import EntryPoint
    from typing import Any

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_VAR",
    "BackendURL",
    "CommonOptions",
    "OptionReader",
    "connect",
    "load_backend_class",
    "load_scheme",
    "parse_url",
    "scrubbed",
    "url_or_env",
]

ENTRY_POINT_GROUP = "fencing_coord.backends"
ENV_VAR = "FENCING_COORD_URL"

# Our own schemes, used when the package metadata (and so its entry points) is not
# installed, e.g. when running from a source tree; and to name the extra to install.
_BUILTIN: dict[str, tuple[str, str | None]] = {
    "memory": ("fencing_coord.backends.memory:MemoryBackend", None),
    "etcd": ("fencing_coord.backends.etcd:EtcdBackend", "etcd"),
    "etcds": ("fencing_coord.backends.etcd:EtcdBackend", "etcd"),
    "zookeeper": ("fencing_coord.backends.zookeeper:ZooKeeperBackend", "zookeeper"),
    "zk": ("fencing_coord.backends.zookeeper:ZooKeeperBackend", "zookeeper"),
    "redis": ("fencing_coord.backends.redis:RedisBackend", "redis"),
    "rediss": ("fencing_coord.backends.redis:RedisBackend", "redis"),
    "zookeepers": ("fencing_coord.backends.zookeeper:ZooKeeperBackend", "zookeeper"),
    "zks": ("fencing_coord.backends.zookeeper:ZooKeeperBackend", "zookeeper"),
}


def _entry_point(scheme: str, group: str) -> EntryPoint | None:
    from importlib.metadata import entry_points  # tens of ms: only for schemes not our own

    for ep in entry_points(group=group):
        if ep.name == scheme:
            return ep
    return None


def load_backend_class(scheme: str, url: str) -> type[LockBackend]:
    """The :class:`LockBackend` subclass serving ``scheme`` (its module imported).
    Raises :class:`ConfigurationError` naming the known schemes, or the extra to install;
    ``url`` (redacted) is for the messages."""
    return _load_backend_class(scheme, url)


def _load_backend_class(scheme: str, url: str) -> type[LockBackend]:
    cls = load_scheme(scheme, url, ENTRY_POINT_GROUP, _BUILTIN)
    if not (isinstance(cls, type) and issubclass(cls, LockBackend)):
        raise ConfigurationError(f"entry point {scheme!r} of {ENTRY_POINT_GROUP} is not a LockBackend subclass")
    return cls


def load_scheme(scheme: str, url: str, group: str, builtin_schemes: dict[str, tuple[str, str | None]]) -> object:
    """The object (a backend class) that entry-point ``group`` (else ``builtin_schemes``:
    scheme -> ("module:attribute", extra)) names for ``scheme``; ConfigurationError,
    naming the extra to install, when it cannot be loaded."""
    builtin = builtin_schemes.get(scheme)
    # Our own schemes are registered as entry points with the same targets; resolving
    # them directly spares every connect the scan of the installed distributions.
    ep = _entry_point(scheme, group) if builtin is None else None
    if ep is None and builtin is None:
        from importlib.metadata import entry_points

        known = sorted({ep.name for ep in entry_points(group=group)} | set(builtin_schemes))
        raise ConfigurationError(
            f"{url!r}: no backend for scheme {scheme!r}; known schemes: {', '.join(known)}. "
            f"A third-party backend registers its scheme in the {group!r} entry-point group."
        )
    target = ep.value if ep is not None else builtin[0]  # type: ignore[index]
    extra = builtin[1] if builtin is not None else None
    try:
        module_name, _, attr = target.partition(":")
        module = __import__(module_name, fromlist=[attr])
        cls = getattr(module, attr)
    except ImportError as exc:
        if extra is not None:
            hint = f"pip install 'fencing-coord[{extra}]'"
        else:
            hint = f"install the package that provides the {scheme!r} backend"
        raise ConfigurationError(f"{scheme}:// needs a library that is not installed ({exc}); run: {hint}") from exc
    return cls


def connect(url: str | None = None, **options: Any) -> LockBackend:
    """Return a connected :class:`LockBackend` for ``url``.

    ``url`` defaults to ``$FENCING_COORD_URL``. Keyword ``options`` override the URL's
    query options. Raises :class:`ConfigurationError` for a malformed URL, an unknown
    scheme, a missing extra or a bad option (the message says what to fix), and
    :class:`BackendUnavailable` when the service cannot be reached in ``timeout``.
    """
    parsed = parse_url(url_or_env(url))
    cls = _load_backend_class(parsed.scheme, parsed.redacted())
    with scrubbed(parsed):
        return cls.from_url(parsed, options)


def url_or_env(url: str | None) -> str:
    """``url``, or ``$FENCING_COORD_URL`` when it is None (ConfigurationError if unset)."""
    if url is None:
        url = os.environ.get(ENV_VAR)
        if not url:
            raise ConfigurationError(f"no backend URL given and ${ENV_VAR} is not set; e.g. connect('etcd://127.0.0.1:2379')")
    return url


@contextlib.contextmanager
def scrubbed(url: BackendURL) -> Iterator[None]:
    """Run the block (a backend's construction); whatever it raises leaves without
    ``url``'s password, and a ValueError or TypeError becomes ConfigurationError."""
    try:
        yield
    except FencingCoordError as exc:
        _scrub_chain(exc, url)
        raise
    except (ValueError, TypeError) as exc:
        _scrub_chain(exc, url)
        raise ConfigurationError(url.scrub(f"{url.redacted()}: {exc}")) from exc


def _scrub_chain(exc: BaseException, url: BackendURL) -> None:
    """Hide ``url``'s password in the messages of ``exc`` and the exceptions it chains:
    whatever a backend wrote into an error, connect() never lets the password out."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(url.scrub(arg) if isinstance(arg, str) else arg for arg in current.args)
        current = current.__cause__ or current.__context__
