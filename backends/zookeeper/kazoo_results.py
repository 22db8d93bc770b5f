"""What the ZooKeeper session's requests share with their callers: the meaning of a kazoo
failure that is not retried (:func:`kazoo_error`), and requests sent ahead of their
wait (:func:`presend`, :func:`collector`)."""

from __future__ import annotations

from collections.abc import Callable

from kazoo.exceptions import AuthFailedError, BadArgumentsError, ConnectionClosedError, KazooException, NoAuthError

from fencing_coord.errors import BackendUnavailable, ConfigurationError, FencingCoordError, InvalidArgument

TYPE_CHECKING = False  # no ``from typing import ...`` at runtime: see fencing_coord.typeless
if TYPE_CHECKING:
    from typing import Any

__all__ = ["collector", "kazoo_error", "presend"]


def kazoo_error(what: str, exc: KazooException) -> FencingCoordError:
    """What a kazoo failure that is not retried means (raise it ``from exc``)."""
    if isinstance(exc, ConnectionClosedError):
        return InvalidArgument(f"{what}: the backend was closed")
    if isinstance(exc, NoAuthError | AuthFailedError):
        return ConfigurationError(
            f"{what}: ZooKeeper refused access ({type(exc).__name__}); check the user:password "
            "in the URL and the ACLs of the znodes"
        )
    if isinstance(exc, BadArgumentsError):
        return InvalidArgument(f"{what}: ZooKeeper refused the arguments ({exc!r})")
    return BackendUnavailable(f"{what}: ZooKeeper failed: {exc!r}")


def presend(epoch: Callable[[], int], start: Callable[[], Any]) -> Callable[[], Any]:
    """Send ``start()``'s request now and return a ``start`` for :meth:`.session.Session.request`
    that collects it: so several reads go out before any answer is awaited (one round
    trip, not one each). ``epoch()`` counts the session's connections: a request
    collected on a later connection than the one it went out on is sent again, as on
    every later call (a retry after a reconnection). Its answer, or its failure, belongs
    to a connection gone since; taken as is, a failure made ``request`` wait for a
    connection newer than the current one, which never came."""
    sent_on = epoch()
    return collector(epoch, sent_on, start(), start)


def collector(epoch: Callable[[], int], sent_on: int, result: Any, start: Callable[[], Any]) -> Callable[[], Any]:
    """As :func:`presend`, for ``start()``'s ``result`` sent already on connection
    ``sent_on``: so that several requests can be sent together first."""
    pending = [result]

    def collect() -> Any:
        if pending and epoch() == sent_on:
            return pending.pop()
        pending.clear()
        return start()

    return collect
