"""What the ZooKeeper session's requests share with their callers: the meaning of a kazoo
failure that is not retried (:func:`kazoo_error`), and requests sent ahead of their
wait (:func:`presend`)."""

from __future__ import annotations

from collections.abc import Callable

from kazoo.exceptions import AuthFailedError, BadArgumentsError, ConnectionClosedError, KazooException, NoAuthError

from fencing_coord.errors import BackendUnavailable, ConfigurationError, FencingCoordError, InvalidArgument

TYPE_CHECKING = False  # no ``from typing import ...`` at runtime: see fencing_coord.typeless
if TYPE_CHECKING:
    from typing import Any

__all__ = ["kazoo_error", "presend"]


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


def presend(start: Callable[[], Any]) -> Callable[[], Any]:
    """Send ``start()``'s request now and return a ``start`` for :meth:`Session.request`
    that collects it: so several reads go out before any answer is awaited (one round
    trip, not one each). Called again (a retry after a reconnection), it sends anew."""
    pending = [start()]

    def collect() -> Any:
        return pending.pop() if pending else start()

    return collect
