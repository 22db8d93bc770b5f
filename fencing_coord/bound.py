"""A fenced resource bound to one grant, so that callers never pass the token by hand.

    with backend.lock("orders", timeout=5) as grant:
        orders = resource.bind(grant)               # resource name: the lock's name
        orders.write("total", b"42").raise_for_status()
        orders.read("total")                        # a fenced read under grant.token

:func:`fence_of` is the one place that turns what a caller holds (a :class:`Grant`, an
election :class:`Term`) into the token and the resource name to send; the HTTP client
wrappers use it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import InvalidArgumentType
from .stores.base import check_store_token
from .validation import check_name

if TYPE_CHECKING:
    from .election import TermView
    from .gate import Bytes, FencedResource, WriteResult
    from .interface import Grant

__all__ = ["BoundResource", "fence_of"]


def fence_of(holder: Grant | TermView, resource: str | None = None) -> tuple[int, str]:
    """Return ``(token, resource name)`` for ``holder``.

    ``holder`` is a :class:`~fencing_coord.Grant` (resource name: the lock's name) or a
    :class:`~fencing_coord.Term` or an asyncio term (the election's name); ``resource``
    overrides the name.
    Raises :class:`InvalidArgumentType`/:class:`InvalidArgument` for anything else, a
    token that does not fit a store, or a bad name.
    """
    from .election import TermView
    from .interface import Grant

    if isinstance(holder, Grant):
        token, name = holder.token, holder.name
    elif isinstance(holder, TermView):
        token, name = holder.token, holder.election.name
    else:
        raise InvalidArgumentType(f"expected a Grant or a Term, not {type(holder).__name__}")
    return check_store_token(token), check_name(name if resource is None else resource, "resource name")


class BoundResource:
    """One resource of a :class:`~fencing_coord.FencedResource`, under one token.

    Every operation is the resource's own, with ``token`` filled in: the same admission
    rule, results and errors. It does not look at ``grant.lost``: the resource decides,
    and a holder whose lease ended but whom nobody has overtaken is still admitted.
    """

    __slots__ = ("name", "resource", "token")

    def __init__(self, resource: FencedResource, token: int, name: str) -> None:
        self.resource = resource
        self.token = token
        self.name = name

    def __repr__(self) -> str:
        return f"BoundResource({self.name!r}, token={self.token}, {self.resource!r})"

    def write(self, key: str, value: Bytes) -> WriteResult:
        """``resource.write(name, key, value, token=token)``: a :class:`WriteResult`."""
        return self.resource.write(self.name, key, value, token=self.token)

    def read(self, key: str) -> bytes | None:
        """A fenced read under the bound token; raises :class:`StaleTokenError` if refused."""
        return self.resource.read(self.name, key, token=self.token)

    def plain_read(self, key: str) -> bytes | None:
        """An unfenced read: admits nothing and raises no token."""
        return self.resource.read(self.name, key)

    def highest_token(self) -> int | None:
        """The highest token the resource has admitted, or None."""
        return self.resource.highest_token(self.name)
