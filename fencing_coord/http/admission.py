"""How a receiver admits a request, and what the handler gets: :class:`FencedRequest`.

An :class:`Admission` decides a :class:`~fencing_coord.http.protocol.Fence` and returns a
:class:`Ticket`. A refused ticket becomes a 409. An admitted one carries the
:class:`FencedRequest` the middleware hands to the handler, and is finished once, when
the response starts (commit) or when the handler failed (roll back).

Two kinds:

- :class:`StoreAdmission` (any store): admission is a fenced read that raises the
  resource's highest token to the request's token. It is **not atomic with effects the
  handler has elsewhere**: a successor may be admitted between this admission and the
  handler's effect, and that effect then still lands. The handler's writes through
  ``FencedRequest.bound`` are themselves fenced (each is one atomic step of the store),
  so they are safe; an effect on another system is fenced only as well as that system
  checks the token itself.
- :class:`~fencing_coord.http.sql.SQLiteAdmission` and
  :class:`~fencing_coord.http.sql.PostgresAdmission`: admission happens inside a
  database transaction that stays open while the handler runs, on
  ``FencedRequest.connection``; the handler's SQL commits together with the token, and
  a successor's admission waits for that commit. Atomic.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..bound import BoundResource
from ..errors import InvalidArgumentType
from ..gate import FencedResource
from ..stores.memory import MemoryStore
from .protocol import Fence

__all__ = ["Admission", "FencedRequest", "StoreAdmission", "Ticket", "as_admission"]

#: The key a StoreAdmission's fenced read reads (its value is not used).
ADMISSION_KEY = "fencing-admission"


@dataclass(frozen=True)
class FencedRequest:
    """What the handler of an admitted request gets.

    ``resource``/``token``: the request's fence. ``highest_before``: the resource's
    highest token before this admission (None: it had none). ``connection``: for the SQL
    admissions, the database connection inside the admitting transaction (run the
    handler's SQL on it; do not commit or close it), else None. ``bound``: for a
    :class:`StoreAdmission`, the resource bound to this token (fenced writes and reads),
    else None.
    """

    resource: str
    token: int
    highest_before: int | None
    connection: Any = None
    bound: BoundResource | None = None


class Ticket:
    """One admission decision. ``admitted`` False: refused, ``highest`` is the token that
    refused it. Admitted: ``request`` is for the handler, and :meth:`finish` must be
    called exactly once."""

    __slots__ = ("_finish", "admitted", "highest", "request")

    def __init__(self, admitted: bool, highest: int | None, request: FencedRequest | None = None,
                 finish: Callable[[bool], None] | None = None) -> None:
        self.admitted, self.highest, self.request, self._finish = admitted, highest, request, finish

    @property
    def pending(self) -> bool:
        """True while there is a transaction to finish (a SQL admission's)."""
        return self._finish is not None

    def finish(self, commit: bool) -> None:
        """Commit (``commit``) or roll back what the handler did in the admission's
        transaction; nothing to do for a store admission. A failed commit raises
        :class:`~fencing_coord.BackendUnavailable`."""
        finish, self._finish = self._finish, None
        if finish is not None:
            finish(commit)


class Admission(ABC):
    """Decides whether requests are admitted. Thread-safe; blocking (the ASGI middleware
    calls it from a worker thread)."""

    #: Refuse equal tokens too (see FencedResource's ``strict``).
    strict: bool = False
    #: ``admit`` may wait (on a disk, a network, a lock): the ASGI middleware then calls
    #: it from a worker thread. False only where it never waits (a MemoryStore's mutex).
    blocking: bool = True

    @abstractmethod
    def admit(self, fence: Fence) -> Ticket:
        """Admit ``fence.token`` on ``fence.resource`` by the gate's rule, raising the
        resource's highest token; or refuse it, changing nothing. Raises
        :class:`~fencing_coord.BackendUnavailable` when the store cannot decide (nothing
        was admitted)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


class StoreAdmission(Admission):
    """Admission through a :class:`~fencing_coord.FencedResource` (any store): see the
    module docstring for what it does and does not make atomic."""

    def __init__(self, resource: FencedResource) -> None:
        if not isinstance(resource, FencedResource):
            raise InvalidArgumentType(f"expected a FencedResource, not {type(resource).__name__}")
        self.resource = resource
        self.strict = resource.strict
        self.blocking = not isinstance(resource.store, MemoryStore)

    def __repr__(self) -> str:
        return f"StoreAdmission({self.resource!r})"

    def admit(self, fence: Fence) -> Ticket:
        outcome = self.resource.store.fenced_read(fence.resource, ADMISSION_KEY, fence.token, self.strict)
        if not outcome.accepted:
            return Ticket(False, outcome.highest_before)
        bound = BoundResource(self.resource, fence.token, fence.resource)
        return Ticket(True, outcome.highest_before, FencedRequest(fence.resource, fence.token,
                                                                  outcome.highest_before, bound=bound))


def as_admission(gate: Admission | FencedResource) -> Admission:
    """``gate`` itself, or a :class:`StoreAdmission` over a FencedResource."""
    if isinstance(gate, Admission):
        return gate
    if isinstance(gate, FencedResource):
        return StoreAdmission(gate)
    raise InvalidArgumentType(f"gate must be an Admission or a FencedResource, not {type(gate).__name__}")
