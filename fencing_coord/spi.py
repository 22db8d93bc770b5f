"""What a backend implements (the service provider interface), typed.

A lock backend subclasses :class:`~fencing_coord.interface.LockBackend` and implements
its abstract ``_``-prefixed methods; a backend that also offers leader election
subclasses :class:`ElectionBackend` instead, which adds the election capability's four
methods. Both queue their contenders with the one fair-queue algorithm,
:func:`fencing_coord.fairqueue.wait_in_line`, through a small :class:`QueueDriver`, and
carry their own data on a :class:`~fencing_coord.grant.Grant` subclass, got back in an
SPI method with :func:`narrow`. The memory backend (``backends/memory.py``) is the
worked example; the README's "Writing a backend" walks through it.

What the base class does, so that no backend can diverge at the edge: argument checks,
the reentrancy rule, deadlines turned into :class:`LockTimeout`, close() withdrawing
waiters and releasing what is held. A backend reads the grants it holds with
``self._live_grants()`` and never touches the base class's private fields.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

from .errors import BackendUnavailable, InvalidArgument
from .fairqueue import EntryGone, wait_in_line
from .grant import Grant
from .interface import LockBackend
from .records import Leader

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless. Place and
# QueueDriver are imported when first named (PEP 562, at the end).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from .fairqueue_protocols import Place, QueueDriver

    G = TypeVar("G", bound=Grant)

__all__ = [
    "ROOT",
    "ElectionBackend",
    "EntryGone",
    "Place",
    "QueueDriver",
    "decode_candidate",
    "encode_candidate",
    "narrow",
    "wait_in_line",
]

#: Top of every key or path this library writes in a coordination service.
ROOT = "/fencing-coord"

def narrow(grant: Grant, kind: type[G]) -> G:
    """Return ``grant`` as the backend's own Grant subclass ``kind``.

    The base class has already checked that the grant was issued by this backend object,
    so a mismatch is a bug or a forged grant: :class:`InvalidArgument`."""
    if not isinstance(grant, kind):
        raise InvalidArgument(f"{grant!r} is not a {kind.__name__}; it was not issued by this backend")
    return grant


class ElectionBackend(LockBackend):
    """A lock backend with the leader-election capability.

    Candidates queue like lock contenders, in a key space apart from locks (a lock and an
    election of one name never meet); the first is the leader, and a term is a grant
    whose token is its place's token. ``release`` of the term's grant resigns.
    """

    def _start_term(
        self, name: str, value: bytes, deadline: float | None, on_queued: Callable[[], object] | None
    ) -> Grant | None:
        """For :class:`~fencing_coord.election.Election`: campaign and keep the term."""
        self._check_open()
        return self._adopt_term(name, self._campaign(name, value, deadline, on_queued))

    @abstractmethod
    def _campaign(
        self, name: str, value: bytes, deadline: float | None, on_queued: Callable[[], object] | None
    ) -> Grant | None:
        """Join election ``name``'s candidate queue advertising ``value``; return the
        term's grant once first, or None (withdrawn) once ``deadline`` has passed. Same
        queue rules as ``_acquire``."""

    @abstractmethod
    def _proclaim(self, grant: Grant, value: bytes) -> None:
        """Replace the value the leader holding ``grant`` advertises; same token. Raise
        LockLost (and mark the grant lost) when the term is over."""

    @abstractmethod
    def _leader(self, name: str) -> Leader | None:
        """Return the first candidate of election ``name``, or None."""

    @abstractmethod
    def _watch_leader(self, name: str, notify: Callable[[], None]) -> Callable[[], None]:
        """Call ``notify()`` (cheap, never blocks) whenever election ``name``'s queue may
        have changed; return a function that stops the watch."""


def encode_candidate(identity: str, value: bytes) -> bytes:
    """A candidate record, as every backend stores it: the identity's length in bytes in
    decimal ASCII, ``:``, the identity (UTF-8), then the value's raw bytes. So
    ``11:host:42:abchttp://a:8080`` is identity ``host:42:abc``, value ``http://a:8080``."""
    raw = identity.encode("utf-8")
    return b"%d:%s%s" % (len(raw), raw, value)


def decode_candidate(data: bytes, where: str = "a candidate record") -> tuple[str, bytes]:
    """``(identity, value)`` from :func:`encode_candidate`'s bytes. Raises
    :class:`BackendUnavailable` naming ``where`` when the data is not such a record
    (another program wrote it)."""
    head, colon, rest = data.partition(b":")
    if colon and head.isdigit() and int(head) <= len(rest):
        size = int(head)
        try:
            return rest[:size].decode("utf-8"), rest[size:]
        except UnicodeDecodeError:
            pass
    raise BackendUnavailable(f"{where} does not hold a fencing-coord candidate record ({data[:40]!r}...)")


if not TYPE_CHECKING:  # mypy sees the import at the top

    def __getattr__(name: str) -> Any:
        if name not in ("Place", "QueueDriver"):
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from . import fairqueue_protocols

        return getattr(fairqueue_protocols, name)
