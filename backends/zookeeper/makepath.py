"""Create a node and, when its parent is missing, every missing ancestor, in two round
trips more instead of kazoo's two per path level: :func:`create_making_parents`.

kazoo's ``create(makepath=True)`` answers a missing parent with ``ensure_path``, which
walks up one ``exists`` at a time and back down one ``create`` at a time: a first grant
in a new namespace (``/fencing-coord/<ns>/locks/<name>``) took nine round trips. Here
the ancestors' creates are sent together, top down, without waiting for each other's
answer: ZooKeeper answers one session's requests in the order sent, so each create finds
its parent made by the one before, and "exists already" is the common, harmless answer.
"""

from __future__ import annotations

from kazoo.exceptions import NodeExistsError, NoNodeError
from kazoo.security import OPEN_ACL_UNSAFE

# Not ``from typing import ...`` at runtime: see fencing_coord.typeless.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ancestors", "create_making_parents"]

# kazoo's create flags (CreateMode): ephemeral, sequential.
_EPHEMERAL, _SEQUENCE = 1, 2


def ancestors(path: str) -> list[str]:
    """The ancestors of ``path`` below the root, top down: ``/a/b/c`` -> ``/a``, ``/a/b``.
    A sequential node's prefix ending in ``/`` names its parent as ``path`` without it."""
    parts = [part for part in path.split("/")[:-1] if part]
    return ["/" + "/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]


def create_making_parents(client: Any, path: str, value: bytes, **options: Any) -> Any:
    """kazoo's ``create_async(path, value, **options)`` (``makepath`` not among them), whose
    result, on a missing parent, is the create's again after every ancestor's create
    (default ACL, empty value) was sent. An ancestor's refusal other than "exists
    already" is the result when the create still finds no parent, as kazoo's makepath
    reports it; a parent deleted again in between is made again, as kazoo does."""
    outcome = client.handler.async_result()

    def settle(result: Any, parents: list[Any]) -> None:
        # On kazoo's completion thread: every way out settles ``outcome`` or sends again.
        try:
            outcome.set(result.get())
        except NoNodeError:
            # The ancestors were answered before this create (one session's order).
            refused = [p.exception for p in parents if not isinstance(p.exception, (NodeExistsError, type(None)))]
            if refused:
                outcome.set_exception(refused[0])
            else:  # none sent yet, or a parent deleted again in between
                again()
        except Exception as exc:
            outcome.set_exception(exc)

    def again(parents: list[Any] | None = None) -> None:
        try:
            attempt(parents)
        except Exception as exc:  # kazoo refused to send (a closed client, a bad argument)
            outcome.set_exception(exc)

    def attempt(parents: list[Any] | None = None) -> None:
        sent = parents if parents is not None else [client.create_async(p) for p in ancestors(path)]
        created = _create_direct(client, path, value, options) if direct else None
        if created is None:
            client.create_async(path, value, **options).rawlink(lambda result: settle(result, sent))
        else:
            created.notify(lambda: settle_direct(created, sent))

    def settle_direct(created: Any, parents: list[Any]) -> None:
        # On kazoo's connection thread, which must not wait: every answer but a missing
        # parent settles ``outcome`` here; that one (rare) goes to the completion thread,
        # which sends the ancestors' creates, as kazoo runs callbacks.
        error = created.exception
        if error is None:
            outcome.set(_unchrooted(client, created.value))
        elif not isinstance(error, NoNodeError):
            outcome.set_exception(error)
        elif client.handler.running:
            client.handler.completion_queue.put(lambda: settle(created, parents))
        else:
            settle(created, parents)

    # Results that call back on the thread that completes them (the asyncio front end's,
    # see .aio_session.LoopResult) are settled there: an answer then reaches the event
    # loop in one hop, not through kazoo's completion thread twice (its create_async
    # chains a callback of its own). Other results (the blocking front end's) as kazoo does.
    direct = hasattr(outcome, "notify")
    # The first attempt without the ancestors: their parent is there in the common case.
    if direct:
        again([])  # kazoo's create request raises what its create_async would set
    else:
        attempt([])
    return outcome


def _unchrooted(client: Any, value: Any) -> Any:
    """A create's answer (the path, or with ``include_data`` the path and stat) with the
    client's chroot stripped from the path, as kazoo's ``create_async`` returns it."""
    if isinstance(value, tuple):
        created_path, stat = value
        return client.unchroot(created_path), stat
    return client.unchroot(value)


def _create_direct(client: Any, path: str, value: bytes, options: dict[str, Any]) -> Any:
    """The create request itself, as kazoo's ``create_async`` sends it, without the
    callback it chains on its completion thread (which only strips the chroot and handles
    ``makepath``, which we do not use); None when this kazoo has no such method."""
    inner = getattr(client, "_create_async_inner", None)
    if inner is None:
        return None
    sequence = bool(options.get("sequence", False))
    flags = (_EPHEMERAL if options.get("ephemeral", False) else 0) | (_SEQUENCE if sequence else 0)
    return inner(path, value, client.default_acl or OPEN_ACL_UNSAFE, flags, trailing=sequence,
                 include_data=bool(options.get("include_data", False)))
